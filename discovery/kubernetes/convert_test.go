package kubernetes

import (
	"bytes"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/wafplane/wafplane/discovery"
	"github.com/wafplane/wafplane/xds/pki"
)

func om(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1}
}

// world is a class, a Gateway with an HTTP and an HTTPS listener, a Service with one ready
// and one unready endpoint, and a route to it.
func world() objects {
	return objects{
		classes: []*gwapiv1.GatewayClass{
			{ObjectMeta: om("", "wafplane"), Spec: gwapiv1.GatewayClassSpec{ControllerName: DefaultControllerName}},
			{ObjectMeta: om("", "other"), Spec: gwapiv1.GatewayClassSpec{ControllerName: "example.com/other"}},
		},
		gateways: []*gwapiv1.Gateway{
			{ObjectMeta: om("shop", "edge"), Spec: gwapiv1.GatewaySpec{GatewayClassName: "wafplane", Listeners: []gwapiv1.Listener{
				{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType, Hostname: ptr(gwapiv1.Hostname("*.shop.example"))},
				{Name: "https", Port: 443, Protocol: gwapiv1.HTTPSProtocolType, TLS: &gwapiv1.ListenerTLSConfig{
					CertificateRefs: []gwapiv1.SecretObjectReference{{Name: "cert"}}}},
			}}},
			{ObjectMeta: om("shop", "foreign"), Spec: gwapiv1.GatewaySpec{GatewayClassName: "other", Listeners: []gwapiv1.Listener{
				{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType}}}},
		},
		routes: []*gwapiv1.HTTPRoute{route("shop", "app", "shop", "app", nil)},
		namespaces: []*corev1.Namespace{
			{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, {ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"gateway": "yes"}}},
		},
		services: []*corev1.Service{service("shop", "app")},
		slices: []*discoveryv1.EndpointSlice{{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "app-x", Labels: map[string]string{discoveryv1.LabelServiceName: "app"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
				{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
				{Addresses: []string{"10.0.0.1"}},
			},
			Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
		}},
		secrets: []*corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cert"}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": testCert, "tls.key": testKey}}},
	}
}

// testCert and testKey are a real key pair: listeners check that theirs parses.
var testCert, testKey = func() ([]byte, []byte) {
	ca, err := pki.New(time.Now())
	if err != nil {
		panic(err)
	}
	c, k, err := ca.IssueGateway("shop/edge", time.Now())
	if err != nil {
		panic(err)
	}
	return c, k
}()

func service(ns, name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
}

func route(ns, name, backendNS, backend string, hostnames []gwapiv1.Hostname) *gwapiv1.HTTPRoute {
	ref := gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{BackendObjectReference: gwapiv1.BackendObjectReference{
		Name: gwapiv1.ObjectName(backend), Namespace: ptr(gwapiv1.Namespace(backendNS)), Port: ptr(gwapiv1.PortNumber(80))}}}
	return &gwapiv1.HTTPRoute{ObjectMeta: om(ns, name), Spec: gwapiv1.HTTPRouteSpec{
		CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: []gwapiv1.ParentReference{{Name: "edge", Namespace: ptr(gwapiv1.Namespace("shop"))}}},
		Hostnames:       hostnames,
		Rules:           []gwapiv1.HTTPRouteRule{{BackendRefs: []gwapiv1.HTTPBackendRef{ref}}},
	}}
}

func parentCond(t *testing.T, c converted, ns, name, typ string) *metav1.Condition {
	t.Helper()
	ps := c.routes[types.NamespacedName{Namespace: ns, Name: name}]
	if len(ps) == 0 {
		t.Fatalf("route %s/%s has no parent status", ns, name)
	}
	return meta.FindStatusCondition(ps[0].Conditions, typ)
}

func TestConvertServesOnlyOurClass(t *testing.T) {
	c := convert(world(), DefaultControllerName, metav1.Now())
	if len(c.state.Gateways) != 1 || c.state.Gateways[0].Key() != "shop/edge" {
		t.Fatalf("gateways %v", c.state.Gateways)
	}
	if _, ok := c.classes["other"]; ok {
		t.Fatal("another controller's class got our status")
	}
	g := c.state.Gateways[0]
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(g.Listeners) != 2 || g.Listeners[1].TLS == nil || g.Listeners[1].TLS.SecretName != "shop/cert" || !bytes.Equal(g.Listeners[1].TLS.KeyPEM, testKey) {
		t.Fatalf("listeners %+v", g.Listeners)
	}
	b := g.Routes[0].Rules[0].Backends[0]
	want := []discovery.Endpoint{{Address: "10.0.0.1", Port: 8080}, {Address: "10.0.0.2", Port: 8080}}
	if b.Name != "shop/app:80" || len(b.Endpoints) != 2 || b.Endpoints[0] != want[0] || b.Endpoints[1] != want[1] {
		t.Fatalf("backend %+v, want ready endpoints %v", b, want)
	}
	res := c.gateways[types.NamespacedName{Namespace: "shop", Name: "edge"}]
	if res.status.Listeners[0].AttachedRoutes != 1 || !meta.IsStatusConditionTrue(res.status.Conditions, "Programmed") {
		t.Fatalf("gateway status %+v", res.status)
	}
}

