package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwscheme "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/scheme"
)

// writer is what the leader does with a conversion: status, Events, provisioning. It
// writes only what differs from what the cluster shows.
type writer struct {
	kc         kubernetes.Interface
	gc         gwclient.Interface
	log        *slog.Logger
	controller string
	provision  *Provisioner
	injector   *Injector
	dyn        dynamic.Interface
	recorder   record.EventRecorder
	protected  map[types.NamespacedName]bool // last protection seen, for on/off Events
	warned     map[string]string             // object → last warning, so Events are not repeated
	// injectWarned is the same for the injector: source object → reason → message.
	injectWarned map[string]map[string]string
	renders      map[string]*rendered     // gateway key → its objects as last rendered
	specs        map[types.UID]cachedSpec // cluster objects' specs, normalized
	webhookGone  bool                     // external mode: the webhook configuration is known absent

	// The latest conversion waits here; status writes never hold back the next snapshot.
	mu      sync.Mutex
	pending *work
	wake    chan struct{}
}

type work struct {
	o objects
	c converted
}

// submit hands the writer the latest conversion, replacing one it has not started on.
func (w *writer) submit(o objects, c converted) {
	w.mu.Lock()
	w.pending = &work{o, c}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *writer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		w.mu.Lock()
		job := w.pending
		w.pending = nil
		w.mu.Unlock()
		if job != nil {
			w.reconcile(ctx, job.o, job.c)
		}
	}
}

func (w *writer) start(ctx context.Context) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := gwscheme.AddToScheme(scheme); err != nil {
		return err
	}
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: w.kc.CoreV1().Events("")})
	w.recorder = b.NewRecorder(scheme, corev1.EventSource{Component: "wafplane"})
	w.wake = make(chan struct{}, 1)
	w.protected = map[types.NamespacedName]bool{}
	w.warned = map[string]string{}
	w.injectWarned = map[string]map[string]string{}
	w.renders, w.specs = map[string]*rendered{}, map[types.UID]cachedSpec{}
	go func() { <-ctx.Done(); b.Shutdown() }()
	return nil
}

func (w *writer) reconcile(ctx context.Context, o objects, c converted) {
	for _, gc := range o.classes {
		if cond, ok := c.classes[gc.Name]; ok {
			w.classStatus(ctx, gc, cond)
		}
	}
	for k, res := range c.gateways {
		res.status.Addresses = addresses(o, res.obj)
		if w.provision != nil {
			err := w.provision.reconcile(ctx, w.kc, o, res.obj)
			if err != nil {
				w.warn(res.obj, "ProvisioningFailed", err.Error())
			}
			notProgrammed(res, err)
		}
		w.gatewayStatus(ctx, res.obj, res.status)
		switch {
		case res.err != nil:
			w.warn(res.obj, "TranslationFailed", res.err.Error())
		case len(c.warnings["Gateway/"+key(res.obj)]) > 0:
			w.warn(res.obj, "InvalidAnnotation", strings.Join(c.warnings["Gateway/"+key(res.obj)], "; "))
		default:
			w.clear(res.obj)
		}
		if prev, seen := w.protected[k]; !seen || prev != res.protected {
			reason, msg := "ProtectionEnabled", "the WAF filter (ext_proc) is on for this gateway"
			if !res.protected {
				reason, msg = "ProtectionDisabled", "the WAF filter (ext_proc) is off for this gateway; routing goes on"
			}
			w.recorder.Event(res.obj, corev1.EventTypeNormal, reason, msg)
			w.protected[k] = res.protected
		}
	}
	if w.injector != nil && c.injection != nil {
		w.inject(ctx, o, c.injection)
	}
	for _, r := range o.routes {
		parents, ok := c.routes[nn(r)]
		if !ok {
			continue
		}
		w.routeStatus(ctx, r, parents)
		switch msg := routeProblem(parents); {
		case msg != "":
			w.warn(r, "RouteNotReady", msg)
		case len(c.warnings["HTTPRoute/"+key(r)]) > 0:
			w.warn(r, "InvalidAnnotation", strings.Join(c.warnings["HTTPRoute/"+key(r)], "; "))
		default:
			w.clear(r)
		}
	}
}

// warn records a Warning Event and a log line, once per change of reason and message.
func (w *writer) warn(obj runtime.Object, reason, msg string) {
	m := obj.(metav1.Object)
	k := fmt.Sprintf("%T/%s", obj, key(m))
	if w.warned[k] == reason+msg {
		return
	}
	w.warned[k] = reason + msg
	w.log.Warn(reason, "object", fmt.Sprintf("%T %s", obj, key(m)), "message", msg)
	w.recorder.Event(obj, corev1.EventTypeWarning, reason, msg)
}

