package processor

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// Defaults of the bounds on what ext_proc clients may hold: streams in total and per
// connection (each holds a WAF context, about 90 KB), and how long a stream may stay
// without a message. The idle bound is long because a stream is legitimately silent while
// the upstream prepares its response; the stream caps are what bound memory at any time.
const (
	DefaultMaxStreams              = 4096
	DefaultMaxStreamsPerConnection = 1024
)

// maxRecvSize is the largest ext_proc message accepted: the body limit (at least the
// 1 MiB Envoy buffers by default) and room for headers. Body bytes beyond the limit are
// not kept.
func maxRecvSize(bodyLimit int) int {
	return max(bodyLimit, 1<<20) + 256<<10
}

// connStreams counts one connection's open streams; streamLimiter puts one in every
// connection's context (a gRPC stats handler sees connections, the stream handler does not).
type connStreams struct{ n atomic.Int64 }

type connStreamsKey struct{}

type streamLimiter struct{}

func (streamLimiter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, connStreamsKey{}, &connStreams{})
}
func (streamLimiter) HandleConn(context.Context, stats.ConnStats)                     {}
func (streamLimiter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (streamLimiter) HandleRPC(context.Context, stats.RPCStats)                       {}

// streamBudget is the count of open streams, in total and per peer, behind admit. A
// mutex, not atomics: the two counts must move together, and a stream opens once per
// HTTP request, far less often than the WAF runs.
type streamBudget struct {
	mu     sync.Mutex
	total  int
	byPeer map[string]int
}

// admit takes a place for a new stream, or refuses it with ResourceExhausted; release
// gives the place back. Beside the total and per-connection bounds, one peer (its
// address, or the gateway its verified certificate names) may hold at most its share, so
// that a single client cannot take every place and leave the other Envoys refused.
func (p *Processor) admit(ctx context.Context) (release func(), err error) {
	conn, _ := ctx.Value(connStreamsKey{}).(*connStreams)
	if conn != nil && p.cfg.MaxStreamsPerConnection > 0 {
		if conn.n.Add(1) > int64(p.cfg.MaxStreamsPerConnection) {
			conn.n.Add(-1)
			p.metrics.refused.WithLabelValues("connection").Inc()
			return nil, status.Error(codes.ResourceExhausted, fmt.Sprintf("more than %d ext_proc streams on one connection", p.cfg.MaxStreamsPerConnection))
		}
	}
	unconn := func() {
		if conn != nil && p.cfg.MaxStreamsPerConnection > 0 {
			conn.n.Add(-1)
		}
	}
	key := p.peerKey(ctx)
	b := &p.budget
	b.mu.Lock()
	switch share := p.cfg.peerShare(); {
	case p.cfg.MaxStreams > 0 && b.total >= p.cfg.MaxStreams:
		b.mu.Unlock()
		unconn()
		p.metrics.refused.WithLabelValues("total").Inc()
		return nil, status.Error(codes.ResourceExhausted, fmt.Sprintf("more than %d ext_proc streams open", p.cfg.MaxStreams))
	case share > 0 && key != "" && b.byPeer[key] >= share:
		b.mu.Unlock()
		unconn()
		p.metrics.refused.WithLabelValues("peer").Inc()
		return nil, status.Error(codes.ResourceExhausted, fmt.Sprintf("more than %d ext_proc streams open from one peer (%s)", share, key))
	}
	b.total++
	if key != "" {
		if b.byPeer == nil {
			b.byPeer = map[string]int{}
		}
		b.byPeer[key]++
	}
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		b.total--
		if key != "" {
			if b.byPeer[key]--; b.byPeer[key] <= 0 {
				delete(b.byPeer, key) // the map holds only peers with open streams
			}
		}
		b.mu.Unlock()
		unconn()
	}, nil
}

// peerKey is whom a stream counts against: the gateway a verified client certificate
// names; else the peer's IP address, IPv6 by its /64 (one host's usual allocation, so
// that a host cannot be many peers); "" for a Unix socket, whose only peer is the local
// Envoy.
func (p *Processor) peerKey(ctx context.Context) string {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.Addr == nil {
		return ""
	}
	if p.cfg.PeerGateway != nil {
		if info, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 {
			if g, ok := p.cfg.PeerGateway(info.State.VerifiedChains[0][0]); ok {
				return "gateway " + g
			}
		}
	}
	ap, err := netip.ParseAddrPort(pr.Addr.String())
	if err != nil {
		return "" // a Unix socket
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}
