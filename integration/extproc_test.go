package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/wafplane/wafplane/xds/xdstest"
)

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// declaredMetadata is what Envoy would send the processor for a request on the first
// route: the filter's initial metadata merged, key by key, with the route's.
func declaredMetadata(t *testing.T, ext *corev3.TypedExtensionConfig, rc *routev3.RouteConfiguration) metadata.MD {
	t.Helper()
	cfg := &extprocfilterv3.ExternalProcessor{}
	if err := ext.TypedConfig.UnmarshalTo(cfg); err != nil {
		t.Fatal(err)
	}
	md := metadata.MD{}
	for _, h := range cfg.GrpcService.InitialMetadata {
		md.Set(h.Key, h.Value)
	}
	per := &extprocfilterv3.ExtProcPerRoute{}
	if err := rc.VirtualHosts[0].Routes[0].TypedPerFilterConfig["envoy.filters.http.ext_proc"].UnmarshalTo(per); err != nil {
		t.Fatal(err)
	}
	for _, h := range per.GetOverrides().GetGrpcInitialMetadata() {
		md.Set(h.Key, h.Value)
	}
	return md
}

// sendAttack sends a request with an XSS in the query to the processor, as Envoy does,
// and returns the status of the immediate response (0 when the request continues).
func sendAttack(t *testing.T, conn *grpc.ClientConn, md metadata.MD) int {
	t.Helper()
	return sendGET(t, conn, md, "/search?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E")
}

// sendGET sends the request headers of a GET, as Envoy does, and returns the status of the
// immediate response (0 when the request continues).
func sendGET(t *testing.T, conn *grpc.ClientConn, md metadata.MD, path string) int {
	t.Helper()
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(metadata.NewOutgoingContext(ctx(t), md))
	if err != nil {
		t.Fatal(err)
	}
	h := func(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }
	err = stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			h(":method", "GET"), h(":scheme", "http"), h(":authority", "shop.example"),
			h(":path", path), h("user-agent", "curl/8.5"),
		}},
		EndOfStream: true,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	resp := recv(t, 5*time.Second, stream.Recv)
	_ = stream.CloseSend()
	if ir := resp.GetImmediateResponse(); ir != nil {
		return int(ir.Status.Code)
	}
	if resp.GetRequestHeaders() == nil {
		t.Fatalf("unexpected answer %v", resp)
	}
	return 0
}

// An attack sent to the processor port with the metadata the snapshot declares is blocked
// in block mode, and passes once the file says monitor.
func TestAttackBlockedWithTheDeclaredMode(t *testing.T) {
	in := start(t, shopGateways)
	d, err := xdstest.NewDelta(ctx(t), in.conn, &corev3.Node{Id: "edge-waf", Cluster: "shop/edge"})
	if err != nil {
		t.Fatal(err)
	}
	get := func(typ string, names ...string) *discoveryv3.DeltaDiscoveryResponse {
		if err := d.Subscribe(typ, names...); err != nil {
			t.Fatal(err)
		}
		r := recv(t, 5*time.Second, d.Recv)
		if err := d.Ack(r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	rc := &routev3.RouteConfiguration{}
	if err := get(resourcev3.RouteType, "shop/edge/http").Resources[0].Resource.UnmarshalTo(rc); err != nil {
		t.Fatal(err)
	}
	ext := &corev3.TypedExtensionConfig{}
	if err := get(resourcev3.ExtensionConfigType, "envoy.filters.http.ext_proc").Resources[0].Resource.UnmarshalTo(ext); err != nil {
		t.Fatal(err)
	}
	md := declaredMetadata(t, ext, rc)
	if md.Get("x-wafplane-gateway")[0] != "shop/edge" || md.Get("x-wafplane-route")[0] != "app" || md.Get("x-wafplane-mode")[0] != "block" {
		t.Fatalf("declared metadata %v", md)
	}
	proc, err := grpc.NewClient(in.processor, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	if got := sendAttack(t, proc, md); got != 403 {
		t.Fatalf("block mode: status %d, want 403", got)
	}

	in.write(t, strings.Replace(shopGateways, "mode: block", "mode: monitor", 1))
	r := recv(t, 2*time.Second, d.Recv)
	if r.TypeUrl != resourcev3.ExtensionConfigType {
		t.Fatalf("a protection change pushed %s, want only the extension config", r.TypeUrl)
	}
	if err := d.Ack(r); err != nil {
		t.Fatal(err)
	}
	if err := r.Resources[0].Resource.UnmarshalTo(ext); err != nil {
		t.Fatal(err)
	}
	md = declaredMetadata(t, ext, rc)
	if md.Get("x-wafplane-mode")[0] != "monitor" {
		t.Fatalf("declared metadata after the edit %v", md)
	}
	if got := sendAttack(t, proc, md); got != 0 {
		t.Fatalf("monitor mode: status %d, want the request to continue", got)
	}
	// The event of a request that goes on is recorded when its stream ends.
	eventually(t, "both attacks on /events", 5*time.Second, func() bool {
		var events struct{ Events []map[string]any }
		in.get(t, "/events", &events)
		return len(events.Events) >= 2
	})
}
