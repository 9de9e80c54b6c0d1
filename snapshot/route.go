package snapshot

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wafplane/wafplane/discovery"
)

// entry is one Envoy route with what orders it among the others of its virtual host; ties
// keep the model's order.
type entry struct {
	route *routev3.Route
	rank  precedence
}

// precedence follows the Gateway API: exact path, then regex, then the longest prefix,
// then method, then more header matches, then more query matches.
type precedence struct {
	kind, length, method, headers, query int
}

func (a precedence) before(b precedence) bool {
	if a.kind != b.kind {
		return a.kind > b.kind
	}
	if a.length != b.length {
		return a.length > b.length
	}
	if a.method != b.method {
		return a.method > b.method
	}
	if a.headers != b.headers {
		return a.headers > b.headers
	}
	return a.query > b.query
}

// routeConfiguration builds the routes of listeners that share an HTTP connection
// manager: a virtual host per hostname, its routes in Gateway API precedence order. A
// route's entries are built once and shared by every virtual host it lands in, and added
// once to a virtual host that two of its listeners meet in.
func (t *translation) routeConfiguration(name string, ls []discovery.Listener) *routev3.RouteConfiguration {
	hosts := map[string][]entry{}
	built := map[int][]entry{}
	added := map[string]bool{} // hostname + route index
	for _, l := range ls {
		for ri, r := range t.gw.Routes {
			if !attached(r, l) {
				continue
			}
			hostnames := discovery.IntersectHostnames(l.Hostname, r.Hostnames)
			if len(hostnames) == 0 {
				continue
			}
			t.attachedRoutes[ri] = true
			entries, ok := built[ri]
			if !ok {
				eff := discovery.Resolve(t.gw.Protection, r.Protection)
				for rj, rule := range r.Rules {
					entries = append(entries, t.ruleEntries(r, rj, rule, eff)...)
				}
				built[ri] = entries
			}
			for _, h := range hostnames {
				k := fmt.Sprintf("%s\x00%d", h, ri)
				if !added[k] {
					added[k] = true
					hosts[h] = append(hosts[h], entries...)
				}
			}
		}
	}
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	sort.Strings(names)
	rc := &routev3.RouteConfiguration{Name: name}
	for _, h := range names {
		entries := hosts[h]
		sort.SliceStable(entries, func(i, j int) bool { return entries[i].rank.before(entries[j].rank) })
		vh := &routev3.VirtualHost{Name: h, Domains: []string{h}}
		for _, e := range entries {
			vh.Routes = append(vh.Routes, e.route)
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc
}

func attached(r discovery.Route, l discovery.Listener) bool {
	if len(r.Listeners) == 0 {
		return true
	}
	for _, n := range r.Listeners {
		if n == l.Name {
			return true
		}
	}
	return false
}

// ruleEntries makes one Envoy route per match of the rule (one matching everything when
// the rule has no match).
func (t *translation) ruleEntries(r discovery.Route, ruleIndex int, rule discovery.Rule, eff discovery.Effective) []entry {
	matches := rule.Matches
	if len(matches) == 0 {
		matches = []discovery.Match{{}}
	}
	var out []entry
	for mi, m := range matches {
		rt := &routev3.Route{
			Name:  fmt.Sprintf("%s/%d/%d", r.Name, ruleIndex, mi),
			Match: routeMatch(m),
		}
		t.action(rt, m, rule)
		headerFilters(rt, rule.Filters)
		if t.protected {
			rt.TypedPerFilterConfig = map[string]*anypb.Any{ExtProcFilterName: extProcPerRoute(r.Name, t.gatewayEff, eff)}
		}
		out = append(out, entry{route: rt, rank: rank(m)})
	}
	return out
}

func rank(m discovery.Match) precedence {
	p := precedence{kind: 1, length: 1, method: boolInt(m.Method != ""), headers: len(m.Headers), query: len(m.QueryParams)}
	if m.Path != nil {
		p.length = len(m.Path.Value)
		switch m.Path.Type {
		case discovery.MatchExact:
			p.kind = 3
		case discovery.MatchRegex:
			p.kind = 2
		}
	}
	return p
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func routeMatch(m discovery.Match) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if p := m.Path; p != nil {
		switch p.Type {
		case discovery.MatchExact:
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: p.Value}
		case discovery.MatchRegex:
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: p.Value}}
		default:
			// Gateway API prefixes match whole segments: /foo matches /foo and /foo/bar,
			// not /foobar.
			prefix := strings.TrimSuffix(p.Value, "/")
			if prefix == "" {
				rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
			} else {
				rm.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: prefix}
			}
		}
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{
			Name:                 strings.ToLower(h.Name),
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatch(h)},
		})
	}
	if m.Method != "" {
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{
			Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: m.Method},
			}},
		})
	}
	for _, q := range m.QueryParams {
		rm.QueryParameters = append(rm.QueryParameters, &routev3.QueryParameterMatcher{
			Name:                         q.Name,
			QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatch(q)},
		})
	}
	return rm
}

func stringMatch(v discovery.ValueMatch) *matcherv3.StringMatcher {
	if v.Type == discovery.MatchRegex {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v.Value}}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v.Value}}
}

