package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/wafplane/wafplane/discovery/kubernetes/kubetest"
)

var (
	envoyFilters   = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "envoyfilters"}
	istioGateways  = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "gateways"}
	extensionPols  = schema.GroupVersionResource{Group: "gateway.envoyproxy.io", Version: "v1alpha1", Resource: "envoyextensionpolicies"}
	referenceGrant = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1beta1", Resource: "referencegrants"}
)

// injectorCluster is a kube-apiserver with deploy/kubernetes applied and admin clients.
type injectorCluster struct {
	kc  kubernetes.Interface
	gc  gwclient.Interface
	dyn dynamic.Interface
}

// newInjectorCluster makes admin clients of the test API server.
func newInjectorCluster(t testing.TB, env *kubetest.Env) *injectorCluster {
	t.Helper()
	dyn, err := dynamic.NewForConfig(env.Admin)
	must(t, err)
	gc, err := gwclient.NewForConfig(env.Admin)
	must(t, err)
	return &injectorCluster{kc: env.Clientset(), gc: gc, dyn: dyn}
}

func (c *injectorCluster) gateway(t testing.TB, ns, name, class string, labels, annotations map[string]string) {
	t.Helper()
	_, err := c.gc.GatewayV1().Gateways(ns).Create(context.Background(), &gwapiv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: annotations},
		Spec: gwapiv1.GatewaySpec{GatewayClassName: gwapiv1.ObjectName(class),
			Listeners: []gwapiv1.Listener{{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType}}}}, metav1.CreateOptions{})
	must(t, err)
}

func (c *injectorCluster) class(t testing.TB, name, controller string) {
	t.Helper()
	_, err := c.gc.GatewayV1().GatewayClasses().Create(context.Background(), &gwapiv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: gwapiv1.GatewayClassSpec{ControllerName: gwapiv1.GatewayController(controller)}},
		metav1.CreateOptions{})
	must(t, err)
}

func (c *injectorCluster) get(gvr schema.GroupVersionResource, ns, name string) (*unstructured.Unstructured, error) {
	return c.dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
}

func (c *injectorCluster) waitFor(t *testing.T, gvr schema.GroupVersionResource, ns, name string, ok func(*unstructured.Unstructured) bool) *unstructured.Unstructured {
	t.Helper()
	var got *unstructured.Unstructured
	eventually(t, gvr.Resource+" "+ns+"/"+name, 45*time.Second, func() bool {
		u, err := c.get(gvr, ns, name)
		if err != nil || !ok(u) {
			return false
		}
		got = u
		return true
	})
	return got
}

func (c *injectorCluster) waitGone(t *testing.T, gvr schema.GroupVersionResource, ns, name string) {
	t.Helper()
	eventually(t, gvr.Resource+" "+ns+"/"+name+" deleted", 45*time.Second, func() bool {
		_, err := c.get(gvr, ns, name)
		return apierrors.IsNotFound(err)
	})
}

// waitEvent waits for an Event with the reason on the object and returns its message.
func (c *injectorCluster) waitEvent(t *testing.T, ns, name, reason string) string {
	t.Helper()
	var msg string
	eventually(t, "Event "+reason+" on "+ns+"/"+name, 45*time.Second, func() bool {
		list, err := c.kc.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false
		}
		for _, e := range list.Items {
			if e.Reason == reason {
				msg = e.Message
				return true
			}
		}
		return false
	})
	return msg
}

func (c *injectorCluster) label(t *testing.T, obj interface {
	GetLabels() map[string]string
	SetLabels(map[string]string)
}, k, v string) {
	t.Helper()
	l := obj.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	if v == "" {
		delete(l, k)
	} else {
		l[k] = v
	}
	obj.SetLabels(l)
}

// labelGateway sets (or, with v empty, removes) a label of a Gateway on the API server.
func (c *injectorCluster) labelGateway(t *testing.T, namespace, name, k, v string) {
	t.Helper()
	g, err := c.gc.GatewayV1().Gateways(namespace).Get(context.Background(), name, metav1.GetOptions{})
	must(t, err)
	c.label(t, g, k, v)
	_, err = c.gc.GatewayV1().Gateways(namespace).Update(context.Background(), g, metav1.UpdateOptions{})
	must(t, err)
}

