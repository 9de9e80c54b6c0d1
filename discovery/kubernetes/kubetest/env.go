// Package kubetest runs a real kube-apiserver and etcd on loopback for tests: the
// kube-apiserver built by hack/kube-test-env.sh (cached), etcd from Debian's etcd-server,
// RBAC authorization, a static admin token, service-account tokens, and the Gateway API
// CRDs of the sigs.k8s.io/gateway-api module in go.mod.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// KubeVersion is the kube-apiserver the tests run; hack/kube-test-env.sh builds the same.
const KubeVersion = "v1.36.3"

// Pinned modules whose CRDs the injector tests install; hack/kube-test-env.sh downloads
// the same versions into the Go module cache.
const (
	IstioAPIModule      = "istio.io/api@v1.32.0"
	EnvoyGatewayModule  = "github.com/envoyproxy/gateway@v1.9.1"
	istioCRDFile        = "kubernetes/customresourcedefinitions.gen.yaml"
	envoyGatewayCRDsDir = "charts/gateway-crds-helm/templates/generated"
)

const adminToken = "wafplane-test-admin"

// Env is a running kube-apiserver with its etcd.
type Env struct {
	t         testing.TB
	dir       string
	etcdURL   string
	port      string
	apiserver *exec.Cmd
	exited    chan struct{}
	mu        sync.Mutex
	// Admin is a client config with system:masters rights.
	Admin *rest.Config
}

// APIServerBinary is where hack/kube-test-env.sh leaves kube-apiserver.
func APIServerBinary() string {
	if p := os.Getenv("KUBE_APISERVER"); p != "" {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "wafplane", "kube-apiserver-"+KubeVersion)
}

// FreePorts returns n loopback TCP ports that were free a moment ago. They are held open
// together while chosen: ports chosen one after the other, each closed before the next,
// can repeat.
func FreePorts(t testing.TB, n int) []string {
	t.Helper()
	ports := make([]string, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[i] = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// Start runs etcd and kube-apiserver for the test and installs the Gateway API CRDs.
// Both stop at the test's cleanup.
func Start(t testing.TB) *Env {
	t.Helper()
	bin := APIServerBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no kube-apiserver at %s: run hack/kube-test-env.sh first (make test does): %v", bin, err)
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatal("no etcd on PATH: run hack/kube-test-env.sh first (make test does)")
	}
	e := &Env{t: t, dir: t.TempDir()}
	ports := FreePorts(t, 3)
	clientPort, peerPort := ports[0], ports[1]
	e.etcdURL = "http://127.0.0.1:" + clientPort
	ec := exec.Command(etcd, "--data-dir", filepath.Join(e.dir, "etcd"),
		"--listen-client-urls", e.etcdURL, "--advertise-client-urls", e.etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:"+peerPort, "--initial-advertise-peer-urls", "http://127.0.0.1:"+peerPort,
		"--initial-cluster", "default=http://127.0.0.1:"+peerPort, "--log-level", "error")
	ec.Stdout, ec.Stderr = logFile(t, e.dir, "etcd.log"), logFile(t, e.dir, "etcd.log")
	if err := ec.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ec.Process.Kill(); _ = ec.Wait() })
	e.writeKeys()
	e.port = ports[2]
	e.Admin = &rest.Config{Host: "https://127.0.0.1:" + e.port, BearerToken: adminToken,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 1000, Burst: 2000}
	e.StartAPIServer()
	t.Cleanup(e.StopAPIServer)
	e.installCRDs()
	return e
}

