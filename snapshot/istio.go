package snapshot

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/wafplane/wafplane/discovery"
)

// IstioGatewayLabel is the label Istio puts on the pods of a Gateway API Gateway.
const IstioGatewayLabel = "gateway.networking.k8s.io/gateway-name"

// envoyFilter is one EnvoyFilter for an Istio gateway or a namespace's mesh workloads: the
// processor cluster added, and the ext_proc filter inserted before the router of every HTTP
// connection manager. It lives in the gateway's (or workloads') namespace and applies only
// to its pods.
func envoyFilter(g discovery.ForeignGateway, eff discovery.Effective, o InjectOptions) (Object, error) {
	name := objectName(g.Name)
	// Unique per EnvoyFilter: two filters on one pod must not add one cluster twice, which
	// Envoy would reject with the whole cluster update.
	clusterName := DefaultProcessorCluster + "/" + g.Namespace + "/" + name
	opts, _, _, err := Options{ProcessorCluster: clusterName, ProcessorTLS: o.ProcessorTLS,
		ProcessorAddress: fmt.Sprintf("%s:%d", o.host(), o.ProcessorPort)}.resolved()
	if err != nil {
		return nil, err
	}
	cluster := processorCluster(opts, o.host(), o.ProcessorPort)
	filter := &hcmv3.HttpFilter{Name: ExtProcFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{
		TypedConfig: mustAny(ExternalProcessor(g.GatewayKey(), eff, clusterName)),
	}}
	for _, m := range []proto.Message{cluster, filter} {
		if err := validateDeep(m); err != nil {
			return nil, err
		}
	}
	clusterJSON, err := protoJSON(cluster)
	if err != nil {
		return nil, err
	}
	filterJSON, err := protoJSON(filter)
	if err != nil {
		return nil, err
	}
	// Gateways, or a mesh workload's sidecar for its inbound traffic only: east-west calls
	// it makes are the callee's to inspect.
	context := "GATEWAY"
	if g.Proxy == discovery.ProxyIstioSidecar {
		context = "SIDECAR_INBOUND"
	}
	spec := Object{"configPatches": []any{
		map[string]any{
			"applyTo": "CLUSTER",
			"match":   map[string]any{"context": context},
			"patch":   map[string]any{"operation": "ADD", "value": clusterJSON},
		},
		map[string]any{
			"applyTo": "HTTP_FILTER",
			"match": map[string]any{"context": context, "listener": map[string]any{"filterChain": map[string]any{
				"filter": map[string]any{"name": "envoy.filters.network.http_connection_manager",
					"subFilter": map[string]any{"name": RouterFilterName}},
			}}},
			"patch": map[string]any{"operation": "INSERT_BEFORE", "value": filterJSON},
		},
	}}
	switch {
	case g.Proxy == discovery.ProxyIstioSidecar:
		if len(g.Selector) > 0 { // none: every workload of the namespace
			spec["workloadSelector"] = map[string]any{"labels": stringMap(g.Selector)}
		}
	case g.Proxy == discovery.ProxyIstioGateway:
		spec["workloadSelector"] = map[string]any{"labels": stringMap(g.Selector)}
	case o.IstioTargetRefs:
		spec["targetRefs"] = []any{map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": g.Name}}
	default:
		spec["workloadSelector"] = map[string]any{"labels": map[string]any{IstioGatewayLabel: g.Name}}
	}
	return Object{
		"apiVersion": "networking.istio.io/v1alpha3",
		"kind":       "EnvoyFilter",
		"metadata":   objectMeta(g, g.Namespace, name),
		"spec":       spec,
	}, nil
}

func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
