package xds

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/wafplane/wafplane/snapshot"
)

// gatewayState is a gateway's last good snapshot and its last problem.
type gatewayState struct {
	summary     snapshot.Summary
	good        *snapshot.Resources
	publishedAt time.Time
	err         error
	errAt       time.Time
	warnings    []string
}

// SourceError is the last input the source could not read; the gateways before it stay.
type SourceError struct {
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

// Publish serves the translation: a good gateway's snapshot replaces its previous one, a
// failed gateway keeps its last good snapshot with the error recorded, and a gateway no
// longer in the results is dropped. sourceErr is the source's read error, if any.
func (s *Server) Publish(results []snapshot.Result, sourceErr error) {
	now := time.Now()
	s.mu.Lock()
	if sourceErr != nil {
		s.sourceErr = &SourceError{Error: sourceErr.Error(), At: now}
	} else {
		s.sourceErr = nil
	}
	present := map[string]bool{}
	var publish []snapshot.Result
	for _, r := range results {
		present[r.Gateway] = true
		g := s.gateways[r.Gateway]
		if g == nil {
			g = &gatewayState{}
			s.gateways[r.Gateway] = g
		}
		g.summary = r.Summary
		if !slices.Equal(g.warnings, r.Warnings) {
			for _, w := range r.Warnings {
				if !slices.Contains(g.warnings, w) {
					s.log.Warn("gateway served with a warning", "gateway", r.Gateway, "warning", w)
				}
			}
			g.warnings = r.Warnings
		}
		if r.Err != nil {
			// The same error again (the source resent the same state) is not a new rejection.
			if g.err == nil || g.err.Error() != r.Err.Error() {
				g.errAt = now
				s.m.published.WithLabelValues("rejected").Inc()
				if g.good != nil {
					s.log.Error("gateway rejected, its last good snapshot stays", "gateway", r.Gateway, "error", r.Err)
				} else {
					s.log.Error("gateway rejected; it has no good snapshot yet, so its Envoys get nothing", "gateway", r.Gateway, "error", r.Err)
				}
			}
			g.err = r.Err
			continue
		}
		if g.err != nil {
			s.log.Info("gateway accepted again, its error is cleared", "gateway", r.Gateway, "previous_error", g.err)
		}
		g.err = nil
		if g.good != nil && sameVersions(g.good, r.Resources) {
			continue
		}
		g.good, g.publishedAt = r.Resources, now
		publish = append(publish, r)
	}
	var removed []string
	for key := range s.gateways {
		if !present[key] {
			delete(s.gateways, key)
			removed = append(removed, key)
		}
	}
	s.mu.Unlock()

	for _, r := range publish {
		if err := s.cache.SetSnapshot(context.Background(), r.Gateway, r.Resources.Snapshot); err != nil {
			s.log.Error("snapshot not set", "gateway", r.Gateway, "error", err)
			continue
		}
		s.m.published.WithLabelValues("published").Inc()
		s.log.Info("snapshot published", "gateway", r.Gateway, "listeners", len(r.Resources.Listeners),
			"clusters", len(r.Resources.Clusters))
	}
	for _, key := range removed {
		s.cache.ClearSnapshot(key)
		s.log.Info("gateway removed", "gateway", key)
	}
	// Ready once a state the source could read has been published: a source that starts
	// with an unreadable file has published nothing.
	if sourceErr == nil {
		s.ready.Store(true)
	}
}

func sameVersions(a, b *snapshot.Resources) bool {
	for _, t := range snapshot.ResourceTypes {
		if a.Version(t) != b.Version(t) {
			return false
		}
	}
	return true
}

// GatewayStatus is one gateway on /snapshots.
type GatewayStatus struct {
	Gateway string `json:"gateway"`
	snapshot.Summary
	Versions    map[string]string `json:"versions,omitempty"`
	PublishedAt time.Time         `json:"publishedAt,omitzero"`
	Error       string            `json:"error,omitempty"`
	ErrorAt     time.Time         `json:"errorAt,omitzero"`
	Warnings    []string          `json:"warnings,omitempty"`
}

// Gateways lists every gateway with its served versions and last error.
func (s *Server) Gateways() ([]GatewayStatus, *SourceError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]GatewayStatus, 0, len(s.gateways))
	for key, g := range s.gateways {
		st := GatewayStatus{Gateway: key, Summary: g.summary, PublishedAt: g.publishedAt, Warnings: g.warnings}
		if g.good != nil {
			st.Versions = map[string]string{}
			for _, t := range snapshot.ResourceTypes {
				st.Versions[shortType(t)] = g.good.Version(t)
			}
		}
		if g.err != nil {
			st.Error, st.ErrorAt = g.err.Error(), g.errAt
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Gateway < out[j].Gateway })
	var se *SourceError
	if s.sourceErr != nil {
		c := *s.sourceErr
		se = &c
	}
	return out, se
}

// Resources is the last good snapshot of a gateway, nil when it has none.
func (s *Server) Resources(gateway string) (*snapshot.Resources, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.gateways[gateway]
	if g == nil {
		return nil, nil
	}
	return g.good, g.err
}
