package snapshot

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wafplane/wafplane/discovery"
)

// listener builds one Envoy listener: an HTTP connection manager whose routes come over
// RDS and whose filters are ext_proc (when the gateway is protected), then the router.
// The gateway is the edge, so Envoy's own view of the peer is the client address
// (use_remote_address), and paths are normalized before the WAF and the routes see them.
func (t *translation) listener(name string, l discovery.Listener) *listenerv3.Listener {
	var filters []*hcmv3.HttpFilter
	if t.protected {
		filters = append(filters, extProcFilter())
	}
	filters = append(filters, &hcmv3.HttpFilter{
		Name:       RouterFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
	})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix(name),
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: name,
		}},
		HttpFilters:      filters,
		UseRemoteAddress: wrapperspb.Bool(true),
		NormalizePath:    wrapperspb.Bool(true),
		MergeSlashes:     true,
		// Virtual hosts list bare hostnames; a Host header with a port must still match.
		StripPortMode: &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
	}
	chain := &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
		Name:       "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
	}}}
	if l.Protocol == discovery.ProtocolHTTPS {
		common := &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"}}
		if l.TLS.SecretName != "" {
			// Inline keys travel over SDS, so they stay out of the listener (and its dumps).
			common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: l.TLS.SecretName, SdsConfig: adsSource()}}
			t.addSecret(l.TLS)
		} else {
			common.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: l.TLS.CertFile}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: l.TLS.KeyFile}},
			}}
		}
		chain.TransportSocket = &corev3.TransportSocket{
			Name:       "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.DownstreamTlsContext{CommonTlsContext: common})},
		}
	}
	address := l.Address
	if address == "" {
		address = "0.0.0.0"
	}
	return &listenerv3.Listener{
		Name:         name,
		Address:      socketAddress(address, l.Port),
		FilterChains: []*listenerv3.FilterChain{chain},
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
