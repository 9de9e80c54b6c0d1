package snapshot

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/wafplane/wafplane/discovery"
	"github.com/wafplane/wafplane/discovery/file"
)

func demo(t *testing.T) discovery.Gateway {
	t.Helper()
	return file.Default().Gateways[0]
}

func translateOK(t *testing.T, g discovery.Gateway, o Options) *Resources {
	t.Helper()
	r, err := TranslateGateway(g, o)
	if err != nil {
		t.Fatalf("translate %s: %v", g.Key(), err)
	}
	return r
}

func hcmOf(t *testing.T, r *Resources) *hcmv3.HttpConnectionManager {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{}
	if err := r.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	return hcm
}

func TestExtProcSitsBeforeRouter(t *testing.T) {
	r := translateOK(t, demo(t), Options{})
	var names []string
	for _, f := range hcmOf(t, r).HttpFilters {
		names = append(names, f.Name)
	}
	if diff := cmp.Diff([]string{ExtProcFilterName, RouterFilterName}, names); diff != "" {
		t.Fatalf("http filters (-want +got):\n%s", diff)
	}
	if len(r.Extensions) != 1 || r.Extensions[0].Name != ExtProcFilterName {
		t.Fatalf("want one ECDS resource named like the filter, got %v", r.Extensions)
	}
	cfg := &extprocfilterv3.ExternalProcessor{}
	if err := r.Extensions[0].TypedConfig.UnmarshalTo(cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.AllowModeOverride || !cfg.FailureModeAllow || cfg.RequestAttributes[0] != "source.address" {
		t.Errorf("ext_proc config lacks the contract: %v", cfg)
	}
	md := map[string]string{}
	for _, h := range cfg.GrpcService.InitialMetadata {
		md[h.Key] = h.Value
	}
	want := map[string]string{MetadataGateway: "default/demo", MetadataMode: "block", MetadataBodyLimit: "1048576", MetadataResponseBody: "false"}
	if diff := cmp.Diff(want, md); diff != "" {
		t.Errorf("initial metadata (-want +got):\n%s", diff)
	}
}

func TestProcessorCluster(t *testing.T) {
	cases := []struct {
		name    string
		opts    Options
		typ     clusterv3.Cluster_DiscoveryType
		sni     string
		withTLS bool
		err     string
	}{
		{name: "default", opts: Options{}, typ: clusterv3.Cluster_STATIC},
		{name: "dns with TLS", opts: Options{ProcessorAddress: "wafplane.wafplane-system.svc:18080", ProcessorTLS: true},
			typ: clusterv3.Cluster_STRICT_DNS, withTLS: true, sni: "wafplane.wafplane-system.svc"},
		{name: "ip with TLS", opts: Options{ProcessorAddress: "[::1]:443", ProcessorTLS: true}, typ: clusterv3.Cluster_STATIC, withTLS: true},
		{name: "no port", opts: Options{ProcessorAddress: "wafplane"}, err: "processor address"},
		{name: "bad port", opts: Options{ProcessorAddress: "wafplane:0"}, err: "port in 1-65535"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := TranslateGateway(demo(t), c.opts)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "default/demo") {
					t.Fatalf("want error naming the gateway and %q, got %v", c.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var pc *clusterv3.Cluster
			for _, cl := range r.Clusters {
				if cl.Name == DefaultProcessorCluster {
					pc = cl
				}
			}
			if pc == nil {
				t.Fatal("no processor cluster")
			}
			if pc.GetType() != c.typ {
				t.Errorf("type %v, want %v", pc.GetType(), c.typ)
			}
			if (pc.TransportSocket != nil) != c.withTLS {
				t.Fatalf("transport socket %v, want TLS %v", pc.TransportSocket, c.withTLS)
			}
			if c.withTLS {
				tls := &tlsv3.UpstreamTlsContext{}
				if err := pc.TransportSocket.GetTypedConfig().UnmarshalTo(tls); err != nil {
					t.Fatal(err)
				}
				if tls.Sni != c.sni {
					t.Errorf("SNI %q, want %q", tls.Sni, c.sni)
				}
			}
			if _, ok := pc.TypedExtensionProtocolOptions["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; !ok {
				t.Error("processor cluster does not force HTTP/2")
			}
		})
	}
}

// A protection change re-pushes only the extension config, not listeners or routes.
func TestProtectionChangeTouchesOnlyECDS(t *testing.T) {
	g := demo(t)
	before := translateOK(t, g, Options{})
	g.Protection.Mode = discovery.ModeMonitor
	limit := int64(4096)
	g.Protection.RequestBodyLimit = &limit
	after := translateOK(t, g, Options{})
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		if before.Version(typ) != after.Version(typ) {
			t.Errorf("%s version changed with protection", typ)
		}
	}
	if before.Version(resourcev3.ExtensionConfigType) == after.Version(resourcev3.ExtensionConfigType) {
		t.Error("extension config version did not change with protection")
	}
}

