package processor

import (
	"net/netip"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
)

// sourceAddressAttribute is the Envoy attribute the control plane asks for through
// request_attributes: the downstream peer, after Envoy's own XFF handling.
const sourceAddressAttribute = "source.address"

// clientIPResolver finds the client address without trusting what a client can forge.
//
// The chain is X-Forwarded-For (left to right) followed by the peer Envoy saw, unless the
// peer is already its last entry (Envoy with use_remote_address appends it): the peer is
// one hop, counted once. It is read from the right: entries inside a trusted CIDR are
// proxies and skipped, then TrustedHops more entries are skipped; the first entry left is
// the client. When the chain is shorter than TrustedHops says, the peer is the client, as
// in Envoy's xff_num_trusted_hops: the left-most entry, the one a client writes, is never
// believed for want of entries. It is the client only when every hop after it is a trusted
// CIDR.
type clientIPResolver struct {
	// header is an extra header (e.g. x-real-ip), believed only from a trusted peer, or,
	// with headerWithoutPeer, also when Envoy does not send the peer (source.address).
	header            string
	headerWithoutPeer bool
	trustedHops       int
	trustedCIDRs      []netip.Prefix
}

func (c *clientIPResolver) trusted(a netip.Addr) bool {
	for _, p := range c.trustedCIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (c *clientIPResolver) resolve(attrs map[string]*structpb.Struct, headers map[string][]string) string {
	peer, havePeer := sourceAddress(attrs)
	if c.header != "" && (havePeer && c.trusted(peer) || !havePeer && c.headerWithoutPeer) {
		if a, ok := lastValidIP(headers[c.header]); ok {
			return a.String()
		}
	}
	var chain []netip.Addr
	for _, v := range headers["x-forwarded-for"] {
		for part := range strings.SplitSeq(v, ",") {
			a, ok := parseIP(part)
			if !ok {
				// A broken entry ends what can be believed: nothing to its left is used.
				chain = chain[:0]
				continue
			}
			chain = append(chain, a)
		}
	}
	if havePeer && (len(chain) == 0 || chain[len(chain)-1] != peer) {
		chain = append(chain, peer)
	}
	if len(chain) == 0 {
		return ""
	}
	hops := c.trustedHops
	for i := len(chain) - 1; i >= 0; i-- {
		switch {
		case c.trusted(chain[i]):
		case hops > 0:
			hops--
		default:
			return chain[i].String()
		}
	}
	if c.trustedHops > 0 {
		// No more than the trusted hops: the chain lacks the client's entry, so the
		// nearest address is taken, as Envoy does, never the forgeable left-most one.
		return chain[len(chain)-1].String()
	}
	return chain[0].String() // every hop a trusted CIDR
}

func lastValidIP(values []string) (netip.Addr, bool) {
	for i := len(values) - 1; i >= 0; i-- {
		parts := strings.Split(values[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			if a, ok := parseIP(parts[j]); ok {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// parseIP accepts an address with or without a port, IPv6 in brackets or not.
func parseIP(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// sourceAddress finds source.address in the attributes, whatever filter name keys them.
func sourceAddress(attrs map[string]*structpb.Struct) (netip.Addr, bool) {
	for _, s := range attrs {
		if v, ok := s.GetFields()[sourceAddressAttribute]; ok {
			return parseIP(v.GetStringValue())
		}
	}
	return netip.Addr{}, false
}

// routeNameAttribute is Envoy's xds.route_name attribute, which Envoy Gateway's
// EnvoyExtensionPolicy can send where it cannot send the x-wafplane-route metadata. It comes
// from the proxy's configuration, not the client, but is bounded all the same.
const routeNameAttribute = "xds.route_name"

func routeName(attrs map[string]*structpb.Struct) string {
	for _, s := range attrs {
		if v, ok := s.GetFields()[routeNameAttribute]; ok {
			name := v.GetStringValue()
			if len(name) > maxRouteName {
				name = name[:maxRouteName]
			}
			return name
		}
	}
	return ""
}

const maxRouteName = 256
