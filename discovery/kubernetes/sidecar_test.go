package kubernetes

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/wafplane/wafplane/discovery"
	"github.com/wafplane/wafplane/xds/pki"
)

var testSidecar = SidecarSettings{Image: "ghcr.io/wafplane/wafplane:v1", Port: 8080, HealthPort: 8081, BodyLimit: ptr(-1)}

// applyPatch applies a webhook's JSON Patch as the API server does.
func applyPatch(t *testing.T, pod *corev1.Pod, ops []patchOp) *corev1.Pod {
	t.Helper()
	raw, _ := json.Marshal(pod)
	patch, _ := json.Marshal(ops)
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("patch %s does not apply: %v", patch, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func gatewayPod(labels, annotations map[string]string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "gw-1", Namespace: "shop", Labels: labels, Annotations: annotations}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: c})
	}
	return p
}

func TestSidecarPatch(t *testing.T) {
	t.Run("Istio gateway pod: a native sidecar on loopback", func(t *testing.T) {
		s := testSidecar
		s.Native = true
		pod := gatewayPod(map[string]string{IstioGatewayLabel: "edge"}, nil, "istio-proxy")
		pod.Spec.InitContainers = []corev1.Container{{Name: "setup"}}
		got := applyPatch(t, pod, sidecarPatch(pod, discovery.ProxyIstio, "istio:shop/edge", s))
		if len(got.Spec.InitContainers) != 2 || got.Spec.InitContainers[0].Name != SidecarContainerName {
			t.Fatalf("init containers %v: want the processor first", got.Spec.InitContainers)
		}
		c := got.Spec.InitContainers[0]
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Error("not a native sidecar (restartPolicy Always)")
		}
		for _, want := range [][]string{{"--host", "127.0.0.1"}, {"--port", "8080"}, {"--health-host", "0.0.0.0"}, {"--health-port", "8081"}, {"--body-limit", "0"}} {
			if i := slices.Index(c.Args, want[0]); i < 0 || c.Args[i+1] != want[1] {
				t.Errorf("args %v: want %s %s", c.Args, want[0], want[1])
			}
		}
		if slices.Contains(c.Args, "--uds-path") || c.Image != s.Image || c.Args[0] != "processor" {
			t.Errorf("container %v %v", c.Image, c.Args)
		}
		sc := c.SecurityContext
		if !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("security context %+v", sc)
		}
		if c.ReadinessProbe.HTTPGet.Port.IntValue() != 8081 || c.StartupProbe == nil {
			t.Errorf("probes %+v %+v", c.ReadinessProbe, c.StartupProbe)
		}
		if got.Annotations[AnnotationSidecar] != "istio:shop/edge" || len(got.Spec.Volumes) != 2 {
			t.Errorf("annotations %v volumes %v", got.Annotations, got.Spec.Volumes)
		}
		if again := sidecarPatch(got, discovery.ProxyIstio, "istio:shop/edge", s); again != nil {
			t.Errorf("re-invocation patches again: %v", again)
		}
	})
	t.Run("Envoy Gateway pod: a Unix socket shared with envoy", func(t *testing.T) {
		pod := gatewayPod(map[string]string{EnvoyGatewayOwnerName: "api"}, map[string]string{"a": "b"}, "envoy", "shutdown-manager")
		pod.Spec.Volumes = []corev1.Volume{{Name: "certs"}}
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "certs", MountPath: "/certs"}}
		got := applyPatch(t, pod, sidecarPatch(pod, discovery.ProxyEnvoyGateway, "envoy-gateway:shop/api", testSidecar))
		// Not native: an ordinary container after the others.
		if n := len(got.Spec.Containers); n != 3 || got.Spec.Containers[2].Name != SidecarContainerName {
			t.Fatalf("containers %v", got.Spec.Containers)
		}
		args := got.Spec.Containers[2].Args
		if i := slices.Index(args, "--uds-path"); i < 0 || args[i+1] != SidecarSocket {
			t.Errorf("args %v: want the socket", args)
		}
		if i := slices.Index(args, "--gateway"); i < 0 || args[i+1] != "shop/api" {
			t.Errorf("args %v: want the gateway, which Envoy Gateway's policy does not send", args)
		}
		mounts := got.Spec.Containers[0].VolumeMounts
		if len(mounts) != 2 || mounts[1].Name != "wafplane-socket" || mounts[1].MountPath != "/var/run/wafplane" {
			t.Errorf("envoy's mounts %v: want the socket volume", mounts)
		}
		if len(got.Spec.Containers[1].VolumeMounts) != 0 {
			t.Error("the socket is mounted into a container that is not envoy")
		}
		if len(got.Spec.Volumes) != 4 || got.Annotations["a"] != "b" || got.Annotations[AnnotationSidecar] != "envoy-gateway:shop/api" {
			t.Errorf("volumes %v annotations %v", got.Spec.Volumes, got.Annotations)
		}
	})
}

