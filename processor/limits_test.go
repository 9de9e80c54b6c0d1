package processor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// openHeld opens a stream and sends request headers with a body to come: the processor
// answers, makes a WAF context and waits, as for a request whose body never arrives.
func openHeld(t *testing.T, client extprocv3.ExternalProcessorClient) (extprocv3.ExternalProcessor_ProcessClient, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := client.Process(ctx)
	if err != nil {
		return nil, err
	}
	x := httpExchange{method: "POST", path: "/upload", body: []byte("x")}
	if err := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: x.requestHeaderMap()}}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// A stream the server refused fails its send with io.EOF; its status comes with Recv.
	if _, err := st.Recv(); err != nil {
		return nil, err
	}
	return st, nil
}

func TestIdleStreamClosedAndItsContextFreed(t *testing.T) {
	cfg := testConfig()
	cfg.StreamIdleTimeout = 300 * time.Millisecond
	r := startProcessor(t, cfg)
	client := r.envoy.client
	st, err := openHeld(t, client)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.p.OpenContexts(); n != 1 {
		t.Fatalf("%d WAF contexts open, want the held one", n)
	}
	_, err = st.Recv()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("held stream: %v, want DeadlineExceeded after the idle timeout", err)
	}
	eventually(t, "the WAF context freed", func() bool { return r.p.OpenContexts() == 0 })
	if got := testutil.ToFloat64(r.p.metrics.idleClosed); got != 1 {
		t.Errorf("streams_idle_closed_total = %v", got)
	}
	// A stream that keeps talking is not closed.
	x := httpExchange{path: "/"}
	if out := r.envoy.do(t, x); out.blocked() {
		t.Fatal("a plain request was blocked")
	}
}

func TestMaxStreams(t *testing.T) {
	cfg := testConfig()
	cfg.MaxStreams = 2
	cfg.MaxStreamsPerPeer = 2 // the total alone; the peer share is TestOnePeerCannotTakeEveryPlace's
	r := startProcessor(t, cfg)
	var held []extprocv3.ExternalProcessor_ProcessClient
	for range 2 {
		st, err := openHeld(t, r.envoy.client)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, st)
	}
	_, err := openHeld(t, r.envoy.client)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "more than 2") {
		t.Fatalf("third stream: %v, want ResourceExhausted", err)
	}
	if got := testutil.ToFloat64(r.p.metrics.refused.WithLabelValues("total")); got != 1 {
		t.Errorf("streams_refused_total{bound=total} = %v", got)
	}
	if err := held[0].CloseSend(); err != nil {
		t.Fatal(err)
	}
	_, _ = held[0].Recv()
	eventually(t, "a place freed", func() bool {
		st, err := openHeld(t, r.envoy.client)
		if err == nil {
			_ = st.CloseSend()
		}
		return err == nil
	})
}

// Per connection: the bound is announced in HTTP/2 SETTINGS, so a client that honours it
// (Envoy, gRPC) waits or opens another connection, which is served.
func TestMaxStreamsPerConnection(t *testing.T) {
	cfg := testConfig()
	cfg.MaxStreamsPerConnection = 2
	r := startProcessor(t, cfg)
	for range 2 {
		if _, err := openHeld(t, r.envoy.client); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// Held back either while opening or at its first message, until the deadline.
	st, err := r.envoy.client.Process(ctx)
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("third stream on the connection: %v, want it held back", err)
	}
	other := dial(t, r.p.Addr(), false)
	defer other.Close()
	if _, err := openHeld(t, extprocv3.NewExternalProcessorClient(other)); err != nil {
		t.Fatalf("a stream on another connection: %v", err)
	}
}

// A message far beyond the body limit is refused by gRPC before it is read into memory.
func TestMessageSizeFollowsTheBodyLimit(t *testing.T) {
	cfg := testConfig()
	cfg.BodyLimit = 4096
	r := startProcessor(t, cfg)
	st, err := openHeld(t, r.envoy.client)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, maxRecvSize(cfg.BodyLimit)+1)
	if err := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: big, EndOfStream: true}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized body message: %v, want ResourceExhausted", err)
	}
	// Within the bound, a body beyond the limit is answered (and cut to the limit).
	x := httpExchange{method: "POST", path: "/api", headers: [][2]string{{"content-type", "text/plain"}}, body: make([]byte, 512<<10)}
	if out := r.envoy.do(t, x); out.blocked() {
		t.Fatal("a large benign body was blocked")
	}
}

// The gateway label comes from what a client says: its values are bounded.
func TestGatewayLabelsBounded(t *testing.T) {
	m := newMetrics(nil, func() float64 { return 0 })
	for i := range maxGatewayLabels + 10 {
		m.gatewayLabel(fmt.Sprintf("ns/gw-%d", i))
	}
	if got := m.gatewayLabel("ns/new"); got != "other" {
		t.Errorf("label beyond the bound = %q, want other", got)
	}
	if got := m.gatewayLabel("ns/gw-1"); got != "ns/gw-1" {
		t.Errorf("a known gateway = %q", got)
	}
}

