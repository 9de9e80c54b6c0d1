package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/wafplane/wafplane/discovery"
	"github.com/wafplane/wafplane/discovery/file"
	"github.com/wafplane/wafplane/discovery/kubernetes"
	"github.com/wafplane/wafplane/processor"
	"github.com/wafplane/wafplane/snapshot"
	"github.com/wafplane/wafplane/xds"
	"github.com/wafplane/wafplane/xds/pki"
)

// serveFlags are the flags of `wafplane serve` (and of `wafplane` alone).
type serveFlags struct {
	processor        processorFlags
	source, gateways string
	xdsAddress       string
	processorAddress string
	kube             kubeFlags
	inject           injectFlags
	xdsTLS           bool
	xdsTLSSet        bool // --xds-tls given; else it is on unless the address is loopback
	xdsCADir         string
	xdsCASecret      string
	caCheckInterval  time.Duration
	xdsServerNames   []string
	processorMTLS    bool
	injectTLSSet     bool // --inject-processor-tls given; else it follows --tls
	sidecar          sidecarFlags
	caStore          *kubernetes.CAStore // the CA Secret, when something needs it
	caRun            func(context.Context) error
}

func newServeCommand(logs *logOptions) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run everything: gateway discovery, xDS (ADS) server, ext_proc processor and admin endpoint",
		Args:  cobra.NoArgs,
	}
	env := &envFlags{fs: cmd.Flags()}
	env.String(&f.source, "source", "file", "where gateways come from: file or kubernetes")
	env.String(&f.gateways, "gateways", "", "gateways YAML file, watched (empty: the embedded default gateway default/demo on :10000 → 127.0.0.1:8080)")
	env.String(&f.xdsAddress, "xds-address", "", "ADS gRPC address Envoys bootstrap against (default 127.0.0.1:18000 with --source=file, :18000 with kubernetes)")
	env.Bool(&f.xdsTLS, "xds-tls", true, "mTLS on xDS: Envoys present a client certificate of wafplane's CA naming their gateway (default on, except on a loopback address); false serves every gateway's configuration and keys to anyone who connects: labs only")
	env.String(&f.xdsCADir, "xds-ca-dir", defaultCADir(), "--source=file: directory of the xDS CA, made on the first start (`wafplane bootstrap --cert-dir` issues client certificates from it)")
	env.String(&f.xdsCASecret, "xds-ca-secret", "wafplane-ca", "--source=kubernetes: Secret in --namespace holding the xDS CA, made on the first start and rotated before it expires")
	env.Duration(&f.caCheckInterval, "ca-check-interval", 10*time.Minute, "--source=kubernetes: how often the CA Secret is read again (a rotation another replica made, or one that is due)")
	env.Bool(&f.processorMTLS, "processor-mtls", false, "ext_proc requires the client certificate of a gateway's Envoy (issued by the xDS CA, via its bootstrap): nobody else may use the processor; Envoys that wafplane does not bootstrap (Istio, Envoy Gateway) then cannot use this processor")
	env.StringSlice(&f.xdsServerNames, "xds-server-names", nil, "names and addresses Envoys dial for xDS, written into its certificate (default: in Kubernetes the Service's names; else localhost, 127.0.0.1, this host's name and the listen address)")
	env.String(&f.processorAddress, "processor-address", "", "host:port Envoys dial to reach the processor (default 127.0.0.1:<port>)")
	f.processor.register(env, "0.0.0.0", 18080, 18081, false)
	f.kube.register(env)
	f.inject.register(env)
	f.sidecar.register(env)
	f.processor.admin.register(env, "127.0.0.1:19000", "admin HTTP address (empty disables)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(env.errs) > 0 {
			return errors.Join(env.errs...)
		}
		f.injectTLSSet, f.xdsTLSSet = env.given("inject-processor-tls"), env.given("xds-tls")
		log, err := logs.logger(os.Stderr)
		if err != nil {
			return err
		}
		return f.run(cmd.Context(), log)
	}
	return cmd
}

