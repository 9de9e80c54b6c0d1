package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/wafplane/wafplane/processor"
)

// processorFlags are the flags of `wafplane processor`. Defaults and Datadog variable names
// match Datadog's service-extensions-callout image, so its manifests work unchanged.
type processorFlags struct {
	host, healthHost, uds      string
	udsMode                    string
	port, healthPort           int
	tls, observability         bool
	certFile, keyFile          string
	mode, rules, policy        string
	bodyLimit, maxBodyLimit    int
	wafTimeout, apiInterval    time.Duration
	templateJSON, templateHTML string
	clientIPHeader, userHeader string
	trustedHops                int
	clientIPHeaderWithoutPeer  bool
	trustedCIDRs               []string
	responseBody               bool
	admin                      adminFlags
	maxStreams, maxStreamsConn int
	maxStreamsPeer             int
	streamIdle                 time.Duration
}

func (f *processorFlags) register(env *envFlags, host string, port, healthPort int, tls bool) {
	env.String(&f.host, "host", host, "address the ext_proc and health servers listen on", "DD_SERVICE_EXTENSION_HOST")
	env.Int(&f.port, "port", port, "ext_proc gRPC port", "DD_SERVICE_EXTENSION_PORT")
	env.String(&f.healthHost, "health-host", "", "address the health server listens on (default --host): 0.0.0.0 lets the kubelet probe a processor whose gRPC is on 127.0.0.1")
	env.Int(&f.healthPort, "health-port", healthPort, "HTTP health check port (0 disables)", "DD_SERVICE_EXTENSION_HEALTHCHECK_PORT")
	env.String(&f.uds, "uds-path", "", "serve ext_proc on this Unix socket instead of TCP", "DD_SERVICE_EXTENSION_UDS_PATH")
	env.String(&f.udsMode, "uds-mode", "", "permission bits of the Unix socket, octal (0666: an Envoy running as another user may connect; the directory decides who can reach it)")
	env.Bool(&f.tls, "tls", tls, "serve ext_proc over TLS (an ephemeral self-signed certificate when no files are given)", "DD_SERVICE_EXTENSION_TLS")
	env.String(&f.certFile, "tls-cert-file", "", "TLS certificate file, reloaded when it changes", "DD_SERVICE_EXTENSION_TLS_CERT_FILE")
	env.String(&f.keyFile, "tls-key-file", "", "TLS key file, reloaded when it changes", "DD_SERVICE_EXTENSION_TLS_KEY_FILE")
	env.Bool(&f.observability, "observability-mode", false, "Envoy runs the filter in observability mode: never answer, never block", "DD_SERVICE_EXTENSION_OBSERVABILITY_MODE")
	env.String(&f.mode, "mode", "block", "default mode when the stream metadata names none: block, monitor or off")
	env.Int(&f.bodyLimit, "body-limit", processor.DefaultBodyLimit, "bytes of request body inspected (0 disables body inspection)", "DD_APPSEC_BODY_PARSING_SIZE_LIMIT")
	env.Int(&f.maxBodyLimit, "max-body-limit", 0, "the largest body limit a stream's metadata (x-wafplane-body-limit, set per gateway and route by the control plane) may ask for; a larger ask gets this (0: --body-limit, so metadata can only lower it)")
	env.Bool(&f.responseBody, "response-body", false, "inspect JSON response bodies")
	env.Duration(&f.wafTimeout, "waf-timeout", processor.DefaultWAFTimeout, "WAF time budget per request; past it the request continues and is counted (bare integers are microseconds)", "DD_APPSEC_WAF_TIMEOUT")
	env.String(&f.rules, "rules", "", "JSON ruleset file replacing the embedded recommended ruleset", "DD_APPSEC_RULES")
	env.String(&f.policy, "policy", "", "policy file (YAML): blocked IPs and users, custom rules, exclusions, rule overrides; watched")
	env.String(&f.templateJSON, "blocked-template-json", "", "file with the JSON blocking page ([security_response_id] is replaced)", "DD_APPSEC_HTTP_BLOCKED_TEMPLATE_JSON")
	env.String(&f.templateHTML, "blocked-template-html", "", "file with the HTML blocking page ([security_response_id] is replaced)", "DD_APPSEC_HTTP_BLOCKED_TEMPLATE_HTML")
	env.String(&f.clientIPHeader, "client-ip-header", "", "extra header holding the client IP, believed only from a peer in --trusted-cidrs", "DD_TRACE_CLIENT_IP_HEADER")
	env.Bool(&f.clientIPHeaderWithoutPeer, "client-ip-header-without-peer", false, "also believe --client-ip-header when Envoy does not send the peer (source.address), as Datadog's processor does: only behind a proxy that always sets the header")
	env.Int(&f.trustedHops, "trusted-hops", 0, "X-Forwarded-For entries from the right that belong to trusted proxies")
	env.StringSlice(&f.trustedCIDRs, "trusted-cidrs", nil, "CIDRs of trusted proxies, skipped when reading X-Forwarded-For")
	env.String(&f.userHeader, "user-id-header", "", "header holding the authenticated user id (for blocked users)")
	env.Duration(&f.apiInterval, "api-discovery-interval", processor.DefaultAPIInterval, "sample one request per gateway, route and method this often for API schemas (0 disables)")
	env.Int(&f.maxStreams, "max-streams", processor.DefaultMaxStreams, "ext_proc streams open at once, in total; more are refused with ResourceExhausted (0: no bound)")
	env.Int(&f.maxStreamsConn, "max-streams-per-connection", processor.DefaultMaxStreamsPerConnection, "ext_proc streams open at once on one connection, announced to Envoy in HTTP/2 SETTINGS (0: no bound)")
	env.Int(&f.maxStreamsPeer, "max-streams-per-peer", 0, "ext_proc streams open at once from one peer (IP address, IPv6 /64, or the gateway of a verified certificate), so that one client cannot take every place (0: three quarters of --max-streams)")
	env.Duration(&f.streamIdle, "stream-idle-timeout", processor.DefaultStreamIdleTimeout, "close an ext_proc stream that sent nothing for this long, freeing its WAF context; keep it above your slowest upstream's response time (0: never)")
}

