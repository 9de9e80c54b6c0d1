// Package discovery holds wafplane's model of gateways (Gateway, Listener, Route, Backend,
// Protection) as plain structs with yaml tags, and the Source interface that file and
// Kubernetes discovery implement. It takes in nothing but what its sources give it and
// gives out State. It imports only the standard library: never client-go or
// go-control-plane.
package discovery
