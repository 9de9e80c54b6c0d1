package kubernetes

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/wafplane/wafplane/discovery"
)

func class(name, controller string, labels map[string]string) *gwapiv1.GatewayClass {
	return &gwapiv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: gwapiv1.GatewayClassSpec{ControllerName: gwapiv1.GatewayController(controller)}}
}

func gw(ns, name, class string, labels, annotations map[string]string) *gwapiv1.Gateway {
	return &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations},
		Spec: gwapiv1.GatewaySpec{GatewayClassName: gwapiv1.ObjectName(class)}}
}

func istioGateway(ns, name string, selector, labels, annotations map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"namespace": ns, "name": name}, "spec": map[string]any{"selector": selector}}}
	if labels != nil {
		u.Object["metadata"].(map[string]any)["labels"] = labels
	}
	if annotations != nil {
		u.Object["metadata"].(map[string]any)["annotations"] = annotations
	}
	return u
}

func installed(kinds ...injectKind) crdView {
	v := crdView{installed: map[string]string{}, synced: map[string]bool{}, objects: map[string][]*unstructured.Unstructured{}}
	for _, k := range kinds {
		v.installed[k.Kind] = k.Versions[0]
		v.synced[k.Kind] = true
	}
	return v
}

func TestPlanFindsForeignGateways(t *testing.T) {
	o := objects{
		classes: []*gwapiv1.GatewayClass{
			class("istio", IstioControllerName, nil),
			class("eg", EnvoyGatewayControllerName, nil),
			class("eg-off", EnvoyGatewayControllerName, map[string]string{LabelDatadogEnabled: "false"}),
			class("wafplane", DefaultControllerName, nil),
		},
		gateways: []*gwapiv1.Gateway{
			gw("shop", "edge", "istio", nil, map[string]string{AnnotationMode: "monitor"}),
			gw("shop", "opted-out", "istio", map[string]string{LabelEnabled: "false"}, nil),
			gw("shop", "api", "eg", nil, nil),
			gw("shop", "class-opted-out", "eg-off", nil, nil),
			gw("shop", "own", "wafplane", nil, nil),
			gw("shop", "unknown-class", "nginx", nil, nil),
		},
	}
	view := installed(kindEnvoyFilter, kindIstioGateway, kindExtension, kindReferenceGrant)
	view.objects[kindIstioGateway.Kind] = []*unstructured.Unstructured{
		istioGateway("shop", "public", map[string]any{"istio": "ingressgateway"}, nil, map[string]any{AnnotationMode: "monitor"}),
		istioGateway("blog", "public", map[string]any{"istio": "ingressgateway"}, nil, map[string]any{AnnotationFailOpen: "false"}),
		istioGateway("blog", "off", map[string]any{"istio": "internal"}, map[string]any{LabelEnabled: "false"}, nil),
	}
	in := &Injector{AutoDetect: true, IstioGatewayNamespace: "gateways"}
	inj := in.plan(o, view)
	var got []string
	for _, fg := range inj.gateways {
		got = append(got, fg.model.Key()+" "+strings.Join(fg.model.Sources, ","))
	}
	sel := discovery.SelectorName(map[string]string{"istio": "ingressgateway"})
	want := []string{
		"envoy-gateway:shop/api shop/api",
		"istio-gateway:gateways/" + sel + " blog/public,shop/public",
		"istio:shop/edge shop/edge",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("gateways (-want +got):\n%s", d)
	}
	// Two native Gateways on one selector: the stricter protection of the two.
	group := inj.gateways[1].model.Protection
	if group.Mode != "" && group.Mode != discovery.ModeBlock || group.FailOpen == nil || *group.FailOpen {
		t.Errorf("group protection %+v: want block (the default beats monitor) and fail-closed", group)
	}
	if inj.gateways[2].model.Protection.Mode != discovery.ModeMonitor {
		t.Errorf("istio:shop/edge protection %+v: want the annotation's monitor", inj.gateways[2].model.Protection)
	}
}