func logFile(t testing.TB, dir, name string) *os.File {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func (e *Env) writeKeys() {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		e.t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		e.t.Fatal(err)
	}
	must(e.t, os.WriteFile(filepath.Join(e.dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600))
	must(e.t, os.WriteFile(filepath.Join(e.dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644))
	must(e.t, os.WriteFile(filepath.Join(e.dir, "tokens.csv"), []byte(adminToken+`,admin,admin,"system:masters"`+"\n"), 0o600))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// StartAPIServer starts kube-apiserver (again, after StopAPIServer) on the same port and
// etcd, and waits until it is ready.
func (e *Env) StartAPIServer() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.apiserver != nil {
		return
	}
	cmd := exec.Command(APIServerBinary(),
		"--etcd-servers", e.etcdURL, "--bind-address", "127.0.0.1", "--secure-port", e.port,
		"--cert-dir", filepath.Join(e.dir, "certs"), "--token-auth-file", filepath.Join(e.dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(e.dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(e.dir, "sa.key"),
		"--api-audiences", "https://kubernetes.default.svc",
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--enable-admission-plugins", "MutatingAdmissionWebhook,ValidatingAdmissionWebhook", // sidecar mode's webhook
		"--disable-admission-plugins", "ServiceAccount")
	out := logFile(e.t, e.dir, "apiserver.log")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.apiserver, e.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(e.exited) }()
	// A throw-away apiserver on loopback with its own self-signed certificate.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, e.Admin.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-e.exited:
			log, _ := os.ReadFile(filepath.Join(e.dir, "apiserver.log"))
			e.t.Fatalf("kube-apiserver exited:\n%s", tail(log))
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(e.dir, "apiserver.log"))
			e.t.Fatalf("kube-apiserver not ready within 90s:\n%s", tail(log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(b []byte) []byte {
	if len(b) > 4000 {
		return b[len(b)-4000:]
	}
	return b
}

// StopAPIServer stops kube-apiserver; etcd keeps the data.
func (e *Env) StopAPIServer() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.apiserver == nil {
		return
	}
	_ = e.apiserver.Process.Kill()
	<-e.exited
	e.apiserver = nil
}

// Clientset is an admin client.
func (e *Env) Clientset() kubernetes.Interface {
	c, err := kubernetes.NewForConfig(e.Admin)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// ServiceAccount creates a ServiceAccount and returns a client config with its token, so
// that tests run with exactly the permissions RBAC grants it.
func (e *Env) ServiceAccount(namespace, name string) *rest.Config {
	ctx := context.Background()
	cs := e.Clientset()
	_, _ = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	_, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	exp := int64(3600)
	tok, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	c := rest.CopyConfig(e.Admin)
	c.BearerToken = tok.Status.Token
	return c
}

// Kubeconfig writes a kubeconfig file for a client config, for the wafplane binary.
func (e *Env) Kubeconfig(c *rest.Config) string {
	p := filepath.Join(e.dir, fmt.Sprintf("kubeconfig-%d", time.Now().UnixNano()))
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: test
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`, c.Host, c.BearerToken)
	must(e.t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// Apply creates every object of a multi-document YAML (any kind, CRDs included).
func (e *Env) Apply(manifest []byte) {
	e.t.Helper()
	e.each(manifest, func(ri dynamic.ResourceInterface, obj *unstructured.Unstructured) error {
		_, err := ri.Create(context.Background(), obj, metav1.CreateOptions{FieldValidation: "Strict"})
		if err != nil && strings.Contains(err.Error(), "already exists") {
			return nil
		}
		return err
	})
}

// ServerSideApply applies every object of a multi-document YAML as `kubectl apply
// --server-side` does, with strict field validation.
func (e *Env) ServerSideApply(manifest []byte) {
	e.t.Helper()
	e.each(manifest, func(ri dynamic.ResourceInterface, obj *unstructured.Unstructured) error {
		data, err := obj.MarshalJSON()
		if err != nil {
			return err
		}
		_, err = ri.Patch(context.Background(), obj.GetName(), types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: "kubetest", Force: ptr(true), FieldValidation: "Strict"})
		return err
	})
}

func (e *Env) each(manifest []byte, do func(dynamic.ResourceInterface, *unstructured.Unstructured) error) {
	e.t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(e.Admin)
	must(e.t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(e.Admin)
	must(e.t, err)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if err.Error() == "EOF" {
				return
			}
			e.t.Fatal(err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
		if err != nil {
			e.t.Fatalf("%s %s: %v", gvk, obj.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			ns := obj.GetNamespace()
			if ns == "" {
				ns = "default"
			}
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		if err := do(ri, &obj); err != nil {
			e.t.Fatalf("%s %s: %v", gvk.Kind, obj.GetName(), err)
		}
	}
}

// moduleDir is where the Go module cache holds a module@version, downloading it if needed.
func moduleDir(t testing.TB, modVersion string) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", modVersion).Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v (hack/kube-test-env.sh downloads it)", modVersion, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("go mod download %s: %v %s", modVersion, err, m.Error)
	}
	return m.Dir
}

// InstallIstioCRDs installs Istio's EnvoyFilter and Gateway CRDs from istio.io/api.
func (e *Env) InstallIstioCRDs() {
	e.t.Helper()
	raw, err := os.ReadFile(filepath.Join(moduleDir(e.t, IstioAPIModule), istioCRDFile))
	must(e.t, err)
	var docs []string
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		for _, name := range []string{"envoyfilters.networking.istio.io", "gateways.networking.istio.io"} {
			if strings.Contains(doc, "\n  name: "+name+"\n") {
				docs = append(docs, doc)
			}
		}
	}
	if len(docs) != 2 {
		e.t.Fatalf("%s: found %d of the EnvoyFilter and Gateway CRDs", IstioAPIModule, len(docs))
	}
	e.Apply([]byte(strings.Join(docs, "\n---\n")))
	e.waitServed("networking.istio.io/v1alpha3", "envoyfilters")
	e.waitServed("networking.istio.io/v1", "gateways")
}

// InstallEnvoyGatewayCRDs installs Envoy Gateway's EnvoyExtensionPolicy and Backend CRDs.
func (e *Env) InstallEnvoyGatewayCRDs() {
	e.t.Helper()
	dir := filepath.Join(moduleDir(e.t, EnvoyGatewayModule), envoyGatewayCRDsDir)
	for _, f := range []string{"gateway.envoyproxy.io_envoyextensionpolicies.yaml", "gateway.envoyproxy.io_backends.yaml"} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		must(e.t, err)
		// The chart wraps each CRD in a Helm condition; the CRD itself is plain YAML.
		var lines []string
		for _, l := range strings.Split(string(raw), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "{{") {
				lines = append(lines, l)
			}
		}
		e.Apply([]byte(strings.Join(lines, "\n")))
	}
	e.waitServed("gateway.envoyproxy.io/v1alpha1", "envoyextensionpolicies")
	e.waitServed("gateway.envoyproxy.io/v1alpha1", "backends")
}

func (e *Env) waitServed(groupVersion, resource string) {
	e.t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(e.Admin)
	must(e.t, err)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rl, err := dc.ServerResourcesForGroupVersion(groupVersion)
		if err == nil {
			for _, r := range rl.APIResources {
				if r.Name == resource {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s %s not served within 30s: %v", groupVersion, resource, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// installCRDs installs the standard Gateway API CRDs and waits until they are served.
func (e *Env) installCRDs() {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		e.t.Fatalf("locating the gateway-api module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	files, err := filepath.Glob(filepath.Join(dir, "gateway.networking.k8s.io_*.yaml"))
	if err != nil || len(files) == 0 {
		e.t.Fatalf("no CRDs in %s: %v", dir, err)
	}
	for _, f := range files {
		if strings.Contains(filepath.Base(f), "_vap_") {
			continue // an admission policy for upgrades, not a CRD
		}
		raw, err := os.ReadFile(f)
		must(e.t, err)
		e.Apply(raw)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(e.Admin)
	must(e.t, err)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rl, err := dc.ServerResourcesForGroupVersion("gateway.networking.k8s.io/v1")
		if err == nil && len(rl.APIResources) >= 4 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("Gateway API CRDs not served within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }
