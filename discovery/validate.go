package discovery

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Validate reports every problem of the gateway, each naming the gateway and the field.
func (g *Gateway) Validate() error {
	v := &validator{prefix: "gateway " + g.Key()}
	if g.Namespace == "" || g.Name == "" {
		v.add("namespace and name: both required")
	}
	if len(g.Listeners) == 0 {
		v.add("listeners: at least one required")
	}
	names := map[string]bool{}
	ports := map[string]Listener{} // bind address → first listener there
	hosts := map[string]string{}   // bind address + hostname → listener
	for i, l := range g.Listeners {
		f := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			v.add("%s.name: required", f)
		} else if names[l.Name] {
			v.add("%s.name: %q used twice", f, l.Name)
		}
		names[l.Name] = true
		if l.Address != "" {
			if _, err := netip.ParseAddr(l.Address); err != nil {
				v.add("%s.address: %q is not an IP address", f, l.Address)
			}
		}
		if l.Port == 0 || l.Port > 65535 {
			v.add("%s.port: %d is out of range 1-65535", f, l.Port)
		}
		// Listeners may share a port, as in the Gateway API, when they share the protocol
		// and differ in hostname: Envoy picks by Host (HTTP) or SNI (HTTPS).
		bind := fmt.Sprintf("%s:%d", l.Address, l.Port)
		if first, ok := ports[bind]; ok && protocolOf(first) != protocolOf(l) {
			v.add("%s.port: %d is used by listener %q with protocol %s", f, l.Port, first.Name, protocolOf(first))
		} else if !ok {
			ports[bind] = l
		}
		hk := bind + " " + HostOrAny(l.Hostname)
		if other, ok := hosts[hk]; ok {
			v.add("%s.hostname: listener %q on port %d has the same hostname %q", f, other, l.Port, HostOrAny(l.Hostname))
		}
		hosts[hk] = l.Name
		switch l.Protocol {
		case "", ProtocolHTTP:
			if l.TLS != nil {
				v.add("%s.tls: only for protocol HTTPS", f)
			}
		case ProtocolHTTPS:
			inline := l.TLS != nil && l.TLS.SecretName != "" && len(l.TLS.CertPEM) > 0 && len(l.TLS.KeyPEM) > 0
			if !inline && (l.TLS == nil || l.TLS.CertFile == "" || l.TLS.KeyFile == "") {
				v.add("%s.tls: certFile and keyFile required for HTTPS", f)
			}
		default:
			v.add("%s.protocol: %q is not HTTP or HTTPS", f, l.Protocol)
		}
		v.hostname(f+".hostname", l.Hostname, true)
	}
	v.protection("protection", g.Protection)
	routes := map[string]bool{}
	for i, r := range g.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		if r.Name == "" {
			v.add("%s.name: required", f)
		} else if routes[r.Name] {
			v.add("%s.name: %q used twice", f, r.Name)
		}
		routes[r.Name] = true
		for j, l := range r.Listeners {
			if !names[l] {
				v.add("%s.listeners[%d]: no listener named %q", f, j, l)
			}
		}
		for j, h := range r.Hostnames {
			v.hostname(fmt.Sprintf("%s.hostnames[%d]", f, j), h, false)
		}
		if len(r.Rules) == 0 {
			v.add("%s.rules: at least one required", f)
		}
		for j, rule := range r.Rules {
			v.rule(fmt.Sprintf("%s.rules[%d]", f, j), rule)
		}
		if r.Protection != nil {
			v.protection(f+".protection", *r.Protection)
			if r.Protection.MessageTimeout != 0 {
				v.add("%s.protection.messageTimeout: set it on the gateway; Envoy's per-route ext_proc override has no message timeout", f)
			}
		}
	}
	return errors.Join(v.errs...)
}

type validator struct {
	prefix string
	errs   []error
}

func (v *validator) add(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", v.prefix, fmt.Sprintf(format, args...)))
}

// hostname accepts a DNS name, optionally with a leading "*." wildcard; "*" alone only for
// listeners (it means any).
func (v *validator) hostname(field, h string, anyAllowed bool) {
	if h == "" || (anyAllowed && h == "*") {
		return
	}
	name := strings.TrimPrefix(h, "*.")
	if strings.ContainsAny(name, "*:/ ") || !hostnamePattern.MatchString(name) {
		v.add("%s: %q is not a hostname (a DNS name, optionally starting with \"*.\")", field, h)
	}
}