type injections struct {
	Leader  bool `json:"leader"`
	Proxies map[string]struct {
		Enabled       bool   `json:"enabled"`
		CRDsInstalled bool   `json:"crdsInstalled"`
		Error         string `json:"error"`
	} `json:"proxies"`
	Processor struct {
		Available bool   `json:"available"`
		Reason    string `json:"reason"`
	} `json:"processor"`
	Gateways []struct {
		Proxy, Namespace, Name, LastError string
		Mode                              string
		SidecarMissing                    int
		Sources                           []string
		Objects                           []struct {
			Kind, Namespace, Name, Op string
			Generation                int64
		}
	} `json:"gateways"`
}

func (w *wafplaneProc) injections(t testing.TB) injections {
	t.Helper()
	var out injections
	must(t, json.Unmarshal([]byte(w.admin200(t, "/injections")), &out))
	return out
}

func (w *wafplaneProc) admin200(t testing.TB, path string) string {
	t.Helper()
	return admin200(t, w.admin, path)
}

// admin200 gets an admin path and fails the test unless it answers 200.
func admin200(t testing.TB, address, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + address + path)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// metric returns the value of a metric line that starts with prefix, "" when absent.
func (w *wafplaneProc) metric(t testing.TB, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(w.admin200(t, "/metrics"), "\n") {
		if strings.HasPrefix(l, prefix+" ") {
			return strings.TrimPrefix(l, prefix+" ")
		}
	}
	return ""
}

// extProcOf decodes the HTTP_FILTER patch of an EnvoyFilter as Istio would, validates it,
// and returns the ext_proc configuration.
func extProcOf(t *testing.T, ef *unstructured.Unstructured) *extprocfilterv3.ExternalProcessor {
	t.Helper()
	patches, _, _ := unstructured.NestedSlice(ef.Object, "spec", "configPatches")
	for _, p := range patches {
		pm := p.(map[string]any)
		if pm["applyTo"] != "HTTP_FILTER" {
			continue
		}
		raw, err := json.Marshal(pm["patch"].(map[string]any)["value"])
		must(t, err)
		var f hcmv3.HttpFilter
		must(t, protojson.Unmarshal(raw, &f))
		must(t, f.ValidateAll())
		var ep extprocfilterv3.ExternalProcessor
		must(t, f.GetTypedConfig().UnmarshalTo(&ep))
		must(t, ep.ValidateAll())
		return &ep
	}
	t.Fatalf("EnvoyFilter %s has no HTTP_FILTER patch", ef.GetName())
	return nil
}

func metadataValue(ep *extprocfilterv3.ExternalProcessor, key string) string {
	for _, h := range ep.GetGrpcService().GetInitialMetadata() {
		if h.GetKey() == key {
			return h.GetValue()
		}
	}
	return ""
}

// injectArgs are the same on every replica, as in a Deployment: the processor port that
// injected objects name must not follow each test instance's random --port.
var injectArgs = []string{"--inject", "--inject-processor-port", "18080"}

