package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/wafplane/wafplane/discovery"
)

// injection is one reading of what the injector should do, made on every replica.
type injection struct {
	view      crdView
	installed map[string]bool // proxy → its CRDs are installed
	enabled   map[string]bool
	problems  map[string]string // proxy → why it is not injected
	gateways  []foreignGateway
	targets   *sidecarTargets // the gateways in sidecar mode
	sidecars  sidecarCheck
}

// plan decides which proxy types are injected and finds their gateways.
func (in *Injector) plan(o objects, view crdView) *injection {
	o.istioGateways = view.objects[kindIstioGateway.Kind]
	inj := &injection{view: view, installed: map[string]bool{}, enabled: map[string]bool{}, problems: map[string]string{}}
	for _, p := range discovery.Proxies {
		var missing []string
		for _, k := range proxyKinds[p] {
			if view.installed[k.Kind] == "" {
				missing = append(missing, k.crd())
			}
		}
		inj.installed[p] = len(missing) == 0
		named := slices.Contains(in.Proxies, p)
		switch {
		case len(in.Proxies) > 0 && !named:
		case inj.installed[p]:
			inj.enabled[p] = true
		case named:
			inj.problems[p] = fmt.Sprintf("proxy type %s was asked for but its CRDs are not installed: %s", p, strings.Join(missing, ", "))
		}
	}
	inj.gateways = in.foreignGateways(o, inj.enabled)
	if in.Mode == ModeSidecar {
		inj.targets = in.sidecarTargetsOf(inj)
		inj.sidecars = checkSidecars(o.gatewayPods, inj.targets)
	}
	return inj
}

// report records what every replica knows: proxy types and the gateways found.
func (in *Injector) report(inj *injection, leader bool) {
	st := in.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.leader = leader
	for p, msg := range inj.problems {
		if in.problems[p] != msg && in.log != nil {
			in.log.Error("injector: "+msg, "proxy", p)
		}
	}
	in.problems = inj.problems
	for _, p := range discovery.Proxies {
		st.proxies[p] = &ProxyStatus{Enabled: inj.enabled[p], CRDsInstalled: inj.installed[p], Error: inj.problems[p]}
	}
	if inj.targets != nil && in.targets.Swap(inj.targets) == nil {
		close(in.readyChan())
	}
	found := map[string]bool{}
	counts, missing := map[string]int{}, map[string]int{}
	for _, fg := range inj.gateways {
		k := fg.model.Key()
		found[k] = true
		counts[fg.model.Proxy]++
		g := st.gateways[k]
		if g == nil {
			g = &GatewayInjection{Proxy: fg.model.Proxy, Namespace: fg.model.Namespace, Name: fg.model.Name}
			st.gateways[k] = g
		}
		g.Sources, g.Protection = fg.model.Sources, fg.model.Protection
		g.Mode = ModeExternal
		if in.sidecarMode(fg.model.Proxy) {
			g.Mode = ModeSidecar
		}
		g.SidecarMissing, g.SidecarMissingPods = inj.sidecars.missingN[k], inj.sidecars.missing[k]
		missing[fg.model.Proxy] += inj.sidecars.missingN[k]
	}
	for k := range st.gateways {
		if !found[k] {
			delete(st.gateways, k)
		}
	}
	for _, p := range discovery.Proxies {
		in.metrics.gateways.WithLabelValues(p).Set(float64(counts[p]))
		in.metrics.sidecarMissing.WithLabelValues(p).Set(float64(missing[p]))
	}
}

// injectWorkers bounds the injector's concurrent API calls.
const injectWorkers = 8

var errWaiting = errors.New("waiting for the informer to sync")

// objKey names an object the injector writes.
type objKey struct{ kind, namespace, name string }

type desiredObject struct {
	obj  *unstructured.Unstructured
	spec any // obj's spec, normalized for comparison
	gw   *foreignGateway
}

// rendered is what a gateway's model rendered to; it is reused while the model and the
// EnvoyFilter CRD's shape stay the same, so a reconcile of unchanged gateways allocates
// next to nothing.
type rendered struct {
	fingerprint string
	objs        []desiredObject
	err         error
}