func TestSidecarTargetsAndCheck(t *testing.T) {
	in := &Injector{Mode: ModeSidecar, IstioGatewayNamespace: "istio-system"}
	inj := &injection{enabled: map[string]bool{discovery.ProxyIstio: true, discovery.ProxyEnvoyGateway: true, discovery.ProxyIstioGateway: true},
		gateways: []foreignGateway{
			{model: discovery.ForeignGateway{Proxy: discovery.ProxyIstio, Namespace: "shop", Name: "edge"}},
			{model: discovery.ForeignGateway{Proxy: discovery.ProxyIstio, Namespace: "shop", Name: "quiet", Protection: discovery.Protection{Mode: discovery.ModeOff}}},
			{model: discovery.ForeignGateway{Proxy: discovery.ProxyEnvoyGateway, Namespace: "shop", Name: "api"}},
			{model: discovery.ForeignGateway{Proxy: discovery.ProxyIstioGateway, Namespace: "istio-system", Name: "ingress", Selector: map[string]string{"istio": "ingressgateway"}}},
			{model: discovery.ForeignGateway{Proxy: discovery.ProxyIstioSidecar, Namespace: "mesh", Name: "mesh"}},
		}}
	targets := in.sidecarTargetsOf(inj)
	for _, c := range []struct {
		ns     string
		labels map[string]string
		want   string
	}{
		{"shop", map[string]string{IstioGatewayLabel: "edge"}, "istio:shop/edge"},
		{"blog", map[string]string{IstioGatewayLabel: "edge"}, ""},  // another namespace's Gateway
		{"shop", map[string]string{IstioGatewayLabel: "quiet"}, ""}, // protection off
		{"envoy-gateway-system", map[string]string{EnvoyGatewayOwnerName: "api", EnvoyGatewayOwnerNamespace: "shop"}, "envoy-gateway:shop/api"},
		{"istio-system", map[string]string{"istio": "ingressgateway", "app": "x"}, "istio-gateway:istio-system/ingress"},
		{"default", map[string]string{"istio": "ingressgateway"}, ""},   // EnvoyFilters select their own namespace
		{"mesh", map[string]string{discovery.LabelProtect: "true"}, ""}, // mesh workloads keep the Service
	} {
		st, ok := targets.match(c.ns, c.labels)
		if ok != (c.want != "") || st.key != c.want {
			t.Errorf("pod in %s with %v: matched %q (%v), want %q", c.ns, c.labels, st.key, ok, c.want)
		}
	}

	pod := func(ns, name string, labels map[string]string, phase corev1.PodPhase, containers ...string) *corev1.Pod {
		p := gatewayPod(labels, nil, containers...)
		p.Namespace, p.Name, p.Status.Phase = ns, name, phase
		return p
	}
	edge := map[string]string{IstioGatewayLabel: "edge"}
	check := checkSidecars([]*corev1.Pod{
		pod("shop", "edge-a", edge, corev1.PodRunning, "istio-proxy", SidecarContainerName),
		pod("shop", "edge-b", edge, corev1.PodRunning, "istio-proxy"),
		pod("shop", "edge-c", edge, corev1.PodSucceeded, "istio-proxy"),
		pod("shop", "edge-d", map[string]string{IstioGatewayLabel: "edge", LabelEnabled: "false"}, corev1.PodPending, "istio-proxy"),
		pod("envoy-gateway-system", "api-a", map[string]string{EnvoyGatewayOwnerName: "api", EnvoyGatewayOwnerNamespace: "shop"}, corev1.PodRunning, "envoy"),
	}, targets)
	if check.missingN["istio:shop/edge"] != 1 || check.missing["istio:shop/edge"][0] != "shop/edge-b" || check.missingN["envoy-gateway:shop/api"] != 1 {
		t.Errorf("missing %v", check.missing)
	}
	for _, ns := range []string{"shop", "istio-system", "envoy-gateway-system"} {
		if !check.namespaces[ns] {
			t.Errorf("no policy ConfigMap for %s: %v", ns, check.namespaces)
		}
	}
	if check.namespaces["mesh"] {
		t.Error("the mesh namespace gets a sidecar policy ConfigMap")
	}

	w := &Webhook{Injector: &Injector{WebhookConfig: "wafplane-sidecar-injector"}, URL: "https://127.0.0.1:9443/inject"}
	cfg := w.configuration(targets, []byte("bundle"))
	var names []string
	for _, h := range cfg.Webhooks {
		names = append(names, h.Name)
		if *h.FailurePolicy != "Ignore" || *h.SideEffects != "None" || *h.ReinvocationPolicy != "IfNeeded" || h.ObjectSelector == nil ||
			*h.ClientConfig.URL != w.URL || string(h.ClientConfig.CABundle) != "bundle" {
			t.Errorf("webhook %+v", h)
		}
		if len(h.ObjectSelector.MatchLabels)+len(h.ObjectSelector.MatchExpressions) < 3 {
			t.Errorf("webhook %s selects too much: %+v", h.Name, h.ObjectSelector)
		}
	}
	if len(names) != 3 || names[0] != "istio.sidecar.wafplane.dev" || names[1] != "envoy-gateway.sidecar.wafplane.dev" ||
		!strings.HasPrefix(names[2], "istio-gateway-") || cfg.Webhooks[2].NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "istio-system" {
		t.Errorf("webhooks %v", names)
	}
}

