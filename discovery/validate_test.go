package discovery

import (
	"strings"
	"testing"
)

func TestValidateNamesGatewayAndField(t *testing.T) {
	ok := func() Gateway {
		return Gateway{Namespace: "ns", Name: "gw", Listeners: []Listener{{Name: "http", Port: 80}},
			Routes: []Route{{Name: "r", Rules: []Rule{{Backends: []Backend{{Host: "10.0.0.1", Port: 80}}}}}}}
	}
	if g := ok(); g.Validate() != nil {
		t.Fatalf("valid gateway rejected: %v", g.Validate())
	}
	neg := int64(-1)
	cases := []struct {
		mutate func(*Gateway)
		want   string
	}{
		{func(g *Gateway) { g.Name = "" }, "namespace and name"},
		{func(g *Gateway) { g.Listeners = nil }, "listeners: at least one"},
		{func(g *Gateway) { g.Listeners = append(g.Listeners, Listener{Name: "http", Port: 81}) }, `listeners[1].name: "http" used twice`},
		{func(g *Gateway) { g.Listeners = append(g.Listeners, Listener{Name: "b", Port: 80}) }, `listeners[1].hostname: listener "http" on port 80 has the same hostname "*"`},
		{func(g *Gateway) {
			g.Listeners = append(g.Listeners, Listener{Name: "b", Port: 80, Protocol: ProtocolHTTPS, Hostname: "a.example", TLS: &TLS{CertFile: "c", KeyFile: "k"}})
		}, `listeners[1].port: 80 is used by listener "http" with protocol HTTP`},
		{func(g *Gateway) { g.Listeners[0].Address = "localhost" }, `listeners[0].address: "localhost" is not an IP`},
		{func(g *Gateway) { g.Listeners[0].Protocol = "TCP" }, `listeners[0].protocol: "TCP"`},
		{func(g *Gateway) { g.Listeners[0].Hostname = "a..b" }, `listeners[0].hostname: "a..b"`},
		{func(g *Gateway) { g.Protection.Mode = "audit" }, `protection.mode: "audit"`},
		{func(g *Gateway) { g.Protection.RequestBodyLimit = &neg }, "protection.requestBodyLimit"},
		{func(g *Gateway) { g.Routes[0].Rules[0].Backends[0].Port = 0 }, "routes[0].rules[0].backends[0].port"},
		{func(g *Gateway) { g.Routes[0].Rules[0].Backends[0].Host = "" }, "routes[0].rules[0].backends[0].host: required"},
		{func(g *Gateway) { g.Routes[0].Rules[0].Matches = []Match{{Path: &PathMatch{Value: "api"}}} }, "matches[0].path.value: \"api\" must start with /"},
		{func(g *Gateway) { g.Routes[0].Rules[0].Matches = []Match{{Method: "get"}} }, "method: \"get\" must be upper case"},
		{func(g *Gateway) {
			g.Routes[0].Rules[0].Matches = []Match{{Headers: []ValueMatch{{Name: "x", Type: "Glob"}}}}
		}, "headers[0].type"},
		{func(g *Gateway) { g.Routes[0].Rules[0].Filters.Redirect = &Redirect{StatusCode: 304} }, "redirect"},
		{func(g *Gateway) {
			g.Routes[0].Rules[0].Matches = []Match{{Path: &PathMatch{Type: MatchExact, Value: "/a"}}}
			g.Routes[0].Rules[0].Filters.Rewrite = &Rewrite{PathPrefix: "/b"}
		}, "rewrite.pathPrefix: needs every match of the rule to be a PathPrefix match"},
		{func(g *Gateway) {
			g.Routes[0].Rules[0].Filters.RequestHeaders = &HeaderFilter{Set: []Header{{Name: ":path"}}}
		}, "requestHeaders[0].name"},
		{func(g *Gateway) { g.Routes[0].Listeners = []string{"nope"} }, `routes[0].listeners[0]: no listener named "nope"`},
		{func(g *Gateway) { g.Routes[0].Rules = nil }, "routes[0].rules: at least one"},
	}
	for _, c := range cases {
		g := ok()
		c.mutate(&g)
		err := g.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "gateway ns/") {
			t.Errorf("want an error naming the gateway and %q, got %v", c.want, err)
		}
	}
}

func TestResolve(t *testing.T) {
	f, limit := false, int64(10)
	e := Resolve(Protection{Mode: ModeMonitor}, &Protection{FailOpen: &f, RequestBodyLimit: &limit})
	want := Effective{Mode: ModeMonitor, FailOpen: false, MessageTimeout: DefaultMessageTimeout, RequestBodyLimit: 10}
	if e != want {
		t.Fatalf("Resolve = %+v, want %+v", e, want)
	}
}