func fingerprint(fg *foreignGateway, targetRefs bool) string {
	b, _ := json.Marshal(fg.model)
	return strconv.FormatBool(targetRefs) + string(b)
}

// render returns the gateway's objects, from the cache when its model is unchanged.
func (w *writer) render(fg *foreignGateway, targetRefs bool, seen map[string]bool) ([]desiredObject, error) {
	k := fg.model.Key()
	seen[k] = true
	fp := fingerprint(fg, targetRefs)
	if r := w.renders[k]; r != nil && r.fingerprint == fp {
		return r.objs, r.err
	}
	objs, err := w.injector.Render(fg.model, targetRefs)
	r := &rendered{fingerprint: fp, err: err}
	for _, obj := range objs {
		u := &unstructured.Unstructured{Object: obj}
		r.objs = append(r.objs, desiredObject{obj: u, spec: normalize(u.Object["spec"])})
	}
	w.renders[k] = r
	return r.objs, r.err
}

// currentSpec is a cluster object's spec normalized, cached by UID and resourceVersion.
func (w *writer) currentSpec(cur *unstructured.Unstructured, seen map[types.UID]bool) any {
	seen[cur.GetUID()] = true
	if c, ok := w.specs[cur.GetUID()]; ok && c.version == cur.GetResourceVersion() {
		return c.spec
	}
	spec := normalize(cur.Object["spec"])
	w.specs[cur.GetUID()] = cachedSpec{cur.GetResourceVersion(), spec}
	return spec
}

type cachedSpec struct {
	version string
	spec    any
}