// review posts an AdmissionReview for a pod to the webhook's handler.
func review(t *testing.T, w *Webhook, pod *corev1.Pod) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	raw, _ := json.Marshal(pod)
	body, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Operation: admissionv1.Create, Namespace: pod.Namespace, Object: runtime.RawExtension{Raw: raw}}})
	rec := httptest.NewRecorder()
	w.serveInject(rec, httptest.NewRequest(http.MethodPost, WebhookPath, bytes.NewReader(body)))
	var out admissionv1.AdmissionReview
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || out.Response.UID != "u-1" || !out.Response.Allowed {
			t.Fatalf("response %s: %v", rec.Body, err)
		}
	}
	return rec.Code, out.Response
}

func TestWebhookHandler(t *testing.T) {
	in := &Injector{Mode: ModeSidecar, Sidecar: testSidecar, metrics: newInjectorMetrics(nil)}
	w := &Webhook{Injector: in}
	w.metrics = newWebhookMetrics()
	w.Log = slog.New(slog.DiscardHandler)
	edge := map[string]string{IstioGatewayLabel: "edge"}
	// A pod created while wafplane starts waits for the first reading of the cluster.
	go func() {
		time.Sleep(200 * time.Millisecond)
		in.report(&injection{targets: &sidecarTargets{byKey: map[string]sidecarTarget{
			"istio:shop/edge": {key: "istio:shop/edge", proxy: discovery.ProxyIstio}}}}, false)
	}()
	_, resp := review(t, w, gatewayPod(edge, nil, "istio-proxy"))
	if resp.Patch == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("gateway pod not injected: %+v", resp)
	}
	var ops []patchOp
	_ = json.Unmarshal(resp.Patch, &ops)
	injected := applyPatch(t, gatewayPod(edge, nil, "istio-proxy"), ops)
	for name, pod := range map[string]*corev1.Pod{
		"unrelated":  gatewayPod(map[string]string{"app": "shop"}, nil, "app"),
		"opted out":  gatewayPod(map[string]string{IstioGatewayLabel: "edge", LabelDatadogEnabled: "false"}, nil, "istio-proxy"),
		"reinvoked":  injected,
		"other gate": gatewayPod(map[string]string{IstioGatewayLabel: "other"}, nil, "istio-proxy"),
	} {
		if _, resp := review(t, w, pod); resp.Patch != nil {
			t.Errorf("%s: patched %s", name, resp.Patch)
		}
	}
	// Istio's classic ingress gateway listens on 8080: not injected, and said so.
	classic := gatewayPod(edge, nil, "istio-proxy")
	classic.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
	if _, resp := review(t, w, classic); resp.Patch != nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "port 8080") {
		t.Errorf("a pod declaring the processor's port: patch %s warnings %v", resp.Patch, resp.Warnings)
	}
	rec := httptest.NewRecorder()
	w.serveInject(rec, httptest.NewRequest(http.MethodPost, WebhookPath, strings.NewReader(`{"request":`)))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "AdmissionReview") {
		t.Errorf("malformed review: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	w.serveInject(rec, httptest.NewRequest(http.MethodPost, WebhookPath, strings.NewReader(`{"request":{"uid":"x","object":`+strings.Repeat(" ", maxAdmissionReview)+`}}`)))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("oversized review: %d", rec.Code)
	}
}

