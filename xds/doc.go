// Package xds serves snapshots over ADS with go-control-plane (server/v3 and a cache/v3
// snapshot cache) and records, per Envoy node, what was sent, ACKed and NACKed. It must not
// import client-go.
//
// It takes in translation results (snapshot.Result) and gives out the ADS gRPC service
// (SotW, ordered, and delta), plus admin views: /nodes and /snapshots. The cache is keyed
// by the node's cluster, which `wafplane bootstrap` sets to the gateway's "namespace/name",
// so every Envoy of a gateway shares one snapshot. A gateway whose translation fails keeps
// its last good snapshot; the error is reported on /snapshots. A node whose cluster names
// no gateway is logged and shown on /nodes instead of being left warming in silence.
package xds
