package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/wafplane/wafplane/discovery/kubernetes/kubetest"
)

const chartDir = "../deploy/helm/wafplane"

// renderChart renders the chart as `helm install wafplane -n wafplane-system -f values`
// would, schema validation included, and returns its objects.
func renderChart(t *testing.T, valuesYAML string) ([]*unstructured.Unstructured, string, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	values, err := chartutil.ReadValues([]byte(valuesYAML))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(chrt, values, chartutil.ReleaseOptions{
		Name: "wafplane", Namespace: "wafplane-system", IsInstall: true, Revision: 1}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, "", err
	}
	files, err := engine.Render(chrt, vals)
	if err != nil {
		return nil, "", err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		if strings.HasSuffix(name, ".yaml") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var all strings.Builder
	var objs []*unstructured.Unstructured
	for _, name := range names {
		all.WriteString("---\n" + files[name] + "\n")
		dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(files[name]), 4096)
		for {
			var obj unstructured.Unstructured
			if err := dec.Decode(&obj.Object); err != nil {
				if err.Error() == "EOF" {
					break
				}
				t.Fatalf("%s does not parse: %v\n%s", name, err, files[name])
			}
			if len(obj.Object) > 0 {
				objs = append(objs, &obj)
			}
		}
	}
	return objs, all.String(), nil
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func containerArgs(t *testing.T, dep *unstructured.Unstructured) []string {
	t.Helper()
	if dep == nil {
		t.Fatal("no such Deployment")
	}
	cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
	return args
}

// flagsKnown runs the built wafplane with the rendered arguments and --help: cobra refuses
// an unknown flag or a bad value before it prints help.
func flagsKnown(t *testing.T, args []string) {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--help")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("wafplane %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
}

// wantArgs reports each wanted argument the container lacks.
func wantArgs(t *testing.T, args []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !hasArg(args, w) {
			t.Errorf("args %v lack %s", args, w)
		}
	}
}

func hasArg(args []string, want string) bool {
	for _, a := range args {
		if a == want {
			return true
		}
	}
	return false
}

