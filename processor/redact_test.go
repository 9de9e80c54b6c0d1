package processor

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestSecretsRedactedInEvents: security events (on /events and in the log line, the same
// value) never show credentials, card data or session ids, and still show what matched
// elsewhere.
func TestSecretsRedactedInEvents(t *testing.T) {
	r := startProcessor(t, testConfig())
	xssWith := func(marker string) string { return "<script>alert('" + marker + "')</script>" }
	query := func(name, value string) httpExchange {
		return httpExchange{path: "/search?" + name + "=" + url.QueryEscape(value)}
	}
	jsonBody := func(name, value string) httpExchange {
		b, _ := json.Marshal(map[string]string{name: value})
		return httpExchange{method: "POST", path: "/api", headers: [][2]string{{"content-type", "application/json"}}, body: b}
	}
	for _, c := range []struct {
		name    string
		x       httpExchange
		hidden  []string // must not appear
		visible string   // must appear
	}{
		{"cookie value beyond the match", httpExchange{path: "/", headers: [][2]string{{"cookie", "prefs=Z9SECRETCOOKIETAIL%27%20OR%201%3D1%20--"}}},
			[]string{"Z9SECRETCOOKIETAIL"}, ""},
		{"session cookie", httpExchange{path: "/", headers: [][2]string{{"cookie", "session=SESSVAL1%27%20OR%201%3D1%20--"}}},
			[]string{"SESSVAL1"}, ""},
		{"session query parameter", query("session", xssWith("SESSQ")), []string{"SESSQ"}, ""},
		{"sessionid", query("sessionid", xssWith("SESSID")), []string{"SESSID"}, ""},
		{"cvv body field", jsonBody("cvv", xssWith("CVV123")), []string{"CVV123"}, ""},
		{"cvc", jsonBody("card_cvc", xssWith("CVC456")), []string{"CVC456"}, ""},
		{"pan", jsonBody("pan", xssWith("PANVAL")), []string{"PANVAL"}, ""},
		{"ssn", jsonBody("ssn", xssWith("SSNVAL")), []string{"SSNVAL"}, ""},
		{"otp", query("otp", xssWith("OTPVAL")), []string{"OTPVAL"}, ""},
		{"pin", jsonBody("pin", xssWith("PINVAL")), []string{"PINVAL"}, ""},
		{"a *secret* name", jsonBody("client_secret", xssWith("CLSECRET")), []string{"CLSECRET"}, ""},
		{"a *key* name", jsonBody("x-signing-key", xssWith("SIGNKEY")), []string{"SIGNKEY"}, ""},
		{"password", jsonBody("password", xssWith("PWVAL")), []string{"PWVAL"}, ""},
		{"a card number anywhere", query("q", xssWith("x")+" 4111 1111 1111 1111"), []string{"4111 1111 1111 1111", "4111111111111111"}, "Redacted card number"},
		{"a card number without spaces", jsonBody("comment", xssWith("x")+"4012888888881881"), []string{"4012888888881881"}, "Redacted card number"},
		{"an ordinary parameter stays readable", query("q", xssWith("VISIBLE")), nil, "VISIBLE"},
		{"short names only as whole words: company", jsonBody("company", xssWith("COMPANYVAL")), nil, "COMPANYVAL"},
		{"a long number that is not a card", query("q", xssWith("x")+" 1234567890123456"), nil, "1234567890123456"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(r.p.events.recent(0))
			if out := r.envoy.do(t, c.x); !out.blocked() {
				t.Fatal("not blocked: the case needs a request that matches a rule")
			}
			events := r.p.events.recent(0)
			if len(events) != before+1 {
				t.Fatalf("%d new events", len(events)-before)
			}
			b, _ := json.Marshal(events[0])
			for _, h := range c.hidden {
				if strings.Contains(string(b), h) {
					t.Errorf("event shows %q: %s", h, b)
				}
			}
			if c.visible != "" && !strings.Contains(string(b), c.visible) {
				t.Errorf("event lacks %q: %s", c.visible, b)
			}
		})
	}
}

