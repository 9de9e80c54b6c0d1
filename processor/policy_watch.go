package processor

import (
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// policyHoldOff coalesces the burst of events an editor or a ConfigMap update makes.
const policyHoldOff = 100 * time.Millisecond

// loadPolicy applies the policy file once; a bad file is reported and the previous policy stays.
func (p *Processor) loadPolicy() error {
	path := p.cfg.PolicyFile
	e := p.engine.Load()
	pol, err := LoadPolicy(path)
	if err == nil {
		err = e.applyPolicy(path, pol.fragment(), pol.settings())
	}
	if err != nil {
		e.reportPolicyError(path, err)
		p.metrics.policyReloads.WithLabelValues("error").Inc()
		p.log.Error("policy rejected, previous policy stays in force", "file", path, "error", err)
		return err
	}
	e.describePolicy(pol)
	p.metrics.policyReloads.WithLabelValues("ok").Inc()
	p.metrics.rulesLoaded.Set(float64(e.info.Load().Loaded))
	p.log.Info("policy applied", "file", path, "blocked_ips", len(pol.BlockedIPs),
		"blocked_users", len(pol.BlockedUsers), "custom_rules", len(pol.CustomRules),
		"exclusions", len(pol.Exclusions), "rule_overrides", len(pol.Rules),
		"wafplane_ruleset", pol.settings().Wafplane, "sensitivity", pol.settings().Sensitivity)
	return nil
}

// watchDir watches the directory of a file, so that editors that replace the file and
// Kubernetes' ConfigMap symlink swaps are seen too.
func watchDir(file string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(filepath.Dir(file)); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// watchPolicy reloads the policy when its file changes.
func (p *Processor) watchPolicy(ctx context.Context, w *fsnotify.Watcher) error {
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if relevant(ev, p.cfg.PolicyFile) {
				fire = time.After(policyHoldOff)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			p.log.Warn("policy watch", "error", err)
		case <-fire:
			fire = nil
			_ = p.loadPolicy()
		}
	}
}

// relevant is true for events on the file itself or on the ..data symlink of a ConfigMap volume.
func relevant(ev fsnotify.Event, file string) bool {
	if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
		return false
	}
	name := filepath.Clean(ev.Name)
	return name == filepath.Clean(file) || filepath.Base(name) == "..data"
}
