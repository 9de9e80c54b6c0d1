package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/wafplane/wafplane/discovery"
)

// InjectOptions say where the processor of injected gateways is.
type InjectOptions struct {
	// ProcessorService and ProcessorNamespace name the processor's Service; Envoy Gateway
	// refers to it with a backendRef.
	ProcessorService, ProcessorNamespace string
	// ProcessorAddress is the host Envoys dial; SERVICE.NAMESPACE.svc when empty. Set, it
	// makes Envoy Gateway reach the processor through a Backend instead of the Service.
	ProcessorAddress string
	ProcessorPort    uint32
	// ProcessorTLS makes Envoys speak TLS to the processor, without verifying its
	// certificate (its default is an ephemeral self-signed one).
	ProcessorTLS bool
	// IstioTargetRefs: the installed EnvoyFilter CRD has spec.targetRefs, so an EnvoyFilter
	// for a Gateway API Gateway targets the Gateway instead of selecting its pods by label.
	IstioTargetRefs bool
	// Sidecar points gateways at the processor injected into their own pods (sidecar mode):
	// Istio's Envoys dial 127.0.0.1:SidecarPort in plaintext; Envoy Gateway's, which refuses
	// Backends on loopback IPs, the Unix socket SidecarSocket in a volume the webhook shares
	// between the two containers. Mesh workloads (istio-sidecar) keep the processor Service.
	Sidecar       bool
	SidecarPort   uint32
	SidecarSocket string
}

// Validate checks the processor location.
func (o InjectOptions) Validate() error {
	if o.ProcessorService == "" || o.ProcessorNamespace == "" {
		return fmt.Errorf("processor service and namespace: both required")
	}
	if o.ProcessorPort == 0 || o.ProcessorPort > 65535 {
		return fmt.Errorf("processor port %d: want 1-65535", o.ProcessorPort)
	}
	if strings.ContainsAny(o.ProcessorAddress, ":/ ") && net.ParseIP(o.ProcessorAddress) == nil {
		return fmt.Errorf("processor address %q: want a host name or IP address without a port", o.ProcessorAddress)
	}
	if o.Sidecar {
		if o.SidecarPort == 0 || o.SidecarPort > 65535 {
			return fmt.Errorf("sidecar port %d: want 1-65535", o.SidecarPort)
		}
		if !strings.HasPrefix(o.SidecarSocket, "/") {
			return fmt.Errorf("sidecar socket %q: want an absolute path", o.SidecarSocket)
		}
	}
	return nil
}

// forGateway is where this gateway's Envoys find the processor: in sidecar mode the one
// in their pod, on loopback and in plaintext, since the traffic never leaves the pod.
func (o InjectOptions) forGateway(g discovery.ForeignGateway) InjectOptions {
	if !o.Sidecar || g.Proxy == discovery.ProxyIstioSidecar {
		o.Sidecar = false
		return o
	}
	o.ProcessorAddress, o.ProcessorPort, o.ProcessorTLS = "127.0.0.1", o.SidecarPort, false
	return o
}

func (o InjectOptions) host() string {
	if o.ProcessorAddress != "" {
		return o.ProcessorAddress
	}
	return o.ProcessorService + "." + o.ProcessorNamespace + ".svc"
}

// Object is a Kubernetes object as its JSON form: apiVersion, kind, metadata, spec.
type Object = map[string]any

// Inject renders the objects that put wafplane's ext_proc filter in a foreign gateway's
// Envoys: for Istio an EnvoyFilter, for Envoy Gateway an EnvoyExtensionPolicy and the
// ReferenceGrant or Backend it needs. A gateway whose protection is off gets none. Like
// Translate it is pure, and every Envoy configuration it embeds passes Validate().
func Inject(g discovery.ForeignGateway, o InjectOptions) ([]Object, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	eff := discovery.Resolve(g.Protection, nil)
	if eff.Mode == discovery.ModeOff {
		return nil, nil
	}
	o = o.forGateway(g)
	switch g.Proxy {
	case discovery.ProxyEnvoyGateway:
		return envoyGatewayObjects(g, eff, o), nil
	default:
		ef, err := envoyFilter(g, eff, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", g.Key(), err)
		}
		return []Object{ef}, nil
	}
}

// objectMeta labels an object with the gateway it serves; the writer finds its objects
// (and orphans) by the managed-by label.
func objectMeta(g discovery.ForeignGateway, namespace, name string) Object {
	return Object{
		"name":      name,
		"namespace": namespace,
		"labels": map[string]any{
			discovery.LabelManagedBy:        discovery.ManagedBy,
			discovery.LabelProxy:            g.Proxy,
			discovery.LabelGatewayNamespace: g.Namespace,
			discovery.LabelGatewayName:      labelValue(g.Name),
		},
		"annotations": map[string]any{discovery.AnnotationGateway: g.Key()},
	}
}

// objectName is "wafplane-" and the parts, fitted to a label value (labelValue), so that
// names stay usable in label selectors and kubectl output.
func objectName(parts ...string) string {
	return labelValue("wafplane-" + strings.Join(parts, "-"))
}

// labelValue fits v in Kubernetes' 63 characters, a hash of the whole keeping it unique.
func labelValue(v string) string {
	if len(v) <= 63 {
		return v
	}
	h := sha256.Sum256([]byte(v))
	return strings.TrimRight(v[:54], "-._") + "-" + hex.EncodeToString(h[:4])
}

// protoJSON is a proto as a JSON object with the proto's own field names, as Istio's
// documentation writes patches; numbers come out as float64 like any decoded JSON.
func protoJSON(m proto.Message) (map[string]any, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	err = json.Unmarshal(b, &out)
	return out, err
}

// gatewayDuration writes a duration in the Gateway API's format (GEP-2257: "200ms", "2s").
func gatewayDuration(ms int64) string {
	if ms%1000 == 0 {
		return strconv.FormatInt(ms/1000, 10) + "s"
	}
	return strconv.FormatInt(ms, 10) + "ms"
}
