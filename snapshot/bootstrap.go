package snapshot

import (
	"path"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/wafplane/wafplane/discovery"
)

// XDSCluster is the bootstrap's static cluster that reaches wafplane's ADS server.
const XDSCluster = "wafplane-xds"

// BootstrapOptions say which gateway an Envoy serves and where wafplane's xDS server is.
type BootstrapOptions struct {
	Gateway   string // namespace/name: the node cluster
	NodeID    string // unique per Envoy
	XDSHost   string
	XDSPort   uint32
	AdminPort uint32 // on 127.0.0.1; 0 for none
	// CertDir, when set, makes Envoy speak mTLS to wafplane with the files wafplane issues
	// there (tls.crt, tls.key: the gateway's client certificate; ca.crt: wafplane's CA),
	// checking that the server's certificate names XDSHost.
	CertDir string
}

// Files of a gateway's xDS client certificate, as in a kubernetes.io/tls Secret.
const (
	ClientCertFile = "tls.crt"
	ClientKeyFile  = "tls.key"
	CAFile         = "ca.crt"
)

// Static secrets a bootstrap with CertDir defines from those files, so that resources
// served over xDS (the processor cluster with Options.ProcessorMTLS) can present the
// gateway's certificate and check wafplane's CA without the key ever leaving the Envoy.
const (
	ClientCertSecret = "wafplane-client-certificate"
	CASecret         = "wafplane-ca"
)

// Bootstrap is the Envoy bootstrap for a gateway: node cluster = the gateway, every
// dynamic resource over one delta ADS stream to wafplane, reached over HTTP/2 with
// keepalives. It is validated.
func Bootstrap(o BootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	cluster := &clusterv3.Cluster{
		Name:           XDSCluster,
		ConnectTimeout: durationpb.New(time.Second),
		LoadAssignment: loadAssignment(XDSCluster, []discovery.Endpoint{{Address: o.XDSHost, Port: o.XDSPort}}),
		TypedExtensionProtocolOptions: http2Options(&corev3.KeepaliveSettings{
			Interval: durationpb.New(30 * time.Second), Timeout: durationpb.New(5 * time.Second),
		}),
	}
	resolveHost(cluster, o.XDSHost)
	var secrets []*tlsv3.Secret
	if o.CertDir != "" {
		cluster.TransportSocket = xdsClientTLS(o.CertDir, o.XDSHost)
		file := func(name string) *corev3.DataSource {
			return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path.Join(o.CertDir, name)}}
		}
		secrets = []*tlsv3.Secret{
			{Name: ClientCertSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: file(ClientCertFile), PrivateKey: file(ClientKeyFile)}}},
			{Name: CASecret, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: file(CAFile)}}},
		}
	}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: o.NodeID, Cluster: o.Gateway},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   corev3.ApiConfigSource_DELTA_GRPC,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSCluster},
				}}},
			},
			LdsConfig: adsSource(),
			CdsConfig: adsSource(),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{cluster}, Secrets: secrets},
	}
	if o.AdminPort > 0 {
		b.Admin = &bootstrapv3.Admin{Address: socketAddress("127.0.0.1", o.AdminPort)}
	}
	if err := b.ValidateAll(); err != nil {
		return nil, err
	}
	return b, nil
}

// xdsClientTLS presents the gateway's certificate and accepts only a server certificate
// of wafplane's CA that names the host Envoy dials.
func xdsClientTLS(dir, host string) *corev3.TransportSocket {
	file := func(name string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path.Join(dir, name)}}
	}
	ctx := &tlsv3.UpstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:   []string{"h2"},
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: file(ClientCertFile), PrivateKey: file(ClientKeyFile)}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:                 file(CAFile),
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{sanMatcher(host)},
			}},
		},
	}
	if !isIP(host) {
		ctx.Sni = host
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

// sanMatcher accepts a server certificate that names host (a DNS name or an IP address).
func sanMatcher(host string) *tlsv3.SubjectAltNameMatcher {
	sanType := tlsv3.SubjectAltNameMatcher_DNS
	if isIP(host) {
		sanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	return &tlsv3.SubjectAltNameMatcher{SanType: sanType,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}}}
}
