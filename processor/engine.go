package processor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	waf "github.com/DataDog/go-libddwaf/v4"
	"github.com/DataDog/go-libddwaf/v4/timer"
)

// Obfuscation regexes of Datadog's tracers, so that event values are redacted the same way.
const (
	// Beyond the tracers' pattern: session ids and CSRF tokens, card data, social security
	// numbers, one-time codes and PINs (short names only as whole words), any name with
	// "secret" or "key" in it.
	obfuscatorKeyRegex   = `(?i)(?:p(?:ass)?w(?:or)?d|pass(?:_?phrase)?|secret|key|token|consumer_?(?:id|key|secret)|sign(?:ed|ature)|bearer|authorization|session|sess_?id|jsessionid|phpsessid|csrf|xsrf|card_?(?:number|num|no)|cc_?num(?:ber)?|credit_?card|(?:^|[_.-])(?:pan|pin|otp|ssn|cvv2?|cvc|sid)(?:$|[_.-]))`
	obfuscatorValueRegex = `(?i)(?:p(?:ass)?w(?:or)?d|pass(?:_?phrase)?|secret|(?:api_?|private_?|public_?|access_?|secret_?)key(?:_?id)?|token|consumer_?(?:id|key|secret)|sign(?:ed|ature)?|auth(?:entication|orization)?)(?:\s*=[^;]|"\s*:\s*"[^"]+")|bearer\s+[a-z0-9\._\-]+|token:[a-z0-9]{13}|gh[opsu]_[0-9a-zA-Z]{36}|ey[I-L][\w=-]+\.ey[I-L][\w=-]+(?:\.[\w.+\/=-]+)?|[\-]{5}BEGIN[a-z\s]+PRIVATE\sKEY[\-]{5}[^\-]+[\-]{5}END[a-z\s]+PRIVATE\sKEY|ssh-rsa\s*[a-z0-9\/\.+]{100,}`
)

// Builder paths of the configuration fragments the engine owns.
const (
	pathRules    = "wafplane/rules"
	pathBlocking = "wafplane/blocking"
	pathPolicy   = "wafplane/policy"
)

// blockAttacks turns on_match: block on for every attack rule. Whether a request is
// really blocked is decided per stream by its mode, so one handle serves all modes.
var blockAttacks = map[string]any{
	"rules_override": []any{map[string]any{
		"rules_target": []any{map[string]any{"tags": map[string]any{"category": "attack_attempt"}}},
		"on_match":     []any{"block"},
	}},
}

// RulesInfo describes the loaded ruleset for /rules and the health endpoint.
type RulesInfo struct {
	Version     string              `json:"version"`
	Source      string              `json:"source"`
	Loaded      int                 `json:"rules_loaded"` // both rulesets
	Failed      int                 `json:"rules_failed"`
	Errors      map[string][]string `json:"errors,omitempty"`
	Addresses   []string            `json:"addresses"`
	Actions     []string            `json:"actions"`
	PolicyFile  string              `json:"policy_file,omitempty"`
	Overrides   []RuleOverride      `json:"rule_overrides,omitempty"` // the policy's rules:
	Exclusions  []string            `json:"exclusions,omitempty"`     // ids of the policy's exclusions
	PolicyError string              `json:"policy_error,omitempty"`
	LibVersion  string              `json:"libddwaf_version"`
	Rulesets    []RulesetInfo       `json:"rulesets"`
}

// engine owns the libddwaf builder and the current handle. Rebuilds swap the handle
// atomically; contexts opened on the old handle keep it alive until they close.
type engine struct {
	mu      sync.Mutex // guards builder, which libddwaf does not make thread safe
	builder *waf.Builder
	handle  atomic.Pointer[wafHandle]
	info    atomic.Pointer[RulesInfo]
	policy  map[string]any // the fragment in force, to restore after a rejected update

	base     RulesetInfo     // the recommended ruleset or the --rules file
	wafplane map[string]any  // the embedded wafplane ruleset
	replaced []string        // the recommended rules it replaces below high sensitivity
	settings RulesetSettings // in force, to restore after a rejected update

	rulesKeyPaths bool // the rules file reads a body by key path
}

// wafHandle is a built handle and what its configuration asks of the body encoding.
type wafHandle struct {
	*waf.Handle
	// bodyKeyPaths: a rule, exclusion or processor reads a body by key path, so the JSON
	// encoder must keep repeated values (jsonbody.go).
	bodyKeyPaths bool
}

