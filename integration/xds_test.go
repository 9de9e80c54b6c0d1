package integration

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	sotwclient "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wafplane/wafplane/xds/xdstest"
)

const shopGateways = `gateways:
- namespace: shop
  name: edge
  listeners:
  - name: http
    port: 10080
  protection:
    mode: block
  routes:
  - name: app
    rules:
    - backends:
      - host: 127.0.0.1
        port: 8080
`

// nodesView and snapshotsView are the parts of /nodes and /snapshots the tests read.
type nodesView struct {
	Nodes []struct {
		ID, Gateway             string
		GatewayKnown, Connected bool
		Streams                 int
		Types                   map[string]struct {
			Sent, Acked string
			LastNack    *struct{ Version, Error string }
		}
	}
}

type snapshotsView struct {
	Gateways []struct {
		Gateway  string
		Versions map[string]string
		Error    string
	}
	SourceError *struct{ Error string }
}

func (in *instance) versions(t *testing.T, gateway string) (map[string]string, string, string) {
	t.Helper()
	var v snapshotsView
	in.get(t, "/snapshots", &v)
	source := ""
	if v.SourceError != nil {
		source = v.SourceError.Error
	}
	for _, g := range v.Gateways {
		if g.Gateway == gateway {
			return g.Versions, g.Error, source
		}
	}
	return nil, "", source
}

func unpack[T proto.Message](t *testing.T, resources []*anypb.Any, new func() T) []T {
	t.Helper()
	var out []T
	for _, a := range resources {
		m := new()
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatalf("resource %s: %v", a.TypeUrl, err)
		}
		out = append(out, m)
	}
	return out
}

// checkListener asserts ext_proc comes over ECDS and runs before the router.
func checkListener(t *testing.T, l *listenerv3.Listener) {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	if len(hcm.HttpFilters) != 2 || hcm.HttpFilters[0].Name != "envoy.filters.http.ext_proc" ||
		hcm.HttpFilters[0].GetConfigDiscovery() == nil || hcm.HttpFilters[1].Name != "envoy.filters.http.router" {
		t.Fatalf("want ext_proc over ECDS then router, got %v", hcm.HttpFilters)
	}
}

// An Envoy on go-control-plane's SotW ADS client gets every type, ACKs, and /nodes shows
// the ACKed versions equal to the served ones.
func TestSotWNodeGetsEveryTypeAndAcks(t *testing.T) {
	in := start(t, shopGateways)
	node := &corev3.Node{Id: "edge-sotw", Cluster: "shop/edge"}
	fetchAck := func(typ string) []*anypb.Any {
		c := sotwclient.NewADSClient(ctx(t), node, typ)
		if err := c.InitConnect(in.conn); err != nil {
			t.Fatal(err)
		}
		r := recv(t, 5*time.Second, c.Fetch)
		if err := c.Ack(); err != nil {
			t.Fatal(err)
		}
		return r.Resources
	}
	clusters := unpack(t, fetchAck(resourcev3.ClusterType), func() *clusterv3.Cluster { return &clusterv3.Cluster{} })
	names := map[string]*clusterv3.Cluster{}
	for _, c := range clusters {
		names[c.Name] = c
	}
	proc := names["wafplane-processor"]
	if proc == nil || proc.TypedExtensionProtocolOptions == nil || names["127.0.0.1:8080"] == nil {
		t.Fatalf("want the backend and the HTTP/2 processor cluster, got %v", names)
	}
	if got := proc.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().GetPortValue(); "127.0.0.1:"+itoa(got) != in.processor {
		t.Errorf("processor cluster points at port %d, processor listens on %s", got, in.processor)
	}
	cla := unpack(t, fetchAck(resourcev3.EndpointType), func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} })
	if len(cla) != 1 || cla[0].ClusterName != "127.0.0.1:8080" {
		t.Fatalf("endpoints %v", cla)
	}
	listeners := unpack(t, fetchAck(resourcev3.ListenerType), func() *listenerv3.Listener { return &listenerv3.Listener{} })
	if len(listeners) != 1 {
		t.Fatalf("listeners %v", listeners)
	}
	checkListener(t, listeners[0])
	routes := unpack(t, fetchAck(resourcev3.RouteType), func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })
	if len(routes) != 1 || routes[0].VirtualHosts[0].Routes[0].GetRoute().GetCluster() != "127.0.0.1:8080" {
		t.Fatalf("routes %v", routes)
	}
	ext := unpack(t, fetchAck(resourcev3.ExtensionConfigType), func() *corev3.TypedExtensionConfig { return &corev3.TypedExtensionConfig{} })
	cfg := &extprocfilterv3.ExternalProcessor{}
	if len(ext) != 1 || ext[0].TypedConfig.UnmarshalTo(cfg) != nil || cfg.GrpcService.GetEnvoyGrpc().ClusterName != "wafplane-processor" {
		t.Fatalf("extension configs %v", ext)
	}

	served, _, _ := in.versions(t, "shop/edge")
	eventually(t, "every type ACKed on /nodes", 5*time.Second, func() bool {
		var v nodesView
		in.get(t, "/nodes", &v)
		if len(v.Nodes) != 1 || !v.Nodes[0].GatewayKnown || v.Nodes[0].Streams != 5 {
			return false
		}
		for _, typ := range []string{"Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration", "TypedExtensionConfig"} {
			if served[typ] == "" || v.Nodes[0].Types[typ].Acked != served[typ] {
				return false
			}
		}
		return true
	})
}

