package kubernetes

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/wafplane/wafplane/discovery"
)

// attach attaches a route to the listeners of one parent Gateway that accept it and says
// how that went, in the terms of the Gateway API.
func (ix *index) attach(r *gwapiv1.HTTPRoute, ref gwapiv1.ParentReference, model *discovery.Gateway,
	states map[string]*listenerState, controller string, now metav1.Time) gwapiv1.RouteParentStatus {
	ps := gwapiv1.RouteParentStatus{ParentRef: ref, ControllerName: gwapiv1.GatewayController(controller)}
	cond := func(typ string, ok bool, reason, msg string) {
		st := metav1.ConditionFalse
		if ok {
			st = metav1.ConditionTrue
		}
		ps.Conditions = append(ps.Conditions, metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg,
			ObservedGeneration: r.Generation, LastTransitionTime: now})
	}
	routeHosts := make([]string, 0, len(r.Spec.Hostnames))
	for _, h := range r.Spec.Hostnames {
		routeHosts = append(routeHosts, string(h))
	}
	var accepted, unserved []string // listeners served, and accepted ones whose references do not resolve
	reason, msg := string(gwapiv1.RouteReasonNoMatchingParent), "no listener matches the parentRef's sectionName and port"
	names := make([]string, 0, len(states))
	for n := range states {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ls := states[n]
		if ref.SectionName != nil && string(*ref.SectionName) != n || ref.Port != nil && *ref.Port != ls.spec.Port {
			continue
		}
		if !ls.accepted {
			continue
		}
		if !ix.allowed(r, model.Namespace, ls.spec.AllowedRoutes) {
			if reason != string(gwapiv1.RouteReasonNoMatchingListenerHostname) {
				reason, msg = string(gwapiv1.RouteReasonNotAllowedByListeners), "the listeners' allowedRoutes do not admit this route's namespace or kind"
			}
			continue
		}
		if len(discovery.IntersectHostnames(ptrString(ls.spec.Hostname), routeHosts)) == 0 {
			reason, msg = string(gwapiv1.RouteReasonNoMatchingListenerHostname), "no route hostname matches the listener's hostname"
			continue
		}
		// Attached counts routes the listener admits, whether or not the listener's own
		// references resolve (the Gateway API's attachedRoutes).
		ls.attached++
		if ls.model == nil {
			unserved = append(unserved, n)
			continue
		}
		accepted = append(accepted, n)
	}
	if len(accepted) == 0 && len(unserved) > 0 {
		cond(string(gwapiv1.RouteConditionAccepted), true, string(gwapiv1.RouteReasonAccepted),
			fmt.Sprintf("attached to listeners %s, which are not served until their references resolve", strings.Join(unserved, ", ")))
		cond(string(gwapiv1.RouteConditionResolvedRefs), true, string(gwapiv1.RouteReasonResolvedRefs), "not evaluated: no listener serves the route yet")
		return ps
	}
	if len(accepted) == 0 {
		cond(string(gwapiv1.RouteConditionAccepted), false, reason, msg)
		cond(string(gwapiv1.RouteConditionResolvedRefs), true, string(gwapiv1.RouteReasonResolvedRefs), "not evaluated: the route is not accepted")
		return ps
	}
	name := key(r)
	var route *discovery.Route
	for i := range model.Routes {
		if model.Routes[i].Name == name {
			route = &model.Routes[i]
		}
	}
	rules, problem := ix.rules(r)
	refsOK, refReason, refMsg := true, string(gwapiv1.RouteReasonResolvedRefs), "all references resolved"
	if problem != nil {
		refsOK, refReason, refMsg = false, problem.reason, problem.msg
	}
	if route == nil {
		model.Routes = append(model.Routes, discovery.Route{Name: name, Hostnames: routeHosts, Rules: rules})
		route = &model.Routes[len(model.Routes)-1]
		if !ix.optedOut[model.Key()] {
			if p := ix.protection(r, "HTTPRoute"); p != (discovery.Protection{}) {
				route.Protection = &p
			}
		}
	}
	route.Listeners = append(route.Listeners, accepted...)
	cond(string(gwapiv1.RouteConditionAccepted), true, string(gwapiv1.RouteReasonAccepted), "attached to listeners "+strings.Join(accepted, ", "))
	cond(string(gwapiv1.RouteConditionResolvedRefs), refsOK, refReason, refMsg)
	return ps
}

