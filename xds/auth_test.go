package xds

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wafplane/wafplane/discovery"
	"github.com/wafplane/wafplane/discovery/file"
	"github.com/wafplane/wafplane/snapshot"
	"github.com/wafplane/wafplane/xds/pki"
	"github.com/wafplane/wafplane/xds/xdstest"
)

// startAuthServer serves two gateways over mTLS: shop/edge with a listener certificate
// whose private key goes over SDS, and blog/site.
func startAuthServer(t *testing.T) (*Server, *pki.CA, string) {
	t.Helper()
	ca, err := pki.New(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	s.SetAuth(&Auth{CA: func() *pki.CA { return ca }, Hosts: []string{"127.0.0.1"}})
	var st discovery.State
	for _, key := range []string{"shop/edge", "blog/site"} {
		g := file.Default().Gateways[0]
		g.Namespace, g.Name, _ = strings.Cut(key, "/")
		g.Listeners[0].Protocol = discovery.ProtocolHTTPS
		g.Listeners[0].TLS = &discovery.TLS{SecretName: key + "-cert", CertPEM: []byte("CERT PEM"), KeyPEM: []byte("PRIVATE KEY OF " + key)}
		st.Gateways = append(st.Gateways, g)
	}
	s.Publish(snapshot.Translate(st, snapshot.Options{}), nil)
	return s, ca, serve(t, s)
}

// dial connects as an Envoy would: trusting wafplane's CA, with the client certificate
// of gateway (none when empty).
func dial(t *testing.T, addr string, ca *pki.CA, gateway string) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	if gateway != "" {
		certPEM, keyPEM, err := ca.IssueGateway(gateway, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// fetchSecrets subscribes to every secret as gateway's node and returns what came, or the
// stream's error.
func fetchSecrets(t *testing.T, conn *grpc.ClientConn, nodeID, cluster string) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return xdstest.FirstNames(ctx, conn, node(nodeID, cluster), resourcev3.SecretType)
}

func TestXDSServesOnlyTheGatewayTheCertificateNames(t *testing.T) {
	s, ca, addr := startAuthServer(t)
	refused := func(t *testing.T, names []string, err error, reason string) {
		t.Helper()
		if err == nil {
			t.Fatalf("got %v, want a refusal", names)
		}
		if status.Code(err) != codes.PermissionDenied && reason != "" {
			t.Fatalf("error %v, want PermissionDenied", err)
		}
	}

	t.Run("no client certificate", func(t *testing.T) {
		names, err := fetchSecrets(t, dial(t, addr, ca, ""), "edge-0", "shop/edge")
		refused(t, names, err, RejectNoCertificate)
		if got := testutil.ToFloat64(s.m.rejected.WithLabelValues(RejectNoCertificate)); got != 1 {
			t.Errorf("rejected{no_certificate} = %v", got)
		}
		if n, ok := nodeStatus(s, "edge-0"); !ok || !strings.Contains(n.Refused, RejectNoCertificate) || n.Connected {
			t.Errorf("/nodes: %+v", n)
		}
	})
	t.Run("another gateway's certificate", func(t *testing.T) {
		names, err := fetchSecrets(t, dial(t, addr, ca, "blog/site"), "edge-1", "shop/edge")
		refused(t, names, err, RejectNodeMismatch)
	})
	t.Run("node cluster disagrees with the certificate", func(t *testing.T) {
		names, err := fetchSecrets(t, dial(t, addr, ca, "shop/edge"), "edge-2", "blog/site")
		refused(t, names, err, RejectNodeMismatch)
		if got := testutil.ToFloat64(s.m.rejected.WithLabelValues(RejectNodeMismatch)); got != 2 {
			t.Errorf("rejected{node_mismatch} = %v", got)
		}
	})
	t.Run("plaintext", func(t *testing.T) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		names, err := fetchSecrets(t, conn, "edge-3", "shop/edge")
		refused(t, names, err, "")
	})
	t.Run("a certificate of another CA", func(t *testing.T) {
		other, _ := pki.New(time.Now())
		certPEM, keyPEM, _ := other.IssueGateway("shop/edge", time.Now())
		pair, _ := tls.X509KeyPair(certPEM, keyPEM)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{pair}})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		names, err := fetchSecrets(t, conn, "edge-4", "shop/edge")
		refused(t, names, err, "")
	})
	t.Run("the gateway's own certificate", func(t *testing.T) {
		names, err := fetchSecrets(t, dial(t, addr, ca, "shop/edge"), "edge-5", "shop/edge")
		if err != nil || len(names) != 1 || names[0] != "shop/edge-cert" {
			t.Fatalf("secrets %v, %v: want shop/edge's only", names, err)
		}
		// Served, not refused; the stream may have ended by now (fetchSecrets cancels it).
		if n, ok := nodeStatus(s, "edge-5"); !ok || n.Refused != "" || n.ConnectedSince.IsZero() {
			t.Errorf("/nodes: %+v", n)
		}
	})
}