func TestPlanProxyTypes(t *testing.T) {
	for _, c := range []struct {
		name     string
		proxies  []string
		view     crdView
		enabled  []string
		problems []string
	}{
		{"auto-detect picks what is installed", nil, installed(kindExtension), []string{discovery.ProxyEnvoyGateway}, nil},
		{"auto-detect with nothing installed", nil, installed(), nil, nil},
		{"istio-gateway needs both Istio CRDs", nil, installed(kindEnvoyFilter), []string{discovery.ProxyIstio, discovery.ProxyIstioSidecar}, nil},
		{"a named type without its CRDs is a problem", []string{discovery.ProxyIstio, discovery.ProxyEnvoyGateway},
			installed(kindExtension), []string{discovery.ProxyEnvoyGateway}, []string{discovery.ProxyIstio}},
		{"only named types", []string{discovery.ProxyIstio}, installed(kindEnvoyFilter, kindIstioGateway, kindExtension),
			[]string{discovery.ProxyIstio}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			inj := (&Injector{Proxies: c.proxies, AutoDetect: true}).plan(objects{}, c.view)
			var enabled, problems []string
			for _, p := range discovery.Proxies {
				if inj.enabled[p] {
					enabled = append(enabled, p)
				}
				if inj.problems[p] != "" {
					problems = append(problems, p)
					if !strings.Contains(inj.problems[p], "CRDs are not installed") {
						t.Errorf("problem %q does not say the CRDs are missing", inj.problems[p])
					}
				}
			}
			if d := cmp.Diff(c.enabled, enabled); d != "" {
				t.Errorf("enabled (-want +got):\n%s", d)
			}
			if d := cmp.Diff(c.problems, problems); d != "" {
				t.Errorf("problems (-want +got):\n%s", d)
			}
		})
	}
}

func TestDiffers(t *testing.T) {
	want := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"labels": map[string]any{"app.kubernetes.io/managed-by": "wafplane"}},
		"spec":     map[string]any{"port": float64(18080), "list": []any{"a", map[string]any{"x": true}}, "empty": map[string]any{}},
	}}
	for _, c := range []struct {
		name string
		cur  map[string]any
		at   string
	}{
		{"same, numbers as the API server sends them, an empty object dropped, extra labels and defaults",
			map[string]any{"metadata": map[string]any{"labels": map[string]any{"app.kubernetes.io/managed-by": "wafplane", "team": "x"}},
				"spec": map[string]any{"port": int64(18080), "list": []any{"a", map[string]any{"x": true, "defaulted": 1}}, "added": "by default"}}, ""},
		{"a value changed", map[string]any{"metadata": map[string]any{"labels": map[string]any{"app.kubernetes.io/managed-by": "wafplane"}},
			"spec": map[string]any{"port": int64(80), "list": []any{"a", map[string]any{"x": true}}}}, "spec.port"},
		{"a list element added", map[string]any{"metadata": map[string]any{"labels": map[string]any{"app.kubernetes.io/managed-by": "wafplane"}},
			"spec": map[string]any{"port": int64(18080), "list": []any{"a", map[string]any{"x": true}, "b"}}}, "spec.list"},
		{"a nested value changed", map[string]any{"metadata": map[string]any{"labels": map[string]any{"app.kubernetes.io/managed-by": "wafplane"}},
			"spec": map[string]any{"port": int64(18080), "list": []any{"a", map[string]any{"x": false}}}}, "spec.list[1].x"},
		{"our label removed", map[string]any{"spec": map[string]any{"port": int64(18080), "list": []any{"a", map[string]any{"x": true}}}},
			"metadata.labels.app.kubernetes.io/managed-by"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cur := &unstructured.Unstructured{Object: c.cur}
			if got := differs(cur, normalize(cur.Object["spec"]), want, normalize(want.Object["spec"])); got != c.at {
				t.Errorf("differs at %q, want %q", got, c.at)
			}
		})
	}
}

