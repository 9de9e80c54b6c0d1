package xds

import resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

// resourceTypes are the types a gateway's snapshot holds.
var resourceTypes = []string{
	resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType,
	resourcev3.RouteType, resourcev3.ExtensionConfigType, resourcev3.SecretType,
}
