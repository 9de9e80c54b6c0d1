package discovery

import "context"

// Source finds gateways. Run sends an Update each time what it reads changes (bursts
// coalesced) and returns when ctx ends.
type Source interface {
	Run(ctx context.Context, updates chan<- Update) error
}

// Update is what a source read. When Err is set the source could not read its input
// (a YAML syntax error, say): State is the last good state, kept, and Err says why.
// Problems of one gateway are not source errors; Gateway.Validate reports them.
type Update struct {
	State State
	Err   error
	// EndpointsOnly is true when nothing but backend endpoints changed since the previous
	// Update, so that the consumer may refresh endpoints without a full translation.
	EndpointsOnly bool
}
