package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// meshCluster is a kube-apiserver with Istio's CRDs and wafplane --inject running.
func meshCluster(t testing.TB) (*injectorCluster, *wafplaneProc) {
	t.Helper()
	env, kubeconfig := kubeEnv(t)
	env.InstallIstioCRDs()
	return newInjectorCluster(t, env), runWafplane(t, kubeconfig, injectArgs...)
}

func labelNamespace(t *testing.T, c *injectorCluster, name, key, value string) {
	t.Helper()
	ns, err := c.kc.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
	must(t, err)
	c.label(t, ns, key, value)
	_, err = c.kc.CoreV1().Namespaces().Update(context.Background(), ns, metav1.UpdateOptions{})
	must(t, err)
}

// TestInjectorMesh: mesh workloads opted in by their Namespace or their pods' label get an
// EnvoyFilter on their sidecars' inbound traffic; opted-out namespaces never; removing the
// label removes it; a hand edit is repaired.
func TestInjectorMesh(t *testing.T) {
	c, w := meshCluster(t)
	ctx := context.Background()
	for _, ns := range []string{"payments", "shop", "legacy", "istio-system"} {
		namespace(t, c.kc, ns)
	}
	labelNamespace(t, c, "payments", "wafplane.dev/protect", "true")
	labelNamespace(t, c, "istio-system", "wafplane.dev/protect", "true") // the mesh root: never
	labelNamespace(t, c, "legacy", "wafplane.dev/protect", "false")
	for _, ns := range []string{"shop", "legacy"} {
		_, err := c.kc.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns,
			Labels: map[string]string{"wafplane.dev/protect": "true"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}, metav1.CreateOptions{})
		must(t, err)
	}

	ef := c.waitFor(t, envoyFilters, "payments", "wafplane-mesh", func(*unstructured.Unstructured) bool { return true })
	if _, found, _ := unstructured.NestedMap(ef.Object, "spec", "workloadSelector"); found {
		t.Errorf("a namespace-wide opt-in selects pods: %v", ef.Object["spec"])
	}
	patches, _, _ := unstructured.NestedSlice(ef.Object, "spec", "configPatches")
	for _, p := range patches {
		if ctxName := p.(map[string]any)["match"].(map[string]any)["context"]; ctxName != "SIDECAR_INBOUND" {
			t.Errorf("patch context %v, want SIDECAR_INBOUND only", ctxName)
		}
	}
	if got := metadataValue(extProcOf(t, ef), "x-wafplane-gateway"); got != "mesh/payments" {
		t.Errorf("gateway metadata %q", got)
	}
	c.waitEvent(t, "", "payments", "EnvoyFilterCreated")

	shop := c.waitFor(t, envoyFilters, "shop", "wafplane-mesh", func(*unstructured.Unstructured) bool { return true })
	if sel, _, _ := unstructured.NestedStringMap(shop.Object, "spec", "workloadSelector", "labels"); sel["wafplane.dev/protect"] != "true" {
		t.Errorf("pod-label opt-in selector %v", sel)
	}

	// Hand edit: repaired.
	must(t, unstructured.SetNestedSlice(shop.Object, []any{}, "spec", "configPatches"))
	_, err := c.dyn.Resource(envoyFilters).Namespace("shop").Update(ctx, shop, metav1.UpdateOptions{})
	must(t, err)
	c.waitFor(t, envoyFilters, "shop", "wafplane-mesh", func(u *unstructured.Unstructured) bool {
		p, _, _ := unstructured.NestedSlice(u.Object, "spec", "configPatches")
		return len(p) == 2
	})

	// Label removed: removed.
	labelNamespace(t, c, "payments", "wafplane.dev/protect", "")
	c.waitGone(t, envoyFilters, "payments", "wafplane-mesh")
	c.waitEvent(t, "", "payments", "EnvoyFilterDeleted")

	for _, ns := range []string{"legacy", "istio-system"} {
		if _, err := c.get(envoyFilters, ns, "wafplane-mesh"); err == nil {
			t.Errorf("namespace %s was touched", ns)
		}
	}
	found := false
	for _, g := range w.injections(t).Gateways {
		found = found || g.Proxy == "istio-sidecar" && g.Namespace == "shop"
	}
	if !found {
		t.Error("/injections does not list the mesh namespace shop as istio-sidecar")
	}
}

// BenchmarkKubernetesMesh200Namespaces: 200 namespaces opted in at once; reports the time
// until every EnvoyFilter is written (target ≤ 5 s). Run with -benchtime 1x.
func BenchmarkKubernetesMesh200Namespaces(b *testing.B) {
	for b.Loop() {
		c, _ := meshCluster(b)
		ctx := context.Background()
		for i := range 200 {
			_, err := c.kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("mesh-%d", i), Labels: map[string]string{"wafplane.dev/protect": "true"}}}, metav1.CreateOptions{})
			must(b, err)
		}
		last := time.Now()
		for {
			list, err := c.dyn.Resource(envoyFilters).Namespace("").List(ctx, metav1.ListOptions{LabelSelector: "wafplane.dev/proxy=istio-sidecar"})
			must(b, err)
			if len(list.Items) == 200 {
				break
			}
			if time.Since(last) > time.Minute {
				b.Fatalf("%d of 200 EnvoyFilters after a minute", len(list.Items))
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.ReportMetric(float64(time.Since(last).Milliseconds()), "ms-last-create-to-converged")
	}
}
