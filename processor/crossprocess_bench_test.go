package processor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"sort"
	"strconv"
	"testing"
	"time"

	waf "github.com/DataDog/go-libddwaf/v4"
	"github.com/DataDog/go-libddwaf/v4/waferrors"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The cross-process round trip: the client, which plays Envoy, runs in its own process (this
// test binary started again with loadgenEnv set), as Envoy does, so that its gRPC work does
// not share the processor's heap and scheduler, and a do-nothing ext_proc server is measured
// in the same run through the same client. Figures are reported as times and as ratios.

const loadgenEnv = "WAFPLANE_LOADGEN" // JSON of loadgenSpec: run as the load generator

type loadgenSpec struct {
	Target      string `json:"target"`
	Case        string `json:"case"`
	Concurrency int    `json:"concurrency"`
	Requests    int    `json:"requests"`
	Warmup      int    `json:"warmup"`
}

type loadgenResult struct {
	P50, P99 time.Duration
	PerSec   float64
	Err      string
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(loadgenEnv); spec != "" {
		os.Exit(runLoadgen(spec))
	}
	os.Exit(m.Run())
}

// runLoadgen drives Requests exchanges of one case at the target and prints a loadgenResult.
func runLoadgen(specJSON string) int {
	var spec loadgenSpec
	res := loadgenResult{}
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(res) }()
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		res.Err = err.Error()
		return 1
	}
	var x httpExchange
	for _, bc := range benchCases() {
		if bc.name == spec.Case {
			x = bc.x
		}
	}
	conn, err := grpc.NewClient(spec.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		res.Err = err.Error()
		return 1
	}
	defer conn.Close()
	envoy := &fakeEnvoy{client: extprocv3.NewExternalProcessorClient(conn)}
	for range spec.Warmup {
		if _, err := envoy.exchange(x); err != nil {
			res.Err = err.Error()
			return 1
		}
	}
	latencies, perSec, err := drive(envoy, x, spec.Requests, spec.Concurrency)
	if err != nil {
		res.Err = err.Error()
		return 1
	}
	res.P50, res.P99, res.PerSec = percentile(latencies, 0.50), percentile(latencies, 0.99), perSec
	return 0
}

// loadgen starts this test binary as the load generator and waits for its result.
func loadgen(b *testing.B, spec loadgenSpec) loadgenResult {
	b.Helper()
	raw, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), loadgenEnv+"="+string(raw), "GOMAXPROCS=2")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var res loadgenResult
	if jerr := json.Unmarshal(out, &res); jerr != nil || err != nil || res.Err != "" {
		b.Fatalf("load generator %+v: %v %v %s", spec, err, jerr, res.Err)
	}
	return res
}

// bareServer answers every ext_proc message at once, asking for the body as the processor
// does, so that the client's exchange is the same. Without an engine it is the do-nothing
// server: the floor of any processor. With one it also runs libddwaf on each phase as the
// processor does, and nothing else (no limits, client IP, policy, metrics or events): the
// floor of any processor built on libddwaf, against which wafplane's own cost shows.
type bareServer struct {
	extprocv3.UnimplementedExternalProcessorServer
	engine *engine
}

