package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	admissionv1 "k8s.io/api/admission/v1"
	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/wafplane/wafplane/discovery/kubernetes/kubetest"
	"github.com/wafplane/wafplane/xds/pki"
)

var backends = schema.GroupVersionResource{Group: "gateway.envoyproxy.io", Version: "v1alpha1", Resource: "backends"}

const sidecarName = "wafplane-processor"

// sidecarArgs run the injector in sidecar mode, the webhook on a loopback port the test
// API server calls through a url clientConfig, with a certificate valid for 6 s so that it
// is issued again every few seconds.
func sidecarArgs(webhookPort, policy string) []string {
	return append(slices.Clone(injectArgs), "--inject-mode", "sidecar",
		"--webhook-address", "127.0.0.1:"+webhookPort, "--webhook-url", "https://127.0.0.1:"+webhookPort+"/inject",
		"--webhook-cert-validity", "6s", "--policy", policy,
		"--inject-sidecar-image", "registry.test/wafplane", "--inject-sidecar-image-tag", "t1",
		"--inject-sidecar-port", "9090", "--inject-sidecar-health-port", "9091",
		"--inject-sidecar-body-parsing-size-limit", "4096",
		"--inject-sidecar-cpu-request", "50m", "--inject-sidecar-memory-limit", "256Mi")
}

func testPod(ns, name string, labels map[string]string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "registry.test/" + c})
	}
	return p
}

// processorOf returns the injected processor container of a pod, nil when there is none,
// and fails the test when there is more than one.
func processorOf(t *testing.T, p *corev1.Pod) *corev1.Container {
	t.Helper()
	var found []*corev1.Container
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == sidecarName {
				found = append(found, &cs[i])
			}
		}
	}
	if len(found) > 1 {
		t.Fatalf("pod %s/%s has %d processor containers", p.Namespace, p.Name, len(found))
	}
	if len(found) == 0 {
		return nil
	}
	return found[0]
}

// webhookCalls is how many admissions the webhook answered, whatever the result.
func webhookCalls(t *testing.T, w *wafplaneProc) int {
	t.Helper()
	n := 0
	for _, result := range []string{"injected", "present", "skipped", "conflict", "error"} {
		v, _ := strconv.Atoi(w.metric(t, `wafplane_webhook_admissions_total{result="`+result+`"}`))
		n += v
	}
	return n
}

// clusterAddress is where an EnvoyFilter's processor cluster points.
func clusterAddress(ef *unstructured.Unstructured) string {
	patches, _, _ := unstructured.NestedSlice(ef.Object, "spec", "configPatches")
	if len(patches) == 0 {
		return ""
	}
	eps, _, _ := unstructured.NestedSlice(patches[0].(map[string]any), "patch", "value", "load_assignment", "endpoints")
	if len(eps) == 0 {
		return ""
	}
	lbs, _, _ := unstructured.NestedSlice(eps[0].(map[string]any), "lb_endpoints")
	if len(lbs) == 0 {
		return ""
	}
	sa, _, _ := unstructured.NestedMap(lbs[0].(map[string]any), "endpoint", "address", "socket_address")
	return fmt.Sprintf("%v:%v", sa["address"], sa["port_value"])
}

func backendRefOf(eep *unstructured.Unstructured) map[string]any {
	procs, _, _ := unstructured.NestedSlice(eep.Object, "spec", "extProc")
	if len(procs) == 0 {
		return nil
	}
	refs, _ := procs[0].(map[string]any)["backendRefs"].([]any)
	if len(refs) == 0 {
		return nil
	}
	return refs[0].(map[string]any)
}

