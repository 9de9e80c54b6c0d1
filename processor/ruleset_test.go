package processor

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func form(body string) httpExchange {
	return httpExchange{method: "POST", path: "/signup", body: []byte(body), sourceAddress: "198.51.100.7:41000",
		headers: [][2]string{{"content-type", "application/x-www-form-urlencoded"}}}
}

// The two false positives users reported of the recommended ruleset: an e-mail address
// with plus addressing sent with a raw '+' (libinjection read "john or@example.com" as SQL)
// and prose starting with "JavaScript:" (crs-941-210). Both pass now, in the query and in
// form bodies, while the attacks that look like them are still blocked.
func TestReportedFalsePositivesPass(t *testing.T) {
	r := startProcessor(t, testConfig())
	for name, x := range map[string]httpExchange{
		"plus address in query":      {path: "/signup?email=john+or@example.com"},
		"plus address in form":       form("email=john+or@example.com&name=John"),
		"JavaScript: prose in query": {path: "/books?q=JavaScript:%20the%20good%20parts"},
		"JavaScript: prose in form":  form("title=JavaScript%3A+The+Definitive+Guide"),
	} {
		if out := r.envoy.do(t, x); out.blocked() {
			t.Errorf("%s: blocked by %v", name, r.p.events.recent(1)[0].Rules)
		}
	}
	for name, x := range map[string]httpExchange{
		"SQL injection with raw '+'":    {path: "/signup?email=x%27+or+%271%27%3D%271"},
		"quoted e-mail SQL injection":   form("email=john%27+or+1%3D1--%40example.com"),
		"javascript: URL in query":      {path: "/go?url=javascript:alert(1)"},
		"javascript: URL in form":       form("url=javascript%3Aalert%28document.domain%29"),
		"javascript: with a line break": {path: "/go?url=javascript://%250aalert(1)"},
	} {
		if !r.envoy.do(t, x).blocked() {
			t.Errorf("%s: not blocked", name)
		}
	}
}

