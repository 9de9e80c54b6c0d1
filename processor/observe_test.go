package processor

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestWAFTimeoutLetsRequestThrough(t *testing.T) {
	cfg := testConfig()
	cfg.WAFTimeout = time.Nanosecond
	r := startProcessor(t, cfg)
	if out := r.envoy.do(t, attacks(t)["query"]); out.blocked() {
		t.Fatal("a request whose WAF budget ran out was blocked")
	}
	if got := testutil.ToFloat64(r.p.metrics.timeouts); got != 1 {
		t.Fatalf("timeouts = %v, want 1", got)
	}
}

func TestSecurityEventsObfuscatedAndServed(t *testing.T) {
	r := startProcessor(t, testConfig())
	x := httpExchange{path: "/login?password=" + strings.ReplaceAll(sqli, " ", "+"), sourceAddress: "198.51.100.4:1",
		headers: [][2]string{{"x-request-id", "req-42"}}, metadata: map[string]string{MetadataGateway: "shop/edge", MetadataRoute: "login"}}
	r.envoy.do(t, x)
	rec := httptest.NewRecorder()
	r.p.EventsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/events?limit=5", nil))
	var body struct{ Events []SecurityEvent }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Events) != 1 {
		t.Fatalf("events %s: %v", rec.Body, err)
	}
	ev := body.Events[0]
	if ev.Action != "blocked" || ev.ClientIP != "198.51.100.4" || ev.RequestID != "req-42" || ev.Gateway != "shop/edge" ||
		ev.Method != "GET" || ev.Path != "/login" || ev.Status != 403 || ev.ResponseID == "" || ev.WAFTime <= 0 {
		t.Fatalf("event = %+v", ev)
	}
	if strings.Contains(rec.Body.String(), "UNION SELECT") {
		t.Fatalf("the value of a password parameter was not obfuscated: %s", rec.Body)
	}
	if got := testutil.ToFloat64(r.p.metrics.ruleHits.WithLabelValues(ev.Rules[0].ID, ev.Rules[0].Module)); got != 1 {
		t.Fatalf("rule hits = %v", got)
	}
	rec = httptest.NewRecorder()
	r.p.EventsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/events?limit=x", nil))
	if rec.Code != 400 {
		t.Fatalf("bad limit answered %d", rec.Code)
	}
}

func TestEventRingKeepsNewest(t *testing.T) {
	ring := newEventRing(3)
	for i := range 5 {
		ring.add(SecurityEvent{RequestID: string(rune('a' + i))})
	}
	got := ring.recent(0)
	if len(got) != 3 || got[0].RequestID != "e" || got[2].RequestID != "c" {
		t.Fatalf("recent = %+v", got)
	}
}

func TestAPIDiscovery(t *testing.T) {
	cfg := testConfig()
	cfg.APIInterval = time.Hour
	r := startProcessor(t, cfg)
	x := httpExchange{method: "POST", path: "/api/orders?expand=items", headers: [][2]string{{"content-type", "application/json"}},
		body: []byte(`{"sku":"A-1","qty":2,"gift":true,"lines":[{"sku":"A-1","qty":2},{"sku":"B-2","qty":2}]}`), metadata: map[string]string{MetadataGateway: "shop/edge", MetadataRoute: "orders"},
		respHeaders: [][2]string{{"content-type", "application/json"}}}
	r.envoy.do(t, x)
	r.envoy.do(t, x) // sampled out: one per hour per gateway, route and method
	rec := httptest.NewRecorder()
	r.p.APICatalogHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/api-catalog", nil))
	var body struct{ Endpoints []APIEndpoint }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Endpoints) != 1 {
		t.Fatalf("catalog %s: %v", rec.Body, err)
	}
	e := body.Endpoints[0]
	if e.Gateway != "shop/edge" || e.Route != "orders" || e.Method != "POST" || e.Samples != 1 {
		t.Fatalf("endpoint = %+v", e)
	}
	for _, k := range []string{"req.body", "req.query", "req.headers"} {
		if e.Request[k] == nil {
			t.Errorf("request schema %s missing: %v", k, e.Request)
		}
	}
	if e.Response["res.headers"] == nil {
		t.Errorf("response header schema missing: %v", e.Response)
	}
	schema, _ := json.Marshal(e.Request["req.body"])
	if !strings.Contains(string(schema), "qty") || strings.Contains(string(schema), "A-1") {
		t.Fatalf("body schema should have keys and types, not values: %s", schema)
	}
	// A sampled body reaches the WAF whole, repeated values included: one shape for all lines.
	if !strings.Contains(string(schema), `"lines":[[[{"qty":[4],"sku":[8]}]],{"len":2}]`) {
		t.Fatalf("body schema of the lines: %s", schema)
	}
}

func TestRulesInfo(t *testing.T) {
	r := startProcessor(t, testConfig())
	info, err := r.p.Rules()
	if err != nil || info.Loaded < 150 || info.Version == "" || info.LibVersion == "" {
		t.Fatalf("rules info %+v, %v", info, err)
	}
}

func TestCustomRulesetFile(t *testing.T) {
	cfg := testConfig()
	cfg.RulesFile = writeFile(t, t.TempDir(), "rules.json", `{"version":"2.2","metadata":{"rules_version":"9.9.9"},"rules":[
	 {"id":"only-1","name":"Only rule","tags":{"type":"custom","category":"attack_attempt"},
	  "conditions":[{"operator":"match_regex","parameters":{"inputs":[{"address":"server.request.uri.raw"}],"regex":"forbidden"}}]}]}`)
	r := startProcessor(t, cfg)
	if info, _ := r.p.Rules(); info.Version != "9.9.9" || info.Rulesets[0].Loaded != 1 || info.Loaded != 1+info.Rulesets[1].Loaded {
		t.Fatalf("rules info %+v", info)
	}
	if !r.envoy.do(t, httpExchange{path: "/forbidden"}).blocked() {
		t.Fatal("custom ruleset rule did not block")
	}
	// The file replaces the recommended ruleset; wafplane's own stays until the policy turns it off.
	r.envoy.do(t, attacks(t)["query"])
	for _, ev := range r.p.events.recent(1) {
		for _, m := range ev.Rules {
			if m.Module != RulesetWafplane {
				t.Fatalf("rule %s (module %q) fired: the recommended ruleset is still loaded", m.ID, m.Module)
			}
		}
	}
	cfg.RulesFile = writeFile(t, t.TempDir(), "bad.json", `{"rules": "nope"`)
	p, _ := New(cfg, nil, nil)
	if err := p.load(); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Fatalf("a broken ruleset file must fail with its name, got %v", err)
	}
}