// inject makes the cluster hold exactly the objects the gateways need: creates what is
// missing, updates what differs from what wafplane would write, deletes what no gateway
// needs (a deleted or opted-out Gateway, a proxy type no longer injected, orphans from
// before a restart). Objects without wafplane's managed-by label are never touched.
func (w *writer) inject(ctx context.Context, o objects, inj *injection) {
	in := w.injector
	now := time.Now()
	desired := map[objKey]desiredObject{}
	failed := map[string]string{} // gateway key → error
	seenGateways := map[string]bool{}
	for i := range inj.gateways {
		fg := &inj.gateways[i]
		if len(fg.warnings) > 0 {
			w.injectWarn(fg, "InvalidAnnotation", strings.Join(fg.warnings, "; "))
		} else {
			w.injectClear(fg, "InvalidAnnotation")
		}
		objs, err := w.render(fg, inj.view.targetRefs, seenGateways)
		if err != nil {
			failed[fg.model.Key()] = err.Error()
			w.injectWarn(fg, mainKind(fg.model.Proxy)+"Failed", err.Error())
			continue
		}
		var clash error
		for _, d := range objs {
			k := objKey{d.obj.GetKind(), d.obj.GetNamespace(), d.obj.GetName()}
			if other, taken := desired[k]; taken && clash == nil {
				clash = fmt.Errorf("%s %s/%s is also what %s needs: rename one of the two", k.kind, k.namespace, k.name, other.gw.model.Key())
			}
		}
		if clash != nil {
			// Gateways come sorted, so the same one keeps the object on every reconcile.
			failed[fg.model.Key()] = clash.Error()
			w.injectWarn(fg, mainKind(fg.model.Proxy)+"Failed", clash.Error())
			continue
		}
		for _, d := range objs {
			d.gw = fg
			desired[objKey{d.obj.GetKind(), d.obj.GetNamespace(), d.obj.GetName()}] = d
		}
	}
	for k := range w.renders {
		if !seenGateways[k] {
			delete(w.renders, k)
		}
	}
	// Normalized specs of the cluster's objects, computed on this goroutine before the
	// workers start: the cache is not shared with them.
	seenUIDs := map[types.UID]bool{}
	current := map[objKey]*unstructured.Unstructured{} // what the synced caches hold
	for kind, objs := range inj.view.objects {
		for _, u := range objs {
			current[objKey{kind, u.GetNamespace(), u.GetName()}] = u
		}
	}
	currentSpecs := map[objKey]any{}
	for k := range desired {
		if cur := current[k]; cur != nil {
			currentSpecs[k] = w.currentSpec(cur, seenUIDs)
		}
	}
	for uid := range w.specs {
		if !seenUIDs[uid] {
			delete(w.specs, uid)
		}
	}
	w.checkProcessor(o, inj)

	keys := make([]objKey, 0, len(desired))
	for k := range desired {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	// The API calls run on a few workers (one at a time, a write waits out a round trip);
	// Events and bookkeeping stay on this goroutine, in key order.
	type result struct {
		rec WrittenObject
		err error
	}
	results := make([]result, len(keys))
	var workers errgroup.Group
	workers.SetLimit(injectWorkers)
	for i, k := range keys {
		kind, ok := kindNamed(k.kind)
		switch {
		case !ok || inj.view.installed[kind.Kind] == "":
			results[i].err = fmt.Errorf("%s %s/%s: the CRD %s is not installed", k.kind, k.namespace, k.name, kind.crd())
		case !inj.view.synced[kind.Kind]:
			results[i].err = errWaiting
		default:
			workers.Go(func() error {
				results[i].rec, results[i].err = w.applyObject(ctx, kind, inj.view.installed[kind.Kind], desired[k], current[k], currentSpecs[k])
				return nil
			})
		}
	}
	_ = workers.Wait()
	written := map[string][]WrittenObject{}
	for i, k := range keys {
		d, r := desired[k], results[i]
		gk := d.gw.model.Key()
		switch {
		case r.err == errWaiting:
			failed[gk] = fmt.Sprintf("%s %s/%s: waiting for the informer to sync", k.kind, k.namespace, k.name)
		case r.err != nil:
			failed[gk] = r.err.Error()
			w.injectWarn(d.gw, k.kind+"Failed", r.err.Error())
		default:
			if r.rec.Op != "unchanged" {
				w.injectWrote(d.gw, r.rec)
			}
			r.rec.At = now
			written[gk] = append(written[gk], r.rec)
		}
	}
	w.collectOrphans(ctx, o, inj, desired)
	if err := w.reconcileWebhook(ctx, inj); err != nil {
		w.log.Error("injector: "+err.Error(), "part", "webhook")
	}
	if err := w.reconcilePolicy(ctx, o, inj); err != nil {
		w.log.Error("injector: "+err.Error(), "part", "sidecar policy")
	}
	w.reportSidecars(inj)
	w.forgetWarnings(inj)

	st := in.state()
	st.mu.Lock()
	for k, g := range st.gateways {
		var objs []WrittenObject
		for _, rec := range written[k] {
			// Keep when the object was last changed, not when it was last found unchanged.
			if rec.Op == "unchanged" {
				for _, prev := range g.Objects {
					if prev.Kind == rec.Kind && prev.Namespace == rec.Namespace && prev.Name == rec.Name && prev.Generation == rec.Generation {
						rec.Op, rec.At = prev.Op, prev.At
					}
				}
			}
			objs = append(objs, rec)
		}
		g.Objects = objs
		if msg, bad := failed[k]; bad {
			if g.LastError != msg || g.ErrorAt == nil {
				g.ErrorAt = &now
			}
			g.LastError = msg
		} else {
			g.LastError, g.ErrorAt = "", nil
		}
	}
	st.updated = now
	st.mu.Unlock()
}

// reportSidecars warns each gateway in sidecar mode with pods that run without their
// processor: its filter points at a local port nobody serves, so its requests fail open
// or closed (wafplane.dev/fail-open) until the pods are restarted with the sidecar.
func (w *writer) reportSidecars(inj *injection) {
	for i := range inj.gateways {
		fg := &inj.gateways[i]
		k := fg.model.Key()
		n := inj.sidecars.missingN[k]
		if n == 0 {
			w.injectClear(fg, "SidecarMissing")
			continue
		}
		effect := "are allowed uninspected (fail-open)"
		if !discovery.Resolve(fg.model.Protection, nil).FailOpen {
			effect = "fail (fail-open false)"
		}
		w.injectWarn(fg, "SidecarMissing", fmt.Sprintf("%d pod(s) run without the %s container (%s): their requests %s until they are restarted (the webhook injects new pods)",
			n, SidecarContainerName, strings.Join(inj.sidecars.missing[k], ", "), effect))
	}
}

func kindNamed(kind string) (injectKind, bool) {
	for _, k := range injectKinds {
		if k.Kind == kind && k.Owned {
			return k, true
		}
	}
	return injectKind{Kind: kind}, false
}

// mainKind is the kind whose Event names a gateway's failures before anything is written.
func mainKind(proxy string) string {
	if proxy == discovery.ProxyEnvoyGateway {
		return kindExtension.Kind
	}
	return kindEnvoyFilter.Kind
}

func (w *writer) resource(kind injectKind, version, namespace string) dynamic.ResourceInterface {
	gvr := schema.GroupVersionResource{Group: kind.Group, Version: version, Resource: kind.Resource}
	return w.dyn.Resource(gvr).Namespace(namespace)
}

// applyObject creates or updates one object. A name taken by an object wafplane does not
// manage is an error, and that object is left alone.
func (w *writer) applyObject(ctx context.Context, kind injectKind, version string, d desiredObject, cur *unstructured.Unstructured, curSpec any) (WrittenObject, error) {
	ri := w.resource(kind, version, d.obj.GetNamespace())
	rec := WrittenObject{Kind: kind.Kind, Namespace: d.obj.GetNamespace(), Name: d.obj.GetName()}
	d.obj.SetAPIVersion(kind.Group + "/" + version)
	if cur == nil {
		got, err := ri.Create(ctx, d.obj, metav1.CreateOptions{FieldManager: managedBy})
		if err == nil {
			w.injector.metrics.writes.WithLabelValues(kind.Kind, "create", "ok").Inc()
			rec.Op, rec.Generation = "created", got.GetGeneration()
			return rec, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			w.injector.metrics.writes.WithLabelValues(kind.Kind, "create", "error").Inc()
			return rec, fmt.Errorf("create %s %s/%s: %w", kind.Kind, rec.Namespace, rec.Name, err)
		}
		// Not in the cache yet, or not ours.
		if cur, err = ri.Get(ctx, rec.Name, metav1.GetOptions{}); err != nil {
			return rec, fmt.Errorf("get %s %s/%s: %w", kind.Kind, rec.Namespace, rec.Name, err)
		}
		curSpec = normalize(cur.Object["spec"])
		if cur.GetLabels()[discovery.LabelManagedBy] != discovery.ManagedBy {
			w.injector.metrics.writes.WithLabelValues(kind.Kind, "create", "conflict").Inc()
			return rec, fmt.Errorf("%s %s/%s exists and is not managed by wafplane (no label %s=%s): left alone; rename or delete it",
				kind.Kind, rec.Namespace, rec.Name, discovery.LabelManagedBy, discovery.ManagedBy)
		}
	}
	field := differs(cur, curSpec, d.obj, d.spec)
	if field == "" {
		rec.Op, rec.Generation = "unchanged", cur.GetGeneration()
		return rec, nil
	}
	w.log.Info("injector: repairing", "kind", kind.Kind, "object", key(cur), "differs_at", field)
	upd := cur.DeepCopy()
	upd.SetLabels(mergeStrings(cur.GetLabels(), d.obj.GetLabels()))
	upd.SetAnnotations(mergeStrings(cur.GetAnnotations(), d.obj.GetAnnotations()))
	upd.Object["spec"] = d.obj.Object["spec"]
	got, err := ri.Update(ctx, upd, metav1.UpdateOptions{FieldManager: managedBy})
	if err != nil {
		w.injector.metrics.writes.WithLabelValues(kind.Kind, "update", "error").Inc()
		return rec, fmt.Errorf("update %s %s/%s: %w", kind.Kind, rec.Namespace, rec.Name, err)
	}
	w.injector.metrics.writes.WithLabelValues(kind.Kind, "update", "ok").Inc()
	rec.Op, rec.Generation = "updated", got.GetGeneration()
	return rec, nil
}

// collectOrphans deletes the managed objects no gateway needs, only from synced caches.
func (w *writer) collectOrphans(ctx context.Context, o objects, inj *injection, desired map[objKey]desiredObject) {
	sources := map[string]*foreignGateway{}
	for i := range inj.gateways {
		sources[inj.gateways[i].model.Key()] = &inj.gateways[i]
	}
	for _, kind := range injectKinds {
		if !kind.Owned || !inj.view.synced[kind.Kind] {
			continue
		}
		for _, u := range inj.view.objects[kind.Kind] {
			if _, ok := desired[objKey{kind.Kind, u.GetNamespace(), u.GetName()}]; ok {
				continue
			}
			if u.GetLabels()[discovery.LabelManagedBy] != discovery.ManagedBy {
				continue
			}
			err := w.resource(kind, inj.view.installed[kind.Kind], u.GetNamespace()).Delete(ctx, u.GetName(),
				metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr(u.GetUID())}})
			if err != nil && !apierrors.IsNotFound(err) {
				w.injector.metrics.writes.WithLabelValues(kind.Kind, "delete", "error").Inc()
				w.log.Warn("injector: deleting", "kind", kind.Kind, "object", key(u), "error", err)
				continue
			}
			w.injector.metrics.writes.WithLabelValues(kind.Kind, "delete", "ok").Inc()
			gw := u.GetAnnotations()[discovery.AnnotationGateway]
			w.log.Info("injector: deleted", "kind", kind.Kind, "object", key(u), "gateway", gw,
				"reason", "no protected gateway needs it (deleted, opted out, protection off, or its proxy type is not injected)")
			// The gateway may still exist (opted out, protection off): tell it.
			if fg := sources[gw]; fg != nil {
				for _, src := range fg.sources {
					w.recorder.Eventf(src, corev1.EventTypeNormal, kind.Kind+"Deleted", "%s %s deleted: no longer needed", kind.Kind, key(u))
				}
			} else if g := foreignSource(o, gw); g != nil {
				w.recorder.Eventf(g, corev1.EventTypeNormal, kind.Kind+"Deleted", "%s %s deleted: this gateway is no longer protected", kind.Kind, key(u))
			}
			st := w.injector.state()
			st.mu.Lock()
			st.orphans = append(st.orphans, WrittenObject{Kind: kind.Kind, Namespace: u.GetNamespace(), Name: u.GetName(),
				Generation: u.GetGeneration(), Op: "deleted", At: time.Now()})
			if len(st.orphans) > maxOrphansShown {
				st.orphans = st.orphans[len(st.orphans)-maxOrphansShown:]
			}
			st.mu.Unlock()
		}
	}
}