// The admin endpoint answers what the README promises: the metrics it names, health and
// profiles.
func TestAdminEndpoint(t *testing.T) {
	in := start(t, shopGateways)
	c := sotwclient.NewADSClient(ctx(t), &corev3.Node{Id: "edge-admin", Cluster: "shop/edge"}, resourcev3.ListenerType)
	if err := c.InitConnect(in.conn); err != nil {
		t.Fatal(err)
	}
	recv(t, 5*time.Second, c.Fetch)
	if err := c.Nack("listener shop/edge/http: rejected by a test"); err != nil {
		t.Fatal(err)
	}
	want := []string{"wafplane_xds_streams", "wafplane_xds_connected_nodes", "wafplane_xds_pushes_total",
		"wafplane_xds_nacks_total", "wafplane_xds_unknown_gateway_streams_total", "wafplane_snapshots_total",
		"wafplane_translation_seconds", "wafplane_gateways", "wafplane_processor_rules_loaded"}
	eventually(t, "the README's metrics on /metrics", 5*time.Second, func() bool {
		metrics := in.getText(t, "/metrics")
		for _, name := range want {
			if !strings.Contains(metrics, "\n"+name) {
				return false
			}
		}
		return true
	})
	for _, path := range []string{"/healthz", "/readyz", "/debug/pprof/", "/rules", "/events", "/api-catalog"} {
		in.getText(t, path)
	}
	var ready map[string]any
	in.get(t, "/readyz", &ready)
	if ready["status"] != "ok" {
		t.Errorf("/readyz = %v, want JSON with status ok", ready)
	}
}

