package processor

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf16"

	"sigs.k8s.io/yaml"
)

// rulesetConfigs are the policies the detection and false-positive measurements compare.
var rulesetConfigs = []struct{ short, name, policy string }{
	{"recommended", "recommended only", "rulesets: {wafplane: off}\n"},
	{"low", "wafplane low", "sensitivity: low\n"},
	{"medium", "wafplane medium (default)", "sensitivity: medium\n"},
	{"high", "wafplane high", "sensitivity: high\n"},
}

// Targets of the false-positive gate at the default sensitivity.
const (
	maxNaturalTextFP = 0.001
	maxRequestFP     = 0.005
)

// tally counts blocked requests per kind and the rule that blocked them.
type tally struct {
	total, blocked map[string]int
	byRule         map[string]int
	examples       map[string]string   // rule → one request it blocked
	passed         map[string][]string // kind → requests it let through, a few
}

func (t tally) rate(prefix string) (blocked, total int) {
	for k, n := range t.total {
		if strings.HasPrefix(k, prefix) {
			total += n
			blocked += t.blocked[k]
		}
	}
	return blocked, total
}

func measure(tb testing.TB, r *running, reqs []benignRequest) tally {
	t := tally{total: map[string]int{}, blocked: map[string]int{}, byRule: map[string]int{}, examples: map[string]string{}, passed: map[string][]string{}}
	for _, q := range reqs {
		t.total[q.kind]++
		if !r.envoy.do(tb, q.x).blocked() {
			if len(t.passed[q.kind]) < 2 {
				t.passed[q.kind] = append(t.passed[q.kind], describe(q.x))
			}
			continue
		}
		t.blocked[q.kind]++
		if ev := r.p.events.recent(1); len(ev) > 0 && len(ev[0].Rules) > 0 {
			m := ev[0].Rules[0]
			t.byRule[m.ID]++
			if _, ok := t.examples[m.ID]; !ok && len(m.Parameters) > 0 {
				t.examples[m.ID] = fmt.Sprintf("%s %q", q.kind, m.Parameters[0].Value)
			}
		}
	}
	return t
}

