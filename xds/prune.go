package xds

import "time"

// maxStrayCacheKeys bounds the cache entries of node clusters that name no gateway.
// go-control-plane keeps a status entry (with the node) for every cluster that ever
// opened a watch and never drops it, so without authentication a client that makes up
// clusters grows it without end. Strays are pruned only beyond this many: pruning races
// with a watch being opened on that key at that moment (the watch would be lost), which
// is then a cost only under such a flood.
const maxStrayCacheKeys = 1024

// pruneLoop forgets, on a timer, old disconnected nodes and idle stray cache entries, so
// that they go even when no stream opens or closes.
func (s *Server) pruneLoop(done <-chan struct{}) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			s.nodes.mu.Lock()
			s.nodes.prune()
			s.nodes.mu.Unlock()
			s.pruneCache()
		}
	}
}

// pruneCache drops the cache entries of clusters that have no snapshot and no watch.
func (s *Server) pruneCache() int {
	keys := s.cache.GetStatusKeys()
	s.mu.RLock()
	limit := maxStrayCacheKeys + len(s.gateways)
	s.mu.RUnlock()
	if len(keys) <= limit {
		return 0
	}
	dropped := 0
	for _, k := range keys {
		if _, err := s.cache.GetSnapshot(k); err == nil {
			continue
		}
		info := s.cache.GetStatusInfo(k)
		if info == nil || info.GetNumWatches() > 0 || info.GetNumDeltaWatches() > 0 {
			continue
		}
		s.cache.ClearSnapshot(k)
		dropped++
	}
	return dropped
}
