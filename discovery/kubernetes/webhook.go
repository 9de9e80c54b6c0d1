package kubernetes

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/wafplane/wafplane/xds/pki"
)

// Webhook defaults.
const (
	DefaultWebhookAddress = ":9443"
	DefaultWebhookConfig  = "wafplane-sidecar-injector"
	WebhookPath           = "/inject"
	// maxAdmissionReview bounds a request body: the API server's own limit on an object
	// is 3 MiB, and a review carries the object once for a CREATE.
	maxAdmissionReview = 4 << 20
	// targetsWait is how long an admission waits for wafplane's first reading of the
	// cluster, within the API server's 5 s timeout.
	targetsWait = 3 * time.Second
	// maxWebhookConns bounds open connections: the API server opens one per concurrent
	// admission (HTTP/1.1).
	maxWebhookConns = 512
)

// Webhook is the mutating admission webhook of sidecar mode: it adds the processor
// container to the pods of protected gateways, and never refuses a pod. Every replica
// serves it; the leader keeps its MutatingWebhookConfiguration (webhook_config.go).
type Webhook struct {
	Address string // HTTPS listen address
	// URL, when set, is the clientConfig URL written into the configuration (wafplane
	// outside the cluster, tests); else the Service below, on ServicePort.
	URL                           string
	ServiceName, ServiceNamespace string
	ServicePort                   int32
	// CertDir, when set, holds the serving certificate (tls.crt, tls.key, reloaded when
	// they change) and ca.crt for the configuration; else CA issues one for Hosts, valid
	// for CertValidity (pki.ServerValidity when 0).
	CertDir      string
	CA           func() *pki.CA
	Hosts        []string
	CertValidity time.Duration
	Client       kubernetes.Interface
	Injector     *Injector
	Log          *slog.Logger
	Registerer   prometheus.Registerer

	native atomic.Bool // the API server runs native sidecars
	certs  interface {
		get() (*tls.Certificate, error)
	}
	bundle  func() ([]byte, error)
	config  cache.SharedIndexInformer // the webhook configuration, by name
	trust   trustRecord
	metrics webhookMetrics
}

type webhookMetrics struct {
	admissions *prometheus.CounterVec
	duration   prometheus.Histogram
	issued     prometheus.Counter
}

func newWebhookMetrics() webhookMetrics {
	return webhookMetrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wafplane_webhook_admissions_total",
			Help: "Pod admissions the sidecar webhook answered, by result: injected, present (already had the processor), skipped (not a protected gateway pod), conflict (the pod declares one of the processor's ports), error."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wafplane_webhook_duration_seconds",
			Help: "Time the sidecar webhook took to answer, from request read to response written.", Buckets: []float64{.0005, .001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .1, .25, .5, 1, 2.5}}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{Name: "wafplane_webhook_certificates_issued_total",
			Help: "Serving certificates the sidecar webhook issued itself (at start, then at each renewal)."}),
	}
}

// Prepare checks the settings, registers the metrics, issues (or loads) the certificate
// and builds the configuration's informer; it must return before Start runs and before the
// Injector's writer reconciles (which reads the bundle and the informer).
func (w *Webhook) Prepare() error {
	if w.Injector == nil || w.Log == nil || w.Client == nil {
		return errors.New("webhook: Injector, Client and Log are required")
	}
	w.metrics = newWebhookMetrics()
	if w.Registerer != nil {
		w.Registerer.MustRegister(w.metrics.admissions, w.metrics.duration, w.metrics.issued)
	}
	if w.CertDir != "" {
		d := &dirCerts{dir: w.CertDir}
		w.certs, w.bundle = d, d.bundle
	} else {
		if w.CA == nil {
			return errors.New("webhook: CA or CertDir is required")
		}
		if w.CertValidity <= 0 {
			w.CertValidity = pki.ServerValidity
		}
		s := &selfCerts{ca: w.CA, hosts: w.Hosts, validity: w.CertValidity, trusted: w.trust.since, now: time.Now, issued: w.metrics.issued.Inc}
		w.certs, w.bundle = s, s.bundle
	}
	if _, err := w.certs.get(); err != nil {
		return err
	}
	w.config = w.configurationInformer()
	return nil
}

// Start serves the webhook until ctx ends; Prepare must have succeeded.
func (w *Webhook) Start(ctx context.Context) error {
	go w.renew(ctx)
	w.detectNativeSidecars()
	go w.config.Run(ctx.Done())

	mux := http.NewServeMux()
	mux.HandleFunc("POST "+WebhookPath, w.serveInject)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// HTTP/1.1 only: over HTTP/2 the API server sends every admission on one connection,
		// whose single frame reader queued them under load (p99 22-27 ms against 9-21 ms
		// with a connection per concurrent call, 50 concurrent pod creations, docs/).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(w.Log.Handler(), slog.LevelDebug),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return w.certs.get() }},
	}
	lis, err := net.Listen("tcp", w.Address)
	if err != nil {
		return fmt.Errorf("webhook listener %s: %w", w.Address, err)
	}
	// Anyone who reaches the port may call it (the API server presents no client
	// certificate); an answer reveals nothing, but connections are bounded.
	lis = netutil.LimitListener(lis, maxWebhookConns)
	w.Log.Info("sidecar webhook serving", "address", lis.Addr().String(), "path", WebhookPath, "native_sidecars", w.native.Load())
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(lis, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("webhook: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	return nil
}

// renew asks for the certificate now and then, so that it is issued again before it
// expires even while the API server keeps one connection open and makes no handshake.
func (w *Webhook) renew(ctx context.Context) {
	every := 2 * time.Second // get() is a cached pointer until renewal is due
	if w.CertDir == "" {
		every = min(every, max(w.CertValidity/10, 100*time.Millisecond))
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := w.certs.get(); err != nil {
				w.Log.Error("sidecar webhook: certificate", "error", err)
			}
			// A rotated CA (or a new ca.crt) goes into the configuration now, not at
			// the next change of the cluster: until it is there, the old certificate stays.
			if b, err := w.bundle(); err == nil && !w.trust.holds(b) {
				w.Injector.wake()
			}
		}
	}
}

