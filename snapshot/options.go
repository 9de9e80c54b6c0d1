package snapshot

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Names shared with Envoy and the processor.
const (
	ExtProcFilterName = "envoy.filters.http.ext_proc"
	RouterFilterName  = "envoy.filters.http.router"
	// DefaultProcessorCluster is the cluster of the ext_proc processor in every snapshot.
	DefaultProcessorCluster = "wafplane-processor"
	// DefaultProcessorAddress is where Envoys reach the processor when nothing else is said:
	// the same host as wafplane, its default ext_proc port.
	DefaultProcessorAddress = "127.0.0.1:18080"
)

// Keys of the processor's stream contract (processor/doc.go).
const (
	MetadataGateway      = "x-wafplane-gateway"
	MetadataRoute        = "x-wafplane-route"
	MetadataMode         = "x-wafplane-mode"
	MetadataBodyLimit    = "x-wafplane-body-limit"
	MetadataResponseBody = "x-wafplane-response-body"
)

// Options are the translation settings that do not come from the model.
type Options struct {
	// ProcessorAddress is host:port of the processor as Envoys reach it; an IP makes a
	// STATIC cluster, a name a STRICT_DNS one.
	ProcessorAddress string
	// ProcessorTLS makes Envoy speak TLS to the processor (SNI = the host when it is a name).
	ProcessorTLS bool
	// ProcessorMTLS makes Envoy present its gateway's client certificate to the processor
	// and check the processor's against wafplane's CA, both from the static secrets its
	// bootstrap defines (ClientCertSecret, CASecret). Implies ProcessorTLS.
	ProcessorMTLS bool
	// ProcessorCluster names the processor's cluster; DefaultProcessorCluster when empty.
	ProcessorCluster string
	// ProcessorConnectTimeout is the processor cluster's connect timeout; 1s when zero.
	ProcessorConnectTimeout time.Duration
	// ProcessorMaxRequests bounds concurrent ext_proc streams per Envoy (each HTTP request
	// is one stream); 10,000 when zero.
	ProcessorMaxRequests uint32
	// BackendConnectTimeout is the connect timeout of backend clusters; 5s when zero.
	BackendConnectTimeout time.Duration
	// ProcessorMaxBodyLimit, when set, is the largest request body limit the processor
	// takes from stream metadata; gateways and routes asking more get a warning.
	ProcessorMaxBodyLimit int64
}

// Validate checks the options: a processor address Envoys can dial.
func (o Options) Validate() error {
	_, _, _, err := o.resolved()
	return err
}

// resolved fills the defaults and checks the processor address.
func (o Options) resolved() (Options, string, uint32, error) {
	if o.ProcessorAddress == "" {
		o.ProcessorAddress = DefaultProcessorAddress
	}
	if o.ProcessorCluster == "" {
		o.ProcessorCluster = DefaultProcessorCluster
	}
	if o.ProcessorConnectTimeout == 0 {
		o.ProcessorConnectTimeout = time.Second
	}
	if o.ProcessorMaxRequests == 0 {
		o.ProcessorMaxRequests = 10000
	}
	if o.BackendConnectTimeout == 0 {
		o.BackendConnectTimeout = 5 * time.Second
	}
	host, p, err := net.SplitHostPort(o.ProcessorAddress)
	if err != nil {
		return o, "", 0, fmt.Errorf("processor address %q: %w", o.ProcessorAddress, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 || host == "" {
		return o, "", 0, fmt.Errorf("processor address %q: want host:port with a port in 1-65535", o.ProcessorAddress)
	}
	return o, host, uint32(port), nil
}
