package processor

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Processor is the ext_proc server: one WAF context per stream, verdicts from libddwaf.
type Processor struct {
	extprocv3.UnimplementedExternalProcessorServer

	cfg       Config
	log       *slog.Logger
	metrics   *metrics
	events    *eventRing
	traffic   *traffic
	catalog   *apiCatalog
	templates templates
	clientIP  clientIPResolver

	addr         atomic.Pointer[net.Addr]
	engine       atomic.Pointer[engine] // nil until Start has loaded the ruleset
	loadErr      atomic.Pointer[string]
	openContexts atomic.Int64
	budget       streamBudget // open streams, for MaxStreams and MaxStreamsPerPeer
	metadataLog  rate.Sometimes
}

// New checks the configuration and prepares a processor; Start loads the ruleset and serves.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	// Header maps hold lowercase keys (HTTP/2, and parseRequestHeaders lowercases).
	cfg.ClientIPHeader, cfg.UserIDHeader = strings.ToLower(cfg.ClientIPHeader), strings.ToLower(cfg.UserIDHeader)
	t, err := loadTemplates(cfg.BlockedTemplateJSON, cfg.BlockedTemplateHTML)
	if err != nil {
		return nil, err
	}
	p := &Processor{
		metadataLog: rate.Sometimes{First: 10, Interval: time.Minute},
		cfg:         cfg,
		log:         log,
		events:      newEventRing(cfg.EventBuffer),
		traffic:     newTraffic(),
		catalog:     newAPICatalog(cfg.APIInterval),
		templates:   t,
		clientIP: clientIPResolver{header: cfg.ClientIPHeader, headerWithoutPeer: cfg.ClientIPHeaderWithoutPeer,
			trustedHops: cfg.TrustedHops, trustedCIDRs: cfg.TrustedCIDRs},
	}
	p.metrics = newMetrics(reg, func() float64 { return float64(p.openContexts.Load()) })
	return p, nil
}

// load builds the WAF from the ruleset and applies the policy file. A bad policy file at
// start is reported like a bad edit: the processor serves without it.
func (p *Processor) load() error {
	e, err := newEngine(p.cfg.RulesFile)
	if err != nil {
		msg := err.Error()
		p.loadErr.Store(&msg)
		return err
	}
	p.engine.Store(e)
	info := e.info.Load()
	p.metrics.rulesLoaded.Set(float64(info.Loaded))
	p.log.Info("WAF ready", "ruleset", info.Source, "ruleset_version", info.Version,
		"rules", info.Loaded, "rules_failed", info.Failed, "libddwaf", info.LibVersion)
	if p.cfg.PolicyFile != "" {
		_ = p.loadPolicy()
	}
	return nil
}

func (p *Processor) setAddr(a net.Addr) { p.addr.Store(&a) }

// Addr is the ext_proc listener's address once Start listens, nil before.
func (p *Processor) Addr() net.Addr {
	if a := p.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// Ready reports whether the ruleset is loaded and the WAF usable.
func (p *Processor) Ready() bool { return p.engine.Load() != nil }

// OpenContexts is the number of WAF contexts not yet closed; 0 when no request is in flight.
func (p *Processor) OpenContexts() int64 { return p.openContexts.Load() }

// Rules describes the ruleset in force, its load diagnostics and the policy state.
func (p *Processor) Rules() (RulesInfo, error) {
	e := p.engine.Load()
	if e == nil {
		if msg := p.loadErr.Load(); msg != nil {
			return RulesInfo{}, errors.New(*msg)
		}
		return RulesInfo{}, errors.New("ruleset not loaded yet")
	}
	return *e.info.Load(), nil
}

// RulesHandler serves Rules as JSON.
func (p *Processor) RulesHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, err := p.Rules()
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			writeJSON(w, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, info)
	})
}

// SetReadyHandler makes the health port answer /readyz with h (Config.ReadyHandler); call
// it before Start.
func (p *Processor) SetReadyHandler(h http.Handler) { p.cfg.ReadyHandler = h }

// HealthHandler answers 503 until the ruleset is loaded and the WAF usable, 200 after,
// with the ruleset and policy state in the body.
func (p *Processor) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, err := p.Rules()
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			writeJSON(w, map[string]string{"status": "unavailable", "error": err.Error()})
			return
		}
		body := map[string]any{"status": "ok", "ruleset_version": info.Version, "rules": info.Loaded}
		if info.PolicyError != "" {
			body["policy_error"] = fmt.Sprintf("%s: %s (previous policy in force)", info.PolicyFile, info.PolicyError)
		}
		writeJSON(w, body)
	})
}
