package xds

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	sotwclient "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wafplane/wafplane/discovery"
	"github.com/wafplane/wafplane/discovery/file"
	"github.com/wafplane/wafplane/snapshot"
	"github.com/wafplane/wafplane/xds/xdstest"
)

func startServer(t *testing.T) (*Server, *grpc.ClientConn) {
	t.Helper()
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	conn, err := grpc.NewClient(serve(t, s), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, conn
}

// serve runs s on a loopback port until the test ends, and returns its address.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return lis.Addr().String()
}

func publishDemo(t *testing.T, s *Server, mutate func(*discovery.Gateway)) *snapshot.Resources {
	t.Helper()
	st := file.Default()
	if mutate != nil {
		mutate(&st.Gateways[0])
	}
	results := snapshot.Translate(st, snapshot.Options{})
	s.Publish(results, nil)
	return results[0].Resources
}

func node(id, cluster string) *corev3.Node { return &corev3.Node{Id: id, Cluster: cluster} }

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func nodeStatus(s *Server, id string) (NodeStatus, bool) {
	for _, n := range s.Nodes() {
		if n.ID == id {
			return n, true
		}
	}
	return NodeStatus{}, false
}

func fetch(t *testing.T, c sotwclient.ADSClient) *sotwclient.Response {
	t.Helper()
	type result struct {
		r   *sotwclient.Response
		err error
	}
	ch := make(chan result, 1)
	go func() {
		r, err := c.Fetch()
		ch <- result{r, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatal(res.err)
		}
		return res.r
	case <-time.After(5 * time.Second):
		t.Fatal("no response within 5s")
		return nil
	}
}

func TestSotWAckAndNackAreRecorded(t *testing.T) {
	s, conn := startServer(t)
	res := publishDemo(t, s, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	c := sotwclient.NewADSClient(ctx, node("envoy-1", "default/demo"), resourcev3.ListenerType)
	if err := c.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	r := fetch(t, c)
	if len(r.Resources) != 1 {
		t.Fatalf("want 1 listener, got %d", len(r.Resources))
	}
	l := &listenerv3.Listener{}
	if err := r.Resources[0].UnmarshalTo(l); err != nil || l.Name != "default/demo/http" {
		t.Fatalf("listener %v: %v", l.Name, err)
	}
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	want := res.Version(resourcev3.ListenerType)
	eventually(t, "ACK recorded", func() bool {
		n, ok := nodeStatus(s, "envoy-1")
		return ok && n.Connected && n.GatewayKnown && n.Types["Listener"] != nil && n.Types["Listener"].Acked == want
	})

	// A new version of the listeners is NACKed: the text shows, the ACKed version stays.
	publishDemo(t, s, func(g *discovery.Gateway) { g.Listeners[0].Port = 10001 })
	fetch(t, c)
	if err := c.Nack("listener default/demo/http: cannot bind 0.0.0.0:10001"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NACK recorded", func() bool {
		n, _ := nodeStatus(s, "envoy-1")
		ts := n.Types["Listener"]
		return ts != nil && ts.LastNack != nil && ts.LastNack.Error == "listener default/demo/http: cannot bind 0.0.0.0:10001" &&
			ts.Acked == want && ts.Sent != want && ts.LastNack.Version == ts.Sent
	})

	// /nodes shows it as JSON.
	rec := httptest.NewRecorder()
	s.NodesHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nodes", nil))
	var body struct{ Nodes []NodeStatus }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Nodes) != 1 || body.Nodes[0].Types["Listener"].LastNack == nil {
		t.Fatalf("/nodes: %v %s", err, rec.Body)
	}

	cancel()
	eventually(t, "disconnect recorded", func() bool {
		n, ok := nodeStatus(s, "envoy-1")
		return ok && !n.Connected && n.DisconnectedAt != nil
	})
}