func (f *processorFlags) config() (processor.Config, error) {
	cfg := processor.NewConfig()
	var errs []error
	mode, err := processor.ParseMode(f.mode)
	if err != nil {
		errs = append(errs, fmt.Errorf("--mode: %w", err))
	}
	cfg.Mode = mode
	if f.port < 0 || f.port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d: out of range", f.port))
	}
	if f.healthPort < 0 || f.healthPort > 65535 {
		errs = append(errs, fmt.Errorf("--health-port %d: out of range", f.healthPort))
	}
	cfg.Address = net.JoinHostPort(f.host, strconv.Itoa(f.port))
	cfg.HealthAddress = ""
	if f.healthPort > 0 {
		cfg.HealthAddress = net.JoinHostPort(orDefault(f.healthHost, f.host), strconv.Itoa(f.healthPort))
	}
	cfg.UnixSocket = f.uds
	if f.udsMode != "" {
		m, err := strconv.ParseUint(f.udsMode, 8, 32)
		if err != nil || m > 0o777 {
			errs = append(errs, fmt.Errorf("--uds-mode %q: want octal permission bits such as 0660", f.udsMode))
		}
		cfg.UnixSocketMode = os.FileMode(m)
	}
	cfg.TLS, cfg.CertFile, cfg.KeyFile = f.tls, f.certFile, f.keyFile
	cfg.ObservabilityMode = f.observability
	cfg.BodyLimit, cfg.MaxBodyLimit, cfg.ResponseBodies, cfg.WAFTimeout = f.bodyLimit, f.maxBodyLimit, f.responseBody, f.wafTimeout
	cfg.RulesFile, cfg.PolicyFile = f.rules, f.policy
	cfg.BlockedTemplateJSON, cfg.BlockedTemplateHTML = f.templateJSON, f.templateHTML
	cfg.ClientIPHeader, cfg.TrustedHops, cfg.UserIDHeader = f.clientIPHeader, f.trustedHops, f.userHeader
	cfg.ClientIPHeaderWithoutPeer = f.clientIPHeaderWithoutPeer
	cfg.APIInterval = f.apiInterval
	cfg.MaxStreams, cfg.MaxStreamsPerConnection, cfg.StreamIdleTimeout = f.maxStreams, f.maxStreamsConn, f.streamIdle
	cfg.MaxStreamsPerPeer = f.maxStreamsPeer
	for _, c := range f.trustedCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("--trusted-cidrs %q: %w", c, err))
			continue
		}
		cfg.TrustedCIDRs = append(cfg.TrustedCIDRs, p.Masked())
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

func newProcessorCommand(logs *logOptions) *cobra.Command {
	var f processorFlags
	cmd := &cobra.Command{
		Use:   "processor",
		Short: "Run the ext_proc processor alone (drop-in for Datadog's service-extensions-callout image)",
		Args:  cobra.NoArgs,
	}
	env := &envFlags{fs: cmd.Flags()}
	f.register(env, "0.0.0.0", 443, 80, true)
	f.admin.register(env, "", "admin HTTP address for /metrics, /events, /rules and /api-catalog (empty disables)")
	var gateway string
	env.String(&gateway, "gateway", "", "gateway (namespace/name) reported for streams whose metadata names none, as Envoy Gateway's policies send none; the sidecar webhook sets it")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(env.errs) > 0 {
			return errors.Join(env.errs...)
		}
		log, err := logs.logger(os.Stderr)
		if err != nil {
			return err
		}
		cfg, err := f.config()
		if err != nil {
			return err
		}
		cfg.Gateway = gateway
		return runProcessor(cmd.Context(), cfg, &f.admin, log)
	}
	return cmd
}

func runProcessor(ctx context.Context, cfg processor.Config, admin *adminFlags, log *slog.Logger) error {
	var guard func(http.Handler) http.Handler
	if admin.address != "" {
		var err error
		if guard, err = admin.guard(); err != nil {
			return err // refused before anything starts
		}
	}
	reg := newRegistry()
	p, err := processor.New(cfg, log.With("component", "processor"), reg)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Start(ctx) })
	if guard != nil {
		mux := processorAdminMux(reg, p)
		consoleRoutes(mux, p, consoleInfo{Command: "processor", Version: version})
		h := guard(mux)
		g.Go(func() error { return serveAdmin(ctx, admin.address, h, log) })
	}
	return g.Wait()
}

// newRegistry is the metrics registry of a command, with the Go runtime's and the process's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// processorAdminMux is the admin endpoint of `processor`; `serve` adds the rest to it.
func processorAdminMux(reg *prometheus.Registry, p *processor.Processor) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /events", p.EventsHandler())
	mux.Handle("GET /rules", p.RulesHandler())
	mux.Handle("GET /api-catalog", p.APICatalogHandler())
	mux.Handle("GET /healthz", p.HealthHandler())
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// writeJSON answers an admin request with v.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// noSniff keeps browsers from reading admin JSON, whose strings hold attack payloads, as
// anything but what its Content-Type says.
func noSniff(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

func serveAdmin(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin listener %s: %w", addr, err)
	}
	srv := &http.Server{Handler: noSniff(h), ReadHeaderTimeout: 5 * time.Second}
	log.Info("admin listening", "address", lis.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
