package processor

import (
	"os"
	"runtime/debug"
)

// GCPercent is the garbage collector target wafplane runs with unless GOGC says otherwise.
// The processor's live heap is small (the ruleset lives in libddwaf's C memory) and every
// request allocates a little, so with Go's default of 100 a collection starts every few
// hundred requests, and its pauses and assists make the latency tail: on the project's
// 2-core machine the GET round trip's p99 was about 1,100 µs at 100, 640–870 µs at 400 and
// 540–730 µs at 800 (docs/performance.md), for a heap up to nine times the live one —
// wafplane serve peaked at 164 MB resident with 1,000 Kubernetes routes. Bound the heap
// with GOMEMLIMIT where memory is tight; the Kubernetes manifest does.
const GCPercent = 800

// TuneGC applies GCPercent unless the GOGC environment variable is set, and returns what
// undoes it, for tests and benchmarks.
func TuneGC() (restore func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	prev := debug.SetGCPercent(GCPercent)
	return func() { debug.SetGCPercent(prev) }
}
