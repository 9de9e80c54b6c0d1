package xds

import (
	"sort"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// A disconnected node stays on /nodes for forgetAfter, so that the NACK that made it go
// away can still be read, and at most maxDisconnected of them stay, the oldest forgotten
// first: clients that churn must not grow the registry without bound.
const (
	forgetAfter     = 10 * time.Minute
	maxDisconnected = 1000
	pruneEvery      = 30 * time.Second
)

// NodeStatus is what one Envoy got: per resource type the version sent, the version
// ACKed and the last NACK.
type NodeStatus struct {
	ID             string     `json:"id"`
	Gateway        string     `json:"gateway"`
	GatewayKnown   bool       `json:"gatewayKnown"`
	Connected      bool       `json:"connected"`
	ConnectedSince time.Time  `json:"connectedSince"`
	DisconnectedAt *time.Time `json:"disconnectedAt,omitempty"`
	// UserAgent is the node's user_agent_name and version ("envoy 1.36.2").
	UserAgent string `json:"userAgent,omitempty"`
	// Refused says why the node's last stream was refused (its certificate did not name
	// the gateway of its node cluster, or it had none, or the node was out of bounds); it
	// got nothing.
	Refused string                 `json:"refused,omitempty"`
	Streams int                    `json:"streams"`
	Delta   bool                   `json:"delta"`
	Types   map[string]*TypeStatus `json:"types"`
}

// TypeStatus is the exchange of one resource type with one node.
type TypeStatus struct {
	Sent     string    `json:"sent"`
	SentAt   time.Time `json:"sentAt"`
	Acked    string    `json:"acked,omitempty"`
	AckedAt  time.Time `json:"ackedAt,omitzero"`
	LastNack *Nack     `json:"lastNack,omitempty"`
}

// Nack is a rejected response: the version Envoy refused and its error text.
type Nack struct {
	Version string    `json:"version"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// stream is one open xDS stream: its node and, per nonce, the version it carried.
type stream struct {
	node   string
	sent   map[string]string // nonce → version
	opened time.Time
}

// streamKey names a stream in the registry. go-control-plane numbers SotW and delta
// streams with two counters, so the number alone names two streams.
type streamKey struct {
	delta bool
	id    int64
}

// nodes is the registry behind the callbacks. It records; whether a stream may be served
// is decided before (guard.go), on the stream's own context.
type nodes struct {
	mu      sync.Mutex
	byID    map[string]*NodeStatus
	streams map[streamKey]*stream
	now     func() time.Time
	known   func(gateway string) bool
	onNew   func(node, gateway string) // a node's first stream of a gateway nobody serves
	m       *metrics
}

func newNodes(m *metrics, known func(string) bool, onUnknown func(node, gateway string)) *nodes {
	return &nodes{byID: map[string]*NodeStatus{}, streams: map[streamKey]*stream{}, now: time.Now, known: known, onNew: onUnknown, m: m}
}

func (n *nodes) open(k streamKey) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.streams[k] != nil {
		return // never counted twice, whatever the callbacks say
	}
	n.streams[k] = &stream{sent: map[string]string{}, opened: n.now()}
	n.m.streams.Inc()
}

// request records the stream's node on its first request, and ACKs and NACKs after.
func (n *nodes) request(k streamKey, node *corev3.Node, typeURL, nonce string, nack *Nack) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.streams[k]
	if s == nil {
		return
	}
	if s.node == "" && node != nil {
		s.node = node.GetId()
		st := n.byID[s.node]
		if st == nil || !st.Connected {
			st = &NodeStatus{ID: s.node, ConnectedSince: s.opened, Types: map[string]*TypeStatus{}}
			if old := n.byID[s.node]; old != nil {
				st.Types = old.Types
			}
			n.byID[s.node] = st
			n.m.nodes.Inc()
		}
		st.Gateway, st.Connected, st.DisconnectedAt, st.Delta = node.GetCluster(), true, nil, k.delta
		st.UserAgent, st.Refused = userAgent(node), ""
		st.Streams++
		if !n.known(st.Gateway) {
			n.m.unknown.Inc()
			n.onNew(st.ID, st.Gateway)
		}
	}
	st := n.byID[s.node]
	if st == nil || nonce == "" {
		return
	}
	version, ok := s.sent[nonce]
	if !ok {
		return // a nonce this stream never sent, or already answered
	}
	delete(s.sent, nonce)
	ts := typeStatus(st, typeURL)
	if nack != nil {
		nack.Version = version
		ts.LastNack = nack
		n.m.nacks.WithLabelValues(shortType(typeURL)).Inc()
		return
	}
	ts.Acked, ts.AckedAt = version, n.now()
	n.m.acks.WithLabelValues(shortType(typeURL)).Inc()
}

// refused records a stream that was refused before anything was sent: on /nodes (unless
// a stream of that node id is connected: a refused stream must not hide it) and in the
// rejection counter. The node is recorded as far as it is within bounds.
func (n *nodes) refused(node *corev3.Node, reason, msg string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.m.rejected.WithLabelValues(reason).Inc()
	if node == nil {
		return
	}
	id := clip(node.GetId(), maxNodeID)
	if st := n.byID[id]; st != nil && st.Connected {
		return
	}
	now := n.now()
	n.byID[id] = &NodeStatus{ID: id, Gateway: clip(node.GetCluster(), maxNodeCluster), UserAgent: userAgent(node),
		ConnectedSince: now, DisconnectedAt: &now, Types: map[string]*TypeStatus{}, Refused: reason + ": " + msg}
	n.pruneIfLarge()
}

func (n *nodes) response(k streamKey, typeURL, version, nonce string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.streams[k]
	if s == nil {
		return
	}
	s.sent[nonce] = version
	n.m.pushes.WithLabelValues(shortType(typeURL)).Inc()
	if st := n.byID[s.node]; st != nil {
		ts := typeStatus(st, typeURL)
		ts.Sent, ts.SentAt = version, n.now()
	}
}

func (n *nodes) close(k streamKey) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.streams[k]
	if s == nil {
		return
	}
	delete(n.streams, k)
	n.m.streams.Dec()
	st := n.byID[s.node]
	if st == nil || !st.Connected {
		return
	}
	if st.Streams--; st.Streams == 0 {
		now := n.now()
		st.Connected, st.DisconnectedAt = false, &now
		n.m.nodes.Dec()
		n.pruneIfLarge()
	}
}

// pruneIfLarge prunes once the registry holds twice the disconnected nodes it keeps, so
// that pruning costs O(1) per disconnection on average. Called with mu held.
func (n *nodes) pruneIfLarge() {
	if len(n.byID) > 2*maxDisconnected {
		n.prune()
	}
}

// prune forgets nodes disconnected for longer than forgetAfter, then the oldest
// disconnected ones beyond maxDisconnected. Called with mu held.
func (n *nodes) prune() {
	now := n.now()
	var down []*NodeStatus
	for id, st := range n.byID {
		if st.Connected || st.DisconnectedAt == nil {
			continue
		}
		if now.Sub(*st.DisconnectedAt) > forgetAfter {
			delete(n.byID, id)
			continue
		}
		down = append(down, st)
	}
	if len(down) <= maxDisconnected {
		return
	}
	sort.Slice(down, func(i, j int) bool { return down[i].DisconnectedAt.Before(*down[j].DisconnectedAt) })
	for _, st := range down[:len(down)-maxDisconnected] {
		delete(n.byID, st.ID)
	}
}

// list copies the node records, sorted by gateway then id.
func (n *nodes) list() []NodeStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]NodeStatus, 0, len(n.byID))
	for _, st := range n.byID {
		c := *st
		c.GatewayKnown = n.known(c.Gateway)
		c.Types = make(map[string]*TypeStatus, len(st.Types))
		for k, v := range st.Types {
			t := *v
			if v.LastNack != nil {
				nack := *v.LastNack
				t.LastNack = &nack
			}
			c.Types[k] = &t
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Gateway != out[j].Gateway {
			return out[i].Gateway < out[j].Gateway
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func typeStatus(st *NodeStatus, typeURL string) *TypeStatus {
	k := shortType(typeURL)
	ts := st.Types[k]
	if ts == nil {
		ts = &TypeStatus{}
		st.Types[k] = ts
	}
	return ts
}

// shortType is "Listener" for "type.googleapis.com/envoy.config.listener.v3.Listener".
func shortType(typeURL string) string {
	return typeURL[strings.LastIndex(typeURL, ".")+1:]
}
