// Package xdstest holds xDS clients that behave as Envoy does, for tests of wafplane's
// ADS server: a delta ADS stream, and helpers around go-control-plane's SotW client.
package xdstest

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

// Delta is one delta ADS stream of one node, as Envoy opens it.
type Delta struct {
	node   *corev3.Node
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	first  bool
}

// NewDelta opens a delta ADS stream.
func NewDelta(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node) (*Delta, error) {
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	return &Delta{node: node, stream: s, first: true}, nil
}

// Subscribe asks for resources of a type; no names is a wildcard subscription, as Envoy
// makes for listeners and clusters.
func (d *Delta) Subscribe(typeURL string, names ...string) error {
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names}
	if d.first {
		req.Node, d.first = d.node, false
	}
	return d.stream.Send(req)
}

// Recv waits for the next response.
func (d *Delta) Recv() (*discoveryv3.DeltaDiscoveryResponse, error) { return d.stream.Recv() }

// Ack accepts a response.
func (d *Delta) Ack(r *discoveryv3.DeltaDiscoveryResponse) error {
	return d.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce})
}

// Nack rejects a response with Envoy's error text.
func (d *Delta) Nack(r *discoveryv3.DeltaDiscoveryResponse, message string) error {
	return d.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce,
		ErrorDetail: &statuspb.Status{Code: 3, Message: message}})
}

// Close ends the stream.
func (d *Delta) Close() error { return d.stream.CloseSend() }

// FirstNames opens a delta stream as node, subscribes to every resource of a type and
// returns the names in the first response, or the stream's error (a refused stream's).
func FirstNames(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node, typeURL string) ([]string, error) {
	d, err := NewDelta(ctx, conn, node)
	if err != nil {
		return nil, err
	}
	if err := d.Subscribe(typeURL); err != nil {
		return nil, err
	}
	r, err := d.Recv()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(r.Resources))
	for _, res := range r.Resources {
		names = append(names, res.Name)
	}
	return names, nil
}