func newEngine(rulesFile string) (*engine, error) {
	if ok, err := waf.Usable(); !ok {
		return nil, fmt.Errorf("libddwaf is not usable on this platform: %w", err)
	}
	b, err := waf.NewBuilder(obfuscatorKeyRegex, obfuscatorValueRegex)
	if err != nil {
		return nil, fmt.Errorf("libddwaf builder: %w", err)
	}
	e := &engine{builder: b, base: RulesetInfo{Name: RulesetRecommended, Enabled: true}}
	if e.wafplane, e.replaced, err = wafplaneRuleset(); err != nil {
		b.Close()
		return nil, err
	}
	info := RulesInfo{Source: "embedded recommended ruleset", LibVersion: waf.Version()}
	var diag waf.Diagnostics
	if rulesFile == "" {
		diag, err = b.AddDefaultRecommendedRuleset()
	} else {
		info.Source = rulesFile
		var rules map[string]any
		rules, err = readJSONFile(rulesFile)
		if err == nil {
			diag, err = b.AddOrUpdateConfig(pathRules, rules)
			e.rulesKeyPaths = readsBodyByKeyPath(rules)
		}
	}
	if err == nil {
		err = diag.TopLevelError()
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("ruleset %s: %w", info.Source, err)
	}
	info.Version, e.base.Version = diag.Version, diag.Version
	if rulesFile != "" {
		e.base.Name = rulesFile
	}
	if diag.Rules != nil {
		info.Failed, info.Errors = len(diag.Rules.Failed), diag.Rules.Errors
		e.base.Loaded = len(diag.Rules.Loaded)
	}
	if err := e.addConfig(pathBlocking, blockAttacks); err != nil {
		b.Close()
		return nil, err
	}
	if err := e.setRulesets(DefaultRulesetSettings); err != nil {
		b.Close()
		return nil, err
	}
	e.settings = DefaultRulesetSettings
	if err := e.build(&info, e.rulesKeyPaths); err != nil {
		b.Close()
		return nil, err
	}
	return e, nil
}

func readJSONFile(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// build makes a new handle from the builder and publishes it. Callers hold mu or are the constructor.
func (e *engine) build(info *RulesInfo, bodyKeyPaths bool) error {
	h := e.builder.Build()
	if h == nil {
		return errors.New("libddwaf could not build a WAF handle from the configuration")
	}
	info.Rulesets = e.rulesetsInfo()
	info.Loaded = 0
	for _, rs := range info.Rulesets {
		info.Loaded += rs.Loaded
	}
	info.Addresses = sorted(h.Addresses())
	info.Actions = sorted(h.Actions())
	e.info.Store(info)
	if old := e.handle.Swap(&wafHandle{Handle: h, bodyKeyPaths: bodyKeyPaths}); old != nil {
		old.Close()
	}
	return nil
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}

// timerKey names the one timer component every run of a request charges, so that the
// budget covers the whole request and not each run.
const timerKey timer.Key = "waf"

// acquire opens a WAF context on the current handle with the request's time budget, and
// reports whether that handle's configuration reads bodies by key path. NewContext fails if
// a rebuild released the handle in between; then it retries on the new one.
func (e *engine) acquire(budget time.Duration) (ctx *waf.Context, bodyKeyPaths bool, err error) {
	for range 3 {
		h := e.handle.Load()
		if h == nil {
			return nil, false, errors.New("no WAF handle")
		}
		if ctx, err := h.NewContext(timer.WithBudget(budget), timer.WithComponents(timerKey)); err == nil {
			return ctx, h.bodyKeyPaths, nil
		}
	}
	return nil, false, errors.New("could not open a WAF context")
}

// applyPolicy replaces the policy fragment and rebuilds. A fragment libddwaf rejects
// leaves the previous policy and handle in force.
func (e *engine) applyPolicy(source string, fragment map[string]any, settings RulesetSettings) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	restore := func() {
		e.restorePolicy()
		_ = e.setRulesets(e.settings)
	}
	if err := e.setPolicy(fragment); err != nil {
		restore()
		return err
	}
	if err := e.setRulesets(settings); err != nil {
		restore()
		return err
	}
	prev := e.settings
	e.settings = settings
	info := *e.info.Load()
	info.PolicyFile, info.PolicyError = source, ""
	if err := e.build(&info, e.rulesKeyPaths || readsBodyByKeyPath(fragment)); err != nil {
		e.settings = prev
		restore()
		return err
	}
	e.policy = fragment
	return nil
}

