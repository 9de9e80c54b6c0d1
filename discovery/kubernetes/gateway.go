package kubernetes

import (
	"crypto/tls"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/wafplane/wafplane/discovery"
)

// listenerState is one Gateway listener: its model (nil when it cannot be served), the
// routes attached to it and its conditions.
type listenerState struct {
	spec  gwapiv1.Listener
	model *discovery.Listener
	// accepted: the listener itself is valid (protocol, no conflict), even when its
	// references are not resolved; routes that attach to it count in attachedRoutes.
	accepted bool
	kinds    []gwapiv1.RouteGroupKind // supportedKinds
	attached int32
	conds    []metav1.Condition
}

func (ls *listenerState) set(now metav1.Time, gen int64, typ string, ok bool, reason, msg string) {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&ls.conds, metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: now})
}

// gateway converts a Gateway of ours: its servable listeners and its protection.
func (ix *index) gateway(g *gwapiv1.Gateway, class *gwapiv1.GatewayClass, now metav1.Time) (*discovery.Gateway, map[string]*listenerState) {
	model := &discovery.Gateway{Namespace: g.Namespace, Name: g.Name, Protection: ix.protection(g, "Gateway")}
	if optedOut(g, class) {
		// An opt-out label wins over every annotation, the routes' included.
		model.Protection = discovery.Protection{Mode: discovery.ModeOff}
		ix.optedOut[model.Key()] = true
	}
	states := map[string]*listenerState{}
	ports := map[int32]gwapiv1.Listener{} // first listener on each port
	hosts := map[string]string{}          // port + hostname → listener
	for _, l := range g.Spec.Listeners {
		ls := &listenerState{spec: l}
		states[string(l.Name)] = ls
		ml := &discovery.Listener{Name: string(l.Name), Port: uint32(l.Port), Hostname: ptrString(l.Hostname)}
		accepted, resolved, conflict := true, true, false
		reason, msg := string(gwapiv1.ListenerReasonAccepted), "listener accepted"
		refReason, refMsg := string(gwapiv1.ListenerReasonResolvedRefs), "references resolved"
		switch l.Protocol {
		case gwapiv1.HTTPProtocolType:
			ml.Protocol = discovery.ProtocolHTTP
		case gwapiv1.HTTPSProtocolType:
			ml.Protocol = discovery.ProtocolHTTPS
			tls, r, m := ix.certificate(g, l)
			if tls == nil {
				resolved, refReason, refMsg = false, r, m
			}
			ml.TLS = tls
		default:
			accepted, reason, msg = false, string(gwapiv1.ListenerReasonUnsupportedProtocol), fmt.Sprintf("protocol %s is not served; use HTTP or HTTPS", l.Protocol)
		}
		// Listeners share a port when they share the protocol and differ in hostname.
		conflictReason := string(gwapiv1.ListenerReasonNoConflicts)
		hk := fmt.Sprintf("%d %s", l.Port, discovery.HostOrAny(ptrString(l.Hostname)))
		if first, ok := ports[l.Port]; ok && accepted && first.Protocol != l.Protocol {
			conflict, conflictReason = true, string(gwapiv1.ListenerReasonProtocolConflict)
			accepted, reason, msg = false, conflictReason, fmt.Sprintf("port %d is used by listener %s with protocol %s", l.Port, first.Name, first.Protocol)
		} else if other, ok := hosts[hk]; ok && accepted {
			conflict, conflictReason = true, string(gwapiv1.ListenerReasonHostnameConflict)
			accepted, reason, msg = false, conflictReason, fmt.Sprintf("listener %s on port %d has the same hostname", other, l.Port)
		} else if accepted {
			if !ok {
				ports[l.Port] = l
			}
			hosts[hk] = string(l.Name)
		}
		ls.kinds = supportedKinds(l)
		if !accepted && reason == string(gwapiv1.ListenerReasonUnsupportedProtocol) {
			ls.kinds = []gwapiv1.RouteGroupKind{}
		}
		if ar := l.AllowedRoutes; ar != nil && len(ar.Kinds) > len(ls.kinds) {
			resolved, refReason, refMsg = false, string(gwapiv1.ListenerReasonInvalidRouteKinds), "allowedRoutes.kinds names kinds other than HTTPRoute, the only one supported"
		}
		ls.accepted = accepted
		gen := g.Generation
		ls.set(now, gen, string(gwapiv1.ListenerConditionAccepted), accepted, reason, msg)
		ls.set(now, gen, string(gwapiv1.ListenerConditionResolvedRefs), resolved, refReason, refMsg)
		ls.set(now, gen, string(gwapiv1.ListenerConditionConflicted), conflict, conflictReason, msg)
		if accepted && resolved {
			ls.model = ml
			model.Listeners = append(model.Listeners, *ml)
			ls.set(now, gen, string(gwapiv1.ListenerConditionProgrammed), true, string(gwapiv1.ListenerReasonProgrammed), "listener programmed")
		} else {
			ls.set(now, gen, string(gwapiv1.ListenerConditionProgrammed), false, string(gwapiv1.ListenerReasonInvalid), "listener not served: "+msg+"; "+refMsg)
		}
	}
	return model, states
}

