package snapshot

import (
	"crypto/sha256"
	"encoding/hex"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

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
	h := sha256.New()
	for _, old := range prev.Endpoints {
		cla, ok := fresh[old.ClusterName]
		if !ok {
			return nil, false
		}
		if err := cla.Validate(); err != nil {
			return nil, false
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cla)
		if err != nil {
			return nil, false
		}
		h.Write(b)
		next.Endpoints = append(next.Endpoints, cla)
	}
	snap := &cachev3.Snapshot{Resources: prev.Snapshot.Resources}
	snap.Resources[cachev3.GetResponseType(resourcev3.EndpointType)] =
		cachev3.NewResources(hex.EncodeToString(h.Sum(nil))[:16], asResources(next.Endpoints))
	next.Snapshot = snap
	return &next, true
}
