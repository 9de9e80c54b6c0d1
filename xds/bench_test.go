package xds

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wafplane/wafplane/discovery/file"
	"github.com/wafplane/wafplane/snapshot"
	"github.com/wafplane/wafplane/xds/xdstest"
)

const benchClients = 1000

// BenchmarkPushTo1000Clients measures one change pushed to 1,000 Envoys of one gateway,
// each on its own connection with a delta ADS stream: the time from Publish until the
// server has recorded every node's ACK of the new listener version. Target: ≤ 2 s.
func BenchmarkPushTo1000Clients(b *testing.B) {
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Serve(ctx, lis) }()

	port := uint32(10000)
	publish := func() string {
		st := file.Default()
		st.Gateways[0].Listeners[0].Port = port
		port++
		results := snapshot.Translate(st, snapshot.Options{})
		s.Publish(results, nil)
		return results[0].Resources.Version(resourcev3.ListenerType)
	}
	want := publish()

	for i := range benchClients {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		d, err := xdstest.NewDelta(ctx, conn, &corev3.Node{Id: fmt.Sprintf("envoy-%d", i), Cluster: "default/demo"})
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Subscribe(resourcev3.ListenerType); err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				r, err := d.Recv()
				if err != nil {
					return
				}
				if d.Ack(r) != nil {
					return
				}
			}
		}()
	}
	waitAllAcked(b, s, want)

	b.ResetTimer()
	for b.Loop() {
		want = publish()
		waitAllAcked(b, s, want)
	}
}

func waitAllAcked(b *testing.B, s *Server, version string) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		acked := 0
		for _, n := range s.Nodes() {
			if ts := n.Types["Listener"]; ts != nil && ts.Acked == version {
				acked++
			}
		}
		if acked == benchClients {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d nodes ACKed within 60s", acked, benchClients)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkNodeChurn: 5,000 Envoys connect (each on its own connection, a delta stream, a
// first response) and leave, 50 at a time. It reports the node records left (at most
// maxDisconnected are kept) and the live heap after the churn against before it, after a
// garbage collection.
func BenchmarkNodeChurn(b *testing.B) {
	for b.Loop() {
		s := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _ = s.Serve(ctx, lis) }()
		s.Publish(snapshot.Translate(file.Default(), snapshot.Options{}), nil)
		heap := func() float64 {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			return float64(m.HeapInuse) / (1 << 20)
		}
		before := heap()
		const total, parallel = 5000, 50
		work := make(chan int, total)
		for i := range total {
			work <- i
		}
		close(work)
		var wg sync.WaitGroup
		for range parallel {
			wg.Go(func() {
				for i := range work {
					conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
					if err != nil {
						b.Error(err)
						return
					}
					d, err := xdstest.NewDelta(ctx, conn, &corev3.Node{Id: fmt.Sprintf("churn-%d", i), Cluster: "default/demo"})
					if err == nil {
						err = d.Subscribe(resourcev3.ListenerType)
					}
					if err == nil {
						_, err = d.Recv()
					}
					conn.Close()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		// The server sees the streams end shortly after the connections close.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			connected := 0
			for _, n := range s.Nodes() {
				if n.Connected {
					connected++
				}
			}
			if connected == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.ReportMetric(float64(len(s.Nodes())), "node-records")
		b.ReportMetric(heap()-before, "MB-heap-growth")
		cancel()
	}
}