func TestDeltaStreamGetsEveryTypeAndAcks(t *testing.T) {
	s, conn := startServer(t)
	res := publishDemo(t, s, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := xdstest.NewDelta(ctx, conn, node("envoy-d", "default/demo"))
	if err != nil {
		t.Fatal(err)
	}
	subs := []struct {
		typ   string
		names []string
	}{
		{resourcev3.ClusterType, nil},
		{resourcev3.EndpointType, []string{"127.0.0.1:8080"}},
		{resourcev3.ListenerType, nil},
		{resourcev3.RouteType, []string{"default/demo/http"}},
		{resourcev3.ExtensionConfigType, []string{snapshot.ExtProcFilterName}},
	}
	for _, sub := range subs {
		if err := d.Subscribe(sub.typ, sub.names...); err != nil {
			t.Fatal(err)
		}
		r := recvDelta(t, d)
		if r.TypeUrl != sub.typ || len(r.Resources) == 0 {
			t.Fatalf("subscribed %s, got %s with %d resources", sub.typ, r.TypeUrl, len(r.Resources))
		}
		if err := d.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "delta ACKs recorded", func() bool {
		n, ok := nodeStatus(s, "envoy-d")
		if !ok || !n.Delta || len(n.Types) != 5 {
			return false
		}
		for _, sub := range subs {
			if n.Types[shortType(sub.typ)].Acked != res.Version(sub.typ) {
				return false
			}
		}
		return true
	})

	// A protection change re-pushes only the extension config.
	publishDemo(t, s, func(g *discovery.Gateway) { g.Protection.Mode = discovery.ModeMonitor })
	r := recvDelta(t, d)
	if r.TypeUrl != resourcev3.ExtensionConfigType {
		t.Fatalf("protection change pushed %s, want only the extension config", r.TypeUrl)
	}
	if err := d.Nack(r, "bad ext_proc"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delta NACK recorded", func() bool {
		n, _ := nodeStatus(s, "envoy-d")
		ts := n.Types["TypedExtensionConfig"]
		return ts != nil && ts.LastNack != nil && ts.LastNack.Error == "bad ext_proc"
	})
}

func recvDelta(t *testing.T, d *xdstest.Delta) *discoveryv3.DeltaDiscoveryResponse {
	t.Helper()
	ch := make(chan *discoveryv3.DeltaDiscoveryResponse, 1)
	errc := make(chan error, 1)
	go func() {
		r, err := d.Recv()
		if err != nil {
			errc <- err
			return
		}
		ch <- r
	}()
	select {
	case r := <-ch:
		return r
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("no delta response within 5s")
	}
	return nil
}

func TestUnknownGatewayIsReported(t *testing.T) {
	s, conn := startServer(t)
	publishDemo(t, s, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := sotwclient.NewADSClient(ctx, node("stray", "default/nothing"), resourcev3.ListenerType)
	if err := c.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	eventually(t, "unknown gateway on /nodes", func() bool {
		n, ok := nodeStatus(s, "stray")
		return ok && n.Connected && !n.GatewayKnown && n.Gateway == "default/nothing"
	})
}

func TestFailedGatewayKeepsLastGoodSnapshot(t *testing.T) {
	s, _ := startServer(t)
	good := publishDemo(t, s, nil)
	bad := file.Default()
	bad.Gateways[0].Listeners[0].Port = 0
	s.Publish(snapshot.Translate(bad, snapshot.Options{}), nil)
	gws, _ := s.Gateways()
	if len(gws) != 1 || gws[0].Error == "" || gws[0].Versions["Listener"] != good.Version(resourcev3.ListenerType) {
		t.Fatalf("want the error and the last good versions, got %+v", gws)
	}
	snap, err := s.cache.GetSnapshot("default/demo")
	if err != nil || snap.GetVersion(resourcev3.ListenerType) != good.Version(resourcev3.ListenerType) {
		t.Fatalf("cache no longer serves the last good snapshot: %v", err)
	}

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/snapshots/default/demo", nil)
	req.SetPathValue("namespace", "default")
	req.SetPathValue("name", "demo")
	s.SnapshotHandler().ServeHTTP(rec, req)
	var body struct {
		Error    string
		Snapshot snapshot.Dump
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == "" || len(body.Snapshot.Listeners) != 1 {
		t.Fatalf("/snapshots/default/demo: %v %s", err, rec.Body)
	}

	// A source error is shown; the gateways stay.
	s.Publish(snapshot.Translate(file.Default(), snapshot.Options{}), errors.New("gateways.yaml: line 3: bad indentation"))
	_, se := s.Gateways()
	if se == nil || se.Error != "gateways.yaml: line 3: bad indentation" {
		t.Fatalf("source error %+v", se)
	}

	// A gateway gone from the source is dropped.
	s.Publish(nil, nil)
	if gws, _ := s.Gateways(); len(gws) != 0 {
		t.Fatalf("removed gateway still listed: %+v", gws)
	}
	if _, err := s.cache.GetSnapshot("default/demo"); err == nil {
		t.Fatal("removed gateway still in the cache")
	}
}