// report prints a line of a measurement: benchmark logs are cut after a few lines.
func report(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// describe shows where a request carries its payload.
func describe(x httpExchange) string {
	s := x.method + " " + x.path
	for _, h := range x.headers {
		if h[0] != "user-agent" && h[0] != "accept" || h[1] != "gotestwaf" && h[1] != "*/*" {
			s += " " + h[0] + ": " + h[1]
		}
	}
	if len(x.body) > 0 {
		s += " body: " + string(x.body)
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func pct(blocked, total int) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(blocked) / float64(total)
}

// BenchmarkFalsePositives is the false-positive gate: the share of benign requests blocked,
// natural text apart, at each sensitivity, with the rules that blocked them. It fails when
// the default sensitivity blocks more than 0.1 % of natural text or 0.5 % of requests.
func BenchmarkFalsePositives(b *testing.B) {
	text := naturalText()
	if len(text) < 1000 {
		b.Skipf("only %d paragraphs of natural text on this machine (want /usr/share/doc, man pages, gettext catalogs)", len(text))
	}
	reqs := append(textExchanges(text), apiRequests(6000, text)...)
	if fp := gotestwafRequests(b, "false-pos"); len(fp) > 0 {
		reqs = append(reqs, fp...)
	}
	sources := map[string]int{}
	for _, s := range text {
		sources[s.source]++
	}
	report("corpus: %d natural-text samples %v, %d requests in all", len(text), sources, len(reqs))
	for _, cfg := range rulesetConfigs {
		b.Run(cfg.short, func(b *testing.B) {
			r := startWithPolicy(b, cfg.policy)
			var t tally
			for b.Loop() {
				t = measure(b, r, reqs)
			}
			tb, tt := t.rate("text/")
			ab, at := t.rate("api/")
			gb, gt := t.rate("gotestwaf/")
			b.ReportMetric(pct(tb, tt), "text-fp-%")
			b.ReportMetric(pct(ab+gb, at+gt), "request-fp-%")
			report("%s: natural text %d/%d (%.3f %%), requests %d/%d (%.3f %%), gotestwaf false-pos %d/%d",
				cfg.name, tb, tt, pct(tb, tt), ab+gb, at+gt, pct(ab+gb, at+gt), gb, gt)
			logKinds(t)
			logRules(t)
			if cfg.short == string(DefaultSensitivity) {
				if pct(tb, tt) > 100*maxNaturalTextFP || pct(ab+gb, at+gt) > 100*maxRequestFP {
					b.Errorf("false-positive gate: natural text %.3f %% (max %.1f %%), requests %.3f %% (max %.1f %%)",
						pct(tb, tt), 100*maxNaturalTextFP, pct(ab+gb, at+gt), 100*maxRequestFP)
				}
			}
		})
	}
}

func logKinds(t tally) {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(t.total)) {
		if t.blocked[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d/%d", k, t.blocked[k], t.total[k]))
		}
	}
	if len(parts) > 0 {
		report("  blocked by kind: %s", strings.Join(parts, ", "))
	}
}

// groups sums blocked and total by the part of the kind that key picks.
func (t tally) groups(key func(kind string) string) map[string][2]int {
	out := map[string][2]int{}
	for k, n := range t.total {
		g := out[key(k)]
		out[key(k)] = [2]int{g[0] + t.blocked[k], g[1] + n}
	}
	return out
}

func logRules(t tally) {
	ids := slices.Collect(maps.Keys(t.byRule))
	sort.Slice(ids, func(i, j int) bool {
		return t.byRule[ids[i]] > t.byRule[ids[j]] || t.byRule[ids[i]] == t.byRule[ids[j]] && ids[i] < ids[j]
	})
	for _, id := range ids {
		ex := t.examples[id]
		if len(ex) > 160 {
			ex = ex[:160] + "…"
		}
		report("  %-12s %5d  e.g. %s", id, t.byRule[id], ex)
	}
}

// BenchmarkDetection measures the share of attacks blocked per family on gotestwaf's test
// cases, when ../shared/corpora is beside the repository (it is not part of it).
func BenchmarkDetection(b *testing.B) {
	attacks := append(gotestwafRequests(b, "owasp"), gotestwafRequests(b, "owasp-api")...)
	if len(attacks) == 0 {
		b.Skip("no attack corpus: ../../shared/corpora/gotestwaf is not beside the repository")
	}
	for _, cfg := range rulesetConfigs {
		b.Run(cfg.short, func(b *testing.B) {
			r := startWithPolicy(b, cfg.policy)
			var t tally
			for b.Loop() {
				t = measure(b, r, attacks)
			}
			blocked, total := t.rate("gotestwaf/")
			b.ReportMetric(pct(blocked, total), "blocked-%")
			report("%s: %d/%d attacks blocked (%.1f %%)", cfg.name, blocked, total, pct(blocked, total))
			families := t.groups(func(kind string) string {
				family, _, _ := strings.Cut(strings.TrimPrefix(kind, "gotestwaf/"), "/")
				return family
			})
			for _, f := range slices.Sorted(maps.Keys(families)) {
				report("  %-22s %4d/%-4d %5.1f %%", f, families[f][0], families[f][1], pct(families[f][0], families[f][1]))
			}
			if os.Getenv("WAFPLANE_BENCH_MISSES") != "" {
				for _, k := range slices.Sorted(maps.Keys(t.passed)) {
					for _, x := range t.passed[k] {
						report("  missed %s: %s", k, x)
					}
				}
			}
			var ps []string
			for p, v := range t.groups(func(kind string) string { return kind[strings.LastIndex(kind, "/")+1:] }) {
				ps = append(ps, fmt.Sprintf("%s %d/%d", p, v[0], v[1]))
			}
			sort.Strings(ps)
			report("  by placement: %s", strings.Join(ps, ", "))
		})
	}
}

// gotestwafCase is one file of gotestwaf's test cases.
type gotestwafCase struct {
	Payload     []string `json:"payload"`
	Encoder     []string `json:"encoder"`
	Placeholder []any    `json:"placeholder"`
	Type        string   `json:"type"`
}

// gotestwafRequests expands a folder of gotestwaf test cases (payload × encoder ×
// placeholder) into requests; kinds are gotestwaf/<file>/<encoder>/<placeholder>.
func gotestwafRequests(tb testing.TB, folder string) []benignRequest {
	files, _ := filepath.Glob(filepath.Join("..", "..", "shared", "corpora", "gotestwaf", "testcases", folder, "*.yml"))
	var out []benignRequest
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		var c gotestwafCase
		if err := yaml.Unmarshal(raw, &c); err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		family := strings.TrimSuffix(filepath.Base(f), ".yml")
		for _, p := range c.Payload {
			for _, enc := range c.Encoder {
				encoded, ok := gotestwafEncode(enc, p)
				if !ok {
					continue
				}
				for _, ph := range c.Placeholder {
					name, _ := ph.(string)
					if m, ok := ph.(map[string]any); ok {
						for k := range m {
							name = k
						}
					}
					if x, ok := gotestwafPlace(name, encoded); ok {
						out = append(out, benignRequest{kind: "gotestwaf/" + family + "/" + enc + "/" + name, x: x})
					}
				}
			}
		}
	}
	return out
}

