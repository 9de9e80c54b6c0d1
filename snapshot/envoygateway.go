package snapshot

import (
	"net"

	"github.com/wafplane/wafplane/discovery"
)

// EnvoyGatewayAttributes are the request attributes an EnvoyExtensionPolicy asks for.
// Envoy Gateway's API carries no gRPC initial metadata, and allows attributes of the
// connection, source, destination, request, response, upstream and xds.route_ families
// only: the processor gets the client address and the route name (Envoy Gateway names
// routes httproute/<namespace>/<name>/rule/<i>/match/<j>/<host>), not the gateway.
var EnvoyGatewayAttributes = []string{"source.address", "xds.route_name"}

// envoyGatewayObjects is what an Envoy Gateway gateway needs: an EnvoyExtensionPolicy
// targeting it, and what its backendRef needs — a ReferenceGrant in the processor's
// namespace when it refers to the processor's Service across namespaces, or a Backend in
// the gateway's namespace when the processor is an address or speaks TLS.
//
// What the policy carries of the ext_proc configuration built for the control plane
// (ExternalProcessor): request and response headers sent, bodies on the processor's
// request (allowModeOverride), messageTimeout, failOpen. Mode monitor becomes shadowMode
// (Envoy's observability_mode: the processor's answers are never applied); the body limit
// and the response-body setting are the processor's own (--body-limit, --response-body).
func envoyGatewayObjects(g discovery.ForeignGateway, eff discovery.Effective, o InjectOptions) []Object {
	name := objectName(g.Name)
	backendRef := map[string]any{"group": "", "kind": "Service", "name": o.ProcessorService,
		"namespace": o.ProcessorNamespace, "port": float64(o.ProcessorPort)}
	var extra []Object
	switch {
	case o.Sidecar:
		backend := Object{"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "Backend",
			"metadata": objectMeta(g, g.Namespace, name), "spec": map[string]any{
				"endpoints":    []any{map[string]any{"unix": map[string]any{"path": o.SidecarSocket}}},
				"appProtocols": []any{"gateway.envoyproxy.io/h2c"},
			}}
		extra = append(extra, backend)
		backendRef = map[string]any{"group": "gateway.envoyproxy.io", "kind": "Backend", "name": name}
	case o.ProcessorAddress != "" || o.ProcessorTLS:
		backend := Object{"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "Backend",
			"metadata": objectMeta(g, g.Namespace, name), "spec": backendSpec(o)}
		extra = append(extra, backend)
		backendRef = map[string]any{"group": "gateway.envoyproxy.io", "kind": "Backend", "name": name, "port": float64(o.ProcessorPort)}
	case o.ProcessorNamespace != g.Namespace:
		extra = append(extra, Object{
			"apiVersion": "gateway.networking.k8s.io/v1beta1",
			"kind":       "ReferenceGrant",
			"metadata":   objectMeta(g, o.ProcessorNamespace, objectName(g.Namespace, g.Name)),
			"spec": map[string]any{
				"from": []any{map[string]any{"group": "gateway.envoyproxy.io", "kind": "EnvoyExtensionPolicy", "namespace": g.Namespace}},
				"to":   []any{map[string]any{"group": "", "kind": "Service", "name": o.ProcessorService}},
			},
		})
	}
	attributes := make([]any, len(EnvoyGatewayAttributes))
	for i, a := range EnvoyGatewayAttributes {
		attributes[i] = a
	}
	extProc := map[string]any{
		"backendRefs":    []any{backendRef},
		"messageTimeout": gatewayDuration(eff.MessageTimeout.Milliseconds()),
		"failOpen":       eff.FailOpen,
		"processingMode": map[string]any{
			"allowModeOverride": true,
			"request":           map[string]any{"attributes": attributes},
			"response":          map[string]any{},
		},
	}
	if eff.Mode == discovery.ModeMonitor {
		extProc["shadowMode"] = true
	}
	policy := Object{
		"apiVersion": "gateway.envoyproxy.io/v1alpha1",
		"kind":       "EnvoyExtensionPolicy",
		"metadata":   objectMeta(g, g.Namespace, name),
		"spec": map[string]any{
			"targetRefs": []any{map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": g.Name}},
			"extProc":    []any{extProc},
		},
	}
	return append([]Object{policy}, extra...)
}

func backendSpec(o InjectOptions) map[string]any {
	endpoint := map[string]any{"fqdn": map[string]any{"hostname": o.host(), "port": float64(o.ProcessorPort)}}
	if net.ParseIP(o.host()) != nil {
		endpoint = map[string]any{"ip": map[string]any{"address": o.host(), "port": float64(o.ProcessorPort)}}
	}
	spec := map[string]any{"endpoints": []any{endpoint}}
	if o.ProcessorTLS {
		spec["tls"] = map[string]any{"insecureSkipVerify": true}
	} else {
		spec["appProtocols"] = []any{"gateway.envoyproxy.io/h2c"}
	}
	return spec
}