// setRulesets adds or removes the wafplane ruleset and the sensitivity switches.
func (e *engine) setRulesets(s RulesetSettings) error {
	e.builder.RemoveConfig(pathWafplaneRuleset)
	e.builder.RemoveConfig(pathSensitivity)
	if !s.Wafplane {
		return nil
	}
	if err := e.addConfig(pathWafplaneRuleset, e.wafplane); err != nil {
		return err
	}
	if f := sensitivityFragment(s.Sensitivity, e.replaced); f != nil {
		return e.addConfig(pathSensitivity, f)
	}
	return nil
}

// addConfig adds a configuration fragment that must load whole.
func (e *engine) addConfig(path string, fragment map[string]any) error {
	d, err := e.builder.AddOrUpdateConfig(path, fragment)
	if err == nil {
		err = diagnosticsError(d)
	}
	if err != nil {
		return fmt.Errorf("ruleset %s: %w", path, err)
	}
	return nil
}

// rulesetsInfo describes both rulesets as the settings in force leave them.
func (e *engine) rulesetsInfo() []RulesetInfo {
	meta, _ := e.wafplane["metadata"].(map[string]any)
	w := RulesetInfo{Name: RulesetWafplane, Version: str(meta["rules_version"]), Enabled: e.settings.Wafplane}
	if w.Enabled {
		w.Sensitivity = e.settings.Sensitivity
		w.Rules = wafplaneRules(e.wafplane, e.settings.Sensitivity)
		for _, r := range w.Rules {
			if r.Enabled {
				w.Loaded++
			}
		}
		if w.Sensitivity != SensitivityHigh {
			w.Replaces = e.replaced
		}
	}
	return []RulesetInfo{e.base, w}
}

// readsBodyByKeyPath reports whether a configuration fragment has an input on a body
// address with a key path. The recommended ruleset has none.
func readsBodyByKeyPath(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		if addr, _ := x["address"].(string); addr == addrBody || addr == addrResponseBody {
			switch kp := x["key_path"].(type) {
			case []any:
				return len(kp) > 0
			case []string:
				return len(kp) > 0
			}
		}
		for _, c := range x {
			if readsBodyByKeyPath(c) {
				return true
			}
		}
	case []any:
		for _, c := range x {
			if readsBodyByKeyPath(c) {
				return true
			}
		}
	}
	return false
}

func (e *engine) setPolicy(fragment map[string]any) error {
	e.builder.RemoveConfig(pathPolicy)
	if len(fragment) == 0 {
		return nil
	}
	diag, err := e.builder.AddOrUpdateConfig(pathPolicy, fragment)
	if err != nil {
		return fmt.Errorf("libddwaf rejected the policy: %w", err)
	}
	return diagnosticsError(diag)
}

func (e *engine) restorePolicy() {
	e.builder.RemoveConfig(pathPolicy)
	if len(e.policy) > 0 {
		_, _ = e.builder.AddOrUpdateConfig(pathPolicy, e.policy)
	}
}

// diagnosticsError turns per-feature errors of libddwaf into one error naming the feature.
func diagnosticsError(d waf.Diagnostics) error {
	var errs []error
	d.EachFeature(func(name string, f *waf.Feature) {
		if f.Error != "" {
			errs = append(errs, fmt.Errorf("%s: %s", name, f.Error))
		}
		for msg, ids := range f.Errors {
			errs = append(errs, fmt.Errorf("%s %v: %s", name, ids, msg))
		}
	})
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// describePolicy records the overrides and exclusions of the policy in force, for /rules.
func (e *engine) describePolicy(p *Policy) {
	e.mu.Lock()
	defer e.mu.Unlock()
	info := *e.info.Load()
	info.Overrides, info.Exclusions = p.Rules, nil
	for _, x := range p.Exclusions {
		info.Exclusions = append(info.Exclusions, x.ID)
	}
	e.info.Store(&info)
}

// reportPolicyError keeps the policy error visible on /rules and the health detail.
func (e *engine) reportPolicyError(source string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	info := *e.info.Load()
	info.PolicyFile, info.PolicyError = source, err.Error()
	e.info.Store(&info)
}

func (e *engine) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if h := e.handle.Swap(nil); h != nil {
		h.Close()
	}
	e.builder.Close()
}