func gotestwafEncode(encoder, payload string) (string, bool) {
	switch encoder {
	case "Plain":
		return payload, true
	case "URL":
		return url.QueryEscape(payload), true
	case "Base64":
		return base64.StdEncoding.EncodeToString([]byte(payload)), true
	case "Base64Flat":
		return strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(payload)), "="), true
	case "JSUnicode":
		var b strings.Builder
		for _, u := range utf16.Encode([]rune(payload)) {
			fmt.Fprintf(&b, `\u%04x`, u)
		}
		return b.String(), true
	case "XMLEntity":
		var b strings.Builder
		for _, r := range payload {
			fmt.Fprintf(&b, "&#x%x;", r)
		}
		return b.String(), true
	}
	return "", false
}

// gotestwafPlace puts an encoded payload where gotestwaf's placeholder of that name does.
func gotestwafPlace(placeholder, payload string) (httpExchange, bool) {
	x := httpExchange{path: "/", headers: [][2]string{{"user-agent", "gotestwaf"}, {"accept", "*/*"}}, sourceAddress: "198.51.100.7:41000"}
	post := func(contentType, body string) {
		x.method = "POST"
		x.headers = append(x.headers, [2]string{"content-type", contentType})
		x.body = []byte(body)
	}
	switch placeholder {
	case "URLParam":
		x.path = "/?a1b2=" + payload
	case "URLPath":
		x.path = "/" + payload
	case "Header":
		x.headers = append(x.headers, [2]string{"x-a1b2", payload})
	case "UserAgent":
		x.headers[0][1] = payload
	case "RequestBody":
		post("text/plain", payload)
	case "JSONBody":
		post("application/json", payload)
	case "JSONRequest":
		doc, _ := json.Marshal(map[string]any{"test": true, "a1b2": payload})
		post("application/json", string(doc))
	case "HTMLForm":
		post("application/x-www-form-urlencoded", "a1b2="+payload)
	case "HTMLMultipartForm":
		post("multipart/form-data; boundary=b0und4ry", "--b0und4ry\r\nContent-Disposition: form-data; name=\"a1b2\"\r\n\r\n"+payload+"\r\n--b0und4ry--\r\n")
	case "XMLBody":
		post("application/xml", `<?xml version="1.0" encoding="UTF-8"?><a1b2>`+payload+`</a1b2>`)
	case "SOAPBody":
		post("text/xml", `<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><a1b2>`+payload+`</a1b2></soap:Body></soap:Envelope>`)
	case "GraphQL":
		x.path = "/graphql?" + payload
	default:
		return x, false // gRPC and raw requests need their own transport
	}
	return x, true
}