func (bs bareServer) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	var ctx *waf.Context
	defer func() {
		if ctx != nil {
			ctx.Close()
		}
	}()
	run := func(addrs map[string]any) error {
		if bs.engine == nil {
			return nil
		}
		if ctx == nil {
			var err error
			if ctx, _, err = bs.engine.acquire(DefaultWAFTimeout); err != nil {
				return err
			}
		}
		_, err := ctx.Run(waf.RunAddressData{Persistent: addrs, TimerKey: timerKey})
		if errors.Is(err, waferrors.ErrTimeout) {
			return nil // the processor lets the request through too
		}
		return err
	}
	var req *request
	for {
		msg, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var resp *extprocv3.ProcessingResponse
		switch {
		case msg.GetRequestHeaders() != nil:
			req = parseRequestHeaders(msg.GetRequestHeaders().GetHeaders())
			err = run(req.addresses("198.51.100.7", ""))
			resp = continueHeaders(true)
			if !msg.GetRequestHeaders().GetEndOfStream() {
				resp.ModeOverride = &extprocfilterv3.ProcessingMode{RequestHeaderMode: extprocfilterv3.ProcessingMode_SEND,
					ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND, RequestBodyMode: extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL}
			}
		case msg.GetRequestBody() != nil && req != nil:
			err = run(parseBody(req.contentType, msg.GetRequestBody().GetBody(), false).addresses())
			resp = continueBody(true)
		case msg.GetResponseHeaders() != nil:
			status, headers, _ := parseResponseHeaders(msg.GetResponseHeaders().GetHeaders())
			err = run(map[string]any{addrResponseStatus: status, addrResponseHeaders: headers})
			resp = continueHeaders(false)
		case msg.GetResponseBody() != nil:
			resp = continueBody(false)
		default:
			return errors.New("unexpected message")
		}
		if err != nil {
			return err
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
	}
}

// startBareServer serves bareServer on loopback; engine nil makes it the do-nothing server.
func startBareServer(b *testing.B, e *engine) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(s, bareServer{engine: e})
	go func() { _ = s.Serve(lis) }()
	b.Cleanup(s.Stop)
	return lis.Addr().String()
}

// wafLoopP50 is libddwaf alone on the case's request, as a stream runs it (request headers,
// body when there is one, response headers), in a loop: the floor of the WAF's own cost.
func wafLoopP50(b *testing.B, e *engine, x httpExchange, n int) time.Duration {
	req := parseRequestHeaders(x.requestHeaderMap())
	resp := map[string]any{addrResponseStatus: "200", addrResponseHeaders: map[string][]string{"content-type": {"application/json"}}}
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		ctx, keep, err := e.acquire(time.Second)
		if err != nil {
			b.Fatal(err)
		}
		runs := []map[string]any{req.addresses("198.51.100.7", "")}
		if len(x.body) > 0 {
			runs = append(runs, parseBody(req.contentType, x.body, keep).addresses())
		}
		for _, a := range append(runs, resp) {
			if _, err := ctx.Run(waf.RunAddressData{Persistent: a, TimerKey: timerKey}); err != nil {
				b.Fatal(err)
			}
		}
		ctx.Close()
		lat = append(lat, time.Since(t0))
	}
	return percentile(lat, 0.5)
}