func TestConvertReferenceGrant(t *testing.T) {
	o := world()
	o.services = append(o.services, service("backend", "api"))
	o.routes = append(o.routes, route("shop", "cross", "backend", "api", nil))
	c := convert(o, DefaultControllerName, metav1.Now())
	if cond := parentCond(t, c, "shop", "cross", "ResolvedRefs"); cond.Status != metav1.ConditionFalse || cond.Reason != "RefNotPermitted" {
		t.Fatalf("without a grant: %+v", cond)
	}
	o.grants = []*gwapiv1.ReferenceGrant{{ObjectMeta: om("backend", "g"), Spec: gwapiv1.ReferenceGrantSpec{
		From: []gwapiv1.ReferenceGrantFrom{{Group: gwapiv1.GroupName, Kind: "HTTPRoute", Namespace: "shop"}},
		To:   []gwapiv1.ReferenceGrantTo{{Kind: "Service"}}}}}
	c = convert(o, DefaultControllerName, metav1.Now())
	if cond := parentCond(t, c, "shop", "cross", "ResolvedRefs"); cond.Status != metav1.ConditionTrue {
		t.Fatalf("with a grant: %+v", cond)
	}
}

func TestConvertRouteRefusals(t *testing.T) {
	o := world()
	o.routes = []*gwapiv1.HTTPRoute{
		route("shop", "elsewhere", "shop", "app", []gwapiv1.Hostname{"api.other.example"}),
		route("team", "team", "team", "app", nil),
		route("shop", "missing", "shop", "nope", nil),
	}
	sec := gwapiv1.SectionName("nope")
	o.routes = append(o.routes, route("shop", "section", "shop", "app", nil))
	o.routes[3].Spec.ParentRefs[0].SectionName = &sec
	c := convert(o, DefaultControllerName, metav1.Now())
	cases := []struct{ ns, name, typ, reason string }{
		{"team", "team", "Accepted", "NotAllowedByListeners"},
		{"shop", "section", "Accepted", "NoMatchingParent"},
		{"shop", "missing", "ResolvedRefs", "BackendNotFound"},
	}
	for _, cs := range cases {
		if cond := parentCond(t, c, cs.ns, cs.name, cs.typ); cond.Status != metav1.ConditionFalse || cond.Reason != cs.reason {
			t.Errorf("%s/%s %s: %+v, want reason %s", cs.ns, cs.name, cs.typ, cond, cs.reason)
		}
	}
	// The HTTPS listener has no hostname, so "elsewhere" attaches there only.
	if cond := parentCond(t, c, "shop", "elsewhere", "Accepted"); cond.Status != metav1.ConditionTrue || !strings.Contains(cond.Message, "https") || strings.Contains(cond.Message, "http,") {
		t.Errorf("elsewhere: %+v", cond)
	}
	// A Selector admits the labelled namespace.
	o.gateways[0].Spec.Listeners[0].AllowedRoutes = &gwapiv1.AllowedRoutes{Namespaces: &gwapiv1.RouteNamespaces{
		From: ptr(gwapiv1.NamespacesFromSelector), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"gateway": "yes"}}}}
	o.services = append(o.services, service("team", "app"))
	c = convert(o, DefaultControllerName, metav1.Now())
	if cond := parentCond(t, c, "team", "team", "Accepted"); cond.Status != metav1.ConditionTrue {
		t.Errorf("selector: %+v", cond)
	}
	// The missing backend is marked, so that its share is answered 500.
	for _, r := range c.state.Gateways[0].Routes {
		if r.Name == "shop/missing" && (len(r.Rules[0].Backends) != 1 || r.Rules[0].Backends[0].Invalid == "") {
			t.Errorf("unresolved backend not marked invalid: %+v", r.Rules[0].Backends)
		}
	}
}