// foreignSource finds a Gateway API Gateway that still exists for an Event, from the
// annotation "proxy:namespace/name" on what was written for it.
func foreignSource(o objects, gatewayKey string) runtime.Object {
	proxy, nsName, ok := strings.Cut(gatewayKey, ":")
	ns, name, ok2 := strings.Cut(nsName, "/")
	if !ok || !ok2 {
		return nil
	}
	if proxy == discovery.ProxyIstioSidecar {
		for _, n := range o.namespaces {
			if n.Name == ns {
				return n
			}
		}
		return nil
	}
	for _, g := range o.gateways {
		if g.Namespace == ns && g.Name == name {
			return g
		}
	}
	return nil
}

func (w *writer) injectWrote(fg *foreignGateway, rec WrittenObject) {
	verb := map[string]string{"created": "Created", "updated": "Updated"}[rec.Op]
	obj := rec.Namespace + "/" + rec.Name
	w.log.Info("injector: "+rec.Op, "kind", rec.Kind, "object", obj, "gateway", fg.model.Key(), "generation", rec.Generation)
	for _, src := range fg.sources {
		w.recorder.Eventf(src, corev1.EventTypeNormal, rec.Kind+verb, "%s %s %s (generation %d) to run the wafplane WAF in this gateway's Envoys",
			rec.Kind, obj, rec.Op, rec.Generation)
	}
	w.injectClear(fg, rec.Kind+"Failed")
}

