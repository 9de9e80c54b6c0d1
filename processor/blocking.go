package processor

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// securityResponseIDPlaceholder is the placeholder Datadog's templates use, so that their
// custom templates work unchanged.
const securityResponseIDPlaceholder = "[security_response_id]"

const (
	defaultBlockedJSON = `{"errors":[{"title":"You've been blocked","detail":"Sorry, you cannot access this page. Please contact the site administrator and quote the security response id."}],"security_response_id":"[security_response_id]"}`
	defaultBlockedHTML = `<!DOCTYPE html><html lang="en"><head><meta charset="UTF-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>You've been blocked</title></head><body><h1>Sorry, you cannot access this page.</h1><p>Please contact the site administrator and quote the security response id: [security_response_id]</p></body></html>`
)

// templates are the bodies of blocking pages.
type templates struct{ json, html string }

func loadTemplates(jsonFile, htmlFile string) (templates, error) {
	t := templates{json: defaultBlockedJSON, html: defaultBlockedHTML}
	for _, f := range []struct {
		path string
		into *string
	}{{jsonFile, &t.json}, {htmlFile, &t.html}} {
		if f.path == "" {
			continue
		}
		raw, err := os.ReadFile(f.path)
		if err != nil {
			return t, fmt.Errorf("blocked template: %w", err)
		}
		*f.into = string(raw)
	}
	return t, nil
}

// verdict is what the WAF's actions ask for.
type verdict struct {
	block      bool
	redirect   bool
	status     int
	grpcStatus int
	location   string
	pageType   string // auto, json or html
	responseID string
}

// verdictFromActions reads block_request and redirect_request; redirect wins, as it
// carries more intent than a plain block.
func verdictFromActions(actions map[string]any) verdict {
	if p, ok := actions["redirect_request"].(map[string]any); ok {
		v := verdict{redirect: true, status: intParam(p, "status_code", 303), location: strParam(p, "location"),
			responseID: strParam(p, "security_response_id")}
		switch v.status {
		case 301, 302, 303, 307, 308:
		default:
			v.status = 303
		}
		if v.location != "" {
			return v
		}
	}
	if p, ok := actions["block_request"].(map[string]any); ok {
		v := verdict{block: true, status: intParam(p, "status_code", 403), grpcStatus: intParam(p, "grpc_status_code", 10),
			pageType: strParam(p, "type"), responseID: strParam(p, "security_response_id")}
		if v.status < 200 || v.status > 599 {
			v.status = 403
		}
		return v
	}
	return verdict{}
}

func intParam(p map[string]any, key string, def int) int {
	switch v := p[key].(type) {
	case uint64:
		return int(v)
	case int64:
		return int(v)
	case float64:
		return int(v)
	case string:
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func strParam(p map[string]any, key string) string {
	s, _ := p[key].(string)
	return s
}

// immediateResponse builds Envoy's answer for a block or a redirect.
func (t templates) immediateResponse(v verdict, req *request) *extprocv3.ProcessingResponse {
	ir := &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(v.status)},
		Headers: &extprocv3.HeaderMutation{},
		Details: "wafplane_blocked",
	}
	if v.redirect {
		ir.Headers.SetHeaders = append(ir.Headers.SetHeaders, setHeader("location", v.location))
		ir.Details = "wafplane_redirected"
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: ir}}
	}
	if req != nil && req.grpc {
		ir.GrpcStatus = &extprocv3.GrpcStatus{Status: uint32(v.grpcStatus)}
	}
	contentType, body := "application/json", t.json
	if pageIsHTML(v.pageType, acceptOf(req)) {
		contentType, body = "text/html; charset=utf-8", t.html
	}
	body = strings.ReplaceAll(body, securityResponseIDPlaceholder, v.responseID)
	ir.Body = []byte(body)
	ir.Headers.SetHeaders = append(ir.Headers.SetHeaders,
		setHeader("content-type", contentType),
		setHeader("content-length", strconv.Itoa(len(body))))
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: ir}}
}

func acceptOf(r *request) string {
	if r == nil {
		return ""
	}
	return r.accept
}

func setHeader(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, RawValue: []byte(value)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func pageIsHTML(pageType, accept string) bool {
	switch pageType {
	case "html":
		return true
	case "json":
		return false
	}
	return preferHTML(accept)
}

// preferHTML negotiates between JSON and HTML with the Accept header's q-values. The most
// specific range that matches a type gives its quality; JSON wins ties, as APIs are the
// usual clients and a JSON answer is readable everywhere.
func preferHTML(accept string) bool {
	if strings.TrimSpace(accept) == "" {
		return false
	}
	type rng struct {
		typ, sub string
		q        float64
	}
	var ranges []rng
	for part := range strings.SplitSeq(accept, ",") {
		fields := strings.Split(part, ";")
		typ, sub, _ := strings.Cut(strings.ToLower(strings.TrimSpace(fields[0])), "/")
		q := 1.0
		for _, p := range fields[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "q") {
				if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
					q = f
				} else {
					q = 0
				}
			}
		}
		ranges = append(ranges, rng{typ, sub, q})
	}
	// Most specific first: type/sub, then type/*, then */*.
	sort.SliceStable(ranges, func(i, j int) bool {
		return specificity(ranges[i].typ, ranges[i].sub) > specificity(ranges[j].typ, ranges[j].sub)
	})
	quality := func(typ, sub string) float64 {
		for _, r := range ranges {
			if (r.typ == typ || r.typ == "*") && (r.sub == sub || r.sub == "*") {
				return r.q
			}
		}
		return 0
	}
	return quality("text", "html") > quality("application", "json")
}

func specificity(typ, sub string) int {
	switch {
	case typ == "*":
		return 0
	case sub == "*":
		return 1
	}
	return 2
}
