package xds

import (
	"context"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// guard checks every discovery request before go-control-plane sees it, as a gRPC
// interceptor: the node must be within bounds, keep the same id and cluster for the
// stream's life and, with authentication, name the gateway that the stream's own client
// certificate names. The decision rests on the stream's context and its messages alone,
// never on go-control-plane's stream numbers: SotW and delta streams are numbered by two
// counters, so a number names two streams.
type guard struct {
	auth  bool
	nodes *nodes
	// firstRequest is how long a new stream may stay silent: a stream that never asks
	// holds its place (and, without a certificate, would never be refused) otherwise.
	firstRequest time.Duration
	onRefuse     func(node, cluster, reason, msg string)
}

// refusal is a refused request: its reason (the label of wafplane_xds_rejected_streams_total)
// and what the client is told.
type refusal struct {
	reason, msg string
	code        codes.Code
}

func (g *guard) refuse(n *corev3.Node, r *refusal) error {
	g.nodes.refused(n, r.reason, r.msg)
	if g.onRefuse != nil {
		g.onRefuse(clip(n.GetId(), maxNodeID), clip(n.GetCluster(), maxNodeCluster), r.reason, r.msg)
	}
	return status.Error(r.code, "wafplane xDS: stream refused: "+r.msg)
}

// check judges one request's node. prev is the node the stream's first request carried
// (nil on the first request); identity and reject are what the stream's certificate says.
func (g *guard) check(identity, reject string, prev, n *corev3.Node) *refusal {
	if n == nil {
		if prev == nil && g.auth {
			return &refusal{RejectNodeMismatch, "the first request carries no node", codes.PermissionDenied}
		}
		return nil // later requests may leave the node out; go-control-plane keeps the first
	}
	if err := nodeTooLarge(n); err != nil {
		return &refusal{RejectOversizedNode, err.Error(), codes.InvalidArgument}
	}
	if prev != nil && (n.GetId() != prev.GetId() || n.GetCluster() != prev.GetCluster()) {
		return &refusal{RejectNodeMismatch, fmt.Sprintf("the node changed within the stream, from %q of %q to %q of %q",
			prev.GetId(), prev.GetCluster(), n.GetId(), n.GetCluster()), codes.PermissionDenied}
	}
	if !g.auth {
		return nil
	}
	switch {
	case reject == RejectNoCertificate:
		return &refusal{reject, "no client certificate: xDS needs one issued by wafplane's CA", codes.PermissionDenied}
	case reject == RejectNoIdentity:
		return &refusal{reject, "the client certificate names no gateway (want a URI SAN spiffe://wafplane/ns/<namespace>/gateway/<name>)", codes.PermissionDenied}
	case n.GetCluster() != identity:
		return &refusal{RejectNodeMismatch, fmt.Sprintf("the client certificate is for gateway %q, the node cluster says %q", identity, n.GetCluster()), codes.PermissionDenied}
	}
	return nil
}

func (g *guard) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	gs := &guardedStream{ServerStream: ss, g: g}
	if g.auth {
		gs.identity, gs.reject = identity(ss.Context())
	}
	err := handler(srv, gs)
	if gs.refused != nil {
		// go-control-plane ends a stream whose receive fails with no error; the client
		// must learn why.
		return gs.refused
	}
	return err
}

func (g *guard) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if r, ok := req.(*discoveryv3.DiscoveryRequest); ok {
		id, reject := "", ""
		if g.auth {
			id, reject = identity(ctx)
		}
		if ref := g.check(id, reject, nil, r.GetNode()); ref != nil {
			return nil, g.refuse(r.GetNode(), ref)
		}
	}
	return handler(ctx, req)
}

// guardedStream is one stream with the guard between it and go-control-plane.
type guardedStream struct {
	grpc.ServerStream
	g                *guard
	identity, reject string
	first            *corev3.Node // id and cluster of the first request's node
	spoke            bool         // a request has come
	refused          error
}

func (s *guardedStream) RecvMsg(m any) error {
	var err error
	if !s.spoke && s.g.firstRequest > 0 {
		err = s.recvFirst(m)
	} else {
		err = s.ServerStream.RecvMsg(m)
	}
	if err != nil {
		return err
	}
	s.spoke = true
	var n *corev3.Node
	switch r := m.(type) {
	case *discoveryv3.DiscoveryRequest:
		n = r.GetNode()
	case *discoveryv3.DeltaDiscoveryRequest:
		n = r.GetNode()
	default:
		return nil
	}
	if ref := s.g.check(s.identity, s.reject, s.first, n); ref != nil {
		s.refused = s.g.refuse(n, ref)
		return s.refused
	}
	if s.first == nil && n != nil {
		s.first = &corev3.Node{Id: n.GetId(), Cluster: n.GetCluster()}
	}
	return nil
}

// recvFirst waits for the first request at most firstRequest. On time out the receive
// goes on in its goroutine until the stream ends, which the refusal brings about at once;
// the message it fills is dropped by go-control-plane, which reads no further.
func (s *guardedStream) recvFirst(m any) error {
	done := make(chan error, 1)
	go func() { done <- s.ServerStream.RecvMsg(m) }()
	t := time.NewTimer(s.g.firstRequest)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		s.refused = s.g.refuse(nil, &refusal{RejectSilent, fmt.Sprintf("no request within %s of opening the stream", s.g.firstRequest), codes.DeadlineExceeded})
		return s.refused
	}
}
