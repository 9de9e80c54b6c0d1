package kubernetes

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/wafplane/wafplane/discovery"
)

// Controller names of the GatewayClasses whose Gateways the injector protects.
const (
	EnvoyGatewayControllerName = "gateway.envoyproxy.io/gatewayclass-controller"
	IstioControllerName        = "istio.io/gateway-controller"
)

// Injector protects Gateways that Istio or Envoy Gateway run, by writing the EnvoyFilter or
// EnvoyExtensionPolicy (and the ReferenceGrant or Backend it needs) that inserts wafplane's
// ext_proc filter in their Envoys. Only the leader writes.
type Injector struct {
	// Proxies are the proxy types to protect (discovery.Proxies); empty with AutoDetect is
	// every type whose CRDs are installed, detected while running.
	Proxies    []string
	AutoDetect bool
	// IstioGatewayNamespace is where EnvoyFilters for native Istio Gateways go: the
	// namespace of the gateway pods their selectors pick (istio-system by default).
	IstioGatewayNamespace string
	// IstioRootNamespace is Istio's config root namespace: never a mesh namespace to protect
	// (an EnvoyFilter there applies to every workload of the mesh). istio-system by default.
	IstioRootNamespace string
	// ProcessorService and ProcessorNamespace name the processor's Service; when
	// CheckProcessor is set, a missing Service or one without ready endpoints is reported.
	ProcessorService, ProcessorNamespace string
	CheckProcessor                       bool
	// Render returns the objects that protect a gateway (snapshot.Inject); targetRefs says
	// whether the installed EnvoyFilter CRD has spec.targetRefs.
	Render func(g discovery.ForeignGateway, targetRefs bool) ([]map[string]any, error)
	// Registerer takes the injector's metrics; nil for none.
	Registerer prometheus.Registerer
	// Mode is ModeExternal (the processor Service) or ModeSidecar (a processor container
	// in each gateway pod, injected by the Webhook); empty is external.
	Mode string
	// Sidecar is the injected container, in sidecar mode.
	Sidecar SidecarSettings
	// PolicyFile, in sidecar mode, is copied into the ConfigMap PolicyConfigMap of every
	// namespace with sidecars, which they mount and reload; empty keeps an empty policy.
	PolicyFile string
	// WebhookConfig names the MutatingWebhookConfiguration of sidecar mode (deleted in
	// external mode); Webhook serves it, in sidecar mode.
	WebhookConfig string
	Webhook       *Webhook

	targets  atomic.Pointer[sidecarTargets]
	ready    chan struct{} // closed once targets are first known
	initOnce sync.Once
	poke     atomic.Pointer[func()]
	policy   atomic.Pointer[policyRead]

	status   *injectionStatus
	metrics  *injectorMetrics
	log      *slog.Logger
	problems map[string]string // last logged, so a problem is logged when it changes
}

// Validate checks the settings.
func (in *Injector) Validate() error {
	for _, p := range in.Proxies {
		if !slices.Contains(discovery.Proxies, p) {
			return fmt.Errorf("inject proxies: %q is not one of %s", p, strings.Join(discovery.Proxies, ", "))
		}
	}
	if len(in.Proxies) == 0 && !in.AutoDetect {
		return fmt.Errorf("inject proxies: none named and auto-detection off: nothing to inject")
	}
	if in.ProcessorService == "" || in.ProcessorNamespace == "" || in.Render == nil {
		return fmt.Errorf("injector: processor service, namespace and Render are required")
	}
	switch in.Mode {
	case "", ModeExternal:
	case ModeSidecar:
		if err := in.Sidecar.Validate(); err != nil {
			return fmt.Errorf("inject %w", err)
		}
		if in.Webhook == nil {
			return fmt.Errorf("inject mode sidecar: needs the webhook")
		}
	default:
		return fmt.Errorf("inject mode %q: want sidecar or external", in.Mode)
	}
	return nil
}

// wake asks the event loop for a reconcile (once it runs).
func (in *Injector) wake() {
	if p := in.poke.Load(); p != nil {
		(*p)()
	}
}

// foreignGateway is a gateway to protect and the objects that asked for it, which get
// its Events; warnings are its annotation values that do not parse (the defaults apply).
type foreignGateway struct {
	model    discovery.ForeignGateway
	sources  []runtime.Object
	warnings []string
}

