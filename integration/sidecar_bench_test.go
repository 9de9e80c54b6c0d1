package integration

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wafplane/wafplane/discovery/kubernetes/kubetest"
)

// BenchmarkKubernetesSidecarWebhook50Concurrent: a real kube-apiserver calls wafplane's
// sidecar webhook while 50 clients create gateway pods at once (20 rounds, 1,000 pods).
// It reports the webhook's own latency (p50/p99 from its histogram, as Prometheus'
// histogram_quantile computes it; target p99 ≤ 20 ms), and the pod creations as the
// clients see them beside the same creations of pods the webhook is not called for (the
// baseline, in the same run), with their ratio. Run with -benchtime 1x.
func BenchmarkKubernetesSidecarWebhook50Concurrent(b *testing.B) {
	for b.Loop() {
		runSidecarBench(b)
	}
}

func runSidecarBench(b *testing.B) {
	env, kubeconfig := kubeEnv(b)
	env.InstallIstioCRDs()
	c := newInjectorCluster(b, env)
	for _, ns := range []string{"shop", "apps"} {
		namespace(b, c.kc, ns)
	}
	c.class(b, "istio", "istio.io/gateway-controller")
	c.gateway(b, "shop", "edge", "istio", nil, nil)
	policy := filepath.Join(b.TempDir(), "policy.yaml")
	must(b, os.WriteFile(policy, []byte("{}\n"), 0o644))
	port := kubetest.FreePorts(b, 1)[0]
	args := sidecarArgs(port, policy)
	for i, a := range args {
		if a == "6s" { // the certificate's validity as shipped, not the rotation test's
			args[i] = "2160h"
		}
	}
	w := runWafplane(b, kubeconfig, args...)
	ctx := context.Background()
	edgePod := map[string]string{"gateway.networking.k8s.io/gateway-name": "edge"}
	eventually(b, "the API server calls the webhook", 45*time.Second, func() bool {
		p, err := c.kc.CoreV1().Pods("shop").Create(ctx, testPod("shop", "probe", edgePod, "istio-proxy"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && len(p.Spec.InitContainers) == 1
	})

	const rounds, concurrent = 20, 50
	create := func(ns, prefix string, labels map[string]string, injected bool) []time.Duration {
		var mu sync.Mutex
		var took []time.Duration
		for r := range rounds {
			var wg sync.WaitGroup
			for i := range concurrent {
				wg.Go(func() {
					start := time.Now()
					p, err := c.kc.CoreV1().Pods(ns).Create(ctx, testPod(ns, fmt.Sprintf("%s-%d-%d", prefix, r, i), labels, "istio-proxy"), metav1.CreateOptions{})
					d := time.Since(start)
					if err != nil {
						b.Errorf("create: %v", err)
						return
					}
					if (len(p.Spec.InitContainers) == 1) != injected {
						b.Errorf("pod %s: injected %v, want %v", p.Name, !injected, injected)
					}
					mu.Lock()
					took = append(took, d)
					mu.Unlock()
				})
			}
			wg.Wait()
		}
		return took
	}
	// Baseline first and webhook second, then again the other way round, so that neither
	// gets the warmer API server.
	before := webhookHistogram(b, w)
	base := create("apps", "a", map[string]string{"app": "web"}, false)
	hooked := create("shop", "a", edgePod, true)
	hooked = append(hooked, create("shop", "b", edgePod, true)...)
	base = append(base, create("apps", "b", map[string]string{"app": "web"}, false)...)
	after := webhookHistogram(b, w)

	p50, p99 := histogramQuantile(before, after, 0.5), histogramQuantile(before, after, 0.99)
	b.ReportMetric(p50*1000, "webhook-p50-ms")
	b.ReportMetric(p99*1000, "webhook-p99-ms")
	bp50, bp99 := pct(base, 0.5), pct(base, 0.99)
	hp50, hp99 := pct(hooked, 0.5), pct(hooked, 0.99)
	b.ReportMetric(ms(bp50), "create-baseline-p50-ms")
	b.ReportMetric(ms(bp99), "create-baseline-p99-ms")
	b.ReportMetric(ms(hp50), "create-injected-p50-ms")
	b.ReportMetric(ms(hp99), "create-injected-p99-ms")
	b.ReportMetric(float64(hp50)/float64(bp50), "create-p50-ratio")
	b.Logf("webhook p50 %.2f ms p99 %.2f ms (target p99 ≤ 20 ms); pod creation p50/p99: baseline %.1f/%.1f ms, injected %.1f/%.1f ms (ratio %.2f), %d concurrent × %d rounds × 2",
		p50*1000, p99*1000, ms(bp50), ms(bp99), ms(hp50), ms(hp99), float64(hp50)/float64(bp50), concurrent, rounds)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// webhookHistogram reads the cumulative buckets of wafplane_webhook_duration_seconds.
func webhookHistogram(b *testing.B, w *wafplaneProc) map[float64]float64 {
	out := map[float64]float64{}
	for _, l := range strings.Split(w.admin200(b, "/metrics"), "\n") {
		rest, ok := strings.CutPrefix(l, `wafplane_webhook_duration_seconds_bucket{le="`)
		if !ok {
			continue
		}
		le, count, _ := strings.Cut(rest, `"} `)
		bound, err := strconv.ParseFloat(le, 64)
		if le == "+Inf" {
			bound, err = math.Inf(1), nil
		}
		n, err2 := strconv.ParseFloat(count, 64)
		if err == nil && err2 == nil {
			out[bound] = n
		}
	}
	return out
}

// histogramQuantile is Prometheus' histogram_quantile over the observations between two
// readings: linear within the bucket the quantile falls in.
func histogramQuantile(before, after map[float64]float64, q float64) float64 {
	bounds := make([]float64, 0, len(after))
	for le := range after {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	total := after[math.Inf(1)] - before[math.Inf(1)]
	if total == 0 {
		return 0
	}
	rank, prevBound, prevCount := q*total, 0.0, 0.0
	for _, le := range bounds {
		count := after[le] - before[le]
		if count >= rank {
			if math.IsInf(le, 1) {
				return prevBound
			}
			return prevBound + (le-prevBound)*(rank-prevCount)/(count-prevCount)
		}
		prevBound, prevCount = le, count
	}
	return prevBound
}
