package kubernetes

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/wafplane/wafplane/discovery"
)

// Annotations and labels users set on Gateways, GatewayClasses and HTTPRoutes.
const (
	AnnotationMode      = "wafplane.dev/mode"
	AnnotationFailOpen  = "wafplane.dev/fail-open"
	AnnotationBodyLimit = "wafplane.dev/body-limit"
	LabelEnabled        = "wafplane.dev/enabled"
	// LabelDatadogEnabled is the opt-out label of Datadog's gateway injector, honoured so
	// that its users' manifests keep their meaning.
	LabelDatadogEnabled = "appsec.datadoghq.com/enabled"
	// DefaultControllerName is the controllerName of GatewayClasses wafplane serves.
	DefaultControllerName = "wafplane.dev/gateway-controller"
)

// objects is everything the informers hold, as one consistent read.
type objects struct {
	classes    []*gwapiv1.GatewayClass
	gateways   []*gwapiv1.Gateway
	routes     []*gwapiv1.HTTPRoute
	grants     []*gwapiv1.ReferenceGrant
	namespaces []*corev1.Namespace
	services   []*corev1.Service
	slices     []*discoveryv1.EndpointSlice
	secrets    []*corev1.Secret
	// What provisioning made, to compare with what it should have made.
	deployments []*appsv1.Deployment
	configMaps  []*corev1.ConfigMap
	// Native Istio Gateways, and pods labelled wafplane.dev/protect=true (their metadata
	// only), for the injector.
	istioGateways []*unstructured.Unstructured
	meshPods      []*metav1.PartialObjectMetadata
	// Pods that may run gateways' Envoys (slimPod), in sidecar mode.
	gatewayPods []*corev1.Pod
}

// converted is the model and the status every object should have.
type converted struct {
	state    discovery.State
	classes  map[string]metav1.Condition // name → Accepted
	gateways map[types.NamespacedName]*gatewayResult
	routes   map[types.NamespacedName][]gwapiv1.RouteParentStatus
	warnings map[string][]string // "Kind/namespace/name" → problems worth a Warning Event
	// injection is what the injector should write; nil when it is off.
	injection *injection
}

type gatewayResult struct {
	obj       *gwapiv1.Gateway
	status    gwapiv1.GatewayStatus
	protected bool  // the ext_proc filter is in the gateway's chain
	err       error // the model's validation error, shown in status and Events
}

// convert turns the cluster's objects into the model. It is pure: no clock beyond the one
// passed in, no API calls.
func convert(o objects, controller string, now metav1.Time) converted {
	c := converted{classes: map[string]metav1.Condition{}, gateways: map[types.NamespacedName]*gatewayResult{},
		routes: map[types.NamespacedName][]gwapiv1.RouteParentStatus{}}
	ours := map[string]*gwapiv1.GatewayClass{}
	for _, gc := range o.classes {
		if string(gc.Spec.ControllerName) != controller {
			continue
		}
		ours[gc.Name] = gc
		c.classes[gc.Name] = metav1.Condition{Type: string(gwapiv1.GatewayClassConditionStatusAccepted), Status: metav1.ConditionTrue,
			Reason: string(gwapiv1.GatewayClassReasonAccepted), Message: "wafplane serves this class", ObservedGeneration: gc.Generation, LastTransitionTime: now}
	}
	ix := newIndex(o)
	var gws []*gwapiv1.Gateway
	for _, g := range o.gateways {
		if ours[string(g.Spec.GatewayClassName)] != nil {
			gws = append(gws, g)
		}
	}
	sort.Slice(gws, func(i, j int) bool { return key(gws[i]) < key(gws[j]) })
	models := map[types.NamespacedName]*discovery.Gateway{}
	listeners := map[types.NamespacedName]map[string]*listenerState{}
	for _, g := range gws {
		model, ls := ix.gateway(g, ours[string(g.Spec.GatewayClassName)], now)
		models[nn(g)] = model
		listeners[nn(g)] = ls
	}
	routes := append([]*gwapiv1.HTTPRoute(nil), o.routes...)
	sort.Slice(routes, func(i, j int) bool { return key(routes[i]) < key(routes[j]) })
	for _, r := range routes {
		var statuses []gwapiv1.RouteParentStatus
		for _, ref := range r.Spec.ParentRefs {
			gk := parentGateway(r.Namespace, ref)
			model := models[gk]
			if model == nil {
				continue // not a Gateway of ours; another controller reports it
			}
			statuses = append(statuses, ix.attach(r, ref, model, listeners[gk], controller, now))
		}
		if len(statuses) > 0 {
			c.routes[nn(r)] = statuses
		}
	}
	for _, g := range gws {
		model := models[nn(g)]
		res := &gatewayResult{obj: g, status: gatewayStatus(g, model, listeners[nn(g)], now)}
		res.err = model.Validate()
		res.protected = model.Protected()
		if res.err != nil {
			cond := meta.FindStatusCondition(res.status.Conditions, string(gwapiv1.GatewayConditionProgrammed))
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, string(gwapiv1.GatewayReasonInvalid), res.err.Error()
		}
		c.gateways[nn(g)] = res
		c.state.Gateways = append(c.state.Gateways, *model)
	}
	c.warnings = ix.warnings
	return c
}