func (f *serveFlags) options() (snapshot.Options, error) {
	addr := f.processorAddress
	if addr == "" {
		host := "127.0.0.1"
		if f.source == "kubernetes" {
			host = f.kube.serviceHost() // Envoys run in other pods
		}
		addr = net.JoinHostPort(host, strconv.Itoa(f.processor.port))
	}
	if f.processor.uds != "" {
		return snapshot.Options{}, errors.New("--uds-path: Envoys reach the processor of `serve` over TCP; use `wafplane processor` for a Unix socket")
	}
	return snapshot.Options{ProcessorAddress: addr, ProcessorTLS: f.processor.tls,
		ProcessorMaxBodyLimit: int64(max(f.processor.bodyLimit, f.processor.maxBodyLimit))}, nil
}

func (f *serveFlags) run(ctx context.Context, log *slog.Logger) error {
	if f.source != "file" && f.source != "kubernetes" {
		return fmt.Errorf("--source %q: want file or kubernetes", f.source)
	}
	if f.xdsAddress == "" {
		f.xdsAddress = "127.0.0.1:18000"
		if f.source == "kubernetes" {
			f.xdsAddress = ":18000"
		}
	}
	if !f.xdsTLSSet {
		f.xdsTLS = !loopback(f.xdsAddress)
	}
	cfg, err := f.processor.config()
	if err != nil {
		return err
	}
	opts, err := f.options()
	if err != nil {
		return err
	}
	var adminGuard func(http.Handler) http.Handler
	if f.processor.admin.address != "" {
		if adminGuard, err = f.processor.admin.guard(); err != nil {
			return err // refused before anything starts
		}
	}
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("--processor-address: %w", err)
	}
	ca, xdsHosts, err := f.xdsCA(ctx, log.With("component", "xds"))
	if err != nil {
		return err
	}
	if f.processorMTLS {
		if ca == nil {
			return errors.New("--processor-mtls: needs xDS over mTLS (its CA and the gateways' certificates); see --xds-tls")
		}
		host, _, _ := net.SplitHostPort(opts.ProcessorAddress)
		cfg.TLSConfig = pki.ServerTLS(ca, append([]string{host}, xdsHosts...), tls.RequireAndVerifyClientCert)
		cfg.PeerGateway = pki.GatewayOf
		opts.ProcessorMTLS = true
		log.Info("ext_proc requires client certificates of wafplane's CA: only gateway Envoys with one can use the processor")
	}
	reg := newRegistry()
	proc, err := processor.New(cfg, log.With("component", "processor"), reg)
	if err != nil {
		return err
	}
	xs := xds.New(log.With("component", "xds"), reg)
	proc.SetReadyHandler(readyHandler(proc, xs))
	if ca != nil {
		xs.SetAuth(&xds.Auth{CA: ca, Hosts: xdsHosts})
	}
	loop := newTranslateLoop(xs, opts, reg, log.With("component", "translate"))
	var src discovery.Source = &file.Source{Path: f.gateways, Log: log.With("component", "discovery")}
	var injections http.Handler = http.HandlerFunc(injectionsOff)
	var webhook *kubernetes.Webhook
	if f.inject.enabled && f.source != "kubernetes" {
		return errors.New("--inject: needs --source=kubernetes")
	}
	if f.source == "kubernetes" {
		ks, err := f.kube.source(f.xdsAddress, ca, log.With("component", "discovery"))
		if err != nil {
			return err
		}
		if ks.Inject, err = f.inject.injector(&f.kube, &f.processor, &f.sidecar, f.injectTLSSet, reg); err != nil {
			return err
		}
		if ks.Inject != nil {
			injections = ks.Inject.Handler()
			ks.Inject.PolicyFile = f.processor.policy
			if webhook, err = f.webhook(ctx, ks.Inject, reg, log.With("component", "webhook")); err != nil {
				return err
			}
			ks.Inject.Webhook = webhook
			if err := ks.Inject.Validate(); err != nil {
				return errors.New("--" + err.Error())
			}
		}
		src = ks
	}

	g, ctx := errgroup.WithContext(ctx)
	updates := make(chan discovery.Update)
	g.Go(func() error { return src.Run(ctx, updates) })
	g.Go(func() error { return loop.run(ctx, updates) })
	g.Go(func() error { return xs.Start(ctx, f.xdsAddress) })
	if f.caRun != nil {
		g.Go(func() error { return f.caRun(ctx) })
	}
	if webhook != nil {
		g.Go(func() error { return webhook.Start(ctx) })
	}
	g.Go(func() error { return proc.Start(ctx) })
	if adminGuard != nil {
		mux := adminMux(reg, proc, xs)
		mux.Handle("GET /injections", injections)
		consoleRoutes(mux, proc, consoleInfo{Command: "serve", Source: f.sourceDescription(), Version: version})
		h := adminGuard(mux)
		g.Go(func() error { return serveAdmin(ctx, f.processor.admin.address, h, log.With("component", "admin")) })
	}
	return g.Wait()
}