// TestWebhookCertificateFollowsTrust: a rotated CA's certificate is served only once the
// webhook configuration has carried that CA for trustGrace, and a certificate is issued
// again with a third of its validity left.
func TestWebhookCertificateFollowsTrust(t *testing.T) {
	now := time.Now()
	old, err := pki.New(now)
	if err != nil {
		t.Fatal(err)
	}
	current := old
	var trust trustRecord
	trust.saw(old.BundlePEM(), now.Add(-time.Hour))
	s := &selfCerts{ca: func() *pki.CA { return current }, hosts: []string{"127.0.0.1"}, validity: time.Hour,
		trusted: trust.since, now: func() time.Time { return now }}
	issuer := func() string {
		t.Helper()
		c, err := s.get()
		if err != nil {
			t.Fatal(err)
		}
		if c.Leaf.CheckSignatureFrom(old.Cert) == nil {
			return "old"
		}
		return "new"
	}
	first, _ := s.get()
	if issuer() != "old" {
		t.Fatal("first certificate not from the CA")
	}
	current, err = pki.New(now)
	if err != nil {
		t.Fatal(err)
	}
	current.Bundle = append(current.Bundle, old.Cert)
	if issuer() != "old" {
		t.Error("switched to a CA the API server does not trust yet")
	}
	trust.saw(current.BundlePEM(), now)
	now = now.Add(trustGrace / 2)
	if issuer() != "old" {
		t.Error("switched before the API server could have read the new bundle")
	}
	now = now.Add(trustGrace)
	if issuer() != "new" {
		t.Error("still on the old CA after the grace period")
	}
	renewed, _ := s.get()
	now = now.Add(45 * time.Minute)
	if again, _ := s.get(); again == renewed || again == first {
		t.Error("not issued again with a quarter of its validity left")
	}
}

// BenchmarkWebhookHandler is the webhook's own work per admission, in process: decode the
// review, match the pod, build and encode the patch.
func BenchmarkWebhookHandler(b *testing.B) {
	in := &Injector{Mode: ModeSidecar, Sidecar: testSidecar}
	in.targets.Store(&sidecarTargets{byKey: map[string]sidecarTarget{"istio:shop/edge": {key: "istio:shop/edge", proxy: discovery.ProxyIstio}}})
	w := &Webhook{Injector: in, metrics: newWebhookMetrics(), Log: slog.New(slog.DiscardHandler)}
	raw, _ := json.Marshal(gatewayPod(map[string]string{IstioGatewayLabel: "edge"}, nil, "istio-proxy"))
	body, _ := json.Marshal(admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Kind: "Pod"},
		Operation: admissionv1.Create, Namespace: "shop", Object: runtime.RawExtension{Raw: raw}}})
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		w.serveInject(rec, httptest.NewRequest(http.MethodPost, WebhookPath, bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// A user's certificate directory (--webhook-cert-dir) is read again when its files change,
// a pair that does not load keeps the previous one, and ca.crt is the bundle.
func TestWebhookCertDirReload(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.New(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string) {
		t.Helper()
		c, err := ca.IssueServerFor(name, []string{"127.0.0.1"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600))
		must(os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600))
	}
	name := func(d *dirCerts) string {
		t.Helper()
		c, err := d.get()
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		return leaf.Subject.CommonName
	}
	d := &dirCerts{dir: dir}
	if _, err := d.get(); err == nil || !strings.Contains(err.Error(), "tls.crt") {
		t.Errorf("empty directory: %v", err)
	}
	write("first")
	if got := name(d); got != "first" {
		t.Fatalf("got %q", got)
	}
	write("second")
	d.checked = time.Time{} // as if a second had passed
	if got := name(d); got != "second" {
		t.Errorf("after the files changed: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.checked = time.Time{}
	if got := name(d); got != "second" {
		t.Errorf("a broken pair replaced the good one: %q", got)
	}
	if b, err := d.bundle(); err != nil || b != nil {
		t.Errorf("no ca.crt: bundle %q %v, want none (publicly trusted)", b, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca.BundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := d.bundle(); !bytes.Equal(b, ca.BundlePEM()) {
		t.Error("ca.crt is not the bundle")
	}
}