func (ix *index) allowed(r *gwapiv1.HTTPRoute, gatewayNS string, ar *gwapiv1.AllowedRoutes) bool {
	if ar != nil && len(supportedKinds(gwapiv1.Listener{AllowedRoutes: ar})) == 0 {
		return false
	}
	from := gwapiv1.NamespacesFromSame
	if ar != nil && ar.Namespaces != nil && ar.Namespaces.From != nil {
		from = *ar.Namespaces.From
	}
	switch from {
	case gwapiv1.NamespacesFromAll:
		return true
	case gwapiv1.NamespacesFromSelector:
		if ar.Namespaces.Selector == nil {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(ar.Namespaces.Selector)
		ns := ix.namespaces[r.Namespace]
		return err == nil && ns != nil && sel.Matches(labels.Set(ns.Labels))
	default:
		return r.Namespace == gatewayNS
	}
}

type refProblem struct{ reason, msg string }

// convertedRules are a route's rules and the first reference that did not resolve.
type convertedRules struct {
	rules   []discovery.Rule
	problem *refProblem
}

// rules converts the route's rules once, however many parents it has.
func (ix *index) rules(r *gwapiv1.HTTPRoute) ([]discovery.Rule, *refProblem) {
	k := key(r)
	if c, ok := ix.routeRules[k]; ok {
		return c.rules, c.problem
	}
	rules, problem := ix.convertRules(r)
	ix.routeRules[k] = convertedRules{rules, problem}
	return rules, problem
}

// convertRules converts the route's rules. A backend that does not resolve is marked
// invalid and named in the returned problem; its share of requests is answered 500, as
// the spec says.
func (ix *index) convertRules(r *gwapiv1.HTTPRoute) ([]discovery.Rule, *refProblem) {
	var problem *refProblem
	note := func(reason gwapiv1.RouteConditionReason, format string, args ...any) {
		if problem == nil {
			problem = &refProblem{string(reason), fmt.Sprintf(format, args...)}
		}
	}
	var out []discovery.Rule
	for _, rule := range r.Spec.Rules {
		mr := discovery.Rule{}
		if rule.Timeouts != nil {
			mr.Timeout = durationOf(rule.Timeouts.Request)
		}
		for _, m := range rule.Matches {
			mr.Matches = append(mr.Matches, match(m))
		}
		unsupported := false
		for _, f := range rule.Filters {
			switch f.Type {
			case gwapiv1.HTTPRouteFilterRequestHeaderModifier:
				mr.Filters.RequestHeaders = headerFilter(f.RequestHeaderModifier)
			case gwapiv1.HTTPRouteFilterResponseHeaderModifier:
				mr.Filters.ResponseHeaders = headerFilter(f.ResponseHeaderModifier)
			case gwapiv1.HTTPRouteFilterRequestRedirect:
				mr.Filters.Redirect = redirect(f.RequestRedirect)
			case gwapiv1.HTTPRouteFilterURLRewrite:
				mr.Filters.Rewrite = rewrite(f.URLRewrite)
			default:
				unsupported = true
				note(gwapiv1.RouteReasonUnsupportedValue, "filter %s is not supported; its rule answers 500", f.Type)
			}
		}
		if mr.Filters.Redirect == nil && !unsupported {
			for _, b := range rule.BackendRefs {
				be, ok := ix.backend(r, b.BackendRef, note)
				if !ok {
					w := uint32(1)
					if b.Weight != nil {
						w = uint32(*b.Weight)
					}
					be = discovery.Backend{Invalid: problem.msg, Weight: &w}
				}
				mr.Backends = append(mr.Backends, be)
			}
		}
		if unsupported {
			mr.Filters = discovery.Filters{}
		}
		out = append(out, mr)
	}
	return out, problem
}

func match(m gwapiv1.HTTPRouteMatch) discovery.Match {
	var out discovery.Match
	if m.Path != nil {
		t := discovery.MatchPrefix
		if m.Path.Type != nil {
			t = string(*m.Path.Type)
		}
		out.Path = &discovery.PathMatch{Type: t, Value: ptrString(m.Path.Value)}
	}
	for _, h := range m.Headers {
		out.Headers = append(out.Headers, discovery.ValueMatch{Type: ptrString(h.Type), Name: string(h.Name), Value: h.Value})
	}
	for _, q := range m.QueryParams {
		out.QueryParams = append(out.QueryParams, discovery.ValueMatch{Type: ptrString(q.Type), Name: string(q.Name), Value: q.Value})
	}
	out.Method = ptrString(m.Method)
	return out
}

func headerFilter(f *gwapiv1.HTTPHeaderFilter) *discovery.HeaderFilter {
	if f == nil {
		return nil
	}
	out := &discovery.HeaderFilter{Remove: f.Remove}
	for _, h := range f.Add {
		out.Add = append(out.Add, discovery.Header{Name: string(h.Name), Value: h.Value})
	}
	for _, h := range f.Set {
		out.Set = append(out.Set, discovery.Header{Name: string(h.Name), Value: h.Value})
	}
	return out
}

func redirect(f *gwapiv1.HTTPRequestRedirectFilter) *discovery.Redirect {
	if f == nil {
		return nil
	}
	out := &discovery.Redirect{Scheme: ptrString(f.Scheme), Hostname: ptrString(f.Hostname)}
	if f.Port != nil {
		out.Port = uint32(*f.Port)
	}
	if f.StatusCode != nil {
		out.StatusCode = *f.StatusCode
	}
	if p := f.Path; p != nil {
		out.Path, out.PathPrefix = ptrString(p.ReplaceFullPath), ptrString(p.ReplacePrefixMatch)
	}
	return out
}

func rewrite(f *gwapiv1.HTTPURLRewriteFilter) *discovery.Rewrite {
	if f == nil {
		return nil
	}
	out := &discovery.Rewrite{Hostname: ptrString(f.Hostname)}
	if p := f.Path; p != nil {
		out.Path, out.PathPrefix = ptrString(p.ReplaceFullPath), ptrString(p.ReplacePrefixMatch)
	}
	return out
}

// backend resolves a backendRef to a Service port and its ready endpoints.
func (ix *index) backend(r *gwapiv1.HTTPRoute, b gwapiv1.BackendRef, note func(gwapiv1.RouteConditionReason, string, ...any)) (discovery.Backend, bool) {
	if b.Group != nil && *b.Group != "" || b.Kind != nil && *b.Kind != "Service" {
		note(gwapiv1.RouteReasonInvalidKind, "backendRef %s: only Services are supported", b.Name)
		return discovery.Backend{}, false
	}
	ns := r.Namespace
	if b.Namespace != nil {
		ns = string(*b.Namespace)
	}
	if !ix.granted(gwapiv1.GroupName, "HTTPRoute", r.Namespace, "", "Service", ns, string(b.Name)) {
		note(gwapiv1.RouteReasonRefNotPermitted, "backendRef %s/%s: another namespace, and no ReferenceGrant allows it", ns, b.Name)
		return discovery.Backend{}, false
	}
	svc := ix.services[types.NamespacedName{Namespace: ns, Name: string(b.Name)}]
	if svc == nil {
		note(gwapiv1.RouteReasonBackendNotFound, "Service %s/%s not found", ns, b.Name)
		return discovery.Backend{}, false
	}
	if b.Port == nil {
		note(gwapiv1.RouteReasonUnsupportedValue, "backendRef %s/%s: port is required", ns, b.Name)
		return discovery.Backend{}, false
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == *b.Port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		note(gwapiv1.RouteReasonBackendNotFound, "Service %s/%s has no port %d", ns, b.Name, *b.Port)
		return discovery.Backend{}, false
	}
	w := uint32(1)
	if b.Weight != nil {
		w = uint32(*b.Weight)
	}
	out := discovery.Backend{Name: fmt.Sprintf("%s/%s:%d", ns, b.Name, *b.Port), Port: uint32(*b.Port), Weight: &w}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		out.Name, out.Host = "", svc.Spec.ExternalName
		return out, true
	}
	out.Endpoints = ix.endpoints(types.NamespacedName{Namespace: ns, Name: string(b.Name)}, sp)
	return out, true
}

// endpoints are the ready addresses of a Service port, from its EndpointSlices, sorted.
func (ix *index) endpoints(svc types.NamespacedName, sp *corev1.ServicePort) []discovery.Endpoint {
	seen := map[discovery.Endpoint]bool{}
	var out []discovery.Endpoint
	for _, s := range ix.slices[svc] {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var port int32
		for _, p := range s.Ports {
			if ptrString(p.Name) == sp.Name && p.Port != nil {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				ep := discovery.Endpoint{Address: a, Port: uint32(port)}
				if !seen[ep] {
					seen[ep] = true
					out = append(out, ep)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Address != out[j].Address {
			return out[i].Address < out[j].Address
		}
		return out[i].Port < out[j].Port
	})
	return out
}
