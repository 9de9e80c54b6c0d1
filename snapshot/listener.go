package snapshot

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wafplane/wafplane/discovery"
)

// portGroup is the model listeners that share one address and port: one Envoy listener.
type portGroup struct {
	address   string
	port      uint32
	listeners []discovery.Listener
}

// portGroups groups listeners by address and port, in the model's order. Validation has
// made sure that a group's listeners share a protocol and differ in hostname.
func portGroups(ls []discovery.Listener) []*portGroup {
	var out []*portGroup
	byBind := map[string]*portGroup{}
	for _, l := range ls {
		address := l.Address
		if address == "" {
			address = "0.0.0.0"
		}
		k := fmt.Sprintf("%s:%d", address, l.Port)
		g := byBind[k]
		if g == nil {
			g = &portGroup{address: address, port: l.Port}
			byBind[k] = g
			out = append(out, g)
		}
		g.listeners = append(g.listeners, l)
	}
	return out
}

// listener builds one Envoy listener for a port. Plain HTTP listeners of one port share
// an HTTP connection manager whose routes hold every listener's virtual hosts; HTTPS
// listeners get a filter chain each, chosen by SNI, with their own certificate and routes.
func (t *translation) listener(g *portGroup) *listenerv3.Listener {
	name := t.key + "/" + g.listeners[0].Name
	if len(g.listeners) > 1 {
		name = fmt.Sprintf("%s/port-%d", t.key, g.port)
	}
	l := &listenerv3.Listener{Name: name, Address: socketAddress(g.address, g.port)}
	if g.listeners[0].Protocol != discovery.ProtocolHTTPS {
		t.res.Routes = append(t.res.Routes, t.routeConfiguration(name, g.listeners))
		l.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{t.hcm(name)}}}
		return l
	}
	for _, ml := range g.listeners {
		chainName := t.key + "/" + ml.Name
		t.res.Routes = append(t.res.Routes, t.routeConfiguration(chainName, []discovery.Listener{ml}))
		chain := &listenerv3.FilterChain{Name: chainName, Filters: []*listenerv3.Filter{t.hcm(chainName)}, TransportSocket: t.downstreamTLS(ml)}
		if len(g.listeners) > 1 && ml.Hostname != "" && ml.Hostname != "*" {
			chain.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{ml.Hostname}}
		}
		l.FilterChains = append(l.FilterChains, chain)
	}
	if len(g.listeners) > 1 {
		// SNI picks the filter chain, so the TLS inspector must read it first.
		l.ListenerFilters = []*listenerv3.ListenerFilter{{
			Name:       "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
		}}
	}
	return l
}

// hcm is the HTTP connection manager: routes over RDS, then ext_proc (when the gateway is
// protected) and the router. The gateway is the edge, so Envoy's own view of the peer is
// the client address (use_remote_address), and paths are normalized before the WAF and the
// routes see them.
func (t *translation) hcm(routeName string) *listenerv3.Filter {
	var filters []*hcmv3.HttpFilter
	if t.protected {
		filters = append(filters, extProcFilter())
	}
	filters = append(filters, &hcmv3.HttpFilter{
		Name:       RouterFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
	})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix(routeName),
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters:      filters,
		UseRemoteAddress: wrapperspb.Bool(true),
		NormalizePath:    wrapperspb.Bool(true),
		MergeSlashes:     true,
		// Virtual hosts list bare hostnames; a Host header with a port must still match.
		StripPortMode: &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
	}
	return &listenerv3.Filter{
		Name:       "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
	}
}

// downstreamTLS terminates TLS with the listener's certificate: files Envoy reads, or an
// SDS secret for inline keys, which so stay out of the listener (and its dumps).
func (t *translation) downstreamTLS(l discovery.Listener) *corev3.TransportSocket {
	common := &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"}}
	if l.TLS.SecretName != "" {
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: l.TLS.SecretName, SdsConfig: adsSource()}}
		t.addSecret(l.TLS)
	} else {
		common.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: l.TLS.CertFile}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: l.TLS.KeyFile}},
		}}
	}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.DownstreamTlsContext{CommonTlsContext: common})},
	}
}

// addSecret adds an SDS secret once per name.
func (t *translation) addSecret(tls *discovery.TLS) {
	for _, s := range t.res.Secrets {
		if s.Name == tls.SecretName {
			return
		}
	}
	t.res.Secrets = append(t.res.Secrets, &tlsv3.Secret{
		Name: tls.SecretName,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: tls.CertPEM}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: tls.KeyPEM}},
		}},
	})
}