// adminMux is the admin endpoint of `serve`: every component's view, read-only.
func adminMux(reg *prometheus.Registry, p *processor.Processor, xs *xds.Server) *http.ServeMux {
	mux := processorAdminMux(reg, p)
	mux.Handle("GET /nodes", xs.NodesHandler())
	mux.Handle("GET /snapshots", xs.SnapshotsHandler())
	mux.Handle("GET /snapshots/{namespace}/{name}", xs.SnapshotHandler())
	mux.Handle("GET /readyz", readyHandler(p, xs))
	return mux
}

// readyHandler is 200 once the WAF is usable and a state the source could read is
// published, 503 naming what is still awaited; JSON either way.
func readyHandler(p *processor.Processor, xs *xds.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var waiting []string
		if !p.Ready() {
			waiting = append(waiting, "processor: ruleset not loaded")
		}
		if !xs.Ready() {
			waiting = append(waiting, "xds: no readable gateways state published yet")
		}
		w.Header().Set("Content-Type", "application/json")
		body := map[string]any{"status": "ok"}
		if len(waiting) > 0 {
			body = map[string]any{"status": "not ready", "waiting_for": waiting}
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	})
}

// translateLoop turns source updates into published snapshots. Updates that queue up
// while a translation runs are coalesced: only the newest is translated.
type translateLoop struct {
	xs       *xds.Server
	opts     snapshot.Options
	log      *slog.Logger
	duration prometheus.Histogram
	gateways prometheus.Gauge
}

func newTranslateLoop(xs *xds.Server, opts snapshot.Options, reg prometheus.Registerer, log *slog.Logger) *translateLoop {
	l := &translateLoop{xs: xs, opts: opts, log: log,
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wafplane_translation_seconds",
			Help: "Time to translate every gateway into xDS resources.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}),
		gateways: prometheus.NewGauge(prometheus.GaugeOpts{Name: "wafplane_gateways", Help: "Gateways the source knows."}),
	}
	reg.MustRegister(l.duration, l.gateways)
	return l
}

func (l *translateLoop) run(ctx context.Context, updates <-chan discovery.Update) error {
	for {
		var u discovery.Update
		select {
		case <-ctx.Done():
			return nil
		case u = <-updates:
		}
		endpointsOnly := u.EndpointsOnly
	drain:
		for {
			select {
			case u = <-updates:
				endpointsOnly = endpointsOnly && u.EndpointsOnly
			default:
				break drain
			}
		}
		start := time.Now()
		results := l.translate(u.State, endpointsOnly)
		took := time.Since(start)
		l.duration.Observe(took.Seconds())
		l.gateways.Set(float64(len(u.State.Gateways)))
		l.xs.Publish(results, u.Err)
		l.log.Debug("translated", "gateways", len(results), "endpoints_only", endpointsOnly, "took", took)
	}
}

// translate translates every gateway, or, when only endpoints changed, refreshes the
// endpoints of the resources xds serves and translates in full only where that fails.
func (l *translateLoop) translate(state discovery.State, endpointsOnly bool) []snapshot.Result {
	if !endpointsOnly {
		return snapshot.Translate(state, l.opts)
	}
	results := make([]snapshot.Result, 0, len(state.Gateways))
	for _, g := range state.Gateways {
		// A gateway whose last translation failed is translated again, so that its error
		// is not replaced by a refresh of the older resources still served.
		served, lastErr := l.xs.Resources(g.Key())
		var res *snapshot.Resources
		ok := false
		if lastErr == nil {
			res, ok = snapshot.RefreshEndpoints(served, g)
		}
		var err error
		if !ok {
			res, err = snapshot.TranslateGateway(g, l.opts)
		}
		results = append(results, snapshot.Result{Gateway: g.Key(), Resources: res, Err: err, Warnings: g.Warnings()})
	}
	return results
}

// sourceDescription says where the gateways come from, for the console.
func (f *serveFlags) sourceDescription() string {
	switch {
	case f.source == "kubernetes":
		return "Kubernetes"
	case f.gateways == "":
		return "embedded default"
	}
	return "file " + f.gateways
}