// sourceID names an object that gets the injector's Events (a Gateway, native Istio
// Gateway or Namespace), for injectWarned.
func sourceID(src runtime.Object) string {
	return fmt.Sprintf("%T/%s", src, key(src.(metav1.Object)))
}

// injectWarn records a Warning Event on each of the gateway's objects, once per message.
func (w *writer) injectWarn(fg *foreignGateway, reason, msg string) {
	logged := false
	for _, src := range fg.sources {
		id := sourceID(src)
		if w.injectWarned[id][reason] == msg {
			continue
		}
		if !logged {
			w.log.Warn("injector: "+reason, "gateway", fg.model.Key(), "error", msg)
			logged = true
		}
		if w.injectWarned[id] == nil {
			w.injectWarned[id] = map[string]string{}
		}
		w.injectWarned[id][reason] = msg
		w.recorder.Event(src, corev1.EventTypeWarning, reason, msg)
	}
}

func (w *writer) injectClear(fg *foreignGateway, reason string) {
	for _, src := range fg.sources {
		delete(w.injectWarned[sourceID(src)], reason)
	}
}

// forgetWarnings drops what was warned about objects that no longer ask for protection,
// so that the record does not grow with every Gateway ever seen.
func (w *writer) forgetWarnings(inj *injection) {
	current := map[string]bool{}
	for _, fg := range inj.gateways {
		for _, src := range fg.sources {
			current[sourceID(src)] = true
		}
	}
	for id := range w.injectWarned {
		if !current[id] {
			delete(w.injectWarned, id)
		}
	}
}

