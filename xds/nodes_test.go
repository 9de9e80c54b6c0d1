package xds

import (
	"fmt"
	"testing"
	"time"
)

// Disconnected nodes are forgotten after forgetAfter, and beyond maxDisconnected the
// oldest go first, whatever the churn.
func TestDisconnectedNodesAreBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	n := newNodes(newMetrics(nil), func(string) bool { return true }, func(string, string) {})
	n.now = func() time.Time { return now }
	const churn = 5 * maxDisconnected
	for i := range churn {
		k := delta(int64(i))
		n.open(k)
		n.request(k, node(fmt.Sprintf("envoy-%d", i), "shop/edge"), "", "", nil)
		n.close(k)
		now = now.Add(time.Millisecond)
		if len(n.byID) > 2*maxDisconnected+1 {
			t.Fatalf("after %d disconnections: %d records", i+1, len(n.byID))
		}
	}
	n.mu.Lock()
	n.prune()
	n.mu.Unlock()
	if len(n.byID) != maxDisconnected {
		t.Fatalf("%d records after pruning, want %d", len(n.byID), maxDisconnected)
	}
	if _, ok := n.byID[fmt.Sprintf("envoy-%d", churn-1)]; !ok {
		t.Error("the newest disconnection was forgotten")
	}
	if _, ok := n.byID["envoy-0"]; ok {
		t.Error("the oldest disconnection was kept")
	}
	// Connected nodes stay whatever their number; time forgets the rest.
	n.open(sotw(1 << 40))
	n.request(sotw(1<<40), node("still-here", "shop/edge"), "", "", nil)
	now = now.Add(forgetAfter + time.Second)
	n.mu.Lock()
	n.prune()
	n.mu.Unlock()
	if len(n.byID) != 1 || !n.byID["still-here"].Connected {
		t.Fatalf("after forgetAfter: %d records", len(n.byID))
	}
}
