package processor

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the processor, registered on the Registerer the caller gives.
type metrics struct {
	requests      *prometheus.CounterVec // by gateway and verdict
	wafDuration   prometheus.Histogram
	ruleHits      *prometheus.CounterVec
	timeouts      prometheus.Counter
	errors        *prometheus.CounterVec
	truncations   *prometheus.CounterVec
	policyReloads *prometheus.CounterVec
	rulesLoaded   prometheus.Gauge
	openContexts  prometheus.GaugeFunc
	activeStreams prometheus.Gauge
	refused       *prometheus.CounterVec
	idleClosed    prometheus.Counter
	// metadataIgnored: stream metadata values not taken as sent (malformed, or above the
	// server's bound), by key.
	metadataIgnored *prometheus.CounterVec

	// gateways seen as a label, bounded: the gateway comes from stream metadata, which a
	// client of an open processor port chooses.
	gatewaysMu sync.Mutex
	gateways   map[string]bool
}

// maxGatewayLabels bounds the distinct gateway label values; later ones count as "other".
const maxGatewayLabels = 1000

// gatewayLabel is the gateway as a metric label, "other" beyond maxGatewayLabels.
func (m *metrics) gatewayLabel(g string) string {
	m.gatewaysMu.Lock()
	defer m.gatewaysMu.Unlock()
	if m.gateways[g] {
		return g
	}
	if len(m.gateways) >= maxGatewayLabels {
		return "other"
	}
	if m.gateways == nil {
		m.gateways = map[string]bool{}
	}
	m.gateways[g] = true
	return g
}

func newMetrics(reg prometheus.Registerer, openContexts func() float64) *metrics {
	const ns, sub = "wafplane", "processor"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "HTTP requests processed, by gateway and verdict (allowed, blocked, redirected, monitored, off, error)."},
			[]string{"gateway", "verdict"}),
		wafDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "waf_duration_seconds",
			Help:    "Time spent in libddwaf per request, all phases together.",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3}}),
		ruleHits: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rule_hits_total",
			Help: "Matches per rule; module is the rule's ruleset (waf: recommended, wafplane: wafplane's own)."}, []string{"rule", "module"}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "waf_timeouts_total",
			Help: "Requests whose WAF time budget ran out; they were let through."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "errors_total",
			Help: "Processing errors by kind."}, []string{"kind"}),
		truncations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "truncations_total",
			Help: "Inputs cut to libddwaf's limits or to the body limit, by reason."}, []string{"reason"}),
		policyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "policy_reloads_total",
			Help: "Policy file loads by result (ok, error)."}, []string{"result"}),
		rulesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "rules_loaded",
			Help: "Rules of the ruleset in force."}),
		openContexts: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "waf_contexts_open",
			Help: "WAF contexts open now; it returns to 0 when no request is in flight."}, openContexts),
		activeStreams: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "streams_active",
			Help: "ext_proc streams open now."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "streams_refused_total",
			Help: "ext_proc streams refused with ResourceExhausted, by the bound they passed (total, connection, peer)."}, []string{"bound"}),
		idleClosed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "streams_idle_closed_total",
			Help: "ext_proc streams closed after sending nothing for the idle timeout."}),
		metadataIgnored: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "stream_metadata_ignored_total",
			Help: "ext_proc stream metadata values not taken as sent: malformed, or asking more than the server allows (the server's bound is used), by key."}, []string{"key"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.wafDuration, m.ruleHits, m.timeouts, m.errors, m.truncations,
			m.policyReloads, m.rulesLoaded, m.openContexts, m.activeStreams, m.refused, m.idleClosed, m.metadataIgnored)
	}
	return m
}