func TestInjectorValidate(t *testing.T) {
	render := func(discovery.ForeignGateway, bool) ([]map[string]any, error) { return nil, nil }
	sidecar := SidecarSettings{Image: "wafplane:1", Port: 8080, HealthPort: 8081}
	for _, c := range []struct {
		in   *Injector
		want string
	}{
		{&Injector{Proxies: []string{"nginx"}, ProcessorService: "w", ProcessorNamespace: "n", Render: render}, `"nginx" is not one of`},
		{&Injector{ProcessorService: "w", ProcessorNamespace: "n", Render: render}, "nothing to inject"},
		{&Injector{AutoDetect: true, Render: render}, "processor service"},
		{&Injector{AutoDetect: true, ProcessorService: "w", ProcessorNamespace: "n", Render: render}, ""},
		{&Injector{AutoDetect: true, ProcessorService: "w", ProcessorNamespace: "n", Render: render, Mode: "inline"}, `inject mode "inline"`},
		{&Injector{AutoDetect: true, ProcessorService: "w", ProcessorNamespace: "n", Render: render, Mode: ModeSidecar,
			Sidecar: SidecarSettings{Image: "wafplane:1", Port: 8080, HealthPort: 8080}, Webhook: &Webhook{}}, "healthPort 8080"},
		{&Injector{AutoDetect: true, ProcessorService: "w", ProcessorNamespace: "n", Render: render, Mode: ModeSidecar,
			Sidecar: SidecarSettings{Image: "wafplane:1", Port: 8080, HealthPort: 8081, BodyLimit: ptr(-2)}, Webhook: &Webhook{}}, "bodyParsingSizeLimit -2"},
		{&Injector{AutoDetect: true, ProcessorService: "w", ProcessorNamespace: "n", Render: render, Mode: ModeSidecar, Sidecar: sidecar}, "needs the webhook"},
		{&Injector{AutoDetect: true, ProcessorService: "w", ProcessorNamespace: "n", Render: render, Mode: ModeSidecar, Sidecar: sidecar, Webhook: &Webhook{}}, ""},
	} {
		err := c.in.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("mode %q: %v, want %q", c.in.Mode, err, c.want)
		}
	}
}

func TestProcessorReady(t *testing.T) {
	svc := types.NamespacedName{Namespace: "wafplane-system", Name: "wafplane"}
	service := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name}}
	slice := func(ready bool) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: "wafplane-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}}}
	}
	for _, c := range []struct {
		name string
		o    objects
		ok   bool
		why  string
	}{
		{"no Service", objects{}, false, "not found"},
		{"no endpoints", objects{services: []*corev1.Service{service}}, false, "no ready endpoints"},
		{"none ready", objects{services: []*corev1.Service{service}, slices: []*discoveryv1.EndpointSlice{slice(false)}}, false, "no ready endpoints"},
		{"ready", objects{services: []*corev1.Service{service}, slices: []*discoveryv1.EndpointSlice{slice(true)}}, true, ""},
	} {
		ok, why := processorReady(c.o, svc)
		if ok != c.ok || !strings.Contains(why, c.why) {
			t.Errorf("%s: %v %q", c.name, ok, why)
		}
	}
}

// The API server's warning headers go to debug.
func TestAPIWarningsAtDebug(t *testing.T) {
	var logs bytes.Buffer
	apiWarnings{slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}.HandleWarningHeader(299, "", "v1beta1 is deprecated")
	if !strings.Contains(logs.String(), "level=DEBUG") || !strings.Contains(logs.String(), "deprecated") {
		t.Errorf("log %q", logs.String())
	}
}

func TestMeshNamespaces(t *testing.T) {
	ns := func(name string, labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels,
			Annotations: map[string]string{AnnotationMode: "monitor"}}}
	}
	pod := func(namespace string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "p"}}
	}
	o := objects{
		namespaces: []*corev1.Namespace{
			ns("payments", map[string]string{discovery.LabelProtect: "true"}),
			ns("shop", nil),
			ns("blog", nil),
			ns("legacy", map[string]string{discovery.LabelProtect: "false"}),
			ns("dd-out", map[string]string{discovery.LabelProtect: "true", LabelDatadogEnabled: "false"}),
			ns("istio-system", map[string]string{discovery.LabelProtect: "true"}),
		},
		meshPods: []*metav1.PartialObjectMetadata{pod("shop"), pod("legacy")},
	}
	inj := (&Injector{AutoDetect: true}).plan(o, installed(kindEnvoyFilter))
	got := map[string]string{}
	for _, fg := range inj.gateways {
		if fg.model.Proxy == discovery.ProxyIstioSidecar {
			got[fg.model.Namespace] = discovery.SelectorString(fg.model.Selector)
			if fg.model.Protection.Mode != discovery.ModeMonitor {
				t.Errorf("%s: protection %+v, want the Namespace's annotations", fg.model.Namespace, fg.model.Protection)
			}
		}
	}
	want := map[string]string{"payments": "", "shop": discovery.LabelProtect + "=true"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("mesh namespaces (-want +got):\n%s", d)
	}
}