// TestInjector runs the injector against a real kube-apiserver with Istio's and Envoy
// Gateway's real CRDs, under the RBAC of deploy/kubernetes: detection of CRDs installed
// after start, each proxy type, drift repair, annotation changes, opt-outs, deletion,
// clashes, the processor check, orphans across a restart and a change of leader.
func TestInjector(t *testing.T) {
	top := t // wafplanes started in subtests live as long as the whole test
	env, kubeconfig := kubeEnv(t)
	c := newInjectorCluster(t, env)
	ctx := context.Background()
	for _, ns := range []string{"shop", "blog", "istio-system"} {
		namespace(t, c.kc, ns)
	}
	c.class(t, "istio", "istio.io/gateway-controller")
	c.class(t, "eg", "gateway.envoyproxy.io/gatewayclass-controller")
	c.gateway(t, "shop", "edge", "istio", nil, nil)
	c.gateway(t, "shop", "api", "eg", nil, map[string]string{"wafplane.dev/mode": "monitor"})
	c.gateway(t, "shop", "own", "wafplane", nil, nil) // wafplane's own: never injected

	// A proxy type asked for by name whose CRDs are missing is an error, in the log and on
	// /injections.
	named := runWafplane(t, kubeconfig, append(injectArgs, "--inject-proxies", "istio")...)
	eventually(t, "/injections names the missing CRDs", 20*time.Second, func() bool {
		return strings.Contains(named.injections(t).Proxies["istio"].Error, "envoyfilters.networking.istio.io")
	})
	if !strings.Contains(named.log.String(), "CRDs are not installed") {
		t.Errorf("the log does not say the CRDs are missing:\n%s", named.log)
	}
	named.stop(t)

	a := runWafplane(t, kubeconfig, injectArgs...)
	if inj := a.injections(t); inj.Proxies["istio"].CRDsInstalled || len(inj.Gateways) != 0 {
		t.Fatalf("before any proxy CRD: %+v", inj)
	}

	t.Run("CRDs installed after start are detected", func(t *testing.T) {
		env.InstallIstioCRDs()
		ef := c.waitFor(t, envoyFilters, "shop", "wafplane-edge", func(*unstructured.Unstructured) bool { return true })
		refs, _, _ := unstructured.NestedSlice(ef.Object, "spec", "targetRefs")
		if len(refs) != 1 || refs[0].(map[string]any)["name"] != "edge" {
			t.Errorf("targetRefs %v, want the Gateway edge (Istio 1.32's CRD has targetRefs)", refs)
		}
		ep := extProcOf(t, ef)
		if metadataValue(ep, "x-wafplane-gateway") != "shop/edge" || !ep.GetFailureModeAllow() || ep.GetMessageTimeout().AsDuration() != 200*time.Millisecond {
			t.Errorf("ext_proc: %v", ep)
		}
		if ef.GetLabels()["app.kubernetes.io/managed-by"] != "wafplane" {
			t.Errorf("labels %v", ef.GetLabels())
		}
		c.waitEvent(t, "shop", "edge", "EnvoyFilterCreated")
		if _, err := c.get(envoyFilters, "shop", "wafplane-own"); !apierrors.IsNotFound(err) {
			t.Errorf("wafplane's own gateway got an EnvoyFilter: %v", err)
		}

		env.InstallEnvoyGatewayCRDs()
		eep := c.waitFor(t, extensionPols, "shop", "wafplane-api", func(*unstructured.Unstructured) bool { return true })
		procs, _, _ := unstructured.NestedSlice(eep.Object, "spec", "extProc")
		ext := procs[0].(map[string]any)
		ref := ext["backendRefs"].([]any)[0].(map[string]any)
		if ref["name"] != "wafplane" || ref["namespace"] != "wafplane-system" || ext["shadowMode"] != true {
			t.Errorf("extProc %v: want the wafplane Service and shadowMode for monitor", ext)
		}
		rg := c.waitFor(t, referenceGrant, "wafplane-system", "wafplane-shop-api", func(*unstructured.Unstructured) bool { return true })
		from, _, _ := unstructured.NestedSlice(rg.Object, "spec", "from")
		if from[0].(map[string]any)["namespace"] != "shop" || from[0].(map[string]any)["kind"] != "EnvoyExtensionPolicy" {
			t.Errorf("ReferenceGrant from %v", from)
		}
		c.waitEvent(t, "shop", "api", "EnvoyExtensionPolicyCreated")
	})

	t.Run("native Istio Gateways share one EnvoyFilter per selector", func(t *testing.T) {
		for _, ns := range []string{"shop", "blog"} {
			g := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
				"metadata": map[string]any{"name": "public", "namespace": ns},
				"spec": map[string]any{"selector": map[string]any{"istio": "ingressgateway"},
					"servers": []any{map[string]any{"port": map[string]any{"number": int64(80), "name": "http", "protocol": "HTTP"}, "hosts": []any{"*"}}}},
			}}
			_, err := c.dyn.Resource(istioGateways).Namespace(ns).Create(ctx, g, metav1.CreateOptions{})
			must(t, err)
		}
		var name string
		eventually(t, "one EnvoyFilter in istio-system", 20*time.Second, func() bool {
			list, err := c.dyn.Resource(envoyFilters).Namespace("istio-system").List(ctx, metav1.ListOptions{})
			if err != nil || len(list.Items) != 1 {
				return false
			}
			name = list.Items[0].GetName()
			sel, _, _ := unstructured.NestedStringMap(list.Items[0].Object, "spec", "workloadSelector", "labels")
			return sel["istio"] == "ingressgateway"
		})
		ef, err := c.get(envoyFilters, "istio-system", name)
		must(t, err)
		if got := metadataValue(extProcOf(t, ef), "x-wafplane-gateway"); got != "istio-system/istio=ingressgateway" {
			t.Errorf("gateway metadata %q", got)
		}
		c.waitEvent(t, "shop", "public", "EnvoyFilterCreated")
		c.waitEvent(t, "blog", "public", "EnvoyFilterCreated")
	})

	t.Run("drift is repaired", func(t *testing.T) {
		ef, err := c.get(envoyFilters, "shop", "wafplane-edge")
		must(t, err)
		must(t, unstructured.SetNestedSlice(ef.Object, []any{}, "spec", "configPatches"))
		_, err = c.dyn.Resource(envoyFilters).Namespace("shop").Update(ctx, ef, metav1.UpdateOptions{})
		must(t, err)
		c.waitFor(t, envoyFilters, "shop", "wafplane-edge", func(u *unstructured.Unstructured) bool {
			p, _, _ := unstructured.NestedSlice(u.Object, "spec", "configPatches")
			return len(p) == 2
		})
		c.waitEvent(t, "shop", "edge", "EnvoyFilterUpdated")
		must(t, c.dyn.Resource(envoyFilters).Namespace("shop").Delete(ctx, "wafplane-edge", metav1.DeleteOptions{}))
		c.waitFor(t, envoyFilters, "shop", "wafplane-edge", func(u *unstructured.Unstructured) bool { return u.GetUID() != ef.GetUID() })
	})

	t.Run("an annotation change updates the object", func(t *testing.T) {
		g, err := c.gc.GatewayV1().Gateways("shop").Get(ctx, "edge", metav1.GetOptions{})
		must(t, err)
		g.Annotations = map[string]string{"wafplane.dev/fail-open": "false", "wafplane.dev/body-limit": "4096"}
		_, err = c.gc.GatewayV1().Gateways("shop").Update(ctx, g, metav1.UpdateOptions{})
		must(t, err)
		c.waitFor(t, envoyFilters, "shop", "wafplane-edge", func(u *unstructured.Unstructured) bool {
			ep := extProcOf(t, u)
			return !ep.GetFailureModeAllow() && metadataValue(ep, "x-wafplane-body-limit") == "4096"
		})
		api, err := c.gc.GatewayV1().Gateways("shop").Get(ctx, "api", metav1.GetOptions{})
		must(t, err)
		api.Annotations["wafplane.dev/fail-open"] = "false"
		_, err = c.gc.GatewayV1().Gateways("shop").Update(ctx, api, metav1.UpdateOptions{})
		must(t, err)
		c.waitFor(t, extensionPols, "shop", "wafplane-api", func(u *unstructured.Unstructured) bool {
			procs, _, _ := unstructured.NestedSlice(u.Object, "spec", "extProc")
			return procs[0].(map[string]any)["failOpen"] == false
		})
		c.waitEvent(t, "shop", "api", "EnvoyExtensionPolicyUpdated")
	})

	t.Run("a processor without endpoints is reported", func(t *testing.T) {
		msg := c.waitEvent(t, "shop", "edge", "ProcessorUnavailable")
		if !strings.Contains(msg, "wafplane-system/wafplane has no ready endpoints") {
			t.Errorf("ProcessorUnavailable: %q", msg)
		}
		if v := a.metric(t, "wafplane_injector_processor_available"); v != "0" {
			t.Errorf("processor_available %q, want 0", v)
		}
		_, err := c.kc.DiscoveryV1().EndpointSlices("wafplane-system").Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "wafplane-1", Namespace: "wafplane-system", Labels: map[string]string{discoveryv1.LabelServiceName: "wafplane"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.2.0.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("extproc"), Port: ptr(int32(18080))}},
		}, metav1.CreateOptions{})
		must(t, err)
		eventually(t, "processor available", 20*time.Second, func() bool {
			return a.injections(t).Processor.Available && a.metric(t, "wafplane_injector_processor_available") == "1"
		})
	})

	t.Run("opt-out on the Gateway and on its GatewayClass removes the objects", func(t *testing.T) {
		c.labelGateway(t, "shop", "edge", "wafplane.dev/enabled", "false")
		c.waitGone(t, envoyFilters, "shop", "wafplane-edge")
		c.waitEvent(t, "shop", "edge", "EnvoyFilterDeleted")

		class, err := c.gc.GatewayV1().GatewayClasses().Get(ctx, "eg", metav1.GetOptions{})
		must(t, err)
		c.label(t, class, "appsec.datadoghq.com/enabled", "false")
		_, err = c.gc.GatewayV1().GatewayClasses().Update(ctx, class, metav1.UpdateOptions{})
		must(t, err)
		c.waitGone(t, extensionPols, "shop", "wafplane-api")
		c.waitGone(t, referenceGrant, "wafplane-system", "wafplane-shop-api")

		// Opting back in restores them.
		class, err = c.gc.GatewayV1().GatewayClasses().Get(ctx, "eg", metav1.GetOptions{})
		must(t, err)
		c.label(t, class, "appsec.datadoghq.com/enabled", "")
		_, err = c.gc.GatewayV1().GatewayClasses().Update(ctx, class, metav1.UpdateOptions{})
		must(t, err)
		c.waitFor(t, extensionPols, "shop", "wafplane-api", func(*unstructured.Unstructured) bool { return true })
	})

	t.Run("a clashing object wafplane does not manage is left alone and reported", func(t *testing.T) {
		clash := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
			"metadata": map[string]any{"name": "wafplane-clash", "namespace": "shop"},
			"spec":     map[string]any{"workloadSelector": map[string]any{"labels": map[string]any{"app": "mine"}}},
		}}
		before, err := c.dyn.Resource(envoyFilters).Namespace("shop").Create(ctx, clash, metav1.CreateOptions{})
		must(t, err)
		c.gateway(t, "shop", "clash", "istio", nil, nil)
		msg := c.waitEvent(t, "shop", "clash", "EnvoyFilterFailed")
		if !strings.Contains(msg, "not managed by wafplane") {
			t.Errorf("EnvoyFilterFailed: %q", msg)
		}
		eventually(t, "/injections shows the clash", 20*time.Second, func() bool {
			for _, g := range a.injections(t).Gateways {
				if g.Name == "clash" {
					return strings.Contains(g.LastError, "not managed by wafplane")
				}
			}
			return false
		})
		after, err := c.get(envoyFilters, "shop", "wafplane-clash")
		must(t, err)
		if after.GetResourceVersion() != before.GetResourceVersion() {
			t.Errorf("the unmanaged EnvoyFilter was changed: %v", after.Object)
		}
	})

	t.Run("a deleted Gateway loses its objects", func(t *testing.T) {
		c.labelGateway(t, "shop", "edge", "wafplane.dev/enabled", "")
		c.waitFor(t, envoyFilters, "shop", "wafplane-edge", func(*unstructured.Unstructured) bool { return true })
		must(t, c.gc.GatewayV1().Gateways("shop").Delete(ctx, "edge", metav1.DeleteOptions{}))
		c.waitGone(t, envoyFilters, "shop", "wafplane-edge")
	})

	t.Run("orphans from before a restart are collected", func(t *testing.T) {
		a.stop(t)
		must(t, c.gc.GatewayV1().Gateways("shop").Delete(ctx, "api", metav1.DeleteOptions{}))
		ghost := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
			"metadata": map[string]any{"name": "wafplane-ghost", "namespace": "blog",
				"labels": map[string]any{"app.kubernetes.io/managed-by": "wafplane"}},
			"spec": map[string]any{"workloadSelector": map[string]any{"labels": map[string]any{"app": "ghost"}}},
		}}
		_, err := c.dyn.Resource(envoyFilters).Namespace("blog").Create(ctx, ghost, metav1.CreateOptions{})
		must(t, err)
		a = runWafplane(top, kubeconfig, injectArgs...)
		c.waitGone(t, envoyFilters, "blog", "wafplane-ghost")
		c.waitGone(t, extensionPols, "shop", "wafplane-api")
		c.waitGone(t, referenceGrant, "wafplane-system", "wafplane-shop-api")
	})

	t.Run("a new leader writes nothing twice", func(t *testing.T) {
		c.gateway(t, "shop", "edge2", "istio", nil, nil)
		ef := c.waitFor(t, envoyFilters, "shop", "wafplane-edge2", func(*unstructured.Unstructured) bool { return true })
		b := runWafplane(top, kubeconfig, injectArgs...)
		if b.injections(t).Leader {
			t.Fatal("two leaders")
		}
		a.stop(t)
		eventually(t, "the second replica leads", 30*time.Second, func() bool { return b.injections(t).Leader })
		eventually(t, "the new leader has reconciled", 20*time.Second, func() bool {
			for _, g := range b.injections(t).Gateways {
				if g.Name == "edge2" {
					return len(g.Objects) == 1
				}
			}
			return false
		})
		if v := b.metric(t, `wafplane_injector_writes_total{kind="EnvoyFilter",op="create",result="ok"}`); v != "" {
			t.Errorf("the new leader created %s EnvoyFilters; all existed", v)
		}
		now, err := c.get(envoyFilters, "shop", "wafplane-edge2")
		must(t, err)
		if now.GetResourceVersion() != ef.GetResourceVersion() {
			t.Errorf("the new leader rewrote an unchanged EnvoyFilter")
		}
		list, err := c.dyn.Resource(envoyFilters).Namespace("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=wafplane"})
		must(t, err)
		if len(list.Items) != 2 { // shop/edge2 and the native selector group's
			t.Errorf("%d managed EnvoyFilters, want 2", len(list.Items))
		}
		if v := b.metric(t, `wafplane_injector_gateways{proxy="istio"}`); v != "2" { // edge2, clash
			t.Errorf("injector_gateways{istio} = %q, want 2", v)
		}
	})
}