// TestSidecarMode runs sidecar mode against a real kube-apiserver that calls wafplane's
// webhook: which pods get the processor and with what, the webhook configuration's scope,
// the filters pointing at the local processor, the policy ConfigMaps, certificate
// rotation under a burst of pod creations, a wafplane outage, and switching modes.
func TestSidecarMode(t *testing.T) {
	top := t // wafplanes started in subtests live as long as the whole test
	env, kubeconfig := kubeEnv(t)
	c := newInjectorCluster(t, env)
	ctx := context.Background()
	for _, ns := range []string{"shop", "istio-system", "envoy-gateway-system", "apps"} {
		namespace(t, c.kc, ns)
	}
	env.InstallIstioCRDs()
	env.InstallEnvoyGatewayCRDs()
	c.class(t, "istio", "istio.io/gateway-controller")
	c.class(t, "eg", "gateway.envoyproxy.io/gatewayclass-controller")
	c.gateway(t, "shop", "edge", "istio", nil, nil)
	c.gateway(t, "shop", "api", "eg", nil, nil)
	c.gateway(t, "shop", "optout", "istio", map[string]string{"wafplane.dev/enabled": "false"}, nil)
	native := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"name": "public", "namespace": "shop"},
		"spec": map[string]any{"selector": map[string]any{"istio": "ingressgateway"},
			"servers": []any{map[string]any{"port": map[string]any{"number": int64(80), "name": "http", "protocol": "HTTP"}, "hosts": []any{"*"}}}},
	}}
	_, err := c.dyn.Resource(istioGateways).Namespace("shop").Create(ctx, native, metav1.CreateOptions{})
	must(t, err)

	policy := filepath.Join(t.TempDir(), "policy.yaml")
	must(t, os.WriteFile(policy, []byte("blocked_ips:\n- value: 203.0.113.7\n"), 0o644))
	port := kubetest.FreePorts(t, 1)[0]
	args := sidecarArgs(port, policy)
	w := runWafplane(t, kubeconfig, args...)
	pods := c.kc.CoreV1().Pods
	edgePod := map[string]string{"gateway.networking.k8s.io/gateway-name": "edge"}
	egPod := map[string]string{"gateway.envoyproxy.io/owning-gateway-name": "api", "gateway.envoyproxy.io/owning-gateway-namespace": "shop"}

	// The API server reads webhook configurations through an informer: wait until a dry
	// run (which calls webhooks without side effects) comes back injected.
	injecting := func(t *testing.T) {
		t.Helper()
		for _, p := range []*corev1.Pod{testPod("shop", "probe", edgePod, "istio-proxy"),
			testPod("istio-system", "probe", map[string]string{"istio": "ingressgateway"}, "istio-proxy"),
			testPod("envoy-gateway-system", "probe", egPod, "envoy")} {
			eventually(t, "the API server calls the webhook for "+fmt.Sprint(p.Labels), 45*time.Second, func() bool {
				got, err := pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				return err == nil && processorOf(t, got) != nil
			})
		}
	}
	injecting(t)

	t.Run("webhook configuration", func(t *testing.T) {
		cfg, err := c.kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "wafplane-sidecar-injector", metav1.GetOptions{})
		must(t, err)
		var names []string
		for _, h := range cfg.Webhooks {
			names = append(names, h.Name)
			if *h.FailurePolicy != "Ignore" || *h.SideEffects != "None" || *h.ReinvocationPolicy != "IfNeeded" || *h.TimeoutSeconds != 5 ||
				*h.ClientConfig.URL != "https://127.0.0.1:"+port+"/inject" || len(h.ClientConfig.CABundle) == 0 {
				t.Errorf("webhook %s: %+v", h.Name, h)
			}
		}
		if len(names) != 3 {
			t.Errorf("webhooks %v: want Istio Gateway API pods, Envoy Gateway pods and the native Istio selector", names)
		}
		// HTTP/1.1 only (README): a connection per concurrent admission.
		conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
		must(t, err)
		if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
			t.Errorf("the webhook negotiated %q", p)
		}
		conn.Close()
		// A hand edit is repaired: failurePolicy Fail would let a wafplane outage stop
		// gateway pods from starting.
		fail := admregv1.Fail
		cfg.Webhooks[0].FailurePolicy = &fail
		_, err = c.kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{})
		must(t, err)
		eventually(t, "the webhook configuration repaired", 30*time.Second, func() bool {
			cur, err := c.kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "wafplane-sidecar-injector", metav1.GetOptions{})
			return err == nil && *cur.Webhooks[0].FailurePolicy == admregv1.Ignore
		})
	})

	t.Run("gateway pods get the processor", func(t *testing.T) {
		p, err := pods("shop").Create(ctx, testPod("shop", "edge-1", edgePod, "istio-proxy"), metav1.CreateOptions{})
		must(t, err)
		pc := processorOf(t, p)
		if pc == nil || len(p.Spec.InitContainers) != 1 {
			t.Fatalf("Istio gateway pod stored without the processor as a native sidecar: %+v", p.Spec)
		}
		if pc.Image != "registry.test/wafplane:t1" || pc.RestartPolicy == nil || *pc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("processor %s restartPolicy %v", pc.Image, pc.RestartPolicy)
		}
		for _, want := range []string{"--port 9090", "--health-port 9091", "--body-limit 4096", "--host 127.0.0.1", "--tls=false", "--admin-address 127.0.0.1:19190"} {
			if !strings.Contains(strings.Join(pc.Args, " "), want) {
				t.Errorf("args %v: want %s", pc.Args, want)
			}
		}
		if pc.Resources.Requests.Cpu().String() != "50m" || pc.Resources.Limits.Memory().String() != "256Mi" ||
			pc.ReadinessProbe.HTTPGet.Port.IntValue() != 9091 || !*pc.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("processor resources %v probe %v", pc.Resources, pc.ReadinessProbe)
		}
		if p.Annotations["wafplane.dev/sidecar"] != "istio:shop/edge" {
			t.Errorf("annotations %v", p.Annotations)
		}

		p, err = pods("istio-system").Create(ctx, testPod("istio-system", "ingress-1", map[string]string{"istio": "ingressgateway"}, "istio-proxy"), metav1.CreateOptions{})
		must(t, err)
		if processorOf(t, p) == nil {
			t.Error("native Istio gateway pod stored without the processor")
		}
		p, err = pods("envoy-gateway-system").Create(ctx, testPod("envoy-gateway-system", "api-1", egPod, "envoy", "shutdown-manager"), metav1.CreateOptions{})
		must(t, err)
		pc = processorOf(t, p)
		if pc == nil || !slices.Contains(pc.Args, "/var/run/wafplane/ext_proc.sock") {
			t.Fatalf("Envoy Gateway pod: processor %+v", pc)
		}
		if m := p.Spec.Containers[0].VolumeMounts; len(m) != 1 || m[0].MountPath != "/var/run/wafplane" {
			t.Errorf("envoy mounts %v: want the processor's socket directory", m)
		}
	})

	t.Run("the injected command line runs", func(t *testing.T) {
		// The Envoy Gateway pod's processor, run as the kubelet would, with the pod's paths
		// moved under a temporary directory: the health port answers on every address, the
		// Unix socket takes ext_proc from another user's Envoy, events name the gateway.
		p, err := pods("envoy-gateway-system").Get(ctx, "api-1", metav1.GetOptions{})
		must(t, err)
		dir := t.TempDir()
		sock := filepath.Join(dir, "ext_proc.sock")
		ports := kubetest.FreePorts(t, 2)
		health, admin := ports[0], ports[1]
		var args []string
		for _, a := range processorOf(t, p).Args {
			switch a {
			case "/etc/wafplane/policy/policy.yaml":
				a = policy
			case "/var/run/wafplane/ext_proc.sock":
				a = sock
			case "9091":
				a = health
			case "127.0.0.1:19190":
				a = "127.0.0.1:" + admin
			}
			args = append(args, a)
		}
		cmd := exec.Command(binary, args...)
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		must(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		eventually(t, "the sidecar's health port", 60*time.Second, func() bool {
			resp, err := http.Get("http://127.0.0.1:" + health + "/")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		fi, err := os.Stat(sock)
		must(t, err)
		if fi.Mode().Perm() != 0o666 {
			t.Errorf("socket mode %v: want 0666 so that Envoy, another user, can connect", fi.Mode().Perm())
		}
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		must(t, err)
		defer conn.Close()
		if code := sendAttack(t, conn, nil); code != 403 {
			t.Errorf("attack over the socket: %d, want 403\n%s", code, out)
		}
		// Events are recorded once the stream ends, after the answer.
		eventually(t, "an event naming the gateway from --gateway", 10*time.Second, func() bool {
			return strings.Contains(strings.ReplaceAll(admin200(t, "127.0.0.1:"+admin, "/events"), " ", ""), `"gateway":"shop/api"`)
		})
	})

	t.Run("other pods are left alone", func(t *testing.T) {
		before := webhookCalls(t, w)
		p, err := pods("apps").Create(ctx, testPod("apps", "web", map[string]string{"app": "web"}, "web"), metav1.CreateOptions{})
		must(t, err)
		if processorOf(t, p) != nil || len(p.Spec.InitContainers) != 0 {
			t.Error("an unrelated pod got the processor")
		}
		if after := webhookCalls(t, w); after != before {
			t.Errorf("the API server called the webhook for an unrelated pod (%d → %d admissions): its objectSelector is too wide", before, after)
		}
		// A gateway pod labelled with Datadog's opt-out is not sent either.
		p, err = pods("shop").Create(ctx, testPod("shop", "edge-optout", map[string]string{"gateway.networking.k8s.io/gateway-name": "edge",
			"appsec.datadoghq.com/enabled": "false"}, "istio-proxy"), metav1.CreateOptions{})
		must(t, err)
		if processorOf(t, p) != nil {
			t.Error("a pod labelled appsec.datadoghq.com/enabled=false got the processor")
		}
		if after := webhookCalls(t, w); after != before {
			t.Errorf("the API server called the webhook for an opted-out pod (%d → %d admissions)", before, after)
		}
		p, err = pods("shop").Create(ctx, testPod("shop", "optout-1", map[string]string{"gateway.networking.k8s.io/gateway-name": "optout"}, "istio-proxy"), metav1.CreateOptions{})
		must(t, err)
		if processorOf(t, p) != nil {
			t.Error("a pod of an opted-out Gateway got the processor")
		}
		// A pod that already has the processor (as on re-invocation) is not changed again.
		mine := testPod("shop", "edge-2", edgePod, "istio-proxy", sidecarName)
		p, err = pods("shop").Create(ctx, mine, metav1.CreateOptions{})
		must(t, err)
		if processorOf(t, p) == nil || len(p.Spec.InitContainers) != 0 || len(p.Spec.Containers) != 2 || p.Annotations["wafplane.dev/sidecar"] != "" {
			t.Errorf("a pod with the processor was changed: %+v", p.Spec)
		}
	})

	t.Run("re-invocation after another webhook changes the pod", func(t *testing.T) {
		// Another mutating webhook, called after wafplane's, labels gateway pods: the API
		// server then calls wafplane's again (reinvocationPolicy IfNeeded), which must
		// leave the pod with one processor.
		labeler := httptest.NewTLSServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			var review admissionv1.AdmissionReview
			if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
				http.Error(rw, "bad review", http.StatusBadRequest)
				return
			}
			pt := admissionv1.PatchTypeJSONPatch
			review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true, PatchType: &pt,
				Patch: []byte(`[{"op":"add","path":"/metadata/labels/labeled","value":"yes"}]`)}
			review.Request = nil
			_ = json.NewEncoder(rw).Encode(&review)
		}))
		defer labeler.Close()
		bundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: labeler.Certificate().Raw})
		cfgs := c.kc.AdmissionregistrationV1().MutatingWebhookConfigurations()
		_, err := cfgs.Create(ctx, &admregv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "zz-labeler"}, // after wafplane's: configurations run in name order
			Webhooks: []admregv1.MutatingWebhook{{
				Name: "labeler.test.dev", ClientConfig: admregv1.WebhookClientConfig{URL: ptr(labeler.URL + "/"), CABundle: bundle},
				Rules: []admregv1.RuleWithOperations{{Operations: []admregv1.OperationType{admregv1.Create},
					Rule: admregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
				ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"reinvoke": "yes"}},
				SideEffects:             ptr(admregv1.SideEffectClassNone),
				FailurePolicy:           ptr(admregv1.Fail),
				AdmissionReviewVersions: []string{"v1"},
			}},
		}, metav1.CreateOptions{})
		must(t, err)
		defer func() { _ = cfgs.Delete(ctx, "zz-labeler", metav1.DeleteOptions{}) }()
		labels := map[string]string{"gateway.networking.k8s.io/gateway-name": "edge", "reinvoke": "yes"}
		eventually(t, "the API server calls the test's webhook", 30*time.Second, func() bool {
			p, err := pods("shop").Create(ctx, testPod("shop", "probe", labels, "istio-proxy"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err == nil && p.Labels["labeled"] == "yes"
		})
		present := func() int {
			n, _ := strconv.Atoi(w.metric(t, `wafplane_webhook_admissions_total{result="present"}`))
			return n
		}
		before := present()
		p, err := pods("shop").Create(ctx, testPod("shop", "edge-reinvoked", labels, "istio-proxy"), metav1.CreateOptions{})
		must(t, err)
		if processorOf(t, p) == nil || p.Labels["labeled"] != "yes" {
			t.Fatalf("pod %+v: want the processor and the other webhook's label", p.ObjectMeta)
		}
		if present() == before {
			t.Error("wafplane's webhook was not called again after the other webhook changed the pod")
		}
	})

	t.Run("filters point at the local processor", func(t *testing.T) {
		c.waitFor(t, envoyFilters, "shop", "wafplane-edge", func(u *unstructured.Unstructured) bool { return clusterAddress(u) == "127.0.0.1:9090" })
		eep := c.waitFor(t, extensionPols, "shop", "wafplane-api", func(u *unstructured.Unstructured) bool {
			return backendRefOf(u)["kind"] == "Backend"
		})
		if ref := backendRefOf(eep); ref["name"] != "wafplane-api" {
			t.Errorf("backendRef %v", ref)
		}
		b := c.waitFor(t, backends, "shop", "wafplane-api", func(*unstructured.Unstructured) bool { return true })
		eps, _, _ := unstructured.NestedSlice(b.Object, "spec", "endpoints")
		if path, _, _ := unstructured.NestedString(eps[0].(map[string]any), "unix", "path"); path != "/var/run/wafplane/ext_proc.sock" {
			t.Errorf("Backend endpoints %v: want the sidecar's Unix socket", eps)
		}
		if _, err := c.get(referenceGrant, "wafplane-system", "wafplane-shop-api"); !apierrors.IsNotFound(err) {
			t.Errorf("a ReferenceGrant to the processor Service in sidecar mode: %v", err)
		}
	})

	t.Run("the policy reaches the sidecars' namespaces", func(t *testing.T) {
		for _, ns := range []string{"shop", "istio-system", "envoy-gateway-system"} {
			eventually(t, "policy ConfigMap in "+ns, 30*time.Second, func() bool {
				cm, err := c.kc.CoreV1().ConfigMaps(ns).Get(ctx, "wafplane-sidecar-policy", metav1.GetOptions{})
				return err == nil && strings.Contains(cm.Data["policy.yaml"], "203.0.113.7")
			})
		}
		if _, err := c.kc.CoreV1().ConfigMaps("apps").Get(ctx, "wafplane-sidecar-policy", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("a namespace without gateway pods got the policy: %v", err)
		}
		must(t, os.WriteFile(policy, []byte("blocked_ips:\n- value: 198.51.100.9\n"), 0o644))
		eventually(t, "the changed policy in the ConfigMap", 30*time.Second, func() bool {
			cm, err := c.kc.CoreV1().ConfigMaps("shop").Get(ctx, "wafplane-sidecar-policy", metav1.GetOptions{})
			return err == nil && strings.Contains(cm.Data["policy.yaml"], "198.51.100.9")
		})
	})

	t.Run("certificate rotation during a burst of pod creations", func(t *testing.T) {
		issued := func() int { n, _ := strconv.Atoi(w.metric(t, "wafplane_webhook_certificates_issued_total")); return n }
		before := issued()
		r := burst(t, c, port, "burst", 9*time.Second, nil)
		if n := issued() - before; n < 2 {
			t.Errorf("%d certificates issued during %d pod creations over 9 s: want the 6 s certificate issued again at least twice", n, r.created)
		}
		t.Logf("%d pods created and injected, %d certificates issued, %d handshakes checked", r.created, issued()-before, r.handshakes)
	})

	t.Run("wafplane down: pods start, SidecarMissing once it is back", func(t *testing.T) {
		w.stop(t)
		p, err := pods("shop").Create(ctx, testPod("shop", "edge-while-down", edgePod, "istio-proxy"), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("a gateway pod was refused while wafplane was down (failurePolicy must be Ignore): %v", err)
		}
		if processorOf(t, p) != nil {
			t.Fatal("injected while wafplane was down?")
		}
		w = runWafplane(top, kubeconfig, args...)
		msg := c.waitEvent(t, "shop", "edge", "SidecarMissing")
		if !strings.Contains(msg, "shop/edge-while-down") || !strings.Contains(msg, "fail-open") {
			t.Errorf("SidecarMissing: %q", msg)
		}
		eventually(t, "/injections and the metric count the pod", 30*time.Second, func() bool {
			for _, g := range w.injections(t).Gateways {
				if g.Namespace == "shop" && g.Name == "edge" {
					return g.SidecarMissing == 1 && w.metric(t, `wafplane_injector_sidecar_missing_pods{proxy="istio"}`) == "1"
				}
			}
			return false
		})
	})

	t.Run("mode switch rewrites the filters", func(t *testing.T) {
		w.stop(t)
		w = runWafplane(top, kubeconfig, injectArgs...) // external, the binary's default
		c.waitFor(t, envoyFilters, "shop", "wafplane-edge", func(u *unstructured.Unstructured) bool {
			return clusterAddress(u) == "wafplane.wafplane-system.svc:18080"
		})
		c.waitFor(t, extensionPols, "shop", "wafplane-api", func(u *unstructured.Unstructured) bool {
			return backendRefOf(u)["kind"] == "Service" && backendRefOf(u)["name"] == "wafplane"
		})
		c.waitFor(t, referenceGrant, "wafplane-system", "wafplane-shop-api", func(*unstructured.Unstructured) bool { return true })
		c.waitGone(t, backends, "shop", "wafplane-api")
		eventually(t, "the webhook configuration deleted", 30*time.Second, func() bool {
			_, err := c.kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "wafplane-sidecar-injector", metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
		eventually(t, "the sidecars' policy ConfigMaps deleted", 30*time.Second, func() bool {
			_, err := c.kc.CoreV1().ConfigMaps("shop").Get(ctx, "wafplane-sidecar-policy", metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
		if w.injections(t).Gateways[0].Mode != "external" {
			t.Errorf("/injections mode %q", w.injections(t).Gateways[0].Mode)
		}

		w.stop(t)
		w = runWafplane(top, kubeconfig, args...)
		c.waitFor(t, envoyFilters, "shop", "wafplane-edge", func(u *unstructured.Unstructured) bool { return clusterAddress(u) == "127.0.0.1:9090" })
		c.waitFor(t, extensionPols, "shop", "wafplane-api", func(u *unstructured.Unstructured) bool { return backendRefOf(u)["kind"] == "Backend" })
		c.waitGone(t, referenceGrant, "wafplane-system", "wafplane-shop-api")
		injecting(t)
	})

	t.Run("CA rotation during a burst of pod creations", func(t *testing.T) {
		// wafplane with certificates as shipped (90 days), reading the CA Secret every
		// second. The test makes the CA due for rotation — the current one's successor is
		// a CA with half a year left, the current one still in the bundle, as a rotation by
		// another replica would leave it — and wafplane rotates it in the middle of a burst.
		w.stop(t)
		long := slices.Clone(args)
		long[slices.Index(long, "6s")] = "2160h"
		started := time.Now()
		w = runWafplane(top, kubeconfig, append(long, "--ca-check-interval", "1s")...)
		// The previous one gave its Lease up on SIGTERM: this one leads at once.
		eventually(t, "the new wafplane leads", 5*time.Second, func() bool { return strings.Contains(w.log.String(), "leading: writing") })
		t.Logf("leading %v after the start", time.Since(started))
		injecting(t)
		secrets := c.kc.CoreV1().Secrets("wafplane-system")
		sec, err := secrets.Get(ctx, "wafplane-ca", metav1.GetOptions{})
		must(t, err)
		old, err := pki.Parse(sec.Data["ca.crt"], sec.Data["ca.key"])
		must(t, err)
		due, err := pki.New(time.Now().Add(-pki.CAValidity + 180*24*time.Hour))
		must(t, err)
		due.Bundle = append(due.Bundle, old.Bundle...)
		key, err := due.KeyPEM()
		must(t, err)
		sec.Data = map[string][]byte{"ca.crt": due.BundlePEM(), "ca.key": key}
		r := burst(t, c, port, "rotation", 20*time.Second, func() {
			_, err := secrets.Update(ctx, sec, metav1.UpdateOptions{})
			must(t, err)
		})
		sec, err = secrets.Get(ctx, "wafplane-ca", metav1.GetOptions{})
		must(t, err)
		rotated, err := pki.Parse(sec.Data["ca.crt"], sec.Data["ca.key"])
		must(t, err)
		if rotated.Fingerprint() == due.Fingerprint() || rotated.Fingerprint() == old.Fingerprint() {
			t.Fatal("the CA was not rotated")
		}
		// Within the burst: the rotation a second in, the configuration updated at once
		// (the Secret's change wakes the leader), the switch 10 s after that.
		conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{ServerName: "127.0.0.1", RootCAs: pool(rotated.Cert)})
		if err != nil {
			t.Fatalf("after the burst the webhook still serves a certificate of the old CA: %v", err)
		}
		conn.Close()
		t.Logf("%d pods created and injected across the CA rotation, %d handshakes checked", r.created, r.handshakes)
	})
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

type burstResult struct{ created, handshakes int }

// burst creates Istio gateway pods of shop/edge from 8 clients for d, each checked for
// the processor, while new TLS connections to the webhook are verified against the CA
// bundle the webhook configuration holds at that moment; during runs once, a second in.
func burst(t *testing.T, c *injectorCluster, port, prefix string, d time.Duration, during func()) burstResult {
	t.Helper()
	ctx := context.Background()
	stop := make(chan struct{})
	var handshakes, handshakeErrs atomic.Int64
	var firstErr atomic.Value
	var probe sync.WaitGroup
	probe.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			cfg, err := c.kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "wafplane-sidecar-injector", metav1.GetOptions{})
			if err != nil || len(cfg.Webhooks) == 0 {
				continue
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(cfg.Webhooks[0].ClientConfig.CABundle)
			conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
			handshakes.Add(1)
			if err != nil {
				handshakeErrs.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				continue
			}
			conn.Close()
		}
	})
	var created atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	var next atomic.Int64
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond) // a steady burst, ~70 pods a second
				name := fmt.Sprintf("%s-%d", prefix, next.Add(1))
				p, err := c.kc.CoreV1().Pods("shop").Create(ctx, testPod("shop", name, map[string]string{"gateway.networking.k8s.io/gateway-name": "edge"}, "istio-proxy"), metav1.CreateOptions{})
				if err != nil {
					t.Errorf("create %s: %v", name, err)
					return
				}
				if processorOf(t, p) == nil {
					t.Errorf("pod %s admitted without the processor during the burst", name)
				}
				created.Add(1)
			}
		})
	}
	if during != nil {
		time.Sleep(time.Second)
		during()
	}
	wg.Wait()
	close(stop)
	probe.Wait()
	if handshakes.Load() == 0 || handshakeErrs.Load() > 0 {
		t.Errorf("%d of %d new TLS connections failed against the configuration's CA bundle: %v", handshakeErrs.Load(), handshakes.Load(), firstErr.Load())
	}
	return burstResult{int(created.Load()), int(handshakes.Load())}
}
