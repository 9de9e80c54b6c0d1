package processor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http/httptest"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	sqli = "1' UNION SELECT password FROM users --"
	xss  = "<script>alert(document.cookie)</script>"
)

func multipartBody(t *testing.T, field, value, filename string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if field != "" {
		if err := w.WriteField(field, value); err != nil {
			t.Fatal(err)
		}
	}
	if filename != "" {
		fw, err := w.CreateFormFile("upload", filename)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(fw, "harmless content")
	}
	w.Close()
	return w.FormDataContentType(), buf.Bytes()
}

// attacks places a payload in each part of a request that the processor must inspect.
func attacks(t *testing.T) map[string]httpExchange {
	mpType, mpBody := multipartBody(t, "comment", xss, "")
	fileType, fileBody := multipartBody(t, "", "", "shell.php.jpg")
	return map[string]httpExchange{
		"path":   {path: "/users/" + strings.ReplaceAll(sqli, " ", "%20")},
		"query":  {path: "/search?q=" + strings.ReplaceAll(xss, " ", "+")},
		"header": {path: "/", headers: [][2]string{{"user-agent", "Arachni/v1.5.1"}}},
		"cookie": {path: "/", headers: [][2]string{{"cookie", "session=1%27%20OR%201%3D1%20--; theme=dark"}}},
		"json body": {method: "POST", path: "/api/orders", headers: [][2]string{{"content-type", "application/json"}},
			body: []byte(`{"order":{"note":"` + sqli + `"}}`)},
		"form body": {method: "POST", path: "/login", headers: [][2]string{{"content-type", "application/x-www-form-urlencoded"}},
			body: []byte("user=bob&comment=" + strings.ReplaceAll(xss, " ", "+"))},
		"multipart field":    {method: "POST", path: "/upload", headers: [][2]string{{"content-type", mpType}}, body: mpBody},
		"multipart filename": {method: "POST", path: "/upload", headers: [][2]string{{"content-type", fileType}}, body: fileBody},
		"xml body": {method: "POST", path: "/soap", headers: [][2]string{{"content-type", "application/xml"}},
			body: []byte(`<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><order><note>&xxe;</note></order>`)},
		"text body": {method: "POST", path: "/notes", headers: [][2]string{{"content-type", "text/plain"}},
			body: []byte(strings.Repeat("lorem ipsum ", 700) + xss)},
	}
}

func TestAttacksBlockedInBlockMode(t *testing.T) {
	r := startProcessor(t, testConfig())
	for name, x := range attacks(t) {
		t.Run(name, func(t *testing.T) {
			out := r.envoy.do(t, x)
			if !out.blocked() || out.status() != 403 {
				t.Fatalf("want 403 immediate response, got %+v", out)
			}
			if out.upstreamReached {
				t.Fatal("the request reached the upstream before the verdict")
			}
			if len(x.body) > 0 && out.blockedAt != "request_body" {
				t.Fatalf("body attack blocked at %s, want request_body", out.blockedAt)
			}
		})
	}
	if got := testutil.ToFloat64(r.p.metrics.requests.WithLabelValues("", "blocked")); got != float64(len(attacks(t))) {
		t.Fatalf("blocked requests metric = %v, want %d", got, len(attacks(t)))
	}
}

func TestAttacksOnlyReportedInMonitorMode(t *testing.T) {
	cfg := testConfig()
	cfg.Mode = ModeMonitor
	r := startProcessor(t, cfg)
	for name, x := range attacks(t) {
		t.Run(name, func(t *testing.T) {
			before := len(r.p.events.recent(0))
			out := r.envoy.do(t, x)
			if out.blocked() || !out.upstreamReached {
				t.Fatalf("monitor mode blocked: %+v", out)
			}
			events := r.p.events.recent(0)
			if len(events) != before+1 {
				t.Fatalf("want one new security event, have %d then %d", before, len(events))
			}
			if events[0].Action != "monitored" || len(events[0].Rules) == 0 {
				t.Fatalf("event = %+v", events[0])
			}
		})
	}
}