func TestConvertProtection(t *testing.T) {
	o := world()
	o.gateways[0].Annotations = map[string]string{AnnotationMode: "monitor", AnnotationFailOpen: "false", AnnotationBodyLimit: "4096"}
	o.routes[0].Annotations = map[string]string{AnnotationMode: "block"}
	c := convert(o, DefaultControllerName, metav1.Now())
	g := c.state.Gateways[0]
	if g.Protection.Mode != "monitor" || *g.Protection.FailOpen || *g.Protection.RequestBodyLimit != 4096 {
		t.Fatalf("gateway protection %+v", g.Protection)
	}
	if g.Routes[0].Protection == nil || g.Routes[0].Protection.Mode != "block" {
		t.Fatalf("route protection %+v", g.Routes[0].Protection)
	}
	// Values that do not parse are reported and the defaults apply.
	o.gateways[0].Annotations = map[string]string{AnnotationFailOpen: "maybe", AnnotationBodyLimit: "-5"}
	c = convert(o, DefaultControllerName, metav1.Now())
	if p := c.state.Gateways[0].Protection; p.FailOpen != nil || p.RequestBodyLimit != nil {
		t.Fatalf("bad annotations were applied: %+v", p)
	}
	if w := c.warnings["Gateway/shop/edge"]; len(w) != 2 || !strings.Contains(w[0], AnnotationFailOpen) || !strings.Contains(w[1], AnnotationBodyLimit) {
		t.Fatalf("warnings %v", w)
	}
	for _, label := range []string{LabelEnabled, LabelDatadogEnabled} {
		for _, on := range []string{"gateway", "class"} {
			o := world()
			o.routes[0].Annotations = map[string]string{AnnotationMode: "block"}
			if on == "gateway" {
				o.gateways[0].Labels = map[string]string{label: "false"}
			} else {
				o.classes[0].Labels = map[string]string{label: "false"}
			}
			c := convert(o, DefaultControllerName, metav1.Now())
			g := c.state.Gateways[0]
			if g.Protection.Mode != discovery.ModeOff || g.Routes[0].Protection != nil || c.gateways[types.NamespacedName{Namespace: "shop", Name: "edge"}].protected {
				t.Errorf("%s=false on the %s: protection %+v, route %+v", label, on, g.Protection, g.Routes[0].Protection)
			}
		}
	}
}

func TestConvertListenerProblems(t *testing.T) {
	o := world()
	o.secrets = nil
	o.gateways[0].Spec.Listeners = append(o.gateways[0].Spec.Listeners,
		gwapiv1.Listener{Name: "tcp", Port: 9000, Protocol: gwapiv1.TCPProtocolType},
		gwapiv1.Listener{Name: "again", Port: 80, Protocol: gwapiv1.HTTPSProtocolType},
		gwapiv1.Listener{Name: "dup", Port: 80, Protocol: gwapiv1.HTTPProtocolType, Hostname: ptr(gwapiv1.Hostname("*.shop.example"))},
		gwapiv1.Listener{Name: "shared", Port: 80, Protocol: gwapiv1.HTTPProtocolType, Hostname: ptr(gwapiv1.Hostname("api.example"))})
	c := convert(o, DefaultControllerName, metav1.Now())
	res := c.gateways[types.NamespacedName{Namespace: "shop", Name: "edge"}]
	want := map[string]string{"https": "InvalidCertificateRef", "tcp": "UnsupportedProtocol", "again": "ProtocolConflict", "dup": "HostnameConflict"}
	for _, ls := range res.status.Listeners {
		reason, bad := want[string(ls.Name)]
		prog := meta.FindStatusCondition(ls.Conditions, "Programmed")
		if bad == (prog.Status == metav1.ConditionTrue) {
			t.Errorf("listener %s programmed=%s", ls.Name, prog.Status)
		}
		if !bad {
			continue
		}
		found := false
		for _, cond := range ls.Conditions {
			found = found || cond.Reason == reason
		}
		if !found {
			t.Errorf("listener %s: no condition with reason %s: %+v", ls.Name, reason, ls.Conditions)
		}
	}
	if ls := c.state.Gateways[0].Listeners; len(ls) != 2 || ls[1].Name != "shared" {
		t.Fatalf("the good listeners (one sharing port 80 under another hostname) are served, got %+v", ls)
	}
	if err := c.state.Gateways[0].Validate(); err != nil {
		t.Fatal(err)
	}
	if r := meta.FindStatusCondition(res.status.Conditions, "Accepted"); r.Reason != "ListenersNotValid" {
		t.Errorf("gateway Accepted %+v", r)
	}
}