// TestHelmChart renders the chart for its default values and each mode, applies what it
// renders to a real kube-apiserver with server-side apply, and checks the values users
// bring from Datadog's injector.
func TestHelmChart(t *testing.T) {
	env := kubetest.Start(t)
	namespace(t, env.Clientset(), "wafplane-system")
	cases := []struct{ name, values string }{
		{"default", ""},
		{"injector", "injector: {enabled: true, proxies: [istio, envoy-gateway], processor: {port: 443, tls: true}}"},
		{"injector external", "injector: {enabled: true, mode: external}"},
		{"datadog sidecar", "datadog:\n  appsec:\n    injector:\n      enabled: true\n      sidecar: {image: registry.example/wafplane, imageTag: v9, port: 9000, healthPort: 9001, bodyParsingSizeLimit: -1, resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {cpu: '1', memory: 256Mi}}}\n"},
		{"processor deployment", "injector: {enabled: true}\nprocessor: {deployment: {enabled: true}}"},
		{"processor deployment without autoscaling", "processor: {deployment: {enabled: true, replicas: 3, autoscaling: {enabled: false}, podDisruptionBudget: {enabled: false}}}"},
		{"admin on all addresses", "admin: {listenAll: true}\nprocessor: {deployment: {enabled: true}}"},
		{"extra gateway pods", "networkPolicy: {extraGatewayPods: [{namespaceSelector: {matchLabels: {team: edge}}, podSelector: {matchLabels: {app: my-envoy}}}]}"},
		{"datadog layout", "datadog:\n  apiKey: ignored\n  appsec:\n    injector:\n      enabled: true\n      mode: external\n      autoDetect: false\n      proxies: [istio-gateway]\n      processor:\n        service: {name: dd-processor, namespace: datadog}\n        port: 443\n      sidecar: {image: ghcr.io/datadog/dd-trace-go/service-extensions-callout, imageTag: v2, port: 8080, healthPort: 8081, bodyParsingSizeLimit: -1, resources: {requests: {cpu: 10m, memory: 128Mi}}}\n"},
	}
	rendered := map[string][]*unstructured.Unstructured{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs, manifest, err := renderChart(t, c.values)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			rendered[c.name] = objs
			env.ServerSideApply([]byte(manifest))
			flagsKnown(t, containerArgs(t, find(objs, "Deployment", "wafplane")))
			if p := find(objs, "Deployment", "wafplane-processor"); p != nil {
				flagsKnown(t, containerArgs(t, p))
			}
		})
	}

	t.Run("injector flags", func(t *testing.T) {
		args := containerArgs(t, find(rendered["injector"], "Deployment", "wafplane"))
		wantArgs(t, args, "--inject", "--inject-proxies=istio,envoy-gateway", "--inject-processor-service=wafplane",
			"--inject-processor-namespace=wafplane-system", "--inject-processor-port=443", "--inject-processor-tls=true")
		if find(rendered["injector"], "ClusterRole", "wafplane-injector") == nil || find(rendered["default"], "ClusterRole", "wafplane-injector") != nil {
			t.Error("the injector's ClusterRole must come with injector.enabled only")
		}
	})

	t.Run("sidecar mode is the default", func(t *testing.T) {
		objs := rendered["injector"]
		args := containerArgs(t, find(objs, "Deployment", "wafplane"))
		wantArgs(t, args, "--inject-mode=sidecar", "--webhook-configuration=wafplane-sidecar-injector", "--webhook-address=:9443",
			"--inject-sidecar-image=ghcr.io/wafplane/wafplane", "--inject-sidecar-port=8080", "--inject-sidecar-health-port=8081",
			"--inject-sidecar-body-parsing-size-limit=1048576", "--inject-sidecar-cpu-request=100m", "--inject-sidecar-memory-limit=512Mi")
		if !servicePort(find(objs, "Service", "wafplane"), "webhook") {
			t.Error("sidecar mode: the Service has no webhook port for the API server")
		}
		ext := rendered["injector external"]
		args = containerArgs(t, find(ext, "Deployment", "wafplane"))
		wantArgs(t, args, "--inject-mode=external")
		if hasArg(args, "--webhook-address=:9443") || servicePort(find(ext, "Service", "wafplane"), "webhook") {
			t.Errorf("external mode serves the webhook: %v", args)
		}
		args = containerArgs(t, find(rendered["datadog sidecar"], "Deployment", "wafplane"))
		wantArgs(t, args, "--inject-mode=sidecar", "--inject-sidecar-image=registry.example/wafplane", "--inject-sidecar-image-tag=v9",
			"--inject-sidecar-port=9000", "--inject-sidecar-health-port=9001", "--inject-sidecar-body-parsing-size-limit=-1",
			"--inject-sidecar-cpu-request=50m", "--inject-sidecar-memory-request=64Mi", "--inject-sidecar-cpu-limit=1", "--inject-sidecar-memory-limit=256Mi")
	})

	t.Run("processor deployment objects", func(t *testing.T) {
		objs := rendered["processor deployment"]
		args := containerArgs(t, find(objs, "Deployment", "wafplane"))
		wantArgs(t, args, "--inject-processor-service=wafplane-processor", "--inject-processor-port=18080",
			"--processor-address=wafplane-processor.wafplane-system.svc.cluster.local:18080")
		for _, kind := range []string{"Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"} {
			if find(objs, kind, "wafplane-processor") == nil {
				t.Errorf("no %s wafplane-processor", kind)
			}
		}
		dep := find(objs, "Deployment", "wafplane-processor")
		if _, found, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec", "affinity", "podAntiAffinity"); !found {
			t.Error("the processor has no anti-affinity")
		}
		if _, found, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); found {
			t.Error("replicas are set although the HorizontalPodAutoscaler owns them")
		}
		if args := containerArgs(t, dep); args[0] != "processor" {
			t.Errorf("processor args %v", args)
		}
		// Applied for real: the HPA targets the Deployment the chart made.
		hpa, err := env.Clientset().AutoscalingV2().HorizontalPodAutoscalers("wafplane-system").Get(context.Background(), "wafplane-processor", metav1.GetOptions{})
		must(t, err)
		if hpa.Spec.ScaleTargetRef.Name != "wafplane-processor" || hpa.Spec.MaxReplicas != 10 {
			t.Errorf("HPA %+v", hpa.Spec)
		}
	})

	t.Run("datadog layout flags", func(t *testing.T) {
		args := containerArgs(t, find(rendered["datadog layout"], "Deployment", "wafplane"))
		wantArgs(t, args, "--inject", "--inject-auto-detect=false", "--inject-proxies=istio-gateway",
			"--inject-processor-service=dd-processor", "--inject-processor-namespace=datadog", "--inject-processor-port=443")
	})

	t.Run("admin token", func(t *testing.T) {
		if args := containerArgs(t, find(rendered["default"], "Deployment", "wafplane")); !hasArg(args, "--admin-address=127.0.0.1:19000") {
			t.Errorf("default admin args %v: want loopback", args)
		}
		objs := rendered["admin on all addresses"]
		sec := find(objs, "Secret", "wafplane-admin")
		if tok, _, _ := unstructured.NestedString(sec.Object, "data", "token"); len(tok) < 40 {
			t.Errorf("admin token Secret %v", sec)
		}
		for _, dep := range []string{"wafplane", "wafplane-processor"} {
			args := containerArgs(t, find(objs, "Deployment", dep))
			if !hasArg(args, "--admin-address=0.0.0.0:19000") || !hasArg(args, "--admin-token-file=/etc/wafplane/admin/token") {
				t.Errorf("%s args %v", dep, args)
			}
		}
		if find(objs, "Service", "wafplane-admin") == nil || find(rendered["default"], "Service", "wafplane-admin") != nil {
			t.Error("the admin Service must come with admin.listenAll only")
		}
	})

	t.Run("network policies", func(t *testing.T) {
		np := find(rendered["default"], "NetworkPolicy", "wafplane")
		if np == nil {
			t.Fatal("no NetworkPolicy by default")
		}
		rules, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
		peers := map[string]int{}
		for _, r := range rules {
			from, _, _ := unstructured.NestedSlice(r.(map[string]any), "from")
			ports, _, _ := unstructured.NestedSlice(r.(map[string]any), "ports")
			peers[fmt.Sprint(ports[0].(map[string]any)["port"])] = len(from)
		}
		if peers["18000"] != 1 || peers["18080"] != 4 || peers["19000"] != 1 {
			t.Errorf("peers per port %v: want xDS from provisioned Envoys, ext_proc from the four kinds of gateway pods, admin from the namespace", peers)
		}
		extra := find(rendered["extra gateway pods"], "NetworkPolicy", "wafplane")
		rules, _, _ = unstructured.NestedSlice(extra.Object, "spec", "ingress")
		if from, _, _ := unstructured.NestedSlice(rules[1].(map[string]any), "from"); len(from) != 5 {
			t.Errorf("extraGatewayPods not added to ext_proc: %v", from)
		}
	})

	t.Run("refused values", func(t *testing.T) {
		for _, c := range []struct{ values, want string }{
			{"injector: {mode: inline}", "mode"},
			{"injector: {sidecar: {port: 0}}", "port"},
			{"injector: {sidecar: {bodyParsingSizeLimit: -2}}", "bodyParsingSizeLimit"},
			{"injector: {enabeld: true}", "enabeld"},
			{"replicas: two", "replicas"},
			{"processor: {port: 70000}", "port"},
			{"injector: {proxies: [nginx]}", "proxies"},
			{"datadog: {appsec: {injector: {sidecar: {imageTag: 2}}}}", "imageTag"},
		} {
			_, _, err := renderChart(t, c.values)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("values %q: error %v, want one naming %q", c.values, err, c.want)
			}
		}
	})
}