// Envoy Gateway cannot send initial metadata; the route comes from the xds.route_name
// attribute its EnvoyExtensionPolicy asks for, and the metadata wins where both are sent.
func TestRouteFromAttribute(t *testing.T) {
	r := startProcessor(t, testConfig())
	x := attacks(t)["query"]
	x.routeName = "httproute/shop/search/rule/0/match/0/*"
	if out := r.envoy.do(t, x); !out.blocked() {
		t.Fatal("not blocked")
	}
	if ev := r.p.events.recent(1)[0]; ev.Route != x.routeName {
		t.Fatalf("event route %q, want the attribute %q", ev.Route, x.routeName)
	}
	x.metadata = map[string]string{MetadataRoute: "search"}
	r.envoy.do(t, x)
	if ev := r.p.events.recent(1)[0]; ev.Route != "search" {
		t.Fatalf("event route %q, want the metadata's", ev.Route)
	}
}

// A sidecar's processor is told its gateway by flag (Envoy Gateway sends no metadata); the
// stream's metadata still wins.
func TestGatewayDefaultAndMetadata(t *testing.T) {
	cfg := testConfig()
	cfg.Gateway = "shop/api"
	r := startProcessor(t, cfg)
	x := attacks(t)["query"]
	r.envoy.do(t, x)
	if ev := r.p.events.recent(1)[0]; ev.Gateway != "shop/api" {
		t.Fatalf("event gateway %q, want the configured shop/api", ev.Gateway)
	}
	x.metadata = map[string]string{MetadataGateway: "shop/edge"}
	r.envoy.do(t, x)
	if ev := r.p.events.recent(1)[0]; ev.Gateway != "shop/edge" {
		t.Fatalf("event gateway %q, want the metadata's", ev.Gateway)
	}
}

func TestModeFromStreamMetadata(t *testing.T) {
	r := startProcessor(t, testConfig()) // default block
	x := attacks(t)["query"]
	x.metadata = map[string]string{MetadataMode: "monitor", MetadataGateway: "shop/edge", MetadataRoute: "search"}
	if out := r.envoy.do(t, x); out.blocked() {
		t.Fatal("x-wafplane-mode: monitor blocked")
	}
	ev := r.p.events.recent(1)[0]
	if ev.Gateway != "shop/edge" || ev.Route != "search" || ev.Mode != ModeMonitor {
		t.Fatalf("event gateway/route/mode = %q %q %q", ev.Gateway, ev.Route, ev.Mode)
	}
	x.metadata[MetadataMode] = "off"
	before := len(r.p.events.recent(0))
	out := r.envoy.do(t, x)
	if out.blocked() || len(r.p.events.recent(0)) != before {
		t.Fatal("x-wafplane-mode: off still evaluated the request")
	}
	if len(out.overrides) != 1 || out.overrides[0].GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SKIP {
		t.Fatalf("off should ask Envoy to skip the response phase, overrides = %v", out.overrides)
	}
	x.metadata[MetadataMode] = "nonsense"
	if out := r.envoy.do(t, x); !out.blocked() {
		t.Fatal("an invalid mode in metadata must fall back to the default (block)")
	}
	// Monitor by default, block by metadata: the handle blocks for whichever mode the stream names.
	cfg := testConfig()
	cfg.Mode = ModeMonitor
	m := startProcessor(t, cfg)
	x.metadata[MetadataMode] = "block"
	if out := m.envoy.do(t, x); !out.blocked() {
		t.Fatal("x-wafplane-mode: block on a monitor-mode processor did not block")
	}
}

