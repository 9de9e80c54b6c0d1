package processor

import (
	"net/url"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Addresses of libddwaf's data model that the processor fills.
const (
	addrMethod          = "server.request.method"
	addrURIRaw          = "server.request.uri.raw"
	addrQuery           = "server.request.query"
	addrPathParams      = "server.request.path_params"
	addrHeaders         = "server.request.headers.no_cookies"
	addrFreeHeaders     = "wafplane.request.headers" // without fixedGrammarHeaders
	addrCookies         = "server.request.cookies"
	addrClientIP        = "http.client_ip"
	addrUserID          = "usr.id"
	addrBody            = "server.request.body"
	addrFilenames       = "server.request.body.filenames"
	addrResponseStatus  = "server.response.status"
	addrResponseHeaders = "server.response.headers.no_cookies"
	addrResponseBody    = "server.response.body"
	addrProcessor       = "waf.context.processor"
)

// headerValue prefers raw_value, where Envoy puts header values, and accepts value too.
func headerValue(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

// request is what the processor knows of one HTTP request after its headers.
type request struct {
	method      string
	uri         string // path and query only
	path        string
	shownPath   string // path as events, logs and the console show it: session tokens redacted
	authority   string
	headers     map[string][]string // lowercase keys, no pseudo-headers, no cookie
	cookies     map[string][]string
	contentType string
	accept      string
	requestID   string
	grpc        bool
	hasBody     bool
}

// parseRequestHeaders reads what Envoy sends on request_headers. Missing pseudo-headers
// leave fields empty; nothing here fails.
func parseRequestHeaders(hm *corev3.HeaderMap) *request {
	r := &request{headers: make(map[string][]string, len(hm.GetHeaders()))}
	for _, h := range hm.GetHeaders() {
		key := strings.ToLower(h.GetKey())
		val := headerValue(h)
		switch key {
		case ":method":
			r.method = val
		case ":path":
			r.uri = originForm(val)
		case ":authority":
			r.authority = val
		case "cookie":
			parseCookies(val, &r.cookies)
			continue
		}
		if strings.HasPrefix(key, ":") || key == "" {
			continue
		}
		switch key {
		case "content-type":
			r.contentType = val
			r.grpc = strings.HasPrefix(strings.ToLower(val), "application/grpc")
		case "accept":
			r.accept = val
		case "x-request-id":
			r.requestID = val
		}
		r.headers[key] = append(r.headers[key], val)
	}
	if r.authority != "" && r.headers["host"] == nil {
		r.headers["host"] = []string{r.authority}
	}
	r.path, _, _ = strings.Cut(r.uri, "?")
	r.shownPath = redactPathParams(r.path)
	return r
}

// originForm strips scheme and authority from an absolute-form request target.
func originForm(target string) string {
	if i := strings.Index(target, "://"); i > 0 && !strings.ContainsAny(target[:i], "/?") {
		rest := target[i+3:]
		if j := strings.IndexAny(rest, "/?"); j >= 0 {
			return rest[j:]
		}
		return "/"
	}
	return target
}

// addresses returns the request-phase addresses for the WAF.
func (r *request) addresses(clientIP, userID string) map[string]any {
	a := map[string]any{
		addrURIRaw:  r.uri,
		addrHeaders: r.headers,
	}
	if r.method != "" { // absent, rather than a method no rule expects
		a[addrMethod] = r.method
	}
	var decoded base64Decoder
	if _, rawQuery, ok := strings.Cut(r.uri, "?"); ok {
		q := parseQuery(rawQuery)
		a[addrQuery] = q
		decoded.addAll(q)
	}
	if params := pathSegments(r.path); len(params) > 0 {
		a[addrPathParams] = params
		for _, p := range params {
			decoded.add(p)
		}
	}
	if len(r.cookies) > 0 {
		a[addrCookies] = r.cookies
	}
	if clientIP != "" {
		a[addrClientIP] = clientIP
	}
	decoded.addAll(r.cookies)
	decoded.addAll(r.headers)
	a[addrFreeHeaders] = r.freeHeaders()
	if len(decoded.out) > 0 {
		a[addrBase64] = decoded.out
	}
	if userID != "" {
		a[addrUserID] = userID
	}
	return a
}

// fixedGrammarHeaders are request headers whose values browsers and proxies fill from a
// fixed grammar (tokens, dates, quality lists) and that no application reads as data, or that
// Envoy sets itself. wafplane's rules skip them; the recommended ruleset and the protocol rules
// still see every header.
var fixedGrammarHeaders = map[string]bool{
	"accept-encoding": true, "accept-language": true, "accept-charset": true, "cache-control": true,
	"connection": true, "content-length": true, "if-match": true, "if-none-match": true,
	"if-modified-since": true, "if-unmodified-since": true, "if-range": true, "pragma": true, "te": true,
	"upgrade-insecure-requests": true, "dnt": true, "priority": true, "sec-fetch-dest": true,
	"sec-fetch-mode": true, "sec-fetch-site": true, "sec-fetch-user": true, "sec-ch-ua": true,
	"sec-ch-ua-mobile": true, "sec-ch-ua-platform": true, "sec-gpc": true, "x-request-id": true,
	"x-forwarded-proto": true, "x-envoy-expected-rq-timeout-ms": true, "x-envoy-internal": true,
	"x-envoy-attempt-count": true,
}

// freeHeaders are the headers that can carry free text: all but fixedGrammarHeaders.
func (r *request) freeHeaders() map[string][]string {
	out := make(map[string][]string, len(r.headers))
	for k, v := range r.headers {
		if !fixedGrammarHeaders[k] {
			out[k] = v
		}
	}
	return out
}

// unescape decodes percent-encoding and keeps the raw text when it is invalid, so that a
// malformed escape never hides a payload from the rules.
func unescape(s string, plusIsSpace bool) string {
	if plusIsSpace {
		if v, err := url.QueryUnescape(s); err == nil {
			return v
		}
		return s
	}
	if v, err := url.PathUnescape(s); err == nil {
		return v
	}
	return s
}

// parseQuery is url.ParseQuery without its all-or-nothing error on bad escapes.
func parseQuery(raw string) map[string][]string {
	q := map[string][]string{}
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k = unescape(k, true)
		q[k] = append(q[k], unescape(v, !isPlusAddress(v)))
	}
	return q
}

// isPlusAddress reports whether a raw query value is an e-mail address with plus
// addressing (john+news@example.com) sent without encoding its '+'. Form decoding would
// make that '+' a space, and "john or@example.com" reads to libinjection as SQL; the address
// is what the sender meant. Only letters, digits and ._+- before the @ and a plain domain
// after it qualify: no quote, no space, no percent-escape, so nothing a rule looks for can
// ride along.
func isPlusAddress(v string) bool {
	local, domain, ok := strings.Cut(v, "@")
	if !ok || local == "" || !strings.Contains(local, "+") || !strings.Contains(domain, ".") ||
		strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return false
	}
	for _, c := range local {
		if !isAlnum(c) && !strings.ContainsRune("._+-", c) {
			return false
		}
	}
	for _, c := range domain {
		if !isAlnum(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// pathSegments gives the decoded path segments, so that payloads placed in the path reach
// the rules that read path parameters.
func pathSegments(path string) []string {
	var out []string
	for seg := range strings.SplitSeq(path, "/") {
		if seg != "" {
			out = append(out, unescape(seg, false))
		}
	}
	return out
}

func parseCookies(header string, into *map[string][]string) {
	for part := range strings.SplitSeq(header, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if *into == nil {
			*into = map[string][]string{}
		}
		(*into)[k] = append((*into)[k], unescape(strings.Trim(v, `"`), false))
	}
}

// parseResponseHeaders returns the status and the headers without cookies.
func parseResponseHeaders(hm *corev3.HeaderMap) (status string, headers map[string][]string, contentType string) {
	headers = make(map[string][]string, len(hm.GetHeaders()))
	for _, h := range hm.GetHeaders() {
		key := strings.ToLower(h.GetKey())
		val := headerValue(h)
		switch {
		case key == ":status":
			status = val
		case strings.HasPrefix(key, ":"), key == "set-cookie", key == "":
		default:
			if key == "content-type" {
				contentType = val
			}
			headers[key] = append(headers[key], val)
		}
	}
	return status, headers, contentType
}
