// Package processor is wafplane's Envoy external processor (envoy.service.ext_proc.v3):
// it runs Datadog's libddwaf with the recommended ruleset on every HTTP request Envoy
// streams to it and answers continue, block or redirect.
//
// It takes in ext_proc streams over gRPC (TCP, TLS or a Unix socket), a Config, an optional
// ruleset file and an optional policy file. It gives out verdicts, security events
// (structured log lines, EventsHandler), Prometheus metrics, API schemas (APICatalogHandler)
// and health (HealthHandler). It must not import client-go or the xds package.
//
// # Stream contract with the control plane
//
// Envoy opens one stream per HTTP request. The control plane configures the ext_proc filter
// with request and response headers SEND, bodies NONE, allow_mode_override true and
// request_attributes [source.address]. Per-stream settings travel as gRPC initial metadata
// (grpc_service.initial_metadata), all optional:
//
//	x-wafplane-gateway        namespace/name of the gateway, for events, metrics and API discovery
//	x-wafplane-route          route name, for events and API discovery (the path when absent)
//	x-wafplane-mode           block | monitor | off; the processor's --mode when absent
//	x-wafplane-body-limit     bytes of request body to inspect; 0 disables body inspection
//	x-wafplane-response-body  true | false: inspect JSON response bodies
//
// An invalid value is logged and the default is used; the request is never failed for it.
// Envoy Gateway's EnvoyExtensionPolicy cannot send initial metadata: there the route comes
// from the xds.route_name request attribute, and the rest are the processor's defaults.
//
// When request headers arrive without end_of_stream and the body limit is not 0, the
// processor answers with mode_override request_body_mode BUFFERED_PARTIAL: Envoy holds the
// request, sends the body up to its buffer limit, and forwards nothing upstream until the
// verdict, and never answers 413 for a large body. If the filter itself is configured to send
// bodies (BUFFERED, BUFFERED_PARTIAL or STREAMED, told by protocol_config), no override is sent:
// STREAMED chunks are answered as they come and accumulated up to the limit, and the body
// is judged at end of stream, at the limit, or when trailers or response headers arrive.
//
// Response status and headers are judged when they arrive. A block at that point replaces the
// response with the blocking page. JSON response bodies are inspected only when enabled.
//
// The client IP is Envoy's source.address attribute; X-Forwarded-For is read from the right
// past trusted proxies, the peer counted once (clientip.go).
//
// Bounds (limits.go): streams open at once in total and per connection (refused with
// ResourceExhausted), a silent stream is closed after the idle timeout and its WAF context
// freed, and a message may not exceed the body limit plus room for headers. With
// Config.TLSConfig and PeerGateway (serve --processor-mtls) a stream must present a
// gateway's client certificate and may speak only for that gateway. The WAF time budget covers the whole request; when it
// runs out the request continues and the timeout is counted.
package processor
