// Package kubernetes finds gateways in a Kubernetes cluster: it is a Gateway API
// implementation whose every gateway is WAF-protected. Shared informers (client-go, and the
// Gateway API's typed clients) watch GatewayClasses, Gateways, HTTPRoutes, ReferenceGrants,
// Namespaces, Services, EndpointSlices and Secrets; a burst of changes becomes one
// conversion to the discovery model (convert.go, a pure function), sent to the control
// plane as a discovery.Update. The leader (a Lease) writes status, records Events and
// provisions an Envoy Deployment, Service and bootstrap ConfigMap per Gateway.
//
// The injector (inject*.go) protects the Gateways Istio and Envoy Gateway run: it detects
// their CRDs while running (a CRD informer, and a dynamic informer per kind once its CRD is
// established), finds the foreign gateways (a pure function, like convert), and the leader
// applies the objects a Render function returns for each — creating, repairing drift,
// deleting orphans by label, reporting clashes, Events, /injections and metrics.
//
// It takes in a rest.Config and gives out discovery.Update values; it must not import
// go-control-plane or the snapshot package: the bootstrap for provisioning and the objects
// of the injector come from functions the caller passes in (snapshot.Inject).
package kubernetes
