// Package snapshot translates the discovery model into Envoy resources per gateway, as a
// pure function: same model in, same resources out, no clock, no I/O. It must not import
// client-go or do network I/O.
//
// Each gateway becomes: one Listener per listener (HCM with RDS; HTTP filters ext_proc,
// then router), one RouteConfiguration per listener, one Cluster per backend (EDS with its
// ClusterLoadAssignment for IP backends, STRICT_DNS for names), the processor cluster, and
// the ext_proc filter configuration as an ECDS TypedExtensionConfig, so that a protection
// change re-pushes that one small resource and not the listeners. Every resource passes its
// Validate() and the snapshot passes Consistent() before Translate returns it.
//
// Inject renders, as pure data, what protects a gateway another controller runs: an Istio
// EnvoyFilter whose patches are the same ext_proc configuration (ExternalProcessor) and
// processor cluster the control plane serves, or an Envoy Gateway EnvoyExtensionPolicy with
// the ReferenceGrant or Backend it needs. The Kubernetes package applies them.
//
// The gRPC initial metadata on the filter follows the processor's stream contract
// (processor/doc.go); the keys are repeated here so that this package does not import the
// processor and its cgo WAF, and a test in cmd/wafplane holds the two lists equal.
package snapshot
