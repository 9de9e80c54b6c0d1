package processor

import (
	"net/netip"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

func attrs(source string) map[string]*structpb.Struct {
	if source == "" {
		return nil
	}
	return map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
		sourceAddressAttribute: structpb.NewStringValue(source)}}}
}

func TestClientIP(t *testing.T) {
	lb := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name     string
		resolver clientIPResolver
		source   string
		xff      []string
		extra    map[string][]string
		want     string
	}{
		{name: "source address wins over a forged XFF", source: "203.0.113.9:51234", xff: []string{"1.2.3.4"}, want: "203.0.113.9"},
		{name: "IPv6 source with port", source: "[2001:db8::7]:443", want: "2001:db8::7"},
		{name: "no source: right-most XFF, not the forged left-most", xff: []string{"1.2.3.4, 198.51.100.20"}, want: "198.51.100.20"},
		{name: "trusted load balancer peer: next hop left", resolver: clientIPResolver{trustedCIDRs: lb},
			source: "10.1.2.3:8080", xff: []string{"1.2.3.4, 198.51.100.20"}, want: "198.51.100.20"},
		{name: "trusted chain of proxies", resolver: clientIPResolver{trustedCIDRs: lb},
			source: "10.1.2.3:8080", xff: []string{"1.2.3.4, 198.51.100.20, 10.9.9.9"}, want: "198.51.100.20"},
		{name: "trusted hops", resolver: clientIPResolver{trustedHops: 1},
			xff: []string{"1.2.3.4", "198.51.100.20, 192.0.2.1"}, want: "198.51.100.20"},
		{name: "all trusted: left-most is all there is", resolver: clientIPResolver{trustedCIDRs: lb},
			source: "10.0.0.1:1", xff: []string{"10.0.0.2"}, want: "10.0.0.2"},
		{name: "garbage entry cuts the chain", resolver: clientIPResolver{trustedCIDRs: lb},
			source: "10.0.0.1:1", xff: []string{"1.2.3.4, not-an-ip, 10.0.0.5"}, want: "10.0.0.5"},
		{name: "configured header, peer trusted", resolver: clientIPResolver{header: "x-real-ip", trustedCIDRs: lb},
			source: "10.0.0.1:1", extra: map[string][]string{"x-real-ip": {"198.51.100.77"}}, want: "198.51.100.77"},
		{name: "configured header ignored from an untrusted peer", resolver: clientIPResolver{header: "x-real-ip"},
			source: "203.0.113.9:1", extra: map[string][]string{"x-real-ip": {"1.2.3.4"}}, want: "203.0.113.9"},
		{name: "IPv4-mapped IPv6 unmapped", source: "[::ffff:192.0.2.10]:80", want: "192.0.2.10"},
		{name: "nothing known", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := map[string][]string{}
			if tc.xff != nil {
				headers["x-forwarded-for"] = tc.xff
			}
			for k, v := range tc.extra {
				headers[k] = v
			}
			if got := tc.resolver.resolve(attrs(tc.source), headers); got != tc.want {
				t.Fatalf("client IP = %q, want %q", got, tc.want)
			}
		})
	}
}

// A blocked IP forged into X-Forwarded-For does not get an innocent peer blocked, and a
// blocked peer cannot hide behind a forged X-Forwarded-For.
func TestBlockedIPWithForgedForwardedFor(t *testing.T) {
	cfg := testConfig()
	cfg.PolicyFile = writeFile(t, t.TempDir(), "policy.yaml", "blocked_ips:\n  - value: 192.0.2.66\n")
	r := startProcessor(t, cfg)
	innocent := httpExchange{path: "/", sourceAddress: "203.0.113.5:4000", headers: [][2]string{{"x-forwarded-for", "192.0.2.66"}}}
	if out := r.envoy.do(t, innocent); out.blocked() {
		t.Fatal("a forged X-Forwarded-For got the peer blocked")
	}
	attacker := httpExchange{path: "/", sourceAddress: "192.0.2.66:4000", headers: [][2]string{{"x-forwarded-for", "203.0.113.5"}}}
	if out := r.envoy.do(t, attacker); !out.blocked() {
		t.Fatal("a blocked peer got through with a forged X-Forwarded-For")
	}
	if ev := r.p.events.recent(1)[0]; ev.ClientIP != "192.0.2.66" || ev.Rules[0].ID != "blk-001-001" {
		t.Fatalf("event = %+v", ev)
	}
}

// A client-IP header configured in mixed case (DD_TRACE_CLIENT_IP_HEADER=X-Real-IP) still
// matches the lowercase header Envoy sends.
func TestClientIPHeaderCaseInsensitive(t *testing.T) {
	cfg := testConfig()
	cfg.ClientIPHeader = "X-Real-IP"
	cfg.PolicyFile = writeFile(t, t.TempDir(), "policy.yaml", "blocked_ips:\n  - value: 192.0.2.77\n")
	r := startProcessor(t, cfg)
	if out := r.envoy.do(t, httpExchange{path: "/", headers: [][2]string{{"x-real-ip", "192.0.2.77"}}}); !out.blocked() {
		t.Fatal("the configured client-IP header was not read")
	}
}
