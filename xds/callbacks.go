package xds

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
)

// callbacks feeds go-control-plane's stream events to the registry, which also decides
// whether a stream may have what it asks for: the callbacks run before any watch is made.
type callbacks struct{ n *nodes }

// opened records a stream and, with authentication, the gateway its certificate names.
func (c callbacks) opened(ctx context.Context, id int64) {
	gateway, reject := "", ""
	if c.n.auth {
		gateway, reject = identity(ctx)
	}
	c.n.open(id, gateway, reject)
}

// nackOf is the NACK a request carries, if any.
func nackOf(detail *statuspb.Status, now time.Time) *Nack {
	if detail == nil {
		return nil
	}
	return &Nack{Error: detail.GetMessage(), At: now}
}

func (c callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	c.opened(ctx, id)
	return nil
}
func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.n.close(id) }
func (c callbacks) OnStreamRequest(id int64, r *discoveryv3.DiscoveryRequest) error {
	return c.n.request(id, r.GetNode(), false, r.GetTypeUrl(), r.GetResponseNonce(), nackOf(r.GetErrorDetail(), c.n.now()))
}
func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, r *discoveryv3.DiscoveryResponse) {
	c.n.response(id, r.GetTypeUrl(), r.GetVersionInfo(), r.GetNonce())
}
func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	c.opened(ctx, id)
	return nil
}
func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) { c.n.close(id) }
func (c callbacks) OnStreamDeltaRequest(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
	return c.n.request(id, r.GetNode(), true, r.GetTypeUrl(), r.GetResponseNonce(), nackOf(r.GetErrorDetail(), c.n.now()))
}
func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, r *discoveryv3.DeltaDiscoveryResponse) {
	c.n.response(id, r.GetTypeUrl(), r.GetSystemVersionInfo(), r.GetNonce())
}
func (c callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error { return nil }
func (c callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {
}