// Stream metadata comes from whoever reaches the port: it may lower the body limit, and
// raise it only up to the server's maximum (issue 29: a stream asking for 1 GiB got it).
func TestMetadataCannotRaiseTheBodyLimitPastTheServers(t *testing.T) {
	attackAt := func(offset int) []byte {
		return append(append(bytes.Repeat([]byte("b"), offset), xss...), bytes.Repeat([]byte("c"), 64<<10)...)
	}
	exchange := func(body []byte, limit string) httpExchange {
		return httpExchange{method: "POST", path: "/upload", headers: [][2]string{{"content-type", "text/plain"}},
			body: body, requestBodyMode: extprocfilterv3.ProcessingMode_STREAMED, chunkSize: 1 << 10,
			metadata: map[string]string{MetadataBodyLimit: limit}}
	}
	t.Run("only tighten", func(t *testing.T) {
		cfg := testConfig()
		cfg.BodyLimit = 8 << 10
		r := startProcessor(t, cfg)
		out := r.envoy.do(t, exchange(attackAt(16<<10), "1073741824"))
		if out.blocked() {
			t.Fatal("asked 1 GiB over a server limit of 8 KiB: an attack at 16 KiB was inspected")
		}
		if got := testutil.ToFloat64(r.p.metrics.metadataIgnored.WithLabelValues(MetadataBodyLimit)); got != 1 {
			t.Errorf("stream_metadata_ignored_total{key=%s} = %v", MetadataBodyLimit, got)
		}
		// Lowering is taken: an attack past 2 KiB is not seen under a 2 KiB limit.
		if out := r.envoy.do(t, exchange(attackAt(4<<10), "2048")); out.blocked() {
			t.Fatal("asked 2 KiB: an attack at 4 KiB was inspected")
		}
		if out := r.envoy.do(t, exchange(attackAt(4<<10), "1073741824")); !out.blocked() {
			t.Fatal("an attack within the server's limit was not seen")
		}
	})
	t.Run("up to the maximum", func(t *testing.T) {
		cfg := testConfig()
		cfg.BodyLimit, cfg.MaxBodyLimit = 8<<10, 32<<10
		r := startProcessor(t, cfg)
		if out := r.envoy.do(t, exchange(attackAt(16<<10), "1073741824")); !out.blocked() {
			t.Fatal("an attack at 16 KiB under a maximum of 32 KiB was not seen")
		}
		if out := r.envoy.do(t, exchange(attackAt(48<<10), "1073741824")); out.blocked() {
			t.Fatal("asked 1 GiB under a maximum of 32 KiB: an attack at 48 KiB was inspected")
		}
	})
}

// One client over many connections could take every place and leave the other Envoys
// refused (issue 29: 4,096 streams over 10 connections). It gets its share; another peer
// (127.0.0.2, another loopback address) is still served.
func TestOnePeerCannotTakeEveryPlace(t *testing.T) {
	cfg := testConfig()
	cfg.MaxStreams, cfg.MaxStreamsPerConnection = 40, 4
	r := startProcessor(t, cfg)
	held := 0
	var err error
	for range 10 {
		client := extprocv3.NewExternalProcessorClient(dialFrom(t, r.p.Addr(), "127.0.0.1"))
		for range 4 {
			if _, err = openHeld(t, client); err != nil {
				break
			}
			held++
		}
	}
	if held != 30 || status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "from one peer") {
		t.Fatalf("one peer holds %d of 40 streams (last error %v), want its share of 30", held, err)
	}
	if got := testutil.ToFloat64(r.p.metrics.refused.WithLabelValues("peer")); got < 1 {
		t.Errorf("streams_refused_total{bound=peer} = %v", got)
	}
	var other extprocv3.ExternalProcessorClient
	for i := range 10 {
		if i%4 == 0 { // a connection holds 4
			other = extprocv3.NewExternalProcessorClient(dialFrom(t, r.p.Addr(), "127.0.0.2"))
		}
		if _, err := openHeld(t, other); err != nil {
			t.Fatalf("another peer's stream %d: %v", i, err)
		}
	}
	if _, err := openHeld(t, other); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("beyond the total: %v", err)
	}
	if got := testutil.ToFloat64(r.p.metrics.refused.WithLabelValues("total")); got != 1 {
		t.Errorf("streams_refused_total{bound=total} = %v", got)
	}
}

// dialFrom connects to addr from a chosen local loopback address, as another host would.
func dialFrom(t *testing.T, addr net.Addr, local string) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestPeerKeys(t *testing.T) {
	p := &Processor{}
	key := func(a net.Addr) string {
		return p.peerKey(peer.NewContext(context.Background(), &peer.Peer{Addr: a}))
	}
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{tcp("10.0.0.7:41000"), "10.0.0.7"},
		{tcp("[::ffff:10.0.0.7]:41000"), "10.0.0.7"},
		{tcp("[2001:db8:1:2:aaaa::1]:41000"), "2001:db8:1:2::/64"},
		{tcp("[2001:db8:1:2:bbbb::9]:41001"), "2001:db8:1:2::/64"},
		{&net.UnixAddr{Name: "/var/run/wafplane/ext_proc.sock", Net: "unix"}, ""},
	} {
		if got := key(tc.addr); got != tc.want {
			t.Errorf("%v: key %q, want %q", tc.addr, got, tc.want)
		}
	}
}