func TestBenignRequestsPass(t *testing.T) {
	r := startProcessor(t, testConfig())
	for _, x := range []httpExchange{
		{path: "/products?page=2&sort=price", headers: [][2]string{{"user-agent", "Mozilla/5.0"}, {"accept", "text/html"}}},
		{method: "POST", path: "/api/orders", headers: [][2]string{{"content-type", "application/json"}},
			body: []byte(`{"items":[{"sku":"A-1","qty":2}],"note":"leave at the door"}`)},
		{method: "POST", path: "/login", headers: [][2]string{{"content-type", "application/x-www-form-urlencoded"}},
			body: []byte("user=alice&remember=on")},
	} {
		if out := r.envoy.do(t, x); out.blocked() {
			t.Fatalf("%s %s blocked: %v", x.method, x.path, out.immediate)
		}
	}
	if n := len(r.p.events.recent(0)); n != 0 {
		t.Fatalf("benign requests produced %d events", n)
	}
}

func TestBodyModeOverride(t *testing.T) {
	r := startProcessor(t, testConfig())
	big := bytes.Repeat([]byte("a"), 3<<20)
	x := httpExchange{method: "POST", path: "/upload", headers: [][2]string{{"content-type", "text/plain"}}, body: big, bufferLimit: 64 << 10}
	out := r.envoy.do(t, x)
	if len(out.overrides) == 0 || out.overrides[0].GetRequestBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL {
		t.Fatalf("want a BUFFERED_PARTIAL mode_override on request headers, got %v", out.overrides)
	}
	if out.overrides[0].GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SEND {
		t.Fatal("the override must keep response headers flowing to the processor")
	}
	if out.bodySentToProc != 64<<10 || out.blocked() {
		t.Fatalf("a large benign body: saw %d bytes, blocked=%v", out.bodySentToProc, out.blocked())
	}
	// No override for bodyless requests, nor when body inspection is off.
	if out := r.envoy.do(t, httpExchange{path: "/"}); len(out.overrides) != 0 {
		t.Fatalf("GET without body got an override: %v", out.overrides)
	}
	x = attacks(t)["json body"]
	x.metadata = map[string]string{MetadataBodyLimit: "0"}
	if out := r.envoy.do(t, x); len(out.overrides) != 0 || out.blocked() {
		t.Fatalf("body limit 0: override %v, blocked %v", out.overrides, out.blocked())
	}
}

func TestBodiesSentByFilterConfig(t *testing.T) {
	r := startProcessor(t, testConfig())
	attack := []byte(`{"a":"` + strings.Repeat("x", 40<<10) + `","note":"` + sqli + `"}`)
	for _, tc := range []struct {
		name  string
		mode  extprocfilterv3.ProcessingMode_BodySendMode
		chunk int
	}{
		{"buffered", extprocfilterv3.ProcessingMode_BUFFERED, 0},
		{"buffered partial", extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL, 0},
		{"streamed", extprocfilterv3.ProcessingMode_STREAMED, 4 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := httpExchange{method: "POST", path: "/api", headers: [][2]string{{"content-type", "application/json"}},
				body: attack, requestBodyMode: tc.mode, chunkSize: tc.chunk}
			out := r.envoy.do(t, x)
			if len(out.overrides) != 0 {
				t.Fatalf("no override expected when the filter sends bodies, got %v", out.overrides)
			}
			if !out.blocked() || out.blockedAt != "request_body" {
				t.Fatalf("want block at request_body, got %+v", out)
			}
		})
	}
	t.Run("streamed past the limit", func(t *testing.T) {
		x := httpExchange{method: "POST", path: "/api", headers: [][2]string{{"content-type", "text/plain"}},
			body: append([]byte(xss), bytes.Repeat([]byte("b"), 64<<10)...), requestBodyMode: extprocfilterv3.ProcessingMode_STREAMED,
			chunkSize: 1 << 10, metadata: map[string]string{MetadataBodyLimit: "2048"}}
		out := r.envoy.do(t, x)
		if !out.blocked() || out.bodySentToProc > 4<<10 {
			t.Fatalf("want a block once the 2 KiB limit is reached, got blocked=%v after %d bytes", out.blocked(), out.bodySentToProc)
		}
	})
}

