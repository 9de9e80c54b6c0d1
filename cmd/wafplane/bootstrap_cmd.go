package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"
)

// xdsCluster is the bootstrap's static cluster that reaches wafplane's ADS server.
const xdsCluster = "wafplane-xds"

type bootstrapFlags struct {
	gateway, xdsAddress, nodeID, output string
	adminPort                           int
}

func newBootstrapCommand() *cobra.Command {
	var f bootstrapFlags
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Print an Envoy bootstrap that gets a gateway's configuration from wafplane over delta ADS",
		Args:  cobra.NoArgs,
	}
	env := &envFlags{fs: cmd.Flags()}
	env.String(&f.gateway, "gateway", "default/demo", "gateway namespace/name; it becomes the node cluster")
	env.String(&f.xdsAddress, "xds-address", "127.0.0.1:18000", "host:port of wafplane's xDS server as Envoy reaches it")
	env.String(&f.nodeID, "node-id", "", "node id, unique per Envoy (default <namespace>-<name>; Envoy's --service-node overrides it)")
	env.Int(&f.adminPort, "admin-port", 9901, "Envoy admin port on 127.0.0.1 (0 disables)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "yaml", "yaml or json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(env.errs) > 0 {
			return errors.Join(env.errs...)
		}
		b, err := f.bootstrap()
		if err != nil {
			return err
		}
		out, err := render(b, f.output)
		if err != nil {
			return err
		}
		_, err = cmd.OutOrStdout().Write(out)
		return err
	}
	return cmd
}

// bootstrap builds the Envoy bootstrap: node cluster = the gateway, every dynamic resource
// over one delta ADS stream to wafplane, reached over HTTP/2 with keepalives.
func (f bootstrapFlags) bootstrap() (*bootstrapv3.Bootstrap, error) {
	ns, name, ok := strings.Cut(f.gateway, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("--gateway %q: want namespace/name", f.gateway)
	}
	host, p, err := net.SplitHostPort(f.xdsAddress)
	port, perr := strconv.ParseUint(p, 10, 16)
	if err != nil || perr != nil || host == "" || port == 0 {
		return nil, fmt.Errorf("--xds-address %q: want host:port", f.xdsAddress)
	}
	if f.adminPort < 0 || f.adminPort > 65535 {
		return nil, fmt.Errorf("--admin-port %d: out of range", f.adminPort)
	}
	id := f.nodeID
	if id == "" {
		id = ns + "-" + name
	}
	ads := &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
	cluster := &clusterv3.Cluster{
		Name:                 xdsCluster,
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: xdsCluster,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
					}}},
				}},
			}}}},
		},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&httpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
						ConnectionKeepalive: &corev3.KeepaliveSettings{Interval: durationpb.New(30 * time.Second), Timeout: durationpb.New(5 * time.Second)},
					}},
				}},
			}),
		},
	}
	if _, err := netip.ParseAddr(host); err == nil {
		cluster.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: id, Cluster: f.gateway},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   corev3.ApiConfigSource_DELTA_GRPC,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: xdsCluster},
				}}},
			},
			LdsConfig: ads,
			CdsConfig: ads,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{cluster}},
	}
	if f.adminPort > 0 {
		b.Admin = &bootstrapv3.Admin{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(f.adminPort)},
		}}}}
	}
	if err := b.ValidateAll(); err != nil {
		return nil, err
	}
	return b, nil
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // a generated message we just built always marshals
	}
	return a
}

// render prints a message as YAML or JSON with protojson's field names, stably.
func render(m proto.Message, format string) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	return reformat(b, format)
}

// reformat turns JSON into stable indented JSON or YAML.
func reformat(b []byte, format string) ([]byte, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	switch format {
	case "yaml":
		return yaml.Marshal(v)
	case "json":
		out, err := json.MarshalIndent(v, "", "  ")
		return append(out, '\n'), err
	}
	return nil, fmt.Errorf("--output %q: want yaml or json", format)
}
