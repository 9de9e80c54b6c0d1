package processor

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	waf "github.com/DataDog/go-libddwaf/v4"
)

// jsonDocument builds a benign JSON body of about size bytes, shaped like an API payload:
// a list of items that repeat names and tags, or, with unique, where every string differs.
func jsonDocument(size int, unique bool) []byte {
	type item struct {
		SKU   string  `json:"sku"`
		Name  string  `json:"name"`
		Qty   int     `json:"qty"`
		Price float64 `json:"price"`
		Tags  []string
	}
	doc := map[string]any{"customer": map[string]any{"id": 4211, "email": "jane@example.com", "address": map[string]any{
		"street": "12 Rue des Lilas", "city": "Lyon", "zip": "69003"}}}
	var items []item
	for i := 0; ; i++ {
		it := item{SKU: fmt.Sprintf("SKU-%05d", i), Name: "Stainless steel water bottle 750ml", Qty: i%4 + 1,
			Price: 19.99, Tags: []string{"kitchen", "outdoor"}}
		if unique {
			it.Name = fmt.Sprintf("Stainless steel water bottle model %d", i)
			it.Tags = []string{fmt.Sprintf("kitchen-%d", i), fmt.Sprintf("outdoor-%d", i)}
		}
		items = append(items, it)
		doc["items"] = items
		if b, _ := json.Marshal(doc); len(b) >= size {
			return b
		}
	}
}

type benchCase struct {
	name string
	x    httpExchange
}

func benchCases() []benchCase {
	headers := [][2]string{{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"}, {"accept", "application/json"},
		{"accept-encoding", "gzip, br"}, {"x-request-id", "6c1f0e0e-95b8-4b8a-a1c6-1b8ff3a1e4b2"}, {"cookie", "session=abc123; theme=dark"}}
	post := func(size int, unique bool) httpExchange {
		return httpExchange{method: "POST", path: "/api/orders", headers: append([][2]string{{"content-type", "application/json"}}, headers...),
			body: jsonDocument(size, unique), sourceAddress: "198.51.100.7:41000", respHeaders: [][2]string{{"content-type", "application/json"}}}
	}
	return []benchCase{
		{"GET", httpExchange{path: "/products/42?ref=home&page=2", headers: headers, sourceAddress: "198.51.100.7:41000",
			respHeaders: [][2]string{{"content-type", "text/html"}}}},
		{"POST-1KiB-JSON", post(1<<10, false)},
		{"POST-8KiB-JSON", post(8<<10, false)},
		{"POST-8KiB-JSON-unique", post(8<<10, true)},
	}
}

// BenchmarkWAF measures libddwaf alone on the same requests: the floor under the round trip.
// "tree" encodes the body as a decoded Go map, as a naive processor does; "stream" is ours
// (jsonbody.go), with the configuration of the embedded ruleset: repeats left out.
func BenchmarkWAF(b *testing.B) {
	e, err := newEngine("")
	if err != nil {
		b.Fatal(err)
	}
	defer e.close()
	for _, bc := range benchCases() {
		req := parseRequestHeaders(bc.x.requestHeaderMap())
		for _, enc := range []string{"stream", "tree"} {
			if len(bc.x.body) == 0 && enc == "tree" {
				continue
			}
			b.Run(bc.name+"/"+enc, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					ctx, _, err := e.acquire(time.Second)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := ctx.Run(waf.RunAddressData{Persistent: req.addresses("198.51.100.7", ""), TimerKey: timerKey}); err != nil {
						b.Fatal(err)
					}
					if len(bc.x.body) > 0 {
						var body any = jsonBody{doc: bc.x.body}
						if enc == "tree" {
							var tree any
							_ = json.Unmarshal(bc.x.body, &tree)
							body = tree
						}
						if _, err := ctx.Run(waf.RunAddressData{Persistent: map[string]any{addrBody: body}, TimerKey: timerKey}); err != nil {
							b.Fatal(err)
						}
					}
					ctx.Close()
				}
			})
		}
	}
}

// BenchmarkRoundTrip measures the full ext_proc exchange over loopback gRPC, as Envoy
// drives it (request headers, body when there is one, response headers), and reports
// latency percentiles and throughput. A request's latency ends with the last answer Envoy
// waits for: Envoy closes the stream when the HTTP request is done (onDestroy), so the
// stream's end, exchanged before the next request starts, is not on the request's path.
func BenchmarkRoundTrip(b *testing.B) {
	defer TuneGC()() // as the wafplane binary runs
	cfg := testConfig()
	cfg.WAFTimeout = DefaultWAFTimeout
	r := startProcessor(b, cfg)
	for _, bc := range benchCases() {
		for _, conc := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/c%d", bc.name, conc), func(b *testing.B) {
				latencies, perSec, err := drive(r.envoy, bc.x, b.N, conc)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(percentile(latencies, 0.50).Microseconds()), "p50-µs")
				b.ReportMetric(float64(percentile(latencies, 0.99).Microseconds()), "p99-µs")
				b.ReportMetric(perSec, "req/s")
			})
		}
	}
}

// drive runs n exchanges of x from conc clients at once and gives each one's latency, to the
// last answer Envoy waits for, and the throughput. A benign request that is blocked is an error.
func drive(envoy *fakeEnvoy, x httpExchange, n, conc int) ([]time.Duration, float64, error) {
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	var mu sync.Mutex
	var failed error
	latencies := make([]time.Duration, 0, n)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			var mine []time.Duration
			for range work {
				t0 := time.Now()
				out, err := envoy.exchange(x)
				if err == nil && out.blocked() {
					err = errors.New("benign request blocked")
				}
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				mine = append(mine, out.lastAnswer.Sub(t0))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return latencies, float64(len(latencies)) / time.Since(start).Seconds(), failed
}

// percentile sorts d and gives its p-quantile (0 for none).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, int(p*float64(len(d))))]
}
