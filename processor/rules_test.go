package processor

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	waf "github.com/DataDog/go-libddwaf/v4"
	"github.com/DataDog/go-libddwaf/v4/timer"
	"sigs.k8s.io/yaml"
)

// ruleCases are one rule's test cases (processor/testdata/rules/*.yaml): requests that must
// match it and near misses that must not.
type ruleCases struct {
	Rule    string        `json:"rule"`
	Match   []ruleRequest `json:"match"`
	NoMatch []ruleRequest `json:"nomatch"`
}

// ruleRequest is a request as Envoy hands it over; the body is read by its content-type.
type ruleRequest struct {
	Method  string            `json:"method,omitempty"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
}

func (r ruleRequest) String() string {
	s := r.Method + " " + r.Path
	for k, v := range r.Headers {
		s += " " + k + ": " + v
	}
	if r.Body != "" {
		s += " body: " + r.Body
	}
	return strings.TrimSpace(s)
}

func (r ruleRequest) exchange() httpExchange {
	x := httpExchange{method: r.Method, path: r.Path, body: []byte(r.Body), sourceAddress: "198.51.100.7:41000"}
	for k, v := range r.Headers {
		x.headers = append(x.headers, [2]string{k, v})
	}
	slices.SortFunc(x.headers, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return x
}

// addresses maps the request with the processor's own code, as a stream does.
func (r ruleRequest) addresses() map[string]any {
	req := parseRequestHeaders(r.exchange().requestHeaderMap())
	a := req.addresses("198.51.100.7", "")
	if r.Body != "" {
		maps.Copy(a, parseBody(req.contentType, []byte(r.Body), true).addresses())
	}
	return a
}

func loadRuleCases(t *testing.T) map[string]ruleCases {
	t.Helper()
	files, err := filepath.Glob("testdata/rules/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule cases: %v", err)
	}
	out := map[string]ruleCases{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cases []ruleCases
		if err := yaml.UnmarshalStrict(raw, &cases); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range cases {
			if _, dup := out[c.Rule]; dup {
				t.Fatalf("%s: rule %s has cases in two places", f, c.Rule)
			}
			out[c.Rule] = c
		}
	}
	return out
}

// ruleHandle builds a WAF with one rule of the wafplane ruleset alone and nothing blocking,
// so that what it matches is that rule's doing and no other rule can hide it.
func ruleHandle(t *testing.T, rule map[string]any) *waf.Handle {
	t.Helper()
	b, err := waf.NewBuilder("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	d, err := b.AddOrUpdateConfig("rule", map[string]any{"version": "2.2", "rules": []any{rule}})
	if err == nil {
		err = diagnosticsError(d)
	}
	if err != nil {
		t.Fatalf("rule %s: %v", rule["id"], err)
	}
	h := b.Build()
	if h == nil {
		t.Fatalf("rule %s: no handle", rule["id"])
	}
	return h
}

func matches(t *testing.T, h *waf.Handle, r ruleRequest) []RuleMatch {
	t.Helper()
	ctx, err := h.NewContext(timer.WithUnlimitedBudget())
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	res, err := ctx.Run(waf.RunAddressData{Persistent: r.addresses()})
	if err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	return eventsFromWAF(res.Events)
}

// TestWafplaneRules runs every rule's cases: each attack must match the rule, each near
// miss must not. A rule without both kinds of case fails the test.
func TestWafplaneRules(t *testing.T) {
	rs, _, err := wafplaneRuleset()
	if err != nil {
		t.Fatal(err)
	}
	cases := loadRuleCases(t)
	rules, _ := rs["rules"].([]any)
	seen := map[string]bool{}
	for _, r := range rules {
		rule, _ := r.(map[string]any)
		id := str(rule["id"])
		seen[id] = true
		t.Run(id, func(t *testing.T) {
			c, ok := cases[id]
			if !ok || len(c.Match) == 0 || len(c.NoMatch) == 0 {
				t.Fatalf("rule %s needs cases that match and near misses that do not in testdata/rules", id)
			}
			h := ruleHandle(t, rule)
			defer h.Close()
			for _, req := range c.Match {
				if got := matches(t, h, req); len(got) == 0 {
					t.Errorf("attack not matched: %s", req)
				}
			}
			for _, req := range c.NoMatch {
				if got := matches(t, h, req); len(got) != 0 {
					t.Errorf("near miss matched (%+v): %s", got[0].Parameters, req)
				}
			}
		})
	}
	for id := range cases {
		if !seen[id] {
			t.Errorf("testdata/rules has cases for %s, which the ruleset does not have", id)
		}
	}
}

// TestRuleAttacksThroughProcessor sends every attack case through a real processor with
// both rulesets at high sensitivity: each is blocked, by the rule it tests or another.
func TestRuleAttacksThroughProcessor(t *testing.T) {
	r := startWithPolicy(t, "sensitivity: high\n")
	for id, c := range loadRuleCases(t) {
		for _, req := range c.Match {
			if !r.envoy.do(t, req.exchange()).blocked() {
				t.Errorf("%s: attack not blocked by the processor: %s", id, req)
			}
		}
	}
}

// TestRuleNearMissesAtDefaultSensitivity runs every near miss against the whole wafplane
// ruleset as the default sensitivity leaves it: no rule of ours may match any of them, so
// one rule's near miss is not another rule's false positive.
func TestRuleNearMissesAtDefaultSensitivity(t *testing.T) {
	rs, _, err := wafplaneRuleset()
	if err != nil {
		t.Fatal(err)
	}
	b, err := waf.NewBuilder("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for path, f := range map[string]map[string]any{"ruleset": rs, "sensitivity": sensitivityFragment(DefaultSensitivity, nil)} {
		d, err := b.AddOrUpdateConfig(path, f)
		if err == nil {
			err = diagnosticsError(d)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	h := b.Build()
	defer h.Close()
	level := map[string]Sensitivity{}
	for _, r := range wafplaneRules(rs, SensitivityHigh) {
		level[r.ID] = r.Sensitivity
	}
	for id, c := range loadRuleCases(t) {
		if level[id] == SensitivityHigh {
			continue // a high rule's near misses may be what another high rule is for
		}
		for _, req := range c.NoMatch {
			for _, m := range matches(t, h, req) {
				t.Errorf("%s near miss matched by %s (%+v): %s", id, m.ID, m.Parameters, req)
			}
		}
	}
}

// startWithPolicy runs a processor with a policy file of the given YAML.
func startWithPolicy(t testing.TB, policy string) *running {
	t.Helper()
	cfg := testConfig()
	cfg.PolicyFile = writeFile(t, t.TempDir(), "policy.yaml", policy)
	r := startProcessor(t, cfg)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if info, err := r.p.Rules(); err == nil && info.PolicyFile != "" {
			if info.PolicyError != "" {
				t.Fatalf("policy rejected: %s", info.PolicyError)
			}
			return r
		}
		if time.Now().After(deadline) {
			t.Fatal("policy not applied after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