func TestTruncatedJSONStillInspected(t *testing.T) {
	r := startProcessor(t, testConfig())
	body := []byte(`{"note":"` + sqli + `","more":[1,2,3,{"deep":"` + strings.Repeat("z", 5000))
	x := httpExchange{method: "POST", path: "/api", headers: [][2]string{{"content-type", "application/json"}}, body: body}
	if out := r.envoy.do(t, x); !out.blocked() {
		t.Fatal("truncated JSON with an attack was not blocked")
	}
	// The same with the body cut by the body limit in the middle of the document.
	x.body = []byte(`{"note":"` + sqli + `","pad":"` + strings.Repeat("p", 10000) + `"}`)
	x.metadata = map[string]string{MetadataBodyLimit: "100"}
	if out := r.envoy.do(t, x); !out.blocked() {
		t.Fatal("JSON cut at the body limit was not inspected")
	}
	if got := testutil.ToFloat64(r.p.metrics.truncations.WithLabelValues("body_limit")); got < 1 {
		t.Fatal("body limit truncation not counted")
	}
}

func TestResponsePhase(t *testing.T) {
	dir := t.TempDir()
	policy := writeFile(t, dir, "policy.yaml", `
custom_rules:
  - id: leak-001
    name: Debug header leaks a stack trace
    tags: {type: information_leak, category: attack_attempt}
    conditions:
      - operator: match_regex
        parameters:
          inputs: [{address: server.response.headers.no_cookies, key_path: [x-debug-trace]}]
          regex: "Exception"
    on_match: [block]
  - id: leak-002
    name: Card number in a JSON response
    tags: {type: information_leak, category: attack_attempt}
    conditions:
      - operator: match_regex
        parameters:
          inputs: [{address: server.response.body}]
          regex: "^4[0-9]{15}$"
    on_match: [block]
`)
	cfg := testConfig()
	cfg.PolicyFile = policy
	r := startProcessor(t, cfg)
	out := r.envoy.do(t, httpExchange{path: "/orders", status: 500, respHeaders: [][2]string{{"x-debug-trace", "java.lang.NullPointerException"}},
		respBody: []byte("oops")})
	if !out.blocked() || out.blockedAt != "response_headers" {
		t.Fatalf("want the response replaced at response_headers, got %+v", out)
	}
	// Status rules run when the headers arrive, not at the end of the body.
	r.envoy.do(t, httpExchange{path: "/docs/readme.txt", status: 404, respBody: []byte("not found")})
	if ev := r.p.events.recent(1)[0]; ev.Phase != "response" || ev.Rules[0].ID[:3] != "nfd" {
		t.Fatalf("404 scan not detected at response headers: %+v", ev)
	}
	// JSON response bodies only when enabled.
	leak := httpExchange{path: "/cards", respHeaders: [][2]string{{"content-type", "application/json"}}, respBody: []byte(`{"card":"4111111111111111"}`)}
	if out := r.envoy.do(t, leak); out.blocked() {
		t.Fatal("response body inspected while disabled")
	}
	leak.metadata = map[string]string{MetadataResponseBody: "true"}
	out = r.envoy.do(t, leak)
	if !out.blocked() || out.blockedAt != "response_body" {
		t.Fatalf("want a block at response_body, got %+v", out)
	}
}

func TestRedirect(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.PolicyFile = writeFile(t, dir, "policy.yaml", `
actions:
  - id: goto-login
    type: redirect_request
    parameters: {status_code: 307, location: /login}
  - id: bad-redirect
    type: redirect_request
    parameters: {status_code: 200, location: /elsewhere}
custom_rules:
  - id: redirect-001
    name: Send the old admin to the login page
    tags: {type: custom, category: custom}
    conditions:
      - operator: match_regex
        parameters: {inputs: [{address: server.request.uri.raw}], regex: "^/old-admin"}
    on_match: [goto-login]
  - id: redirect-002
    name: Invalid redirect status
    tags: {type: custom, category: custom}
    conditions:
      - operator: match_regex
        parameters: {inputs: [{address: server.request.uri.raw}], regex: "^/moved"}
    on_match: [bad-redirect]
`)
	r := startProcessor(t, cfg)
	out := r.envoy.do(t, httpExchange{path: "/old-admin/users"})
	if out.status() != 307 || out.header("location") != "/login" {
		t.Fatalf("want 307 to /login, got %d %q", out.status(), out.header("location"))
	}
	if out = r.envoy.do(t, httpExchange{path: "/moved"}); out.status() != 303 {
		t.Fatalf("an invalid redirect status must become 303, got %d", out.status())
	}
	if ev := r.p.events.recent(1)[0]; ev.Action != "redirected" {
		t.Fatalf("event action %q", ev.Action)
	}
}

