package snapshot

import (
	"fmt"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wafplane/wafplane/discovery"
)

// clusterName is the cluster of a backend: its name, or host:port.
func clusterName(b discovery.Backend) string {
	if b.Name != "" {
		return b.Name
	}
	return b.Host + ":" + strconv.FormatUint(uint64(b.Port), 10)
}

// backendCluster makes the cluster of a backend. IP addresses (and Kubernetes endpoints)
// go over EDS with a ClusterLoadAssignment; a DNS name becomes a STRICT_DNS cluster with
// its address inline, because EDS endpoints must be IP addresses.
func backendCluster(b discovery.Backend, connectTimeout time.Duration) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	name := clusterName(b)
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(connectTimeout),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
	}
	endpoints := b.Endpoints
	if b.Host != "" {
		endpoints = []discovery.Endpoint{{Address: b.Host, Port: b.Port}}
	}
	cla := loadAssignment(name, endpoints)
	if b.Host == "" || isIP(b.Host) {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()}
		return c, cla
	}
	resolveHost(c, b.Host)
	c.LoadAssignment = cla
	return c, nil
}

func loadAssignment(cluster string, endpoints []discovery.Endpoint) *endpointv3.ClusterLoadAssignment {
	lbs := make([]*endpointv3.LbEndpoint, 0, len(endpoints))
	for _, e := range endpoints {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: socketAddress(e.Address, e.Port)},
		}})
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	if len(lbs) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	}
	return cla
}

// processorCluster is how Envoy reaches the ext_proc processor: HTTP/2 (gRPC), a short
// connect timeout, circuit breakers sized for one stream per request, and TLS when the
// processor serves TLS. With plain TLS the processor's certificate is not verified (its
// default is an ephemeral self-signed one); with mTLS both sides are, by wafplane's CA.
func processorCluster(o Options, host string, port uint32) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                          o.ProcessorCluster,
		ConnectTimeout:                durationpb.New(o.ProcessorConnectTimeout),
		LbPolicy:                      clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment:                loadAssignment(o.ProcessorCluster, []discovery.Endpoint{{Address: host, Port: port}}),
		TypedExtensionProtocolOptions: http2Options(nil),
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     wrapperspb.UInt32(1024),
			MaxPendingRequests: wrapperspb.UInt32(o.ProcessorMaxRequests),
			MaxRequests:        wrapperspb.UInt32(o.ProcessorMaxRequests),
			MaxRetries:         wrapperspb.UInt32(3),
		}}},
	}
	resolveHost(c, host)
	if o.ProcessorTLS || o.ProcessorMTLS {
		tls := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2"}}}
		if !isIP(host) {
			tls.Sni = host
		}
		if o.ProcessorMTLS {
			// Secrets by name only: the bootstrap defines them from files the Envoy holds.
			tls.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: ClientCertSecret}}
			tls.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{sanMatcher(host)}},
					ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: CASecret},
				}}
		}
		c.TransportSocket = &corev3.TransportSocket{
			Name:       "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(tls)},
		}
	}
	return c
}

// sameBackend reports two backends that share a cluster name but not their addresses.
func sameBackend(a, b discovery.Backend) error {
	if a.Host != b.Host || a.Port != b.Port || fmt.Sprint(a.Endpoints) != fmt.Sprint(b.Endpoints) {
		return fmt.Errorf("backend name %q is used for different addresses", clusterName(a))
	}
	return nil
}
