package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/wafplane/wafplane/xds/xdstest"
)

// BenchmarkKubernetes1000Routes: 100 Gateways and 1,000 HTTPRoutes (10 per Gateway, over 10
// Services) created in a real kube-apiserver while wafplane runs with the deploy/
// ServiceAccount. It reports the time from the last create to the snapshot that contains
// it (target ≤ 1 s), from an EndpointSlice change to the EDS push (≤ 200 ms), and
// wafplane's peak resident memory (≤ 300 MB). Run with -benchtime 1x.
func BenchmarkKubernetes1000Routes(b *testing.B) {
	for b.Loop() {
		runKubeBench(b)
	}
}

func runKubeBench(b *testing.B) {
	in := startKube(b)
	ctx := context.Background()
	namespace(b, in.kc, "bench")
	for i := range 10 {
		backend(b, in.kc, "bench", fmt.Sprintf("svc-%d", i), fmt.Sprintf("10.3.0.%d", i+1))
	}
	for g := range 100 {
		_, err := in.gc.GatewayV1().Gateways("bench").Create(ctx, &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gw-%d", g), Namespace: "bench"},
			Spec: gwapiv1.GatewaySpec{GatewayClassName: "wafplane", Listeners: []gwapiv1.Listener{{Name: "http", Port: 8080, Protocol: gwapiv1.HTTPProtocolType}}}},
			metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
	}
	d, err := xdstest.NewDelta(ctx, in.xds, &corev3.Node{Id: "bench-envoy", Cluster: "bench/gw-99"})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Subscribe(resourcev3.RouteType, "bench/gw-99/http"); err != nil {
		b.Fatal(err)
	}
	if err := d.Subscribe(resourcev3.EndpointType, "bench/svc-9:80"); err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		r := httpRoute("bench", fmt.Sprintf("route-%d", i), fmt.Sprintf("gw-%d", i%100), "bench", fmt.Sprintf("svc-%d", i%10))
		if _, err := in.gc.GatewayV1().HTTPRoutes("bench").Create(ctx, r, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	lastCreate := time.Now()
	for {
		r, err := d.Recv()
		if err != nil {
			b.Fatal(err)
		}
		_ = d.Ack(r)
		if r.TypeUrl != resourcev3.RouteType || len(r.Resources) == 0 {
			continue
		}
		rc := &routev3.RouteConfiguration{}
		if err := r.Resources[0].Resource.UnmarshalTo(rc); err != nil {
			b.Fatal(err)
		}
		if len(rc.VirtualHosts) > 0 && hasRoute(rc, "bench/route-999/0/0") {
			break
		}
		if time.Since(lastCreate) > time.Minute {
			b.Fatal("the last route never arrived")
		}
	}
	b.ReportMetric(float64(time.Since(lastCreate).Milliseconds()), "ms-last-create-to-snapshot")

	time.Sleep(2 * time.Second) // let status writes settle
	slice, err := in.kc.DiscoveryV1().EndpointSlices("bench").Get(ctx, "svc-9-1", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	slice.Endpoints[0].Addresses = []string{"10.3.1.99"}
	if _, err := in.kc.DiscoveryV1().EndpointSlices("bench").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		b.Fatal(err)
	}
	changed := time.Now()
	for {
		r, err := d.Recv()
		if err != nil {
			b.Fatal(err)
		}
		_ = d.Ack(r)
		if r.TypeUrl != resourcev3.EndpointType || len(r.Resources) == 0 {
			continue
		}
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := r.Resources[0].Resource.UnmarshalTo(cla); err != nil {
			b.Fatal(err)
		}
		if len(cla.Endpoints) > 0 && cla.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().Address == "10.3.1.99" {
			break
		}
	}
	b.ReportMetric(float64(time.Since(changed).Milliseconds()), "ms-slice-to-eds")
	b.ReportMetric(peakRSSMB(b, in.pid), "MB-peak-rss")
}

func hasRoute(rc *routev3.RouteConfiguration, name string) bool {
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			if r.Name == name {
				return true
			}
		}
	}
	return false
}

// peakRSSMB reads VmHWM, the process's peak resident set, from /proc.
func peakRSSMB(b *testing.B, pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmHWM")
	return 0
}
