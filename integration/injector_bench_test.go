package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// BenchmarkKubernetesInjector500Gateways: wafplane --inject runs against a real
// kube-apiserver with Istio's and Envoy Gateway's CRDs; 250 Istio and 250 Envoy Gateway
// Gateways are created. It reports the time from the first create until every object is
// written (750: an EnvoyFilter, or an EnvoyExtensionPolicy and its ReferenceGrant, per
// Gateway; target ≤ 10 s), from the last create, the writes per second, and wafplane's peak
// resident memory (target ≤ 200 MB); then the same from a cold start of wafplane into the
// 500 Gateways with none of the objects. Run with -benchtime 1x.
func BenchmarkKubernetesInjector500Gateways(b *testing.B) {
	for b.Loop() {
		runInjectorBench(b)
	}
}

func runInjectorBench(b *testing.B) {
	env, kubeconfig := kubeEnv(b)
	env.InstallIstioCRDs()
	env.InstallEnvoyGatewayCRDs()
	c := newInjectorCluster(b, env)
	namespace(b, c.kc, "bench")
	c.class(b, "istio", "istio.io/gateway-controller")
	c.class(b, "eg", "gateway.envoyproxy.io/gatewayclass-controller")
	w := runWafplane(b, kubeconfig, injectArgs...)
	ctx := context.Background()

	first := time.Now()
	for i := range 500 {
		class := "istio"
		if i%2 == 1 {
			class = "eg"
		}
		c.gateway(b, "bench", fmt.Sprintf("gw-%d", i), class, nil, nil)
	}
	last := time.Now()
	count := func() int {
		n := 0
		for _, gvr := range []schema.GroupVersionResource{envoyFilters, extensionPols, referenceGrant} {
			list, err := c.dyn.Resource(gvr).Namespace("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=wafplane"})
			must(b, err)
			n += len(list.Items)
		}
		return n
	}
	for count() < 750 {
		if time.Since(last) > 2*time.Minute {
			b.Fatalf("%d of 750 objects after 2 minutes", count())
		}
		time.Sleep(50 * time.Millisecond)
	}
	done := time.Now()
	writes := 0.0
	for _, l := range strings.Split(w.admin200(b, "/metrics"), "\n") {
		if strings.HasPrefix(l, "wafplane_injector_writes_total{") && strings.Contains(l, `result="ok"`) {
			v, _ := strconv.ParseFloat(l[strings.LastIndex(l, " ")+1:], 64)
			writes += v
		}
	}
	b.ReportMetric(float64(done.Sub(first).Milliseconds()), "ms-first-create-to-converged")
	b.ReportMetric(float64(done.Sub(last).Milliseconds()), "ms-last-create-to-converged")
	b.ReportMetric(writes/done.Sub(first).Seconds(), "writes/s")
	b.ReportMetric(peakRSSMB(b, w.cmd.Process.Pid), "MB-peak-rss")

	// Cold start: wafplane starts into a cluster with the 500 Gateways and none of the
	// objects (a first install, or the objects lost).
	w.stop(b)
	for _, gvr := range []schema.GroupVersionResource{envoyFilters, extensionPols, referenceGrant} {
		for _, ns := range []string{"bench", "wafplane-system"} {
			must(b, c.dyn.Resource(gvr).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{},
				metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=wafplane"}))
		}
	}
	for count() > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	w = runWafplane(b, kubeconfig, injectArgs...)
	for count() < 750 {
		if time.Since(start) > 2*time.Minute {
			b.Fatalf("cold start: %d of 750 objects after 2 minutes", count())
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-cold-start-to-converged")
	b.ReportMetric(peakRSSMB(b, w.cmd.Process.Pid), "MB-peak-rss-cold-start")
}