// checkProcessor reports a processor Service that is missing or has no ready endpoint:
// the objects are still written, but the gateways would fail open (or closed) silently.
func (w *writer) checkProcessor(o objects, inj *injection) {
	in := w.injector
	ps := ProcessorStatus{Service: in.ProcessorNamespace + "/" + in.ProcessorService, Checked: in.CheckProcessor, Available: true}
	if in.CheckProcessor {
		ps.Available, ps.Reason = processorReady(o, types.NamespacedName{Namespace: in.ProcessorNamespace, Name: in.ProcessorService})
	}
	v := 0.0
	if ps.Available {
		v = 1
	}
	in.metrics.processor.Set(v)
	st := in.state()
	st.mu.Lock()
	st.processor = ps
	st.mu.Unlock()
	for i := range inj.gateways {
		if ps.Available || in.sidecarMode(inj.gateways[i].model.Proxy) { // sidecars: SidecarMissing
			w.injectClear(&inj.gateways[i], "ProcessorUnavailable")
			continue
		}
		w.injectWarn(&inj.gateways[i], "ProcessorUnavailable", ps.Reason+"; requests to this gateway are not inspected (or fail, with fail-open false)")
	}
}

func processorReady(o objects, svc types.NamespacedName) (bool, string) {
	found := false
	for _, s := range o.services {
		found = found || s.Namespace == svc.Namespace && s.Name == svc.Name
	}
	if !found {
		return false, fmt.Sprintf("processor Service %s not found", svc)
	}
	for _, s := range o.slices {
		if s.Namespace != svc.Namespace || s.Labels["kubernetes.io/service-name"] != svc.Name {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return true, ""
			}
		}
	}
	return false, fmt.Sprintf("processor Service %s has no ready endpoints", svc)
}

// differs says where the object lacks what wafplane would write — its labels,
// annotations and spec — or "" when it lacks nothing. Fields the API server defaults, and
// labels others add, are not differences.
func differs(cur *unstructured.Unstructured, curSpec any, want *unstructured.Unstructured, wantSpec any) string {
	for k, v := range want.GetLabels() {
		if cur.GetLabels()[k] != v {
			return "metadata.labels." + k
		}
	}
	for k, v := range want.GetAnnotations() {
		if cur.GetAnnotations()[k] != v {
			return "metadata.annotations." + k
		}
	}
	return missing("spec", wantSpec, curSpec)
}

// missing finds the first field of want that got lacks or holds another value in, as a
// path; lists must have the same length and match element by element.
func missing(path string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		if len(w) == 0 && got == nil {
			return "" // an empty object the API server left out
		}
		g, ok := got.(map[string]any)
		if !ok {
			return path
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if p := missing(path+"."+k, w[k], g[k]); p != "" {
				return p
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path
		}
		for i := range w {
			if p := missing(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); p != "" {
				return p
			}
		}
		return ""
	default:
		if !reflect.DeepEqual(want, got) {
			return path
		}
		return ""
	}
}

// normalize makes numbers float64 on both sides: rendered objects and the API server's.
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return v
	}
	return out
}

func mergeStrings(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
