// Package xds serves snapshots over ADS with go-control-plane and records, per Envoy node,
// what was sent, ACKed and NACKed. It must not import client-go.
//
// The server arrives with the control-plane issue; this file fixes the package's place.
package xds