func nn(o metav1.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}

func key(o metav1.Object) string { return o.GetNamespace() + "/" + o.GetName() }

func parentGateway(routeNS string, ref gwapiv1.ParentReference) types.NamespacedName {
	if ref.Group != nil && *ref.Group != gwapiv1.GroupName || ref.Kind != nil && *ref.Kind != "Gateway" {
		return types.NamespacedName{}
	}
	ns := routeNS
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	return types.NamespacedName{Namespace: ns, Name: string(ref.Name)}
}

// index answers lookups the conversion needs.
type index struct {
	o          objects
	namespaces map[string]*corev1.Namespace
	services   map[types.NamespacedName]*corev1.Service
	secrets    map[types.NamespacedName]*corev1.Secret
	slices     map[types.NamespacedName][]*discoveryv1.EndpointSlice
	optedOut   map[string]bool     // gateways whose protection a label turned off
	warnings   map[string][]string // "Kind/namespace/name" → annotation problems
	routeRules map[string]convertedRules
}

func newIndex(o objects) *index {
	ix := &index{o: o, namespaces: map[string]*corev1.Namespace{}, services: map[types.NamespacedName]*corev1.Service{},
		secrets: map[types.NamespacedName]*corev1.Secret{}, slices: map[types.NamespacedName][]*discoveryv1.EndpointSlice{},
		optedOut: map[string]bool{}, warnings: map[string][]string{}, routeRules: map[string]convertedRules{}}
	for _, n := range o.namespaces {
		ix.namespaces[n.Name] = n
	}
	for _, s := range o.services {
		ix.services[nn(s)] = s
	}
	for _, s := range o.secrets {
		ix.secrets[nn(s)] = s
	}
	for _, s := range o.slices {
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc != "" {
			k := types.NamespacedName{Namespace: s.Namespace, Name: svc}
			ix.slices[k] = append(ix.slices[k], s)
		}
	}
	return ix
}

// granted is true when a ReferenceGrant in the target's namespace lets objects of fromKind
// in fromNS refer to the target.
func (ix *index) granted(fromGroup, fromKind, fromNS, toGroup, toKind, toNS, toName string) bool {
	if fromNS == toNS {
		return true
	}
	for _, g := range ix.o.grants {
		if g.Namespace != toNS {
			continue
		}
		from, to := false, false
		for _, f := range g.Spec.From {
			from = from || string(f.Group) == fromGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNS
		}
		for _, t := range g.Spec.To {
			to = to || string(t.Group) == toGroup && string(t.Kind) == toKind && (t.Name == nil || string(*t.Name) == toName)
		}
		if from && to {
			return true
		}
	}
	return false
}

// protection reads the annotations. A bad mode is left for Validate, which names it; a
// fail-open or body-limit value that does not parse is ignored, the default applies, and
// the problem is returned for a Warning Event on the object.
func (ix *index) protection(obj metav1.Object, kind string) discovery.Protection {
	annotations := obj.GetAnnotations()
	var p discovery.Protection
	var problems []string
	p.Mode = annotations[AnnotationMode]
	if v, ok := annotations[AnnotationFailOpen]; ok {
		if b, err := strconv.ParseBool(v); err == nil {
			p.FailOpen = &b
		} else {
			problems = append(problems, fmt.Sprintf("%s: %q is not true or false; the default applies", AnnotationFailOpen, v))
		}
	}
	if v, ok := annotations[AnnotationBodyLimit]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			p.RequestBodyLimit = &n
		} else {
			problems = append(problems, fmt.Sprintf("%s: %q is not a byte count; the default applies", AnnotationBodyLimit, v))
		}
	}
	if len(problems) > 0 {
		ix.warnings[kind+"/"+key(obj)] = problems
	}
	return p
}

func optedOut(objs ...metav1.Object) bool {
	for _, o := range objs {
		l := o.GetLabels()
		if strings.EqualFold(l[LabelEnabled], "false") || strings.EqualFold(l[LabelDatadogEnabled], "false") {
			return true
		}
	}
	return false
}

func durationOf(d *gwapiv1.Duration) discovery.Duration {
	if d == nil {
		return 0
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil {
		return 0
	}
	return discovery.Duration(v)
}

func ptrString[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}
