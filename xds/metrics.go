package xds

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wafplane/wafplane/snapshot"
)

type metrics struct {
	streams   prometheus.Gauge
	nodes     prometheus.Gauge
	pushes    *prometheus.CounterVec
	acks      *prometheus.CounterVec
	nacks     *prometheus.CounterVec
	published *prometheus.CounterVec
	unknown   prometheus.Counter
	rejected  *prometheus.CounterVec
	// adsDeferred: ordered ADS held a response back because the request named resources
	// the snapshot no longer has (expected after a rename; Envoy asks again).
	adsDeferred prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "wafplane_xds_streams",
			Help: "Open xDS streams."}),
		nodes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "wafplane_xds_connected_nodes",
			Help: "Envoy nodes with at least one open xDS stream."}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wafplane_xds_pushes_total",
			Help: "xDS responses sent, by resource type."}, []string{"type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wafplane_xds_acks_total",
			Help: "xDS responses ACKed, by resource type."}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wafplane_xds_nacks_total",
			Help: "xDS responses NACKed, by resource type."}, []string{"type"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wafplane_snapshots_total",
			Help: "Gateway snapshots by outcome: published, or rejected (the last good one stays)."}, []string{"outcome"}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{Name: "wafplane_xds_unknown_gateway_streams_total",
			Help: "xDS streams from nodes whose cluster names no gateway."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wafplane_xds_rejected_streams_total",
			Help: "xDS streams refused, by reason: no client certificate, one naming no gateway, one for another gateway than the node cluster (or a node that changed), a node out of bounds, no request in time."}, []string{"reason"}),
		adsDeferred: prometheus.NewCounter(prometheus.CounterOpts{Name: "wafplane_xds_ads_deferred_responses_total",
			Help: "Ordered-ADS responses held back because the request named resources the new snapshot no longer has (expected after a rename)."}),
	}
	// Per type from zero, so that dashboards and alerts work before the first stream.
	for _, t := range snapshot.ResourceTypes {
		m.pushes.WithLabelValues(shortType(t))
		m.acks.WithLabelValues(shortType(t))
		m.nacks.WithLabelValues(shortType(t))
	}
	for _, r := range []string{RejectNoCertificate, RejectNoIdentity, RejectNodeMismatch, RejectOversizedNode, RejectSilent} {
		m.rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.streams, m.nodes, m.pushes, m.acks, m.nacks, m.published, m.unknown, m.rejected, m.adsDeferred)
	}
	return m
}