// Two gateways that would write one object: the first keeps it, the second is reported.
func TestInjectNameClashReported(t *testing.T) {
	render := func(g discovery.ForeignGateway, _ bool) ([]map[string]any, error) {
		return []map[string]any{{"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
			"metadata": map[string]any{"namespace": g.Namespace, "name": "wafplane-mesh"}, "spec": map[string]any{}}}, nil
	}
	in := &Injector{AutoDetect: true, Render: render, metrics: newInjectorMetrics(nil)}
	w := &writer{injector: in, log: slog.New(slog.NewTextHandler(io.Discard, nil)), recorder: record.NewFakeRecorder(10),
		injectWarned: map[string]map[string]string{}, renders: map[string]*rendered{}, specs: map[types.UID]cachedSpec{}}
	view := installed() // nothing installed: no API call is made, the clash is found before
	inj := &injection{view: view, gateways: []foreignGateway{
		{model: discovery.ForeignGateway{Proxy: discovery.ProxyIstio, Namespace: "shop", Name: "mesh"}},
		{model: discovery.ForeignGateway{Proxy: discovery.ProxyIstioSidecar, Namespace: "shop", Name: discovery.MeshName}},
	}}
	in.report(inj, true)
	w.inject(context.Background(), objects{}, inj)
	st := in.state()
	if e := st.gateways["istio-sidecar:shop/mesh"].LastError; !strings.Contains(e, "is also what istio:shop/mesh needs") {
		t.Errorf("the second gateway's error %q", e)
	}
	if e := st.gateways["istio:shop/mesh"].LastError; strings.Contains(e, "is also") {
		t.Errorf("the first gateway reports the clash: %q", e)
	}
}

// An annotation value that does not parse on a foreign gateway is an InvalidAnnotation
// Warning, as on wafplane's own, and the record of warnings forgets gateways that go.
func TestForeignAnnotationWarningsAndForgetting(t *testing.T) {
	o := objects{
		classes:  []*gwapiv1.GatewayClass{class("istio", IstioControllerName, nil)},
		gateways: []*gwapiv1.Gateway{gw("shop", "edge", "istio", nil, map[string]string{AnnotationFailOpen: "maybe"})},
	}
	in := &Injector{AutoDetect: true, metrics: newInjectorMetrics(nil),
		Render: func(discovery.ForeignGateway, bool) ([]map[string]any, error) { return nil, nil }}
	inj := in.plan(o, installed(kindEnvoyFilter))
	if len(inj.gateways) != 1 || len(inj.gateways[0].warnings) != 1 || !strings.Contains(inj.gateways[0].warnings[0], AnnotationFailOpen) {
		t.Fatalf("warnings %+v", inj.gateways)
	}
	rec := record.NewFakeRecorder(10)
	w := &writer{injector: in, log: slog.New(slog.NewTextHandler(io.Discard, nil)), recorder: rec,
		injectWarned: map[string]map[string]string{}, renders: map[string]*rendered{}, specs: map[types.UID]cachedSpec{}}
	in.report(inj, true)
	w.inject(context.Background(), o, inj)
	w.inject(context.Background(), o, inj)
	events := 0
	for len(rec.Events) > 0 {
		if e := <-rec.Events; strings.Contains(e, "InvalidAnnotation") {
			events++
		}
	}
	if events != 1 {
		t.Errorf("%d InvalidAnnotation Events over two reconciles, want 1", events)
	}
	o.gateways = nil
	inj = in.plan(o, installed(kindEnvoyFilter))
	w.inject(context.Background(), o, inj)
	if len(w.injectWarned) != 0 {
		t.Errorf("warnings kept for gateways that are gone: %v", w.injectWarned)
	}
}
