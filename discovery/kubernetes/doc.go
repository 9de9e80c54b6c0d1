// Package kubernetes turns Gateway API objects, read through client-go informers, into
// the discovery model, and writes status and events. It must not import go-control-plane
// or the snapshot package.
//
// The source arrives with the Kubernetes discovery issue; this file fixes the package's place.
package kubernetes
