package snapshot

import (
	"strconv"
	"time"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wafplane/wafplane/discovery"
)

// maxMessageTimeout bounds how far the processor may extend a message timeout
// (override_message_timeout); never below the configured timeout.
const maxMessageTimeout = 2 * time.Second

// ExternalProcessor is the ext_proc filter configuration of a gateway, built here only:
// the control plane serves it over ECDS and the injector writes it into EnvoyFilters (and
// maps it onto EnvoyExtensionPolicies). Headers are sent, bodies are asked for by the
// processor itself through mode_override, the client address travels as the
// source.address attribute, and the gateway's settings as initial metadata.
func ExternalProcessor(gatewayKey string, p discovery.Effective, processorCluster string) *extprocfilterv3.ExternalProcessor {
	return &extprocfilterv3.ExternalProcessor{
		GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: processorCluster}},
			InitialMetadata: append([]*corev3.HeaderValue{{Key: MetadataGateway, Value: gatewayKey}}, protectionMetadata(p)...),
		},
		FailureModeAllow: p.FailOpen,
		ProcessingMode: &extprocfilterv3.ProcessingMode{
			RequestHeaderMode:   extprocfilterv3.ProcessingMode_SEND,
			ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SEND,
			RequestBodyMode:     extprocfilterv3.ProcessingMode_NONE,
			ResponseBodyMode:    extprocfilterv3.ProcessingMode_NONE,
			RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
			ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
		},
		AllowModeOverride: true,
		MessageTimeout:    durationpb.New(p.MessageTimeout),
		MaxMessageTimeout: durationpb.New(max(p.MessageTimeout, maxMessageTimeout)),
		RequestAttributes: []string{"source.address"},
		// The processor only answers with immediate responses; it never needs to touch
		// pseudo-headers or host, and a disallowed mutation is ignored, not an error.
		MutationRules: &mutationv3.HeaderMutationRules{DisallowSystem: wrapperspb.Bool(true)},
		StatPrefix:    "wafplane",
	}
}

// extProcConfig is the filter configuration served over ECDS. Envoy subscribes to ECDS by
// the filter's name, and looks up per-route configuration by it too: the three names are
// one. Snapshots are per gateway, so it is unique.
func extProcConfig(gatewayKey string, p discovery.Effective, processorCluster string) *corev3.TypedExtensionConfig {
	return &corev3.TypedExtensionConfig{Name: ExtProcFilterName, TypedConfig: mustAny(ExternalProcessor(gatewayKey, p, processorCluster))}
}

// protectionMetadata is the part of the stream contract that a route may override.
func protectionMetadata(p discovery.Effective) []*corev3.HeaderValue {
	return []*corev3.HeaderValue{
		{Key: MetadataMode, Value: p.Mode},
		{Key: MetadataBodyLimit, Value: strconv.FormatInt(p.RequestBodyLimit, 10)},
		{Key: MetadataResponseBody, Value: strconv.FormatBool(p.ResponseBody)},
	}
}

// extProcFilter is the HCM entry: the configuration comes over ECDS on the same ADS stream.
// The listener waits (warms) until it arrives; Envoy fails the filter closed otherwise.
func extProcFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name: ExtProcFilterName,
		ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
			ConfigSource: adsSource(),
			TypeUrls:     []string{"type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"},
		}},
	}
}

// extProcPerRoute tells the processor which route a request took and applies the route's
// protection where it differs from the gateway's. A route whose mode is off skips the
// filter entirely.
func extProcPerRoute(route string, gateway, eff discovery.Effective) *anypb.Any {
	if eff.Mode == discovery.ModeOff {
		return mustAny(&extprocfilterv3.ExtProcPerRoute{Override: &extprocfilterv3.ExtProcPerRoute_Disabled{Disabled: true}})
	}
	o := &extprocfilterv3.ExtProcOverrides{GrpcInitialMetadata: []*corev3.HeaderValue{{Key: MetadataRoute, Value: route}}}
	if eff != gateway {
		// Envoy replaces metadata entries key by key, so the route's values win.
		o.GrpcInitialMetadata = append(o.GrpcInitialMetadata, protectionMetadata(eff)...)
	}
	if eff.FailOpen != gateway.FailOpen {
		o.FailureModeAllow = wrapperspb.Bool(eff.FailOpen)
	}
	return mustAny(&extprocfilterv3.ExtProcPerRoute{Override: &extprocfilterv3.ExtProcPerRoute_Overrides{Overrides: o}})
}
