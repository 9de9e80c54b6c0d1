package snapshot

import (
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wafplane/wafplane/discovery"
)

// RefreshEndpoints rebuilds only the endpoints of a translated gateway, for a change that
// touched nothing but backend endpoints: the other resources, their versions and their
// validation are reused. It reports false when the gateway's EDS clusters changed, and
// the caller must translate in full.
func RefreshEndpoints(prev *Resources, g discovery.Gateway) (*Resources, bool) {
	if prev == nil || prev.Snapshot == nil {
		return nil, false
	}
	fresh := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, r := range g.Routes {
		for _, rule := range r.Rules {
			if rule.Filters.Redirect != nil {
				continue
			}
			for _, b := range rule.Backends {
				if b.Invalid != "" {
					continue
				}
				if _, cla := backendCluster(b, 0); cla != nil {
					fresh[cla.ClusterName] = cla
				}
			}
		}
	}
	if len(fresh) != len(prev.Endpoints) {
		return nil, false
	}
	next := *prev
	next.Endpoints = make([]*endpointv3.ClusterLoadAssignment, 0, len(prev.Endpoints))
	for _, old := range prev.Endpoints { // the previous order, so equal endpoints hash equal
		cla, ok := fresh[old.ClusterName]
		if !ok || cla.Validate() != nil {
			return nil, false
		}
		next.Endpoints = append(next.Endpoints, cla)
	}
	items := asResources(next.Endpoints)
	version, err := versionOf(items)
	if err != nil {
		return nil, false
	}
	snap := &cachev3.Snapshot{Resources: prev.Snapshot.Resources}
	snap.Resources[cachev3.GetResponseType(resourcev3.EndpointType)] = cachev3.NewResources(version, items)
	next.Snapshot = snap
	return &next, true
}
