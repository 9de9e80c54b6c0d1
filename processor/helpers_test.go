package processor

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// testConfig listens on loopback port 0 and keeps API discovery off unless a test turns it on.
func testConfig() Config {
	cfg := NewConfig()
	cfg.Address = "127.0.0.1:0"
	cfg.HealthAddress = ""
	cfg.APIInterval = 0
	cfg.WAFTimeout = time.Second // the race detector slows libddwaf; budgets are tested on their own
	return cfg
}

type running struct {
	p     *Processor
	envoy *fakeEnvoy
	reg   *prometheus.Registry
}

// startProcessor runs a real processor and a gRPC client to it. At cleanup it stops the
// processor and checks that every WAF context was closed: the leak check of every test.
func startProcessor(t testing.TB, cfg Config) *running {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return startProcessorWithLog(t, cfg, log)
}

// startProcessorWithLog is startProcessor logging to log, for tests that read the log.
func startProcessorWithLog(t testing.TB, cfg Config, log *slog.Logger) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := New(cfg, log, reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !p.Ready() || p.Addr() == nil {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("Start: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("processor not ready after 30s")
		}
	}
	conn := dial(t, p.Addr(), cfg.TLS)
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start returned %v", err)
		}
		if n := p.OpenContexts(); n != 0 {
			t.Errorf("%d WAF contexts left open", n)
		}
	})
	return &running{p: p, envoy: &fakeEnvoy{client: extprocv3.NewExternalProcessorClient(conn)}, reg: reg}
}

func dial(t testing.TB, addr net.Addr, useTLS bool) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if useTLS {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) // the test's own ephemeral certificate
	}
	target := addr.String()
	if addr.Network() == "unix" {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatalf("dial %s: %v", target, err)
	}
	return conn
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// syncBuffer is a bytes.Buffer that the processor's goroutines and the test may share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