func TestLuhn(t *testing.T) {
	for s, want := range map[string]bool{"4111111111111111": true, "4111-1111-1111-1111": true, "4111111111111112": false, "79927398713": true} {
		if luhn(s) != want {
			t.Errorf("luhn(%q) = %v", s, !want)
		}
	}
}

// What a rule matched in a cookie is shown, capped; the cookie's value never.
func TestCookieHighlightCapped(t *testing.T) {
	long := strings.Repeat("x", 200)
	p := MatchParameter{Address: cookiesAddress, Value: "secret-session-" + long, Highlight: []string{long}}
	redactParameter(&p)
	if p.Value != redacted || len([]rune(p.Highlight[0])) != maxCookieHighlight+1 || !strings.HasSuffix(p.Highlight[0], "…") {
		t.Errorf("value %q, highlight %q (%d runes)", p.Value, p.Highlight[0], len([]rune(p.Highlight[0])))
	}
}

// Free text and paths carry what key names cannot reveal (issue 29): a CVV and an SSN in
// a comment field, a session id as a path parameter. Neither reaches /events, the log or
// the console's top paths.
func TestValuesRedactedWhereverEventsGo(t *testing.T) {
	var logBuf syncBuffer
	r := startProcessorWithLog(t, testConfig(), slog.New(slog.NewJSONHandler(&logBuf, nil)))
	form := url.Values{"comment": {"<script>alert(1)</script> cvv 7391 ssn 078-05-1120"}}.Encode()
	for _, x := range []httpExchange{
		{method: "POST", path: "/checkout", headers: [][2]string{{"content-type", "application/x-www-form-urlencoded"}}, body: []byte(form)},
		{path: "/shop;jsessionid=A1B2SESSIONC3D4/item?q=" + url.QueryEscape("<script>alert(1)</script>")},
		{path: "/cart;PHPSESSID=PHPSESS9Z8Y7/add;sid=SIDVALUE42?q=" + url.QueryEscape("' OR 1=1 --")},
	} {
		if out := r.envoy.do(t, x); !out.blocked() {
			t.Fatalf("%s not blocked: the case needs a request that matches a rule", x.path)
		}
	}
	events, _ := json.Marshal(r.p.events.recent(0))
	top := httptest.NewRecorder()
	r.p.TopHandler().ServeHTTP(top, httptest.NewRequest("GET", "/top", nil))
	for where, text := range map[string]string{"/events": string(events), "log": logBuf.String(), "top paths": top.Body.String()} {
		for _, secret := range []string{"7391", "078-05-1120", "A1B2SESSIONC3D4", "PHPSESS9Z8Y7", "SIDVALUE42"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows %q", where, secret)
			}
		}
	}
	if !strings.Contains(string(events), `/shop;jsessionid=\u003cRedacted\u003e/item`) || !strings.Contains(top.Body.String(), `/shop;jsessionid=\u003cRedacted\u003e/item`) {
		t.Errorf("the redacted path is not shown as such:\n%s\n%s", events, top.Body)
	}
}

func TestRedactText(t *testing.T) {
	for in, want := range map[string]string{
		"cvv 7391 ssn 078-05-1120":         "cvv <Redacted> ssn <Redacted ssn>",
		"CVC2: 123, exp 12/29":             "CVC2: <Redacted>, exp 12/29",
		"security code=9876":               "security code=<Redacted>",
		"social security number 078051120": "social security number <Redacted ssn>",
		"call 219-09-9999 now":             "call <Redacted ssn> now",
		"not issued: 000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000": "not issued: 000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000",
		"on 2026-12-07 at 10:00":     "on 2026-12-07 at 10:00",
		"/a;JSESSIONID=x1;foo=bar/b": "/a;JSESSIONID=<Redacted>;foo=bar/b",
		"/a;jsessionid=x1?q=1":       "/a;jsessionid=<Redacted>?q=1",
		"cvv2 is checked":            "cvv2 is checked",
		"order 1234 of 5":            "order 1234 of 5",
	} {
		if got := redactText(in); got != want {
			t.Errorf("redactText(%q) = %q, want %q", in, got, want)
		}
	}
}
