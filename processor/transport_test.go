package processor

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

func TestTLSSelfSigned(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = true
	r := startProcessor(t, cfg)
	if out := r.envoy.do(t, attacks(t)["query"]); !out.blocked() {
		t.Fatal("attack over TLS not blocked")
	}
}

// writeCert writes a self-signed certificate for cn and returns the file paths.
func writeCert(t *testing.T, dir, cn string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, dir, "tls.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, dir, "tls.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	return certFile, keyFile
}

func peerCN(t *testing.T, addr net.Addr) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr.String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func TestTLSFilesReloaded(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.TLS = true
	cfg.CertFile, cfg.KeyFile = writeCert(t, dir, "first.test")
	r := startProcessor(t, cfg)
	if cn := peerCN(t, r.p.Addr()); cn != "first.test" {
		t.Fatalf("served %q", cn)
	}
	writeCert(t, dir, "second.test")
	future := time.Now().Add(2 * time.Second) // make the change visible even on coarse mtimes
	os.Chtimes(cfg.CertFile, future, future)
	eventually(t, "the rotated certificate", func() bool { return peerCN(t, r.p.Addr()) == "second.test" })
	if out := r.envoy.do(t, attacks(t)["header"]); !out.blocked() {
		t.Fatal("attack over rotated TLS not blocked")
	}
}

func TestUnixSocket(t *testing.T) {
	cfg := testConfig()
	cfg.UnixSocket = filepath.Join(t.TempDir(), "extproc.sock")
	writeFile(t, filepath.Dir(cfg.UnixSocket), "extproc.sock", "stale") // a stale file from a previous run
	r := startProcessor(t, cfg)
	if r.p.Addr().Network() != "unix" {
		t.Fatalf("listening on %s", r.p.Addr().Network())
	}
	if out := r.envoy.do(t, attacks(t)["json body"]); !out.blocked() {
		t.Fatal("attack over the Unix socket not blocked")
	}
}

func TestHealthServerAndGracefulShutdown(t *testing.T) {
	// Both ports chosen while both are held, so that the gRPC listener cannot take the
	// health port, as it could if it listened on :0 after the health port was closed.
	var addrs []string
	var held []net.Listener
	for range 2 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, lis)
		addrs = append(addrs, lis.Addr().String())
	}
	for _, lis := range held {
		lis.Close()
	}
	healthAddr := addrs[1]
	cfg := testConfig()
	cfg.Address, cfg.HealthAddress = addrs[0], healthAddr
	cfg.ShutdownTimeout = 2 * time.Second
	p, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	eventually(t, "health 200", func() bool {
		resp, err := http.Get("http://" + healthAddr + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// A request in flight when shutdown starts is answered before the server goes.
	plain := dial(t, p.Addr(), false)
	defer plain.Close()
	stream := openPOST(t, extprocv3.NewExternalProcessorClient(plain), context.Background())
	cancel()
	time.Sleep(50 * time.Millisecond)
	if err := stream.Send(reqBody([]byte("hello"), true)); err != nil {
		t.Fatalf("in-flight stream cut at shutdown: %v", err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetRequestBody() == nil {
		t.Fatalf("in-flight request not answered during graceful shutdown: %v %v", resp, err)
	}
	stream.CloseSend()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return after shutdown")
	}
	if p.OpenContexts() != 0 {
		t.Fatal("WAF context left open after shutdown")
	}
}