var hostnamePattern = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*$`)

func (v *validator) protection(field string, p Protection) {
	switch p.Mode {
	case "", ModeBlock, ModeMonitor, ModeOff:
	default:
		v.add("%s.mode: %q is not block, monitor or off", field, p.Mode)
	}
	if p.MessageTimeout < 0 {
		v.add("%s.messageTimeout: must not be negative", field)
	}
	if p.RequestBodyLimit != nil && *p.RequestBodyLimit < 0 {
		v.add("%s.requestBodyLimit: must not be negative (0 disables body inspection)", field)
	}
}

func (v *validator) rule(field string, r Rule) {
	prefixMatch := len(r.Matches) > 0
	for i, m := range r.Matches {
		f := fmt.Sprintf("%s.matches[%d]", field, i)
		pathType := MatchPrefix
		if m.Path != nil {
			pathType = m.Path.Type
			switch m.Path.Type {
			case "", MatchPrefix, MatchExact:
				if !strings.HasPrefix(m.Path.Value, "/") {
					v.add("%s.path.value: %q must start with /", f, m.Path.Value)
				}
				if strings.ContainsAny(m.Path.Value, "?#") {
					v.add("%s.path.value: %q must not hold a query or fragment", f, m.Path.Value)
				}
			case MatchRegex:
				v.regex(f+".path.value", m.Path.Value)
			default:
				v.add("%s.path.type: %q is not Exact, PathPrefix or RegularExpression", f, m.Path.Type)
			}
		}
		if pathType != "" && pathType != MatchPrefix {
			prefixMatch = false
		}
		for j, h := range m.Headers {
			v.value(fmt.Sprintf("%s.headers[%d]", f, j), h)
		}
		for j, q := range m.QueryParams {
			v.value(fmt.Sprintf("%s.queryParams[%d]", f, j), q)
		}
		if m.Method != "" && m.Method != strings.ToUpper(m.Method) {
			v.add("%s.method: %q must be upper case", f, m.Method)
		}
	}
	fl := r.Filters
	if fl.Redirect != nil {
		if len(r.Backends) > 0 {
			v.add("%s: a redirect answers the request itself; remove backends", field)
		}
		if fl.Rewrite != nil {
			v.add("%s.filters: redirect and rewrite exclude each other", field)
		}
		rd := fl.Redirect
		switch rd.StatusCode {
		case 0, 301, 302, 303, 307, 308:
		default:
			v.add("%s.filters.redirect.statusCode: %d is not 301, 302, 303, 307 or 308", field, rd.StatusCode)
		}
		switch rd.Scheme {
		case "", "http", "https":
		default:
			v.add("%s.filters.redirect.scheme: %q is not http or https", field, rd.Scheme)
		}
		if rd.Port > 65535 {
			v.add("%s.filters.redirect.port: %d is out of range", field, rd.Port)
		}
		v.paths(field+".filters.redirect", rd.Path, rd.PathPrefix, prefixMatch)
	}
	if fl.Rewrite != nil {
		v.paths(field+".filters.rewrite", fl.Rewrite.Path, fl.Rewrite.PathPrefix, prefixMatch)
	}
	v.headers(field+".filters.requestHeaders", fl.RequestHeaders)
	v.headers(field+".filters.responseHeaders", fl.ResponseHeaders)
	for i, b := range r.Backends {
		f := fmt.Sprintf("%s.backends[%d]", field, i)
		if b.Invalid != "" {
			continue
		}
		if b.Host == "" && b.Name == "" {
			v.add("%s.host: required", f)
		}
		if b.Port == 0 || b.Port > 65535 {
			v.add("%s.port: %d is out of range 1-65535", f, b.Port)
		}
		for j, e := range b.Endpoints {
			if _, err := netip.ParseAddr(e.Address); err != nil {
				v.add("%s.endpoints[%d].address: %q is not an IP address", f, j, e.Address)
			}
			if e.Port == 0 || e.Port > 65535 {
				v.add("%s.endpoints[%d].port: %d is out of range 1-65535", f, j, e.Port)
			}
		}
	}
	if r.Timeout < 0 {
		v.add("%s.timeout: must not be negative", field)
	}
}

func (v *validator) paths(field, full, prefix string, prefixMatch bool) {
	if full != "" && prefix != "" {
		v.add("%s: path and pathPrefix exclude each other", field)
	}
	if full != "" && !strings.HasPrefix(full, "/") {
		v.add("%s.path: %q must start with /", field, full)
	}
	if prefix != "" {
		if !strings.HasPrefix(prefix, "/") {
			v.add("%s.pathPrefix: %q must start with /", field, prefix)
		}
		if !prefixMatch {
			v.add("%s.pathPrefix: needs every match of the rule to be a PathPrefix match", field)
		}
	}
}

func (v *validator) value(field string, m ValueMatch) {
	if m.Name == "" {
		v.add("%s.name: required", field)
	}
	switch m.Type {
	case "", MatchExact:
	case MatchRegex:
		v.regex(field+".value", m.Value)
	default:
		v.add("%s.type: %q is not Exact or RegularExpression", field, m.Type)
	}
}

func (v *validator) regex(field, re string) {
	if _, err := regexp.Compile(re); err != nil {
		v.add("%s: %q is not a valid RE2 expression: %v", field, re, err)
	}
}

func (v *validator) headers(field string, h *HeaderFilter) {
	if h == nil {
		return
	}
	for i, x := range append(append([]Header{}, h.Add...), h.Set...) {
		if x.Name == "" || strings.HasPrefix(x.Name, ":") || strings.EqualFold(x.Name, "host") {
			v.add("%s[%d].name: %q cannot be changed (empty, pseudo-header or host)", field, i, x.Name)
		}
	}
	for i, x := range h.Remove {
		if x == "" || strings.HasPrefix(x, ":") || strings.EqualFold(x, "host") {
			v.add("%s.remove[%d]: %q cannot be removed (empty, pseudo-header or host)", field, i, x)
		}
	}
}

func protocolOf(l Listener) string {
	if l.Protocol == "" {
		return ProtocolHTTP
	}
	return l.Protocol
}