// detectNativeSidecars asks the API server's version: native sidecars are on by default
// from Kubernetes 1.29. Unknown, the processor is an ordinary container.
func (w *Webhook) detectNativeSidecars() {
	v, err := w.Client.Discovery().ServerVersion()
	if err != nil {
		w.Log.Warn("sidecar webhook: API server version unknown; injecting an ordinary container, not a native sidecar", "error", err)
		return
	}
	major, _ := strconv.Atoi(v.Major)
	minor, _ := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	w.native.Store(major > 1 || major == 1 && minor >= 29)
}

// serveInject answers one AdmissionReview. Whatever happens the pod is allowed: a pod
// the webhook could not inject is reported as SidecarMissing, never refused.
func (w *Webhook) serveInject(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { w.metrics.duration.Observe(time.Since(start).Seconds()) }()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(http.MaxBytesReader(rw, r.Body, maxAdmissionReview)).Decode(&review); err != nil || review.Request == nil {
		w.metrics.admissions.WithLabelValues("error").Inc()
		msg := "want an AdmissionReview with a request"
		if err != nil {
			msg = "AdmissionReview: " + err.Error()
		}
		http.Error(rw, msg, http.StatusBadRequest)
		return
	}
	req := review.Request
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	result, ops, reason, pod := w.admit(r.Context(), req)
	var patch []byte
	if len(ops) > 0 {
		var err error
		if patch, err = json.Marshal(ops); err != nil {
			result, reason = "error", "patch: "+err.Error()
		}
	}
	w.metrics.admissions.WithLabelValues(result).Inc()
	switch {
	case result == "injected":
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
		w.Log.Info("sidecar webhook: processor injected", "pod", pod, "gateway", reason)
	case result == "conflict":
		// Said to whoever created the pod (kubectl prints admission warnings).
		resp.Warnings = []string{"wafplane: " + reason}
		fallthrough
	case result == "error":
		w.Log.Warn("sidecar webhook: pod admitted without the processor", "pod", pod, "reason", reason)
	default:
		w.Log.Debug("sidecar webhook: pod left alone", "pod", pod, "reason", reason)
	}
	review.Response, review.Request = resp, nil
	review.APIVersion, review.Kind = "admission.k8s.io/v1", "AdmissionReview"
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(&review)
}

// admit decides one request: the patch, and why (or which gateway).
func (w *Webhook) admit(ctx context.Context, req *admissionv1.AdmissionRequest) (result string, ops []patchOp, reason, name string) {
	name = req.Namespace + "/" + req.Name
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return "skipped", nil, "not a pod creation", name
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return "error", nil, "pod does not decode: " + err.Error(), name
	}
	if req.Name == "" && pod.GenerateName != "" { // a Deployment's pod: named after admission
		name += pod.GenerateName + "*"
	}
	if optedOut(&pod) {
		return "skipped", nil, "pod opted out", name
	}
	targets := w.Injector.waitTargets(ctx, targetsWait)
	if targets == nil {
		return "error", nil, "gateways not read yet (informers syncing)", name
	}
	st, ok := targets.match(req.Namespace, pod.Labels)
	if !ok {
		return "skipped", nil, "not a pod of a gateway protected in sidecar mode", name
	}
	if hasSidecar(&pod.Spec) {
		return "present", nil, "already has " + SidecarContainerName, name
	}
	s := w.Injector.Sidecar
	s.Native = w.native.Load()
	if c := portConflict(&pod, st.proxy, s); c != "" {
		return "conflict", nil, "not injected: " + c + "; set injector.sidecar.port/healthPort (--inject-sidecar-*) to ports the gateway does not use", name
	}
	return "injected", sidecarPatch(&pod, st.proxy, st.key, s), st.key, name
}

// trustRecord remembers when each CA first appeared in the webhook configuration's
// caBundle, as this replica's informer saw it.
type trustRecord struct {
	mu     sync.Mutex
	first  map[string]time.Time // certFingerprint → first seen
	bundle []byte               // as last seen
}

// holds says whether the configuration was last seen with this bundle.
func (t *trustRecord) holds(bundle []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Equal(t.bundle, bundle)
}

func (t *trustRecord) saw(bundle []byte, now time.Time) {
	certs, err := pki.ParseCertificates(bundle)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.bundle = bytes.Clone(bundle)
	if t.first == nil {
		t.first = map[string]time.Time{}
	}
	present := map[string]bool{}
	for _, c := range certs {
		fp := certFingerprint(c.Raw)
		present[fp] = true
		if _, ok := t.first[fp]; !ok {
			t.first[fp] = now
		}
	}
	for fp := range t.first {
		if !present[fp] {
			delete(t.first, fp) // removed: trusted again only after a new grace period
		}
	}
}

func (t *trustRecord) since(fp string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.first[fp]
	return at, ok
}
