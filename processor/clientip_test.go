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

// TestClientIP is the table of the README: who the client is, per deployment.
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
		// Direct clients.
		{name: "direct: the peer, a forged XFF ignored", source: "203.0.113.9:51234", xff: []string{"1.2.3.4, 203.0.113.9"}, want: "203.0.113.9"},
		{name: "direct, Envoy without use_remote_address: the peer", source: "203.0.113.9:51234", xff: []string{"1.2.3.4"}, want: "203.0.113.9"},
		{name: "direct, IPv6 peer with port", source: "[2001:db8::7]:443", want: "2001:db8::7"},
		{name: "direct, IPv4-mapped IPv6 unmapped", source: "[::ffff:192.0.2.10]:80", want: "192.0.2.10"},
		// One load balancer (10.0.0.1), Envoy appends the peer to XFF.
		{name: "one LB, trusted hops 1", resolver: clientIPResolver{trustedHops: 1},
			source: "10.0.0.1:5000", xff: []string{"1.2.3.4, 192.0.2.66, 10.0.0.1"}, want: "192.0.2.66"},
		{name: "one LB, trusted hops 1, without source.address", resolver: clientIPResolver{trustedHops: 1},
			xff: []string{"1.2.3.4, 192.0.2.66, 10.0.0.1"}, want: "192.0.2.66"},
		{name: "one LB, trusted hops 1, Envoy does not append the peer", resolver: clientIPResolver{trustedHops: 1},
			source: "10.0.0.1:5000", xff: []string{"1.2.3.4, 192.0.2.66"}, want: "192.0.2.66"},
		{name: "one LB, trusted CIDR", resolver: clientIPResolver{trustedCIDRs: lb},
			source: "10.0.0.1:5000", xff: []string{"1.2.3.4, 192.0.2.66, 10.0.0.1"}, want: "192.0.2.66"},
		// Two balancers: an edge (10.9.9.9) then an internal one (10.0.0.1).
		{name: "two LBs, trusted hops 2", resolver: clientIPResolver{trustedHops: 2},
			source: "10.0.0.1:5000", xff: []string{"1.2.3.4, 192.0.2.66, 10.9.9.9, 10.0.0.1"}, want: "192.0.2.66"},
		{name: "two LBs, trusted CIDRs", resolver: clientIPResolver{trustedCIDRs: lb},
			source: "10.0.0.1:5000", xff: []string{"1.2.3.4, 192.0.2.66, 10.9.9.9, 10.0.0.1"}, want: "192.0.2.66"},
		{name: "two LBs, trusted hops 1 and a CIDR", resolver: clientIPResolver{trustedHops: 1, trustedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}},
			source: "10.0.0.1:5000", xff: []string{"1.2.3.4, 192.0.2.66, 10.9.9.9, 10.0.0.1"}, want: "192.0.2.66"},
		// Trusted hops set too high.
		{name: "trusted hops higher than the chain: the peer, not the forged left-most", resolver: clientIPResolver{trustedHops: 3},
			source: "10.0.0.1:5000", xff: []string{"6.6.6.6, 10.0.0.1"}, want: "10.0.0.1"},
		{name: "trusted hops equal to the chain: the peer", resolver: clientIPResolver{trustedHops: 2},
			source: "10.0.0.1:5000", xff: []string{"6.6.6.6, 10.0.0.1"}, want: "10.0.0.1"},
		{name: "trusted hops too high, no source: the right-most", resolver: clientIPResolver{trustedHops: 5},
			xff: []string{"6.6.6.6, 198.51.100.20"}, want: "198.51.100.20"},
		// Without a peer.
		{name: "no source: right-most XFF, not the forged left-most", xff: []string{"1.2.3.4, 198.51.100.20"}, want: "198.51.100.20"},
		{name: "XFF in several headers", resolver: clientIPResolver{trustedHops: 1},
			xff: []string{"1.2.3.4", "198.51.100.20, 192.0.2.1"}, want: "198.51.100.20"},
		{name: "all trusted CIDRs: the left-most is what the first proxy saw", resolver: clientIPResolver{trustedCIDRs: lb},
			source: "10.0.0.1:1", xff: []string{"10.0.0.2"}, want: "10.0.0.2"},
		{name: "garbage entry cuts the chain", resolver: clientIPResolver{trustedCIDRs: lb},
			source: "10.0.0.1:1", xff: []string{"1.2.3.4, not-an-ip, 10.0.0.5"}, want: "10.0.0.5"},
		// The client-IP header.
		{name: "header from a trusted peer", resolver: clientIPResolver{header: "x-real-ip", trustedCIDRs: lb},
			source: "10.0.0.1:1", extra: map[string][]string{"x-real-ip": {"198.51.100.77"}}, want: "198.51.100.77"},
		{name: "header from an untrusted peer: ignored", resolver: clientIPResolver{header: "x-real-ip"},
			source: "203.0.113.9:1", extra: map[string][]string{"x-real-ip": {"1.2.3.4"}}, want: "203.0.113.9"},
		{name: "header without source.address: ignored", resolver: clientIPResolver{header: "x-real-ip"},
			xff: []string{"198.51.100.20"}, extra: map[string][]string{"x-real-ip": {"1.2.3.4"}}, want: "198.51.100.20"},
		{name: "header without source.address, opted in", resolver: clientIPResolver{header: "x-real-ip", headerWithoutPeer: true},
			xff: []string{"198.51.100.20"}, extra: map[string][]string{"x-real-ip": {"198.51.100.77"}}, want: "198.51.100.77"},
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

// The case end to end: behind one load balancer with --trusted-hops=1, a blocked
// client is blocked (before, the balancer was taken for the client and it got through).
func TestBlockedClientBehindOneBalancer(t *testing.T) {
	cfg := testConfig()
	cfg.TrustedHops = 1
	cfg.PolicyFile = writeFile(t, t.TempDir(), "policy.yaml", "blocked_ips:\n  - value: 192.0.2.66\n")
	r := startProcessor(t, cfg)
	x := httpExchange{path: "/", sourceAddress: "10.0.0.1:5000", headers: [][2]string{{"x-forwarded-for", "1.2.3.4, 192.0.2.66, 10.0.0.1"}}}
	if out := r.envoy.do(t, x); !out.blocked() {
		t.Fatal("the blocked client behind the balancer got through")
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
	cfg.ClientIPHeaderWithoutPeer = true
	cfg.PolicyFile = writeFile(t, t.TempDir(), "policy.yaml", "blocked_ips:\n  - value: 192.0.2.77\n")
	r := startProcessor(t, cfg)
	if out := r.envoy.do(t, httpExchange{path: "/", headers: [][2]string{{"x-real-ip", "192.0.2.77"}}}); !out.blocked() {
		t.Fatal("the configured client-IP header was not read")
	}
}
