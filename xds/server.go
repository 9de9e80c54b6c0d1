package xds

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Server is the ADS server and the record of what every gateway and node got.
type Server struct {
	log   *slog.Logger
	cache cachev3.SnapshotCache
	nodes *nodes
	m     *metrics

	mu        sync.RWMutex
	gateways  map[string]*gatewayState
	sourceErr *SourceError
	ready     atomic.Bool

	addr  atomic.Pointer[net.Addr]
	auth  *Auth
	guard *guard
}

// SetAuth makes the server authenticate Envoys by their client certificates (auth.go);
// call it before Start.
func (s *Server) SetAuth(a *Auth) {
	s.auth = a
	s.guard.auth = a != nil
}

// Bounds of the xDS server that no client can move: streams per connection (Envoy opens
// one ADS stream per connection) and how long a new stream may stay silent.
const (
	maxStreamsPerConnection = 16
	firstRequestTimeout     = 15 * time.Second
)

// nodeGateway keys the cache by the node's cluster: the gateway's "namespace/name".
type nodeGateway struct{}

func (nodeGateway) ID(node *corev3.Node) string { return node.GetCluster() }

// New makes the server; it serves nothing until Start, and answers no Envoy before that
// Envoy's gateway has a snapshot.
func New(log *slog.Logger, reg prometheus.Registerer) *Server {
	s := &Server{log: log, m: newMetrics(reg), gateways: map[string]*gatewayState{}}
	s.cache = cachev3.NewSnapshotCache(true, nodeGateway{}, cacheLogger(log, s.m.adsDeferred))
	s.nodes = newNodes(s.m, s.known, func(node, gateway string) {
		s.log.Warn("Envoy node names no gateway; it gets nothing until one named so exists (set node.cluster to namespace/name)",
			"node", node, "cluster", gateway)
	})
	// Clients decide how often they are refused: the log gets the first ten, then one a
	// second; the counter gets them all.
	refusals := &rate.Sometimes{First: 10, Interval: time.Second}
	s.guard = &guard{nodes: s.nodes, firstRequest: firstRequestTimeout, onRefuse: func(node, cluster, reason, msg string) {
		refusals.Do(func() {
			s.log.Warn("xDS stream refused", "node", node, "cluster", cluster, "reason", reason, "detail", msg)
		})
	}}
	return s
}

func (s *Server) known(gateway string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g, ok := s.gateways[gateway]
	return ok && g.good != nil
}

// Ready is true once the first translation has been published.
func (s *Server) Ready() bool { return s.ready.Load() }

// Addr is the address the server listens on, once started.
func (s *Server) Addr() net.Addr {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// Start serves ADS (SotW in order, and delta) on address until ctx ends. xDS streams never
// end by themselves, so the stop is immediate.
func (s *Server) Start(ctx context.Context, address string) error {
	lis, err := net.Listen("tcp", address)
	if err != nil {
		return err
	}
	return s.Serve(ctx, lis)
}

// Serve is Start on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	a := lis.Addr()
	s.addr.Store(&a)
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(maxStreamsPerConnection),
		grpc.StreamInterceptor(s.guard.stream),
		grpc.UnaryInterceptor(s.guard.unary),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	}
	if s.auth != nil {
		opts = append(opts, grpc.Creds(s.auth.credentials()))
	}
	gs := grpc.NewServer(opts...)
	xs := serverv3.NewServer(ctx, s.cache, callbacks{s.nodes}, sotwv3.WithOrderedADS(), sotwv3.WithLogger(cacheLogger(s.log, s.m.adsDeferred)))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, xs)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xs)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xs)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, xs)
	extensionservice.RegisterExtensionConfigDiscoveryServiceServer(gs, xs)

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	go s.pruneLoop(ctx.Done())
	s.log.Info("xDS serving", "address", a.String(), "mtls", s.auth != nil)
	select {
	case <-ctx.Done():
		gs.Stop()
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return err
	}
}

// Nodes lists the Envoys seen.
func (s *Server) Nodes() []NodeStatus { return s.nodes.list() }