// BenchmarkRoundTripCrossProcess is the round trip as users see it. Targets, with both
// rulesets loaded: GET p50 ≤ 1.2 × (do-nothing p50 + libddwaf loop p50); throughput at
// concurrency 8 ≥ 50 % of the do-nothing server's. The bare libddwaf server, measured in the
// same run, tells how much of the distance to the do-nothing server is wafplane's own.
func BenchmarkRoundTripCrossProcess(b *testing.B) {
	defer TuneGC()()
	cfg := testConfig()
	cfg.WAFTimeout = DefaultWAFTimeout
	r := startProcessor(b, cfg)
	servers := []struct{ name, addr string }{{"nothing", startBareServer(b, nil)},
		{"bare", startBareServer(b, r.p.engine.Load())}, {"wafplane", r.p.Addr().String()}}
	requests := map[int]int{1: 2000, 8: 8000}
	if s := os.Getenv("WAFPLANE_BENCH_REQUESTS"); s != "" {
		n, _ := strconv.Atoi(s)
		requests = map[int]int{1: n, 8: 4 * n}
	}
	rounds := 3
	if s := os.Getenv("WAFPLANE_BENCH_ROUNDS"); s != "" {
		if n, err := strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("WAFPLANE_BENCH_ROUNDS=%q: want a count of at least 1", s)
		} else {
			rounds = n
		}
	}
	for _, bc := range benchCases() {
		if bc.name != "GET" && bc.name != "POST-8KiB-JSON" {
			continue
		}
		b.Run(bc.name, func(b *testing.B) {
			// The machine drifts within a run: each round measures every server, in an order
			// rotated from round to round, and the report takes the median of the rounds.
			samples := map[string][]loadgenResult{}
			var loops []time.Duration
			for b.Loop() {
				for round := range rounds {
					for _, conc := range []int{1, 8} {
						for i := range servers {
							s := servers[(i+round)%len(servers)]
							stop := profileIf(b, s.name, bc.name, conc)
							key := fmt.Sprintf("%s/c%d", s.name, conc)
							n := requests[conc]
							if len(bc.x.body) > 0 {
								n /= 2 // the POST runs at a fraction of the GET's rate: keep its runs short
							}
							samples[key] = append(samples[key], loadgen(b, loadgenSpec{Target: s.addr, Case: bc.name,
								Concurrency: conc, Requests: n, Warmup: 300}))
							stop()
						}
					}
					loops = append(loops, wafLoopP50(b, r.p.engine.Load(), bc.x, 3000))
				}
			}
			results := map[string]loadgenResult{}
			for k, v := range samples {
				results[k] = medianResult(v)
			}
			loop := percentile(loops, 0.5)
			n1, w1, n8, w8 := results["nothing/c1"], results["wafplane/c1"], results["nothing/c8"], results["wafplane/c8"]
			b1, b8 := results["bare/c1"], results["bare/c8"]
			ratio := float64(w1.P50) / float64(n1.P50+loop)
			through := w8.PerSec / n8.PerSec
			report("%s: medians of %d rounds", bc.name, len(loops))
			report("%s: do-nothing p50 %v p99 %v | libddwaf loop p50 %v | wafplane p50 %v p99 %v → %.2f × (do-nothing + loop)",
				bc.name, us(n1.P50), us(n1.P99), us(loop), us(w1.P50), us(w1.P99), ratio)
			report("%s c=8: do-nothing %.0f req/s p50 %v, wafplane %.0f req/s p50 %v → %.0f %% of do-nothing",
				bc.name, n8.PerSec, us(n8.P50), w8.PerSec, us(w8.P50), 100*through)
			report("%s: bare libddwaf server p50 %v (%.2f × do-nothing + loop), %.0f req/s at c=8 → wafplane %.2f × its p50, %.0f %% of its throughput",
				bc.name, us(b1.P50), float64(b1.P50)/float64(n1.P50+loop), b8.PerSec, float64(w1.P50)/float64(b1.P50), 100*w8.PerSec/b8.PerSec)
			b.ReportMetric(float64(w1.P50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(n1.P50.Microseconds()), "nothing-p50-µs")
			b.ReportMetric(float64(loop.Microseconds()), "loop-p50-µs")
			b.ReportMetric(ratio, "p50/(nothing+loop)")
			b.ReportMetric(100*through, "c8-%-of-nothing")
			b.ReportMetric(float64(w1.P50)/float64(b1.P50), "p50/bare")
			b.ReportMetric(100*w8.PerSec/b8.PerSec, "c8-%-of-bare")
		})
	}
}

// medianResult takes each figure's median over the rounds.
func medianResult(rs []loadgenResult) loadgenResult {
	var p50, p99 []time.Duration
	var perSec []float64
	for _, r := range rs {
		p50, p99, perSec = append(p50, r.P50), append(p99, r.P99), append(perSec, r.PerSec)
	}
	sort.Float64s(perSec)
	return loadgenResult{P50: percentile(p50, 0.5), P99: percentile(p99, 0.5), PerSec: perSec[len(perSec)/2]}
}

func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

// profileIf writes a CPU profile of the server side of one run of wafplane or the bare
// libddwaf server (go tool pprof -diff_base compares the two) when
// WAFPLANE_BENCH_CPUPROFILE names a directory.
func profileIf(b *testing.B, server, name string, conc int) func() {
	dir := os.Getenv("WAFPLANE_BENCH_CPUPROFILE")
	if dir == "" || server == "nothing" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s/%s-%s-c%d.pprof", dir, server, name, conc))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