// action is what the route does: redirect, forward to one or several weighted clusters, or,
// with no usable backend, answer 500 as the Gateway API says.
func (t *translation) action(rt *routev3.Route, m discovery.Match, rule discovery.Rule) {
	if rd := rule.Filters.Redirect; rd != nil {
		rt.Action = &routev3.Route_Redirect{Redirect: redirect(rd, m)}
		return
	}
	var weighted []*routev3.WeightedCluster_ClusterWeight
	valid, invalid := false, false
	for _, b := range rule.Backends {
		w := uint32(1)
		if b.Weight != nil {
			w = *b.Weight
		}
		name := invalidBackend
		if b.Invalid == "" {
			t.addBackend(b)
			name = clusterName(b)
		}
		if w > 0 {
			valid = valid || b.Invalid == ""
			invalid = invalid || b.Invalid != ""
			weighted = append(weighted, &routev3.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(w)})
		}
	}
	if !valid {
		rt.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 500}}
		return
	}
	// An unresolved backend's share goes to a cluster that does not exist, which Envoy
	// answers with 500, as the Gateway API asks.
	ra := &routev3.RouteAction{}
	if invalid {
		ra.ClusterNotFoundResponseCode = routev3.RouteAction_INTERNAL_SERVER_ERROR
	}
	if len(weighted) == 1 {
		ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: weighted[0].Name}
	} else {
		ra.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: weighted}}
	}
	if rule.Timeout > 0 {
		ra.Timeout = durationpb.New(time.Duration(rule.Timeout))
	}
	if rw := rule.Filters.Rewrite; rw != nil {
		if rw.Hostname != "" {
			ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.Hostname}
		}
		switch {
		case rw.Path != "":
			ra.RegexRewrite = fullPathRewrite(rw.Path)
		case rw.PathPrefix != "":
			ra.PrefixRewrite, ra.RegexRewrite = prefixRewrite(m, rw.PathPrefix)
		}
	}
	rt.Action = &routev3.Route_Route{Route: ra}
}

// invalidBackend is the cluster name, never defined, of backends that do not resolve.
const invalidBackend = "wafplane-invalid-backend"

// fullPathRewrite replaces the whole path and keeps the query.
func fullPathRewrite(path string) *matcherv3.RegexMatchAndSubstitute {
	return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/[^?]*"}, Substitution: path}
}

// prefixRewrite replaces the matched prefix. Replacing with "/" needs a regex, or
// /foo/bar would become //bar.
func prefixRewrite(m discovery.Match, replacement string) (string, *matcherv3.RegexMatchAndSubstitute) {
	prefix := ""
	if m.Path != nil {
		prefix = strings.TrimSuffix(m.Path.Value, "/")
	}
	if prefix == "" {
		// The root prefix matched nothing but "/": /x under /api is /api/x.
		return strings.TrimSuffix(replacement, "/") + "/", nil
	}
	if replacement == "/" {
		return "", &matcherv3.RegexMatchAndSubstitute{
			Pattern:      &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(prefix) + "/*"},
			Substitution: "/",
		}
	}
	return strings.TrimSuffix(replacement, "/"), nil
}

var redirectCodes = map[int]routev3.RedirectAction_RedirectResponseCode{
	0:   routev3.RedirectAction_FOUND,
	301: routev3.RedirectAction_MOVED_PERMANENTLY,
	302: routev3.RedirectAction_FOUND,
	303: routev3.RedirectAction_SEE_OTHER,
	307: routev3.RedirectAction_TEMPORARY_REDIRECT,
	308: routev3.RedirectAction_PERMANENT_REDIRECT,
}

func redirect(rd *discovery.Redirect, m discovery.Match) *routev3.RedirectAction {
	a := &routev3.RedirectAction{
		HostRedirect: rd.Hostname,
		PortRedirect: rd.Port,
		ResponseCode: redirectCodes[rd.StatusCode],
	}
	if rd.Scheme != "" {
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: rd.Scheme}
	}
	switch {
	case rd.Path != "":
		a.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: rd.Path}
	case rd.PathPrefix != "":
		prefix, re := prefixRewrite(m, rd.PathPrefix)
		if re != nil {
			a.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: re}
		} else {
			a.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: prefix}
		}
	}
	return a
}

func headerFilters(rt *routev3.Route, f discovery.Filters) {
	if h := f.RequestHeaders; h != nil {
		rt.RequestHeadersToAdd = headerOptions(h)
		rt.RequestHeadersToRemove = h.Remove
	}
	if h := f.ResponseHeaders; h != nil {
		rt.ResponseHeadersToAdd = headerOptions(h)
		rt.ResponseHeadersToRemove = h.Remove
	}
}

func headerOptions(h *discovery.HeaderFilter) []*corev3.HeaderValueOption {
	var out []*corev3.HeaderValueOption
	add := func(hs []discovery.Header, action corev3.HeaderValueOption_HeaderAppendAction) {
		for _, x := range hs {
			out = append(out, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: strings.ToLower(x.Name), Value: x.Value},
				AppendAction: action,
			})
		}
	}
	add(h.Set, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
	add(h.Add, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)
	return out
}
