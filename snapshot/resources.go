package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Resources are the Envoy resources of one gateway and the snapshot made of them.
type Resources struct {
	Gateway    string
	Listeners  []*listenerv3.Listener
	Routes     []*routev3.RouteConfiguration
	Clusters   []*clusterv3.Cluster
	Endpoints  []*endpointv3.ClusterLoadAssignment
	Extensions []*corev3.TypedExtensionConfig
	Secrets    []*tlsv3.Secret // TLS keys from Kubernetes; never dumped
	// Snapshot holds the resources with one version per type: a hash of that type's
	// resources, so an unchanged type is not pushed again when another type changes.
	Snapshot *cachev3.Snapshot
}

// ResourceTypes are the type URLs of a gateway's snapshot, in the order of byType.
var ResourceTypes = []string{
	resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType,
	resourcev3.RouteType, resourcev3.ExtensionConfigType, resourcev3.SecretType,
}

// byType lists the resources per type, in the order of ResourceTypes, with the name the
// type has in a Dump.
func (r *Resources) byType() []typed {
	return []typed{
		{resourcev3.ClusterType, "clusters", asResources(r.Clusters)},
		{resourcev3.EndpointType, "endpoints", asResources(r.Endpoints)},
		{resourcev3.ListenerType, "listeners", asResources(r.Listeners)},
		{resourcev3.RouteType, "routes", asResources(r.Routes)},
		{resourcev3.ExtensionConfigType, "extensionConfigs", asResources(r.Extensions)},
		{resourcev3.SecretType, "secrets", asResources(r.Secrets)},
	}
}

type typed struct {
	url, name string
	items     []types.Resource
}

func asResources[T types.Resource](in []T) []types.Resource {
	out := make([]types.Resource, len(in))
	for i, x := range in {
		out[i] = x
	}
	return out
}

// finish validates every resource, makes the snapshot and checks its consistency.
func (r *Resources) finish() error {
	snap := &cachev3.Snapshot{}
	for _, t := range r.byType() {
		for _, item := range t.items {
			if err := validateDeep(item); err != nil {
				return fmt.Errorf("%s %q: %w", shortType(t.url), cachev3.GetResourceName(item), err)
			}
		}
		version, err := versionOf(t.items)
		if err != nil {
			return err
		}
		snap.Resources[cachev3.GetResponseType(t.url)] = cachev3.NewResources(version, t.items)
	}
	if err := snap.Consistent(); err != nil {
		return err
	}
	r.Snapshot = snap
	return nil
}

// versionOf is the version of a type's resources: a hash of their content, so the same
// resources always have the same version and a changed one never keeps it.
func versionOf(items []types.Resource) (string, error) {
	h := sha256.New()
	for _, item := range items {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(item)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Version is the version of one resource type in the snapshot.
func (r *Resources) Version(typeURL string) string {
	if r == nil || r.Snapshot == nil {
		return ""
	}
	return r.Snapshot.GetVersion(typeURL)
}

func shortType(url string) string {
	switch url {
	case resourcev3.ClusterType:
		return "cluster"
	case resourcev3.EndpointType:
		return "endpoints"
	case resourcev3.ListenerType:
		return "listener"
	case resourcev3.RouteType:
		return "route configuration"
	case resourcev3.ExtensionConfigType:
		return "extension config"
	case resourcev3.SecretType:
		return "secret"
	}
	return url
}
