package discovery

// State is everything a source knows at one moment: the gateways to serve.
type State struct {
	Gateways []Gateway `json:"gateways"`
}

// Gateway is one Envoy fleet: every Envoy whose node cluster is "namespace/name" gets its
// snapshot.
type Gateway struct {
	Namespace  string     `json:"namespace"`
	Name       string     `json:"name"`
	Listeners  []Listener `json:"listeners"`
	Routes     []Route    `json:"routes,omitempty"`
	Protection Protection `json:"protection,omitempty"`
}

// Key is the gateway's "namespace/name", the node cluster of its Envoys.
func (g *Gateway) Key() string { return g.Namespace + "/" + g.Name }

// Protocols of a listener.
const (
	ProtocolHTTP  = "HTTP"
	ProtocolHTTPS = "HTTPS"
)

// Listener is one port Envoy listens on.
type Listener struct {
	Name     string `json:"name"`
	Address  string `json:"address,omitempty"` // default 0.0.0.0
	Port     uint32 `json:"port"`
	Protocol string `json:"protocol,omitempty"` // HTTP (default) or HTTPS
	Hostname string `json:"hostname,omitempty"` // "" or "*" = any; "*.example.com" allowed
	TLS      *TLS   `json:"tls,omitempty"`      // required for HTTPS
}

// TLS is the certificate of an HTTPS listener: files Envoy reads, or (from Kubernetes
// Secrets) PEM data that Envoy gets over SDS under SecretName and that is never printed.
type TLS struct {
	CertFile   string `json:"certFile,omitempty"`
	KeyFile    string `json:"keyFile,omitempty"`
	SecretName string `json:"-"`
	CertPEM    []byte `json:"-"`
	KeyPEM     []byte `json:"-"`
}

// Route is a set of rules attached to some or all listeners of its gateway.
type Route struct {
	Name       string      `json:"name"`
	Listeners  []string    `json:"listeners,omitempty"` // listener names; empty = every listener
	Hostnames  []string    `json:"hostnames,omitempty"` // empty = the listener's hostname
	Rules      []Rule      `json:"rules"`
	Protection *Protection `json:"protection,omitempty"` // fields set here override the gateway's
}

// Rule routes the requests that match any of its matches (all requests when there are none).
type Rule struct {
	Matches  []Match   `json:"matches,omitempty"`
	Filters  Filters   `json:"filters,omitempty"`
	Backends []Backend `json:"backends,omitempty"`
	Timeout  Duration  `json:"timeout,omitempty"`
}

// Match kinds for paths and values.
const (
	MatchExact  = "Exact"
	MatchPrefix = "PathPrefix"
	MatchRegex  = "RegularExpression"
)

// Match is one alternative of a rule; all of its conditions must hold.
type Match struct {
	Path        *PathMatch   `json:"path,omitempty"`
	Headers     []ValueMatch `json:"headers,omitempty"`
	QueryParams []ValueMatch `json:"queryParams,omitempty"`
	Method      string       `json:"method,omitempty"`
}

// PathMatch matches the request path: Exact, PathPrefix (segment-wise, as the Gateway API
// says) or RegularExpression (RE2).
type PathMatch struct {
	Type  string `json:"type,omitempty"` // default PathPrefix
	Value string `json:"value"`
}

// ValueMatch matches a header or query parameter: Exact (default) or RegularExpression.
type ValueMatch struct {
	Type  string `json:"type,omitempty"`
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Filters change the request or answer it.
type Filters struct {
	RequestHeaders  *HeaderFilter `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderFilter `json:"responseHeaders,omitempty"`
	Redirect        *Redirect     `json:"redirect,omitempty"`
	Rewrite         *Rewrite      `json:"rewrite,omitempty"`
}

// HeaderFilter adds (appends), sets (replaces) and removes headers.
type HeaderFilter struct {
	Add    []Header `json:"add,omitempty"`
	Set    []Header `json:"set,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// Header is a header name and value.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Redirect answers with a redirect instead of routing. Empty fields keep the request's.
type Redirect struct {
	Scheme     string `json:"scheme,omitempty"`
	Hostname   string `json:"hostname,omitempty"`
	Port       uint32 `json:"port,omitempty"`
	Path       string `json:"path,omitempty"`       // replaces the whole path
	PathPrefix string `json:"pathPrefix,omitempty"` // replaces the matched prefix
	StatusCode int    `json:"statusCode,omitempty"` // 302 (default, as in the Gateway API), 301, 303, 307 or 308
}

// Rewrite changes the request before it goes upstream.
type Rewrite struct {
	Hostname   string `json:"hostname,omitempty"`
	Path       string `json:"path,omitempty"`       // replaces the whole path
	PathPrefix string `json:"pathPrefix,omitempty"` // replaces the matched prefix
}

// Backend is an upstream: Host is an IP address or a DNS name, and Host:Port its only
// address. Without Host, Name is the cluster and Endpoints its addresses, possibly none
// (Kubernetes fills them from the ready endpoints of EndpointSlices).
type Backend struct {
	Name      string     `json:"name,omitempty"` // cluster name; default host:port
	Host      string     `json:"host,omitempty"`
	Port      uint32     `json:"port"`
	Weight    *uint32    `json:"weight,omitempty"` // default 1
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	// Invalid says why a backend could not be resolved (Kubernetes: a missing Service, a
	// reference no ReferenceGrant allows). Its share of the requests is answered 500.
	Invalid string `json:"-"`
}

// Endpoint is one ready address of a backend.
type Endpoint struct {
	Address string `json:"address"`
	Port    uint32 `json:"port"`
}

// Modes of protection.
const (
	ModeBlock   = "block"
	ModeMonitor = "monitor"
	ModeOff     = "off"
)

// Protection is how the WAF guards a gateway or, as an override, a route. Unset fields take
// the gateway's value, then the defaults of DefaultProtection.
type Protection struct {
	Mode             string   `json:"mode,omitempty"`
	FailOpen         *bool    `json:"failOpen,omitempty"`
	MessageTimeout   Duration `json:"messageTimeout,omitempty"`
	RequestBodyLimit *int64   `json:"requestBodyLimit,omitempty"` // bytes; 0 disables body inspection
	ResponseBody     *bool    `json:"responseBody,omitempty"`     // inspect JSON response bodies
}