func TestIsPlusAddress(t *testing.T) {
	for v, want := range map[string]bool{
		"john+or@example.com":   true,
		"a.b+c-d_e@mail.co.uk":  true,
		"john@example.com":      false, // no '+': nothing to keep
		"john+or@localhost":     false,
		"x'+or+'1'='1@x.com":    false,
		"john+or%27@example.co": false,
		"+@example.com":         true,
		"john+or@.example.com":  false,
		"john+or@example.com/x": false,
		"1+or+1=1":              false,
	} {
		if got := isPlusAddress(v); got != want {
			t.Errorf("isPlusAddress(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestBase64Text(t *testing.T) {
	for v, want := range map[string]string{
		"PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==": "<script>alert(1)</script>",
		"JyBPUiAnMSc9JzE":                      "' OR '1'='1",
		"PGI-Ym9sZDwvYj4":                      "<b>bold</b>", // URL alphabet
		"administrator":                        "",            // decodes to bytes, not text
		"iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB":     "",            // a PNG
		"short":                                "",
		"not base64 at all!":                   "",
		"YWJj+ZGVm_Z2hp":                       "", // mixed alphabets
	} {
		got, ok := base64Text(v)
		if ok != (want != "") || got != want {
			t.Errorf("base64Text(%q) = %q, %v; want %q", v, got, ok, want)
		}
	}
	var d base64Decoder
	d.addJSONStrings([]byte(`{"a":"SGVsbG8sIHdvcmxkIQ==","b":"has space","PGI-Ym9sZDwvYj4":1,"c":"esc\"aped"}`))
	if len(d.out) != 2 || d.out[0] != "Hello, world!" || d.out[1] != "<b>bold</b>" {
		t.Fatalf("JSON strings decoded: %q", d.out)
	}
	for range 2 * maxBase64Vals {
		d.add("SGVsbG8sIHdvcmxkIQ==")
	}
	if len(d.out) != maxBase64Vals {
		t.Fatalf("decoded values not bounded: %d", len(d.out))
	}
}

// Sensitivity switches the wafplane rules tagged above it, the ruleset can be turned off, and
// a rule turned on by id stays on whatever the sensitivity; /rules and events say which
// ruleset a rule belongs to.
func TestRulesetPolicy(t *testing.T) {
	highRule := httpExchange{path: "/", headers: [][2]string{{"accept", "*/*"}}}                                            // wp-920-180: no User-Agent (high)
	mediumRule := httpExchange{method: "PROPFIND", path: "/", headers: [][2]string{{"user-agent", "t"}, {"accept", "*/*"}}} // wp-920-101 (medium)
	lowRule := httpExchange{path: "/login?user[$ne]=x", headers: [][2]string{{"user-agent", "t"}, {"accept", "*/*"}}}       // wp-950-100 (low) and crs-942-290
	cases := []struct {
		policy            string
		high, medium, low bool
		wafplane          bool
		sensitivity       Sensitivity
	}{
		{policy: "", medium: true, low: true, wafplane: true, sensitivity: SensitivityMedium},
		{policy: "sensitivity: high\n", high: true, medium: true, low: true, wafplane: true, sensitivity: SensitivityHigh},
		{policy: "sensitivity: low\n", low: true, wafplane: true, sensitivity: SensitivityLow},
		{policy: "rulesets: {wafplane: off}\n", low: true}, // the recommended rule still blocks it
		{policy: "sensitivity: low\nrules: [{id: wp-920-180, enabled: true}]\n", high: true, low: true, wafplane: true, sensitivity: SensitivityLow},
	}
	for _, tc := range cases {
		t.Run(strings.TrimSpace(tc.policy), func(t *testing.T) {
			r := startWithPolicy(t, "blocked_ips: []\n"+tc.policy)
			for name, c := range map[string]struct {
				x    httpExchange
				want bool
			}{"high": {highRule, tc.high}, "medium": {mediumRule, tc.medium}, "low": {lowRule, tc.low}} {
				if got := r.envoy.do(t, c.x).blocked(); got != c.want {
					t.Errorf("%s-sensitivity rule: blocked = %v, want %v", name, got, c.want)
				}
			}
			info, _ := r.p.Rules()
			w := info.Rulesets[1]
			if w.Name != RulesetWafplane || w.Enabled != tc.wafplane || w.Sensitivity != tc.sensitivity || w.Enabled != (len(w.Rules) > 0) {
				t.Fatalf("/rules wafplane ruleset: %+v", w)
			}
			if byID := strings.Contains(tc.policy, "wp-920-180"); byID != (len(info.Overrides) == 1 && info.Overrides[0].ID == "wp-920-180") {
				t.Fatalf("/rules overrides %+v for policy %q", info.Overrides, tc.policy)
			}
		})
	}
}

func TestWafplaneRuleEventsAndMetrics(t *testing.T) {
	r := startProcessor(t, testConfig())
	if !r.envoy.do(t, httpExchange{method: "PROPFIND", path: "/"}).blocked() {
		t.Fatal("PROPFIND not blocked")
	}
	ev := r.p.events.recent(1)[0]
	if len(ev.Rules) != 1 || ev.Rules[0].ID != "wp-920-101" || ev.Rules[0].Module != RulesetWafplane {
		t.Fatalf("event rules %+v", ev.Rules)
	}
	if got := testutil.ToFloat64(r.p.metrics.ruleHits.WithLabelValues("wp-920-101", RulesetWafplane)); got != 1 {
		t.Fatalf("rule_hits_total{rule=wp-920-101,module=wafplane} = %v", got)
	}
	info, _ := r.p.Rules()
	if len(info.Rulesets) != 2 || info.Rulesets[0].Name != RulesetRecommended || info.Rulesets[0].Version == "" ||
		info.Rulesets[1].Version == "" || len(info.Rulesets[1].Rules) < 60 {
		t.Fatalf("/rules rulesets %+v", info.Rulesets)
	}
}

func TestRulesetPolicyValidation(t *testing.T) {
	dir := t.TempDir()
	for policy, want := range map[string]string{
		"rulesets: {recommended: off}\n": "rulesets.recommended: unknown ruleset",
		"sensitivity: paranoid\n":        `sensitivity "paranoid": want low, medium or high`,
		"rulesets: {wafplane: maybe}\n":  "want on or off",
	} {
		_, err := LoadPolicy(writeFile(t, dir, "p.yaml", policy))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error with %q", policy, err, want)
		}
	}
	// A rejected switch leaves the policy in force: the wafplane ruleset stays on.
	r := startWithPolicy(t, "sensitivity: high\n")
	if err := os.WriteFile(r.p.cfg.PolicyFile, []byte("sensitivity: paranoid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if info, _ := r.p.Rules(); info.PolicyError != "" {
			if w := info.Rulesets[1]; !w.Enabled || w.Sensitivity != SensitivityHigh {
				t.Fatalf("a rejected policy changed the rulesets: %+v", w)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("policy error not reported")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wafplane's rules read the request headers but those of a fixed grammar; the recommended
// ruleset and the protocol rules read them all.
func TestFreeHeaders(t *testing.T) {
	r := parseRequestHeaders(httpExchange{path: "/", headers: [][2]string{{"sec-fetch-mode", "navigate"},
		{"accept-language", "fr"}, {"x-custom", "v"}, {"user-agent", "ua"}, {"accept", "*/*"}}}.requestHeaderMap())
	a := r.addresses("", "")
	free, all := a[addrFreeHeaders].(map[string][]string), a[addrHeaders].(map[string][]string)
	if len(free) != 4 || free["x-custom"] == nil || free["user-agent"] == nil || free["accept"] == nil || free["host"] == nil {
		t.Fatalf("free headers %v", free)
	}
	if len(all) != 6 {
		t.Fatalf("all headers %v", all)
	}
}

// A recommended rule that medium sensitivity replaces comes back when the policy turns it
// on by id: crs-930-120 blocks an OS file named anywhere in a value, wafplane's only when
// the value is the file.
func TestPolicyTurnsAReplacedRuleBackOn(t *testing.T) {
	x := httpExchange{path: "/x?q=see+/etc/passwd+now", headers: [][2]string{{"user-agent", "t"}, {"accept", "*/*"}}}
	if startWithPolicy(t, "sensitivity: medium\n").envoy.do(t, x).blocked() {
		t.Fatal("blocked at medium: crs-930-120 is not replaced")
	}
	if !startWithPolicy(t, "sensitivity: medium\nrules: [{id: crs-930-120, enabled: true}]\n").envoy.do(t, x).blocked() {
		t.Fatal("crs-930-120 turned on by id in the policy did not block")
	}
}