func TestAcceptNegotiation(t *testing.T) {
	for _, tc := range []struct {
		accept string
		html   bool
	}{
		{"", false},
		{"application/json", false},
		{"text/html", true},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", true},
		{"application/json;q=0.5, text/html;q=0.9", true},
		{"text/html;q=0.1, application/json", false},
		{"*/*", false},
		{"text/*", true},
		{"text/*;q=0.3, */*;q=0.5", false},
		{"text/html;q=0, */*", false},
		{"image/png", false},
		{"TEXT/HTML", true},
		{"text/html;q=abc, application/json;q=0.1", false},
	} {
		if got := preferHTML(tc.accept); got != tc.html {
			t.Errorf("Accept %q: html=%v, want %v", tc.accept, got, tc.html)
		}
	}
	r := startProcessor(t, testConfig())
	x := attacks(t)["query"]
	x.headers = [][2]string{{"accept", "text/html;q=0.9, application/json;q=0.2"}}
	out := r.envoy.do(t, x)
	if ct := out.header("content-type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("content-type %q, want text/html", ct)
	}
	body := string(out.immediate.GetBody())
	if out.header("content-length") != fmt.Sprint(len(body)) {
		t.Fatalf("content-length %q for a %d-byte page", out.header("content-length"), len(body))
	}
	id := r.p.events.recent(1)[0].ResponseID
	if id == "" || !strings.Contains(body, id) {
		t.Fatalf("security response id %q not in the page", id)
	}
	x.headers = [][2]string{{"accept", "application/json"}}
	out = r.envoy.do(t, x)
	var page map[string]any
	if err := json.Unmarshal(out.immediate.GetBody(), &page); err != nil || page["security_response_id"] == "" {
		t.Fatalf("JSON page %q: %v", out.immediate.GetBody(), err)
	}
}

func TestBlockingTemplatesFromFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.BlockedTemplateJSON = writeFile(t, dir, "b.json", `{"blocked":true,"id":"[security_response_id]"}`)
	cfg.BlockedTemplateHTML = writeFile(t, dir, "b.html", `<p>nope [security_response_id]</p>`)
	r := startProcessor(t, cfg)
	x := attacks(t)["query"]
	out := r.envoy.do(t, x)
	if !strings.HasPrefix(string(out.immediate.GetBody()), `{"blocked":true,"id":"`) || strings.Contains(string(out.immediate.GetBody()), "[security_response_id]") {
		t.Fatalf("JSON template not used: %s", out.immediate.GetBody())
	}
	x.headers = [][2]string{{"accept", "text/html"}}
	if out := r.envoy.do(t, x); !strings.HasPrefix(string(out.immediate.GetBody()), "<p>nope ") {
		t.Fatalf("HTML template not used: %s", out.immediate.GetBody())
	}
}

func TestHealthHandler(t *testing.T) {
	p, err := New(testConfig(), nil, nil)
	if err == nil {
		rec := httptest.NewRecorder()
		p.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 503 {
			t.Fatalf("health before load = %d, want 503", rec.Code)
		}
	} else {
		t.Fatal(err)
	}
	r := startProcessor(t, testConfig())
	rec := httptest.NewRecorder()
	r.p.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"ruleset_version"`) {
		t.Fatalf("health after load = %d %s", rec.Code, rec.Body)
	}
}