// Status the Gateway API conformance suite checks: supported kinds, invalid route kinds,
// an invalid certificate, a Gateway without a valid listener, attachedRoutes on a listener
// whose references do not resolve.
func TestListenerStatusConformance(t *testing.T) {
	o := world()
	kinds := func(k ...gwapiv1.RouteGroupKind) *gwapiv1.AllowedRoutes { return &gwapiv1.AllowedRoutes{Kinds: k} }
	bad := gwapiv1.RouteGroupKind{Kind: "InvalidRoute"}
	http := gwapiv1.RouteGroupKind{Kind: "HTTPRoute"}
	o.gateways[0].Spec.Listeners = []gwapiv1.Listener{
		{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType},
		{Name: "only-invalid", Port: 81, Protocol: gwapiv1.HTTPProtocolType, AllowedRoutes: kinds(bad)},
		{Name: "mixed", Port: 82, Protocol: gwapiv1.HTTPProtocolType, AllowedRoutes: kinds(http, bad)},
		{Name: "udp", Port: 83, Protocol: gwapiv1.UDPProtocolType},
		{Name: "bad-cert", Port: 443, Protocol: gwapiv1.HTTPSProtocolType, TLS: &gwapiv1.ListenerTLSConfig{
			CertificateRefs: []gwapiv1.SecretObjectReference{{Name: "broken"}}}},
	}
	o.secrets = append(o.secrets, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "broken"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"), "tls.key": testKey}})
	c := convert(o, DefaultControllerName, metav1.Now())
	st := c.gateways[types.NamespacedName{Namespace: "shop", Name: "edge"}].status
	byName := map[string]gwapiv1.ListenerStatus{}
	for _, l := range st.Listeners {
		byName[string(l.Name)] = l
	}
	resolved := func(name string) *metav1.Condition {
		return meta.FindStatusCondition(byName[name].Conditions, string(gwapiv1.ListenerConditionResolvedRefs))
	}
	if l := byName["only-invalid"]; len(l.SupportedKinds) != 0 || resolved("only-invalid").Reason != string(gwapiv1.ListenerReasonInvalidRouteKinds) {
		t.Errorf("only invalid kinds: supportedKinds %v, %v", l.SupportedKinds, resolved("only-invalid"))
	}
	if l := byName["mixed"]; len(l.SupportedKinds) != 1 || l.SupportedKinds[0].Kind != "HTTPRoute" || resolved("mixed").Status != metav1.ConditionFalse {
		t.Errorf("mixed kinds: supportedKinds %v, %v", l.SupportedKinds, resolved("mixed"))
	}
	if l := byName["udp"]; len(l.SupportedKinds) != 0 {
		t.Errorf("unsupported protocol: supportedKinds %v", l.SupportedKinds)
	}
	if r := resolved("bad-cert"); r.Status != metav1.ConditionFalse || r.Reason != string(gwapiv1.ListenerReasonInvalidCertificateRef) || strings.Contains(r.Message, string(testKey)) {
		t.Errorf("invalid certificate: %v", r)
	}
	// The route (no sectionName) attaches to http and to bad-cert, which is not served.
	if byName["http"].AttachedRoutes != 1 || byName["bad-cert"].AttachedRoutes != 1 {
		t.Errorf("attachedRoutes http %d, bad-cert %d; want 1 each", byName["http"].AttachedRoutes, byName["bad-cert"].AttachedRoutes)
	}
	if a := meta.FindStatusCondition(st.Conditions, "Accepted"); a.Status != metav1.ConditionTrue || a.Reason != string(gwapiv1.GatewayReasonListenersNotValid) {
		t.Errorf("some listeners invalid: Accepted %v", a)
	}

	// No valid listener at all: the Gateway is not accepted.
	o.gateways[0].Spec.Listeners = []gwapiv1.Listener{{Name: "udp", Port: 83, Protocol: gwapiv1.UDPProtocolType}}
	c = convert(o, DefaultControllerName, metav1.Now())
	st = c.gateways[types.NamespacedName{Namespace: "shop", Name: "edge"}].status
	if a := meta.FindStatusCondition(st.Conditions, "Accepted"); a.Status != metav1.ConditionFalse || a.Reason != string(gwapiv1.GatewayReasonListenersNotValid) {
		t.Errorf("no valid listener: Accepted %v", a)
	}
}
