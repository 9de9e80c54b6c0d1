package processor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/fsnotify/fsnotify"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// Start serves the health endpoint at once (503), loads the ruleset, then serves ext_proc
// until ctx ends, and stops gracefully within the shutdown timeout.
func (p *Processor) Start(ctx context.Context) error {
	tlsCfg, err := p.cfg.serverTLSConfig()
	if err != nil {
		return err
	}
	lis, err := p.listen()
	if err != nil {
		return err
	}
	defer lis.Close()

	g, ctx := errgroup.WithContext(ctx)
	if p.cfg.HealthAddress != "" {
		hl, err := net.Listen("tcp", p.cfg.HealthAddress)
		if err != nil {
			return fmt.Errorf("health listener %s: %w", p.cfg.HealthAddress, err)
		}
		var h http.Handler = p.HealthHandler()
		if p.cfg.ReadyHandler != nil {
			mux := http.NewServeMux()
			mux.Handle("/", h)
			mux.Handle("/readyz", p.cfg.ReadyHandler)
			h = mux
		}
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error { return serveHTTP(ctx, hs, hl, p.cfg.ShutdownTimeout) })
	}
	// Watch the policy before loading it, so that an edit made while the WAF loads is
	// not missed.
	var watch *fsnotify.Watcher
	if p.cfg.PolicyFile != "" {
		if watch, err = watchDir(p.cfg.PolicyFile); err != nil {
			return fmt.Errorf("policy watch %s: %w", p.cfg.PolicyFile, err)
		}
		defer watch.Close()
	}
	if err := p.load(); err != nil {
		return err
	}
	defer p.engine.Load().close()

	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecvSize(p.cfg.maxBodyLimit())),
		grpc.StatsHandler(streamLimiter{}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if n := p.cfg.MaxStreamsPerConnection; n > 0 {
		// Announced in HTTP/2 SETTINGS: Envoy opens another connection rather than exceed it.
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(n)))
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	gs := grpc.NewServer(opts...)
	extprocv3.RegisterExternalProcessorServer(gs, p)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	g.Go(func() error {
		p.log.Info("ext_proc listening", "address", lis.Addr().String(), "tls", tlsCfg != nil, "mode", p.cfg.Mode,
			"body_limit", p.cfg.BodyLimit, "waf_timeout", p.cfg.WAFTimeout)
		if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("ext_proc server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		hs.Shutdown()
		stopGracefully(gs, p.cfg.ShutdownTimeout)
		return nil
	})
	if watch != nil {
		g.Go(func() error { return p.watchPolicy(ctx, watch) })
	}
	return g.Wait()
}

// listen opens the Unix socket or the TCP port and records the address (tests use port 0).
func (p *Processor) listen() (net.Listener, error) {
	if path := p.cfg.UnixSocket; path != "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("unix socket %s: %w", path, err)
		}
		lis, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("unix socket %s: %w", path, err)
		}
		if m := p.cfg.UnixSocketMode; m != 0 {
			if err := os.Chmod(path, m); err != nil {
				lis.Close()
				return nil, fmt.Errorf("unix socket %s: %w", path, err)
			}
		}
		p.setAddr(lis.Addr())
		return lis, nil
	}
	lis, err := net.Listen("tcp", p.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("ext_proc listener %s: %w", p.cfg.Address, err)
	}
	p.setAddr(lis.Addr())
	return lis, nil
}

func stopGracefully(gs *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		gs.Stop()
	}
}

// serveHTTP serves until ctx ends, then shuts down within timeout.
func serveHTTP(ctx context.Context, srv *http.Server, lis net.Listener, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