// foreignGateways finds the gateways of the enabled proxy types that are not opted out.
// It is pure, like convert.
func (in *Injector) foreignGateways(o objects, enabled map[string]bool) []foreignGateway {
	// Only annotations are read: not the whole index convert builds.
	ix := &index{warnings: map[string][]string{}}
	proxies := map[string]string{} // class name → proxy type
	classes := map[string]*gwapiv1.GatewayClass{}
	for _, gc := range o.classes {
		classes[gc.Name] = gc
		switch string(gc.Spec.ControllerName) {
		case EnvoyGatewayControllerName:
			proxies[gc.Name] = discovery.ProxyEnvoyGateway
		case IstioControllerName:
			proxies[gc.Name] = discovery.ProxyIstio
		}
	}
	var out []foreignGateway
	for _, g := range o.gateways {
		proxy := proxies[string(g.Spec.GatewayClassName)]
		if proxy == "" || !enabled[proxy] || optedOut(g, classes[string(g.Spec.GatewayClassName)]) {
			continue
		}
		out = append(out, foreignGateway{
			model: discovery.ForeignGateway{Proxy: proxy, Namespace: g.Namespace, Name: g.Name,
				Sources: []string{key(g)}, Protection: ix.protection(g, "Gateway")},
			sources:  []runtime.Object{g},
			warnings: ix.warnings["Gateway/"+key(g)],
		})
	}
	if enabled[discovery.ProxyIstioGateway] {
		out = append(out, in.istioGatewayGroups(o.istioGateways, ix)...)
	}
	if enabled[discovery.ProxyIstioSidecar] {
		out = append(out, in.meshNamespaces(o, ix)...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].model.Key() < out[j].model.Key() })
	return out
}

// istioGatewayGroups groups native Istio Gateways by selector: Gateways that select the
// same pods share one EnvoyFilter, so that their Envoys run the WAF once per request. The
// group's protection is the strictest its members ask for; one opted-out member does not
// unprotect the others' pods, all of them do.
func (in *Injector) istioGatewayGroups(gateways []*unstructured.Unstructured, ix *index) []foreignGateway {
	groups := map[string]*foreignGateway{}
	var order []string
	for _, g := range gateways {
		if optedOut(g) {
			continue
		}
		sel, _, _ := unstructured.NestedStringMap(g.Object, "spec", "selector")
		name := discovery.SelectorName(sel)
		fg := groups[name]
		if fg == nil {
			fg = &foreignGateway{model: discovery.ForeignGateway{Proxy: discovery.ProxyIstioGateway,
				Namespace: in.istioGatewayNamespace(), Name: name, Selector: sel}}
			groups[name] = fg
			order = append(order, name)
		}
		fg.model.Sources = append(fg.model.Sources, key(g))
		fg.sources = append(fg.sources, g)
		fg.model.Protection = stricter(fg.model.Protection, ix.protection(g, "Gateway"), len(fg.sources) == 1)
		fg.warnings = append(fg.warnings, ix.warnings["Gateway/"+key(g)]...)
	}
	out := make([]foreignGateway, 0, len(order))
	for _, name := range order {
		sort.Strings(groups[name].model.Sources)
		out = append(out, *groups[name])
	}
	return out
}

func (in *Injector) istioGatewayNamespace() string {
	if in.IstioGatewayNamespace == "" {
		return "istio-system"
	}
	return in.IstioGatewayNamespace
}

// stricter merges the protection of a group member: block beats monitor beats off,
// fail-closed beats fail-open, the larger body limit wins.
func stricter(a, b discovery.Protection, first bool) discovery.Protection {
	if first {
		return b
	}
	rank := map[string]int{discovery.ModeOff: 0, discovery.ModeMonitor: 1, "": 2, discovery.ModeBlock: 2}
	if rank[b.Mode] > rank[a.Mode] {
		a.Mode = b.Mode
	}
	if b.FailOpen != nil && !*b.FailOpen || a.FailOpen == nil {
		a.FailOpen = b.FailOpen
	}
	if b.RequestBodyLimit != nil && (a.RequestBodyLimit == nil || *b.RequestBodyLimit > *a.RequestBodyLimit) {
		a.RequestBodyLimit = b.RequestBodyLimit
	}
	return a
}

// meshNamespaces are the namespaces whose mesh workloads are protected at their own
// sidecars: every workload when the Namespace has wafplane.dev/protect=true, the pods with
// that label otherwise. A Namespace labelled "false" (or opted out as gateways are) and the
// mesh root namespace are never touched.
func (in *Injector) meshNamespaces(o objects, ix *index) []foreignGateway {
	withPods := map[string]bool{}
	for _, p := range o.meshPods {
		withPods[p.Namespace] = true
	}
	root := in.IstioRootNamespace
	if root == "" {
		root = "istio-system"
	}
	var out []foreignGateway
	for _, ns := range o.namespaces {
		label := ns.Labels[discovery.LabelProtect]
		if ns.Name == root || strings.EqualFold(label, "false") || optedOut(ns) {
			continue
		}
		var sel map[string]string
		switch {
		case strings.EqualFold(label, "true"):
		case withPods[ns.Name]:
			sel = map[string]string{discovery.LabelProtect: "true"}
		default:
			continue
		}
		out = append(out, foreignGateway{
			model: discovery.ForeignGateway{Proxy: discovery.ProxyIstioSidecar, Namespace: ns.Name, Name: discovery.MeshName,
				Selector: sel, Sources: []string{ns.Name}, Protection: ix.protection(ns, "Namespace")},
			sources:  []runtime.Object{ns},
			warnings: ix.warnings["Namespace/"+key(ns)],
		})
	}
	return out
}