// notProgrammed makes a provisioned Gateway Programmed=False when its Envoys could not be
// provisioned or it has no address yet: status must not say it serves when it cannot.
func notProgrammed(res *gatewayResult, provisionErr error) {
	cond := meta.FindStatusCondition(res.status.Conditions, string(gwapiv1.GatewayConditionProgrammed))
	if cond == nil || cond.Status == metav1.ConditionFalse {
		return // already not programmed, with its own reason
	}
	switch {
	case provisionErr != nil:
		cond.Status, cond.Reason = metav1.ConditionFalse, string(gwapiv1.GatewayReasonInvalid)
		cond.Message = "the Envoys could not be provisioned: " + provisionErr.Error()
	case len(res.status.Addresses) == 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, string(gwapiv1.GatewayReasonAddressNotAssigned)
		cond.Message = "the provisioned Service has no address yet"
	}
}

func (w *writer) clear(obj runtime.Object) {
	delete(w.warned, fmt.Sprintf("%T/%s", obj, key(obj.(metav1.Object))))
}

func routeProblem(parents []gwapiv1.RouteParentStatus) string {
	for _, p := range parents {
		for _, c := range p.Conditions {
			if c.Status != metav1.ConditionTrue {
				return fmt.Sprintf("%s: %s (%s)", c.Type, c.Reason, c.Message)
			}
		}
	}
	return ""
}

// merge applies desired conditions to a copy of existing ones, keeping the transition
// times of conditions whose status did not change.
func merge(existing, desired []metav1.Condition) []metav1.Condition {
	out := append([]metav1.Condition(nil), existing...)
	for _, d := range desired {
		meta.SetStatusCondition(&out, d)
	}
	return out
}

func (w *writer) classStatus(ctx context.Context, gc *gwapiv1.GatewayClass, cond metav1.Condition) {
	conds := merge(gc.Status.Conditions, []metav1.Condition{cond})
	if equality.Semantic.DeepEqual(conds, gc.Status.Conditions) {
		return
	}
	cp := gc.DeepCopy()
	cp.Status.Conditions = conds
	if _, err := w.gc.GatewayV1().GatewayClasses().UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
		w.log.Warn("GatewayClass status", "class", gc.Name, "error", err)
	}
}

func (w *writer) gatewayStatus(ctx context.Context, g *gwapiv1.Gateway, desired gwapiv1.GatewayStatus) {
	st := gwapiv1.GatewayStatus{Addresses: desired.Addresses, Conditions: merge(g.Status.Conditions, desired.Conditions)}
	for _, l := range desired.Listeners {
		for _, old := range g.Status.Listeners {
			if old.Name == l.Name {
				l.Conditions = merge(old.Conditions, l.Conditions)
			}
		}
		st.Listeners = append(st.Listeners, l)
	}
	if equality.Semantic.DeepEqual(st, g.Status) {
		return
	}
	cp := g.DeepCopy()
	cp.Status = st
	if _, err := w.gc.GatewayV1().Gateways(g.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
		w.log.Warn("Gateway status", "gateway", key(g), "error", err)
	}
}

func (w *writer) routeStatus(ctx context.Context, r *gwapiv1.HTTPRoute, desired []gwapiv1.RouteParentStatus) {
	var parents []gwapiv1.RouteParentStatus
	for _, p := range r.Status.Parents {
		if string(p.ControllerName) != w.controller {
			parents = append(parents, p) // another controller's
		}
	}
	for _, d := range desired {
		for _, old := range r.Status.Parents {
			if string(old.ControllerName) == w.controller && reflect.DeepEqual(old.ParentRef, d.ParentRef) {
				d.Conditions = merge(old.Conditions, d.Conditions)
			}
		}
		parents = append(parents, d)
	}
	if equality.Semantic.DeepEqual(parents, r.Status.Parents) {
		return
	}
	cp := r.DeepCopy()
	cp.Status.Parents = parents
	if _, err := w.gc.GatewayV1().HTTPRoutes(r.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
		w.log.Warn("HTTPRoute status", "route", key(r), "error", err)
	}
}

// addresses are the Gateway's addresses: the provisioned Service's load balancer, else its
// cluster IP.
func addresses(o objects, g *gwapiv1.Gateway) []gwapiv1.GatewayStatusAddress {
	name := provisionedName(g.Name)
	for _, s := range o.services {
		if s.Namespace != g.Namespace || s.Name != name {
			continue
		}
		var out []gwapiv1.GatewayStatusAddress
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				out = append(out, gwapiv1.GatewayStatusAddress{Type: ptr(gwapiv1.IPAddressType), Value: in.IP})
			} else if in.Hostname != "" {
				out = append(out, gwapiv1.GatewayStatusAddress{Type: ptr(gwapiv1.HostnameAddressType), Value: in.Hostname})
			}
		}
		if len(out) == 0 && s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone {
			out = append(out, gwapiv1.GatewayStatusAddress{Type: ptr(gwapiv1.IPAddressType), Value: s.Spec.ClusterIP})
		}
		return out
	}
	return nil
}