func TestTranslateIsDeterministic(t *testing.T) {
	raw := []byte(`gateways:
- namespace: a
  name: b
  listeners: [{name: http, port: 80}]
  routes:
  - name: r
    rules:
    - backends: [{host: 10.0.0.1, port: 80}, {host: 10.0.0.2, port: 80}, {host: svc.local, port: 80}]
`)
	s, err := file.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	one := translateOK(t, s.Gateways[0], Options{})
	for range 5 {
		again := translateOK(t, s.Gateways[0], Options{})
		if diff := cmp.Diff(one.Snapshot, again.Snapshot, protocmp.Transform()); diff != "" {
			t.Fatalf("same model, different snapshot:\n%s", diff)
		}
	}
}

func TestBackendNameClash(t *testing.T) {
	g := demo(t)
	g.Routes = append(g.Routes, discovery.Route{Name: "other", Rules: []discovery.Rule{{
		Matches:  []discovery.Match{{Path: &discovery.PathMatch{Value: "/x"}}},
		Backends: []discovery.Backend{{Name: "127.0.0.1:8080", Host: "10.9.9.9", Port: 8080}},
	}}})
	_, err := TranslateGateway(g, Options{})
	if err == nil || !strings.Contains(err.Error(), `backend name "127.0.0.1:8080" is used for different addresses`) {
		t.Fatalf("want a clash error, got %v", err)
	}
	g = demo(t)
	g.Routes[0].Rules[0].Backends[0].Name = DefaultProcessorCluster
	if _, err := TranslateGateway(g, Options{}); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("want a reserved-name error, got %v", err)
	}
}

// Certificates from Kubernetes Secrets go over SDS: the listener names the secret, the
// snapshot holds it, and the dump shows its name only.
func TestInlineCertificateGoesOverSDS(t *testing.T) {
	g := demo(t)
	g.Listeners[0].Protocol = discovery.ProtocolHTTPS
	g.Listeners[0].TLS = &discovery.TLS{SecretName: "default/tls-cert", CertPEM: []byte("CERT PEM"), KeyPEM: []byte("PRIVATE KEY PEM")}
	r := translateOK(t, g, Options{})
	if len(r.Secrets) != 1 || r.Secrets[0].Name != "default/tls-cert" || string(r.Secrets[0].GetTlsCertificate().PrivateKey.GetInlineBytes()) != "PRIVATE KEY PEM" {
		t.Fatalf("secrets %v", r.Secrets)
	}
	tls := &tlsv3.DownstreamTlsContext{}
	if err := r.Listeners[0].FilterChains[0].TransportSocket.GetTypedConfig().UnmarshalTo(tls); err != nil {
		t.Fatal(err)
	}
	sds := tls.CommonTlsContext.TlsCertificateSdsSecretConfigs
	if len(sds) != 1 || sds[0].Name != "default/tls-cert" || sds[0].SdsConfig.GetAds() == nil || len(tls.CommonTlsContext.TlsCertificates) != 0 {
		t.Fatalf("listener TLS %v", tls)
	}
	d, err := r.Dump()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(d)
	if strings.Contains(string(b), "PRIVATE KEY") || strings.Contains(string(b), base64.StdEncoding.EncodeToString([]byte("PRIVATE KEY PEM"))) {
		t.Fatalf("the dump shows the key: %s", b)
	}
	if len(d.Secrets) != 1 || d.Secrets[0] != "default/tls-cert" {
		t.Fatalf("dump secrets %v", d.Secrets)
	}
}

