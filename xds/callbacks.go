package xds

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
)

// callbacks feeds go-control-plane's stream events to the registry. They only record:
// a request reaches them after the guard has let it through (guard.go).
type callbacks struct{ n *nodes }

// nackOf is the NACK a request carries, if any.
func nackOf(detail *statuspb.Status, now time.Time) *Nack {
	if detail == nil {
		return nil
	}
	return &Nack{Error: detail.GetMessage(), At: now}
}

func sotw(id int64) streamKey  { return streamKey{id: id} }
func delta(id int64) streamKey { return streamKey{delta: true, id: id} }

func (c callbacks) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.n.open(sotw(id))
	return nil
}
func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.n.close(sotw(id)) }
func (c callbacks) OnStreamRequest(id int64, r *discoveryv3.DiscoveryRequest) error {
	c.n.request(sotw(id), r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), nackOf(r.GetErrorDetail(), c.n.now()))
	return nil
}
func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, r *discoveryv3.DiscoveryResponse) {
	c.n.response(sotw(id), r.GetTypeUrl(), r.GetVersionInfo(), r.GetNonce())
}
func (c callbacks) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	c.n.open(delta(id))
	return nil
}
func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) { c.n.close(delta(id)) }
func (c callbacks) OnStreamDeltaRequest(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
	c.n.request(delta(id), r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), nackOf(r.GetErrorDetail(), c.n.now()))
	return nil
}
func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, r *discoveryv3.DeltaDiscoveryResponse) {
	c.n.response(delta(id), r.GetTypeUrl(), r.GetSystemVersionInfo(), r.GetNonce())
}
func (c callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error { return nil }
func (c callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {
}
