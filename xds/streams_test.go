package xds

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wafplane/wafplane/xds/xdstest"
)

// The attack of issue 29: SotW streams without a certificate open and stay silent; Envoys
// with the gateway's certificate then connect with delta xDS (go-control-plane numbers
// the two kinds of streams with separate counters, so the first delta streams carry the
// numbers of the first SotW ones); then the silent streams ask for the gateway. Every one
// of them must be refused, and none may receive a resource.
func TestSotWStreamsWithoutCertificateNeverInheritADeltaStreamsIdentity(t *testing.T) {
	s, ca, addr := startAuthServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const silent, envoys = 30, 5
	var sotw []discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	for range silent {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, addr, ca, "")).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sotw = append(sotw, st)
	}
	eventually(t, "the silent streams open on the server", func() bool {
		return testutil.ToFloat64(s.m.streams) == silent
	})
	for i := range envoys {
		d, err := xdstest.NewDelta(ctx, dial(t, addr, ca, "shop/edge"), node(fmt.Sprintf("edge-%d", i), "shop/edge"))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Subscribe(resourcev3.ListenerType); err != nil {
			t.Fatal(err)
		}
		if r := recvDelta(t, d); len(r.Resources) == 0 {
			t.Fatalf("envoy %d with the gateway's certificate got no listener", i)
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, silent)
	for i, st := range sotw {
		wg.Go(func() {
			err := st.Send(&discoveryv3.DiscoveryRequest{Node: node(fmt.Sprintf("thief-%d", i), "shop/edge"), TypeUrl: resourcev3.ListenerType})
			if err == nil {
				var r *discoveryv3.DiscoveryResponse
				if r, err = st.Recv(); err == nil {
					err = fmt.Errorf("thief-%d received %d %s resources", i, len(r.Resources), r.TypeUrl)
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if status.Code(err) != codes.PermissionDenied {
			t.Error(err)
		}
	}
	if got := testutil.ToFloat64(s.m.rejected.WithLabelValues(RejectNoCertificate)); got != silent {
		t.Errorf("rejected{no_certificate} = %v, want %d", got, silent)
	}
	for i := range silent {
		if n, ok := nodeStatus(s, fmt.Sprintf("thief-%d", i)); !ok || n.Connected || n.Refused == "" {
			t.Errorf("/nodes thief-%d: %+v", i, n)
		}
	}
}

// A stream whose first request was allowed may not switch to another gateway later:
// go-control-plane takes the node of every request that carries one.
func TestALaterRequestCannotSwitchGateways(t *testing.T) {
	_, ca, addr := startAuthServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, addr, ca, "shop/edge")).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node("edge-x", "shop/edge"), TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node("edge-x", "blog/site"), TypeUrl: resourcev3.SecretType}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after switching to blog/site: %v %v", r, err)
	}
}

// Mixed SotW and delta churn: many clients of both kinds connect, get a response and
// leave, interleaved. Afterwards no record says connected and the gauges are zero.
func TestMixedSotWAndDeltaChurnLeavesNothingConnected(t *testing.T) {
	s, conn := startServer(t)
	publishDemo(t, s, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const clients, parallel = 600, 30
	work := make(chan int, clients)
	for i := range clients {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for i := range work {
				if err := churnOnce(ctx, conn, i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	eventually(t, "no stream left", func() bool {
		return testutil.ToFloat64(s.m.streams) == 0 && testutil.ToFloat64(s.m.nodes) == 0
	})
	for _, n := range s.Nodes() {
		if n.Connected {
			t.Fatalf("node %s still connected after churn: %+v", n.ID, n)
		}
	}
	if got := len(s.Nodes()); got != clients {
		t.Errorf("%d records, want %d", got, clients)
	}
}

// churnOnce opens one stream, SotW for even clients and delta for odd ones, takes the
// listeners and leaves.
func churnOnce(ctx context.Context, conn grpc.ClientConnInterface, i int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n := node(fmt.Sprintf("churn-%d", i), "default/demo")
	if i%2 == 1 {
		_, err := xdstest.FirstNames(ctx, conn, n, resourcev3.ListenerType)
		return err
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ListenerType}); err != nil {
		return err
	}
	_, err = st.Recv()
	return err
}