// An unresolved backend's share is answered 500 through a cluster that does not exist.
func TestInvalidBackendShareAnswers500(t *testing.T) {
	g := demo(t)
	w := uint32(1)
	g.Routes[0].Rules[0].Backends = append(g.Routes[0].Rules[0].Backends, discovery.Backend{Invalid: "Service shop/gone not found", Weight: &w})
	r := translateOK(t, g, Options{})
	ra := r.Routes[0].VirtualHosts[0].Routes[0].GetRoute()
	wc := ra.GetWeightedClusters().GetClusters()
	if len(wc) != 2 || wc[1].Name != invalidBackend || ra.ClusterNotFoundResponseCode != routev3.RouteAction_INTERNAL_SERVER_ERROR {
		t.Fatalf("route action %v", ra)
	}
	for _, c := range r.Clusters {
		if c.Name == invalidBackend {
			t.Fatal("the invalid backend must not become a cluster")
		}
	}
	// Only invalid backends: a direct 500.
	g.Routes[0].Rules[0].Backends = g.Routes[0].Rules[0].Backends[1:]
	r = translateOK(t, g, Options{})
	if dr := r.Routes[0].VirtualHosts[0].Routes[0].GetDirectResponse(); dr == nil || dr.Status != 500 {
		t.Fatalf("want a direct 500, got %v", r.Routes[0].VirtualHosts[0].Routes[0])
	}
}

// An endpoint-only change refreshes the endpoints alone; the result equals a full
// translation, versions included, and a changed cluster set asks for a full one.
func TestRefreshEndpoints(t *testing.T) {
	g := demo(t)
	g.Routes[0].Rules[0].Backends = []discovery.Backend{{Name: "shop/app:80", Port: 80,
		Endpoints: []discovery.Endpoint{{Address: "10.0.0.1", Port: 8080}}}}
	prev := translateOK(t, g, Options{})
	g.Routes[0].Rules[0].Backends[0].Endpoints = []discovery.Endpoint{{Address: "10.0.0.2", Port: 8080}, {Address: "10.0.0.3", Port: 8080}}
	refreshed, ok := RefreshEndpoints(prev, g)
	if !ok {
		t.Fatal("refresh refused a pure endpoint change")
	}
	full := translateOK(t, g, Options{})
	if diff := cmp.Diff(full.Snapshot, refreshed.Snapshot, protocmp.Transform(), cmpopts.IgnoreUnexported(cachev3.Snapshot{})); diff != "" {
		t.Fatalf("refresh differs from a full translation:\n%s", diff)
	}
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType} {
		if refreshed.Version(typ) != prev.Version(typ) {
			t.Errorf("%s version changed", typ)
		}
	}
	if refreshed.Version(resourcev3.EndpointType) == prev.Version(resourcev3.EndpointType) {
		t.Error("endpoint version did not change")
	}
	if prev.Endpoints[0].Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().Address != "10.0.0.1" {
		t.Error("refresh changed the previous resources")
	}
	g.Routes[0].Rules[0].Backends[0].Name = "shop/other:80"
	if _, ok := RefreshEndpoints(prev, g); ok {
		t.Error("a changed cluster set must ask for a full translation")
	}
}

// A body limit above what the processor takes from metadata is served with a warning
// that names the field: the processor inspects only up to its maximum.
func TestBodyLimitAboveTheProcessorsMaximumIsWarned(t *testing.T) {
	g := demo(t)
	big, small := int64(8<<20), int64(4<<10)
	g.Protection.RequestBodyLimit = &big
	g.Routes[0].Protection = &discovery.Protection{RequestBodyLimit: &small}
	st := discovery.State{Gateways: []discovery.Gateway{g}}
	res := Translate(st, Options{ProcessorMaxBodyLimit: 1 << 20})[0]
	if res.Err != nil || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "protection.requestBodyLimit 8388608 is above the processor's maximum body limit 1048576") {
		t.Fatalf("err %v, warnings %q", res.Err, res.Warnings)
	}
	g.Routes[0].Protection = &discovery.Protection{RequestBodyLimit: &big}
	g.Protection.RequestBodyLimit = nil
	res = Translate(discovery.State{Gateways: []discovery.Gateway{g}}, Options{ProcessorMaxBodyLimit: 1 << 20})[0]
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "routes[0]") {
		t.Fatalf("route warning: %q", res.Warnings)
	}
	if res := Translate(st, Options{})[0]; len(res.Warnings) != 0 {
		t.Fatalf("no maximum given, warnings %q", res.Warnings)
	}
}
