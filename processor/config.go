package processor

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"time"
)

// Mode says what the processor does with a request that matches a rule.
type Mode string

const (
	ModeBlock   Mode = "block"   // blocking and redirect actions are applied
	ModeMonitor Mode = "monitor" // matches are reported, nothing is blocked
	ModeOff     Mode = "off"     // the WAF is not run at all
)

// ParseMode accepts block, monitor and off.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeBlock, ModeMonitor, ModeOff:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want block, monitor or off", s)
}

// Defaults used by NewConfig; documented in the README.
const (
	DefaultBodyLimit   = 1 << 20
	DefaultWAFTimeout  = 10 * time.Millisecond
	DefaultAPIInterval = time.Minute
)

// Config is everything the processor needs; cmd fills it from flags and the environment.
type Config struct {
	// Address is host:port for TCP; ignored when UnixSocket is set.
	Address    string
	UnixSocket string
	// UnixSocketMode, when not 0, is set on the socket: 0666 lets an Envoy running as
	// another user connect, the directory's permissions deciding who may.
	UnixSocketMode os.FileMode
	// HealthAddress is host:port of the HTTP health server; empty disables it.
	HealthAddress string

	TLS      bool
	CertFile string
	KeyFile  string

	Mode      Mode
	BodyLimit int // bytes of request body inspected; 0 disables body inspection
	// MaxBodyLimit is the largest body limit a stream's metadata (x-wafplane-body-limit)
	// may ask for; a larger ask gets it. Zero: BodyLimit, so metadata can only lower it.
	MaxBodyLimit int
	// MaxStreams and MaxStreamsPerConnection bound the streams open at once (0: no bound);
	// more are refused with ResourceExhausted. StreamIdleTimeout closes a stream that has
	// sent nothing for that long, and frees its WAF context.
	MaxStreams              int
	MaxStreamsPerConnection int
	// MaxStreamsPerPeer bounds the streams of one peer (its IP address, an IPv6 /64, or
	// the gateway its verified certificate names), so that one client cannot take every
	// place; 0: three quarters of MaxStreams. A Unix socket's only peer is not bounded.
	MaxStreamsPerPeer int
	StreamIdleTimeout time.Duration
	ResponseBodies    bool
	WAFTimeout        time.Duration
	ObservabilityMode bool
	// Gateway is reported for streams whose metadata names no gateway.
	Gateway             string
	RulesFile           string // replaces the recommended ruleset when set
	PolicyFile          string
	BlockedTemplateJSON string
	BlockedTemplateHTML string

	// TLSConfig, when set, is the ext_proc server's TLS (serve's mTLS with its CA) instead
	// of TLS, CertFile and KeyFile. PeerGateway then reads the gateway a verified client
	// certificate names: a stream must come from a gateway's Envoy, and may speak only for
	// that gateway.
	TLSConfig   *tls.Config
	PeerGateway func(*x509.Certificate) (string, bool)

	// ReadyHandler, when set, answers /readyz on the health port (serve adds its xDS
	// readiness there, so that probes need neither the admin port nor its token).
	ReadyHandler http.Handler

	ClientIPHeader string
	// ClientIPHeaderWithoutPeer believes ClientIPHeader also when Envoy does not send the
	// peer (source.address): only behind a proxy that always sets that header.
	ClientIPHeaderWithoutPeer bool
	TrustedHops               int
	TrustedCIDRs              []netip.Prefix
	UserIDHeader              string

	// APIInterval is how often one request per gateway, route and method is sampled
	// for API schema extraction; 0 disables API discovery.
	APIInterval time.Duration

	EventBuffer     int
	ShutdownTimeout time.Duration
}

// NewConfig returns a Config with the documented defaults.
func NewConfig() Config {
	return Config{
		Address:         "127.0.0.1:18080",
		HealthAddress:   "127.0.0.1:18081",
		Mode:            ModeBlock,
		BodyLimit:       DefaultBodyLimit,
		WAFTimeout:      DefaultWAFTimeout,
		APIInterval:     DefaultAPIInterval,
		EventBuffer:     1000,
		ShutdownTimeout: 10 * time.Second,

		MaxStreams:              DefaultMaxStreams,
		MaxStreamsPerConnection: DefaultMaxStreamsPerConnection,
		StreamIdleTimeout:       DefaultStreamIdleTimeout,
	}
}

// peerShare is the most streams one peer may hold; 0 for no bound.
func (c Config) peerShare() int {
	if c.MaxStreamsPerPeer > 0 {
		return c.MaxStreamsPerPeer
	}
	return c.MaxStreams * 3 / 4
}

// maxBodyLimit is the largest body limit any stream may have.
func (c Config) maxBodyLimit() int { return max(c.BodyLimit, c.MaxBodyLimit) }

// DefaultStreamIdleTimeout is how long a stream may send nothing: longer than an upstream
// takes to answer (the stream is silent meanwhile), short enough that abandoned streams
// do not pile up.
const DefaultStreamIdleTimeout = 5 * time.Minute

// Validate names the offending field.
func (c Config) Validate() error {
	var errs []error
	if c.Address == "" && c.UnixSocket == "" {
		errs = append(errs, errors.New("address: need a host:port or a unix socket path"))
	}
	if _, err := ParseMode(string(c.Mode)); err != nil {
		errs = append(errs, err)
	}
	if c.BodyLimit < 0 {
		errs = append(errs, fmt.Errorf("body limit %d: must be >= 0", c.BodyLimit))
	}
	if c.MaxBodyLimit < 0 {
		errs = append(errs, fmt.Errorf("max body limit %d: must be >= 0 (0: the body limit)", c.MaxBodyLimit))
	}
	if c.MaxStreams < 0 || c.MaxStreamsPerConnection < 0 || c.MaxStreamsPerPeer < 0 {
		errs = append(errs, fmt.Errorf("max streams %d, per connection %d, per peer %d: must be >= 0", c.MaxStreams, c.MaxStreamsPerConnection, c.MaxStreamsPerPeer))
	}
	if c.StreamIdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("stream idle timeout %s: must be >= 0", c.StreamIdleTimeout))
	}
	if c.WAFTimeout <= 0 {
		errs = append(errs, fmt.Errorf("waf timeout %s: must be > 0", c.WAFTimeout))
	}
	if c.TrustedHops < 0 {
		errs = append(errs, fmt.Errorf("trusted hops %d: must be >= 0", c.TrustedHops))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("tls: cert file and key file go together"))
	}
	if c.APIInterval < 0 {
		errs = append(errs, fmt.Errorf("api discovery interval %s: must be >= 0", c.APIInterval))
	}
	return errors.Join(errs...)
}
