package processor

import (
	"context"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc/codes"
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

// admit takes a place for a new stream, or refuses it with ResourceExhausted; release
// gives the place back.
func (p *Processor) admit(ctx context.Context) (release func(), err error) {
	conn, _ := ctx.Value(connStreamsKey{}).(*connStreams)
	if conn != nil && p.cfg.MaxStreamsPerConnection > 0 {
		if conn.n.Add(1) > int64(p.cfg.MaxStreamsPerConnection) {
			conn.n.Add(-1)
			p.metrics.refused.WithLabelValues("connection").Inc()
			return nil, status.Error(codes.ResourceExhausted, fmt.Sprintf("more than %d ext_proc streams on one connection", p.cfg.MaxStreamsPerConnection))
		}
	}
	if p.cfg.MaxStreams > 0 && p.streams.Add(1) > int64(p.cfg.MaxStreams) {
		p.streams.Add(-1)
		if conn != nil {
			conn.n.Add(-1)
		}
		p.metrics.refused.WithLabelValues("total").Inc()
		return nil, status.Error(codes.ResourceExhausted, fmt.Sprintf("more than %d ext_proc streams open", p.cfg.MaxStreams))
	}
	return func() {
		if p.cfg.MaxStreams > 0 {
			p.streams.Add(-1)
		}
		if conn != nil && p.cfg.MaxStreamsPerConnection > 0 {
			conn.n.Add(-1)
		}
	}, nil
}
