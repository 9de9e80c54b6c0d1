package discovery

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Proxy types of gateways that another controller runs and wafplane protects by writing
// the objects that controller reads (the injector).
const (
	// ProxyEnvoyGateway: Gateway API Gateways of Envoy Gateway; an EnvoyExtensionPolicy.
	ProxyEnvoyGateway = "envoy-gateway"
	// ProxyIstio: Gateway API Gateways of Istio; an EnvoyFilter selecting that Gateway's pods.
	ProxyIstio = "istio"
	// ProxyIstioGateway: Istio's own networking.istio.io Gateways; an EnvoyFilter per
	// distinct pod selector.
	ProxyIstioGateway = "istio-gateway"
	// ProxyIstioSidecar: the sidecar proxies of opted-in mesh workloads; an EnvoyFilter per
	// namespace, inbound traffic only.
	ProxyIstioSidecar = "istio-sidecar"
)

// Proxies lists every proxy type, in the order they are reported.
var Proxies = []string{ProxyEnvoyGateway, ProxyIstio, ProxyIstioGateway, ProxyIstioSidecar}

// Mesh workloads opt in with this label on their Namespace (every workload) or on their
// pods (those workloads); "false" on the Namespace keeps it out whatever its pods say.
const (
	LabelProtect = "wafplane.dev/protect"
	// MeshName is the name of a mesh namespace's ForeignGateway.
	MeshName = "mesh"
)

// ForeignGateway is a gateway another controller runs, to be protected by injection.
type ForeignGateway struct {
	Proxy     string `json:"proxy"`
	Namespace string `json:"namespace"` // Gateway API: the Gateway's; istio-gateway: where the gateway pods run
	Name      string `json:"name"`      // Gateway API: the Gateway's; istio-gateway: SelectorName(Selector)
	// Selector is the labels of the gateway pods (istio-gateway: the native Gateways'
	// spec.selector, shared by every Gateway in Sources).
	Selector map[string]string `json:"selector,omitempty"`
	// Sources are the objects that asked for this protection, "namespace/name" (istio-gateway
	// may have several native Gateways on one selector; the others have one).
	Sources    []string   `json:"sources,omitempty"`
	Protection Protection `json:"protection,omitempty"`
}

// Key is "proxy:namespace/name".
func (g *ForeignGateway) Key() string { return g.Proxy + ":" + g.Namespace + "/" + g.Name }

// GatewayKey is what the processor is told the gateway is: the Gateway's namespace/name, or
// for a native Istio selector group, its namespace and selector.
func (g *ForeignGateway) GatewayKey() string {
	switch g.Proxy {
	case ProxyIstioGateway:
		return g.Namespace + "/" + SelectorString(g.Selector)
	case ProxyIstioSidecar:
		return "mesh/" + g.Namespace
	}
	return g.Namespace + "/" + g.Name
}

// SelectorString is a selector as "k=v,k2=v2", keys sorted.
func SelectorString(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + sel[k]
	}
	return strings.Join(parts, ",")
}

// Validate checks what rendering needs.
func (g *ForeignGateway) Validate() error {
	switch g.Proxy {
	case ProxyEnvoyGateway, ProxyIstio, ProxyIstioSidecar:
	case ProxyIstioGateway:
		if len(g.Selector) == 0 {
			return fmt.Errorf("gateway %s: selector: empty, it would select every pod in %s", g.Key(), g.Namespace)
		}
	default:
		return fmt.Errorf("gateway %s: proxy: %q is not one of %s", g.Key(), g.Proxy, strings.Join(Proxies, ", "))
	}
	v := &validator{prefix: "gateway " + g.Key()}
	if g.Namespace == "" || g.Name == "" {
		v.add("namespace and name: both required")
	}
	v.protection("protection", g.Protection)
	return errors.Join(v.errs...)
}

// Labels and annotation on every object the injector writes. Objects without the
// managed-by label are never touched.
const (
	LabelManagedBy        = "app.kubernetes.io/managed-by"
	ManagedBy             = "wafplane"
	LabelProxy            = "wafplane.dev/proxy"
	LabelGatewayNamespace = "wafplane.dev/gateway-namespace"
	LabelGatewayName      = "wafplane.dev/gateway-name"
	AnnotationGateway     = "wafplane.dev/gateway" // proxy:namespace/name, unabridged
)

// SelectorName names a native Istio selector group: its values, made DNS-safe, and a hash
// of the whole selector, so that different selectors never share a name.
func SelectorName(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, r := range strings.ToLower(sel[k]) {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				b.WriteRune(r)
			} else {
				b.WriteByte('-')
			}
		}
		b.WriteByte('-')
	}
	sum := sha256.Sum256([]byte(SelectorString(sel)))
	name := strings.Trim(b.String(), "-")
	if len(name) > 40 {
		name = strings.Trim(name[:40], "-")
	}
	return strings.TrimPrefix(name+"-"+hex.EncodeToString(sum[:4]), "-")
}
