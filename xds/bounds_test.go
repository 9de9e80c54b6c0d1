package xds

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/wafplane/wafplane/xds/xdstest"
)

// Nodes that say too much of themselves are refused before anything of them is kept:
// /nodes stays small whatever the clients send.
func TestOversizedNodesAreRefusedAndNotKept(t *testing.T) {
	s, conn := startServer(t)
	publishDemo(t, s, nil)
	big := strings.Repeat("x", 64<<10)
	meta, err := structpb.NewStruct(map[string]any{"blob": big + big})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]*corev3.Node{
		"id":         {Id: big, Cluster: "default/demo"},
		"cluster":    {Id: "big-cluster", Cluster: "default/" + big},
		"metadata":   {Id: "big-metadata", Cluster: "default/demo", Metadata: meta},
		"user agent": {Id: "big-agent", Cluster: "default/demo", UserAgentName: big},
	}
	for name, n := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			names, err := xdstest.FirstNames(ctx, conn, n, resourcev3.ListenerType)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "at most") {
				t.Fatalf("got %v, %v: want InvalidArgument naming the bound", names, err)
			}
		})
	}
	if got := testutil.ToFloat64(s.m.rejected.WithLabelValues(RejectOversizedNode)); got != float64(len(cases)) {
		t.Errorf("rejected{oversized_node} = %v, want %d", got, len(cases))
	}
	// Many clients with huge ids: what /nodes serves stays within the per-node bound.
	for i := range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = xdstest.FirstNames(ctx, conn, node(fmt.Sprint(i)+big, "default/demo"), resourcev3.ListenerType)
		cancel()
	}
	rec := httptest.NewRecorder()
	s.NodesHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nodes", nil))
	if rec.Body.Len() > 60*4<<10 {
		t.Errorf("/nodes is %d bytes for 54 refused nodes", rec.Body.Len())
	}
	for _, n := range s.Nodes() {
		if len(n.ID) > maxNodeID+len("…") || !strings.HasPrefix(n.Refused, RejectOversizedNode) {
			t.Errorf("node record %.40q… (%d bytes): refused %q", n.ID, len(n.ID), n.Refused)
		}
	}
}

// A node as large as a real Envoy's (its list of extensions, metadata) is served.
func TestARealSizedNodeIsServed(t *testing.T) {
	s, conn := startServer(t)
	publishDemo(t, s, nil)
	n := node("envoy-real", "default/demo")
	n.UserAgentName, n.UserAgentVersionType = "envoy", &corev3.Node_UserAgentVersion{UserAgentVersion: "1.36.2"}
	for i := range 400 {
		n.Extensions = append(n.Extensions, &corev3.Extension{Name: fmt.Sprintf("envoy.filters.http.extension_%d", i),
			Category: "envoy.filters.http", TypeUrls: []string{"envoy.extensions.filters.http.some_filter.v3.SomeFilterConfiguration"}})
	}
	n.Metadata, _ = structpb.NewStruct(map[string]any{"labels": strings.Repeat("k=v,", 2000)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if names, err := xdstest.FirstNames(ctx, conn, n, resourcev3.ListenerType); err != nil || len(names) != 1 {
		t.Fatalf("%v, %v", names, err)
	}
	if st, _ := nodeStatus(s, "envoy-real"); st.UserAgent != "envoy 1.36.2" {
		t.Errorf("user agent %q", st.UserAgent)
	}
}

// A stream that asks nothing is ended after the first-request deadline, with a reason.
func TestASilentStreamIsEnded(t *testing.T) {
	s, conn := startServer(t)
	s.guard.firstRequest = 200 * time.Millisecond
	publishDemo(t, s, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("silent stream: %v, want DeadlineExceeded", err)
	}
	if got := testutil.ToFloat64(s.m.rejected.WithLabelValues(RejectSilent)); got != 1 {
		t.Errorf("rejected{no_request} = %v", got)
	}
	eventually(t, "the stream gauge back to zero", func() bool { return testutil.ToFloat64(s.m.streams) == 0 })
	// A stream that spoke may then stay quiet as long as it likes.
	d, err := xdstest.NewDelta(ctx, conn, node("quiet", "default/demo"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Subscribe(resourcev3.ListenerType); err != nil {
		t.Fatal(err)
	}
	recvDelta(t, d)
	time.Sleep(3 * s.guard.firstRequest)
	if n, _ := nodeStatus(s, "quiet"); !n.Connected {
		t.Errorf("a stream that asked was ended: %+v", n)
	}
}

// The unary Fetch methods are guarded as the streams are.
func TestFetchNeedsTheGatewaysCertificate(t *testing.T) {
	_, ca, addr := startAuthServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := &discoveryv3.DiscoveryRequest{Node: node("f", "shop/edge"), TypeUrl: resourcev3.ListenerType}
	if r, err := listenerservice.NewListenerDiscoveryServiceClient(dial(t, addr, ca, "")).FetchListeners(ctx, req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("without certificate: %v, %v", r, err)
	}
	if r, err := listenerservice.NewListenerDiscoveryServiceClient(dial(t, addr, ca, "blog/site")).FetchListeners(ctx, req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("with another gateway's certificate: %v, %v", r, err)
	}
	r, err := listenerservice.NewListenerDiscoveryServiceClient(dial(t, addr, ca, "shop/edge")).FetchListeners(ctx, req)
	if err != nil || len(r.Resources) != 1 {
		t.Fatalf("with the gateway's certificate: %v, %v", r, err)
	}
}

// Without authentication clients can name any cluster; the cache entries of those that
// name no gateway are pruned beyond a bound.
func TestStrayClustersArePruned(t *testing.T) {
	s, conn := startServer(t)
	publishDemo(t, s, nil)
	const strays = maxStrayCacheKeys + 100
	for i := range strays {
		ctx, cancel := context.WithCancel(context.Background())
		d, err := xdstest.NewDelta(ctx, conn, node(fmt.Sprint("stray-", i), fmt.Sprint("nowhere/", i)))
		if err == nil {
			err = d.Subscribe(resourcev3.ListenerType)
		}
		if err != nil {
			t.Fatal(err)
		}
		for len(s.cache.GetStatusKeys()) < i+1 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}
	eventually(t, "the strays' watches closed", func() bool { return testutil.ToFloat64(s.m.streams) == 0 })
	if n := len(s.cache.GetStatusKeys()); n < strays {
		t.Fatalf("%d cache keys before pruning, want %d", n, strays)
	}
	if dropped := s.pruneCache(); dropped != strays {
		t.Errorf("pruned %d, want %d", dropped, strays)
	}
	if keys := s.cache.GetStatusKeys(); len(keys) != 0 {
		t.Errorf("%d cache keys after pruning", len(keys))
	}
	if _, err := s.cache.GetSnapshot("default/demo"); err != nil {
		t.Errorf("the served gateway's snapshot went: %v", err)
	}
}