// supportedKinds are the route kinds the listener asks for that wafplane supports: HTTPRoute
// only; all of them (HTTPRoute) when it asks for none.
func supportedKinds(l gwapiv1.Listener) []gwapiv1.RouteGroupKind {
	httpRoute := gwapiv1.RouteGroupKind{Group: ptr(gwapiv1.Group(gwapiv1.GroupName)), Kind: "HTTPRoute"}
	if l.AllowedRoutes == nil || len(l.AllowedRoutes.Kinds) == 0 {
		return []gwapiv1.RouteGroupKind{httpRoute}
	}
	out := []gwapiv1.RouteGroupKind{}
	for _, k := range l.AllowedRoutes.Kinds {
		if (k.Group == nil || *k.Group == gwapiv1.GroupName) && k.Kind == "HTTPRoute" {
			return append(out, httpRoute)
		}
	}
	return out
}

// certificate resolves an HTTPS listener's first certificateRef to a kubernetes.io/tls Secret.
func (ix *index) certificate(g *gwapiv1.Gateway, l gwapiv1.Listener) (*discovery.TLS, string, string) {
	invalid := string(gwapiv1.ListenerReasonInvalidCertificateRef)
	if l.TLS == nil || len(l.TLS.CertificateRefs) == 0 {
		return nil, invalid, "HTTPS needs tls.certificateRefs"
	}
	ref := l.TLS.CertificateRefs[0]
	if ref.Group != nil && *ref.Group != "" || ref.Kind != nil && *ref.Kind != "Secret" {
		return nil, invalid, "certificateRefs[0] must be a Secret"
	}
	ns := g.Namespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	if !ix.granted(gwapiv1.GroupName, "Gateway", g.Namespace, "", "Secret", ns, string(ref.Name)) {
		return nil, string(gwapiv1.ListenerReasonRefNotPermitted), fmt.Sprintf("Secret %s/%s is in another namespace and no ReferenceGrant allows it", ns, ref.Name)
	}
	s := ix.secrets[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
	if s == nil {
		return nil, invalid, fmt.Sprintf("Secret %s/%s not found", ns, ref.Name)
	}
	cert, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(cert) == 0 || len(key) == 0 {
		return nil, invalid, fmt.Sprintf("Secret %s/%s has no tls.crt and tls.key", ns, ref.Name)
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		// Never the key itself in a message: only what is wrong with it.
		return nil, invalid, fmt.Sprintf("Secret %s/%s: tls.crt and tls.key are not a valid certificate and key pair", ns, ref.Name)
	}
	return &discovery.TLS{SecretName: ns + "/" + string(ref.Name), CertPEM: cert, KeyPEM: key}, "", ""
}

// gatewayStatus is the status the Gateway should show.
func gatewayStatus(g *gwapiv1.Gateway, model *discovery.Gateway, states map[string]*listenerState, now metav1.Time) gwapiv1.GatewayStatus {
	st := gwapiv1.GatewayStatus{}
	valid, anyAccepted := true, false
	for _, l := range g.Spec.Listeners {
		ls := states[string(l.Name)]
		valid = valid && ls.model != nil
		anyAccepted = anyAccepted || ls.accepted
		st.Listeners = append(st.Listeners, gwapiv1.ListenerStatus{
			Name:           l.Name,
			SupportedKinds: ls.kinds,
			AttachedRoutes: ls.attached,
			Conditions:     ls.conds,
		})
	}
	accepted, reason, msg := metav1.ConditionTrue, string(gwapiv1.GatewayReasonAccepted), "gateway accepted"
	switch {
	case !anyAccepted:
		accepted, reason, msg = metav1.ConditionFalse, string(gwapiv1.GatewayReasonListenersNotValid), "no listener is valid; see their conditions"
	case !valid:
		reason, msg = string(gwapiv1.GatewayReasonListenersNotValid), "some listeners cannot be served; see their conditions"
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: string(gwapiv1.GatewayConditionAccepted), Status: accepted,
		Reason: reason, Message: msg, ObservedGeneration: g.Generation, LastTransitionTime: now})
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: string(gwapiv1.GatewayConditionProgrammed), Status: metav1.ConditionTrue,
		Reason: string(gwapiv1.GatewayReasonProgrammed), Message: fmt.Sprintf("served over xDS to Envoys with node cluster %s", model.Key()),
		ObservedGeneration: g.Generation, LastTransitionTime: now})
	return st
}

func ptr[T any](v T) *T { return &v }