// A delta node: edits of the file arrive within 2 s, broken edits keep the version and
// show on /snapshots, and a NACK shows with its text on /nodes.
func TestDeltaNodeFollowsTheFile(t *testing.T) {
	in := start(t, shopGateways)
	d, err := xdstest.NewDelta(ctx(t), in.conn, &corev3.Node{Id: "edge-delta", Cluster: "shop/edge"})
	if err != nil {
		t.Fatal(err)
	}
	next := func(within time.Duration) *discoveryv3.DeltaDiscoveryResponse {
		return recv(t, within, d.Recv)
	}
	for _, sub := range []struct {
		typ   string
		names []string
	}{
		{resourcev3.ClusterType, nil},
		{resourcev3.EndpointType, []string{"127.0.0.1:8080"}},
		{resourcev3.ListenerType, nil},
		{resourcev3.RouteType, []string{"shop/edge/http"}},
		{resourcev3.ExtensionConfigType, []string{"envoy.filters.http.ext_proc"}},
	} {
		if err := d.Subscribe(sub.typ, sub.names...); err != nil {
			t.Fatal(err)
		}
		r := next(5 * time.Second)
		if r.TypeUrl != sub.typ || len(r.Resources) == 0 {
			t.Fatalf("subscribed to %s, got %s with %d resources", sub.typ, r.TypeUrl, len(r.Resources))
		}
		if sub.typ == resourcev3.ListenerType {
			l := &listenerv3.Listener{}
			if err := r.Resources[0].Resource.UnmarshalTo(l); err != nil {
				t.Fatal(err)
			}
			checkListener(t, l)
		}
		if err := d.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	before, _, _ := in.versions(t, "shop/edge")

	// An edit: a new route arrives within 2 s.
	in.write(t, shopGateways+`  - name: api
    rules:
    - matches: [{path: {value: /api}}]
      backends: [{host: 127.0.0.1, port: 8080}]
`)
	r := next(2 * time.Second)
	if r.TypeUrl != resourcev3.RouteType {
		t.Fatalf("after adding a route got %s, want the route configuration", r.TypeUrl)
	}
	rc := &routev3.RouteConfiguration{}
	if err := r.Resources[0].Resource.UnmarshalTo(rc); err != nil || len(rc.VirtualHosts[0].Routes) != 2 {
		t.Fatalf("new routes %v: %v", rc, err)
	}
	if err := d.Nack(r, "route shop/edge/http: rejected by a test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NACK with its text on /nodes", 5*time.Second, func() bool {
		var v nodesView
		in.get(t, "/nodes", &v)
		for _, n := range v.Nodes {
			ts := n.Types["RouteConfiguration"]
			if n.ID == "edge-delta" && ts.LastNack != nil && ts.LastNack.Error == "route shop/edge/http: rejected by a test" {
				return ts.Acked == before["RouteConfiguration"] && ts.LastNack.Version != before["RouteConfiguration"]
			}
		}
		return false
	})
	edited, _, _ := in.versions(t, "shop/edge")

	// A YAML error: the version stays and the error shows.
	in.write(t, "gateways: [\n")
	eventually(t, "source error on /snapshots", 5*time.Second, func() bool {
		v, _, source := in.versions(t, "shop/edge")
		return source != "" && v["RouteConfiguration"] == edited["RouteConfiguration"]
	})
	// A gateway error: the version stays, the gateway's error shows, the source is fine.
	in.write(t, strings.Replace(shopGateways, "port: 10080", "port: 0", 1))
	eventually(t, "gateway error on /snapshots", 5*time.Second, func() bool {
		v, gwErr, source := in.versions(t, "shop/edge")
		return source == "" && strings.Contains(gwErr, "listeners[0].port") && v["Listener"] == edited["Listener"]
	})
	var one struct {
		Error    string
		Snapshot struct{ Listeners []any }
	}
	in.get(t, "/snapshots/shop/edge", &one)
	if !strings.Contains(one.Error, "listeners[0].port: 0 is out of range") || len(one.Snapshot.Listeners) != 1 {
		t.Fatalf("/snapshots/shop/edge: want the error and the last good listener, got %+v", one)
	}
}

// A node whose cluster names no gateway is reported on /nodes.
func TestUnknownGatewayNode(t *testing.T) {
	in := start(t, shopGateways)
	c := sotwclient.NewADSClient(ctx(t), &corev3.Node{Id: "lost", Cluster: "shop/nowhere"}, resourcev3.ListenerType)
	if err := c.InitConnect(in.conn); err != nil {
		t.Fatal(err)
	}
	eventually(t, "unknown gateway on /nodes", 5*time.Second, func() bool {
		var v nodesView
		in.get(t, "/nodes", &v)
		return len(v.Nodes) == 1 && v.Nodes[0].Gateway == "shop/nowhere" && !v.Nodes[0].GatewayKnown && v.Nodes[0].Connected
	})
	if !strings.Contains(in.log.String(), "names no gateway") {
		t.Error("the unknown gateway is not logged")
	}
}

// wafplane with no subcommand serves the embedded default gateway.
func TestNoArgumentsServesTheDefault(t *testing.T) {
	in := start(t, "")
	v, gwErr, source := in.versions(t, "default/demo")
	if v["Listener"] == "" || gwErr != "" || source != "" {
		t.Fatalf("default/demo: versions %v, error %q, source error %q", v, gwErr, source)
	}
	var one struct {
		Snapshot struct{ Listeners []map[string]any }
	}
	in.get(t, "/snapshots/default/demo", &one)
	addr := one.Snapshot.Listeners[0]["address"].(map[string]any)["socketAddress"].(map[string]any)
	if addr["portValue"] != float64(10000) {
		t.Fatalf("default listener %v, want port 10000", addr)
	}
}