func servicePort(svc *unstructured.Unstructured, name string) bool {
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	for _, p := range ports {
		if p.(map[string]any)["name"] == name {
			return true
		}
	}
	return false
}

// TestHelmRBACMatchesKustomize holds the chart's RBAC rules equal to deploy/kubernetes.
func TestHelmRBACMatchesKustomize(t *testing.T) {
	objs, _, err := renderChart(t, "injector: {enabled: true}")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "kubernetes", "rbac.yaml"))
	must(t, err)
	var kustomize []*unstructured.Unstructured
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var obj unstructured.Unstructured
		must(t, yaml.Unmarshal([]byte(doc), &obj.Object))
		if len(obj.Object) > 0 {
			kustomize = append(kustomize, &obj)
		}
	}
	for _, r := range []struct{ kind, name string }{{"ClusterRole", "wafplane"}, {"ClusterRole", "wafplane-injector"}, {"Role", "wafplane-leader-election"}} {
		want, got := find(kustomize, r.kind, r.name), find(objs, r.kind, r.name)
		if want == nil || got == nil {
			t.Fatalf("%s %s: deploy/kubernetes has %v, the chart %v", r.kind, r.name, want != nil, got != nil)
		}
		if d := cmp.Diff(want.Object["rules"], got.Object["rules"]); d != "" {
			t.Errorf("%s %s rules differ (-deploy/kubernetes +chart):\n%s", r.kind, r.name, d)
		}
	}
}
