package snapshot

import (
	"fmt"
	"testing"

	"github.com/wafplane/wafplane/discovery"
)

// benchState makes gateways with routesPer routes each; every route has its own path and
// its own backend, the expensive shape (one cluster and one endpoint set per route).
func benchState(gateways, routesPer int) discovery.State {
	var s discovery.State
	for g := range gateways {
		gw := discovery.Gateway{Namespace: "bench", Name: fmt.Sprintf("gw-%d", g),
			Listeners: []discovery.Listener{{Name: "http", Port: 10000}}}
		for r := range routesPer {
			gw.Routes = append(gw.Routes, discovery.Route{
				Name:      fmt.Sprintf("route-%d", r),
				Hostnames: []string{fmt.Sprintf("app-%d.example.com", r%50)},
				Rules: []discovery.Rule{{
					Matches: []discovery.Match{{Path: &discovery.PathMatch{Type: discovery.MatchPrefix, Value: fmt.Sprintf("/svc-%d", r)},
						Headers: []discovery.ValueMatch{{Name: "x-tenant", Value: "acme"}}}},
					Backends: []discovery.Backend{{Host: fmt.Sprintf("10.%d.%d.%d", g%250, r/250, r%250+1), Port: 8080}},
				}},
			})
		}
		s.Gateways = append(s.Gateways, gw)
	}
	return s
}

func benchmarkTranslate(b *testing.B, gateways, routesPer int) {
	s := benchState(gateways, routesPer)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, r := range Translate(s, Options{}) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
}

// Targets: 1 gateway × 2,000 routes within 1 s and 150 MB allocated.
func BenchmarkTranslate1x2000(b *testing.B)  { benchmarkTranslate(b, 1, 2000) }
func BenchmarkTranslate100x10(b *testing.B)  { benchmarkTranslate(b, 100, 10) }
func BenchmarkTranslate1000x10(b *testing.B) { benchmarkTranslate(b, 1000, 10) }
