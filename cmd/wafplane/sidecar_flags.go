package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wafplane/wafplane/discovery/kubernetes"
	"github.com/wafplane/wafplane/xds/pki"
)

// sidecarFlags configure sidecar mode: the webhook and the container it injects. The
// sidecar's flags are Datadog's injector.sidecar.* values.
type sidecarFlags struct {
	mode                          string
	webhookAddress, webhookURL    string
	webhookCertDir, webhookConfig string
	webhookServicePort            int
	webhookCertValidity           time.Duration
	image, imageTag               string
	port, healthPort, adminPort   int
	bodyLimit                     string
	cpuRequest, memRequest        string
	cpuLimit, memLimit            string
}

func (s *sidecarFlags) register(env *envFlags) {
	env.String(&s.mode, "inject-mode", kubernetes.ModeExternal, "external: injected gateways call the processor Service; sidecar: a mutating webhook adds the processor to each gateway pod, which its Envoy calls on localhost")
	env.String(&s.webhookAddress, "webhook-address", kubernetes.DefaultWebhookAddress, "HTTPS address of the sidecar webhook (--inject-mode=sidecar)")
	env.String(&s.webhookURL, "webhook-url", "", "URL written into the webhook configuration instead of wafplane's Service (wafplane outside the cluster)")
	env.String(&s.webhookCertDir, "webhook-cert-dir", "", "directory with the webhook's tls.crt, tls.key and ca.crt (cert-manager's layout), reloaded on change; empty: a certificate from wafplane's CA (--xds-ca-secret), rotated by wafplane")
	env.String(&s.webhookConfig, "webhook-configuration", kubernetes.DefaultWebhookConfig, "name of the MutatingWebhookConfiguration wafplane keeps (sidecar mode) or deletes (external mode)")
	env.Int(&s.webhookServicePort, "webhook-service-port", 443, "port of wafplane's Service that reaches --webhook-address")
	env.Duration(&s.webhookCertValidity, "webhook-cert-validity", pki.ServerValidity, "validity of the webhook certificate wafplane issues; issued again with a third left")
	env.String(&s.image, "inject-sidecar-image", "ghcr.io/wafplane/wafplane", "image of the injected processor (sidecar.image)")
	env.String(&s.imageTag, "inject-sidecar-image-tag", "", "its tag (sidecar.imageTag; default this wafplane's version)")
	env.Int(&s.port, "inject-sidecar-port", 8080, "ext_proc port of the injected processor, on 127.0.0.1 (sidecar.port)")
	env.Int(&s.healthPort, "inject-sidecar-health-port", 8081, "health port of the injected processor, probed by the kubelet (sidecar.healthPort)")
	env.Int(&s.adminPort, "inject-sidecar-admin-port", 19190, "the injected processor's admin endpoint (/events, /metrics, /rules) on 127.0.0.1 in the pod, for kubectl port-forward (0 disables)")
	env.String(&s.bodyLimit, "inject-sidecar-body-parsing-size-limit", "", "request body bytes the injected processor inspects; 0 and -1 turn body inspection off (sidecar.bodyParsingSizeLimit; default the processor's)")
	env.String(&s.cpuRequest, "inject-sidecar-cpu-request", "", "CPU request of the injected processor (sidecar.resources.requests.cpu)")
	env.String(&s.memRequest, "inject-sidecar-memory-request", "", "memory request (sidecar.resources.requests.memory)")
	env.String(&s.cpuLimit, "inject-sidecar-cpu-limit", "", "CPU limit (sidecar.resources.limits.cpu)")
	env.String(&s.memLimit, "inject-sidecar-memory-limit", "", "memory limit (sidecar.resources.limits.memory)")
}

// settings reads the injected container's flags.
func (s *sidecarFlags) settings() (kubernetes.SidecarSettings, error) {
	tag := s.imageTag
	if tag == "" {
		tag = version
		if tag == "dev" {
			tag = "latest"
		}
	}
	out := kubernetes.SidecarSettings{Image: s.image + ":" + tag, Port: int32(s.port), HealthPort: int32(s.healthPort), AdminPort: int32(s.adminPort)}
	if s.image == "" || strings.ContainsAny(s.image+tag, " \t\n") || strings.Contains(tag, ":") {
		return out, fmt.Errorf("--inject-sidecar-image %q, --inject-sidecar-image-tag %q: want a repository and a tag", s.image, tag)
	}
	if s.port < 1 || s.port > 65535 || s.healthPort < 1 || s.healthPort > 65535 {
		return out, fmt.Errorf("--inject-sidecar-port %d / --inject-sidecar-health-port %d: want 1-65535", s.port, s.healthPort)
	}
	if s.bodyLimit != "" {
		n, err := strconv.Atoi(s.bodyLimit)
		if err != nil {
			return out, fmt.Errorf("--inject-sidecar-body-parsing-size-limit %q: want a byte count, 0 or -1", s.bodyLimit)
		}
		out.BodyLimit = &n
	}
	var err error
	out.Resources, err = kubernetes.ParseResources(s.cpuRequest, s.memRequest, s.cpuLimit, s.memLimit)
	if err != nil {
		return out, errors.New("--inject-" + err.Error())
	}
	return out, out.Validate()
}

// webhook builds the sidecar webhook of the injector in sidecar mode; its certificate
// comes from --webhook-cert-dir or the CA Secret shared with xDS.
func (f *serveFlags) webhook(ctx context.Context, in *kubernetes.Injector, reg prometheus.Registerer, log *slog.Logger) (*kubernetes.Webhook, error) {
	s := &f.sidecar
	if s.mode != kubernetes.ModeSidecar {
		return nil, nil
	}
	if s.webhookCertValidity < time.Minute && s.webhookCertDir == "" {
		// Shorter is for tests of rotation; the API server is never handed an expired one.
		log.Warn("--webhook-cert-validity is very short: the webhook certificate is issued again every few seconds", "validity", s.webhookCertValidity)
	}
	kc, err := f.kube.clientset()
	if err != nil {
		return nil, err
	}
	svc := f.kube.service + "." + f.kube.namespace
	w := &kubernetes.Webhook{Address: s.webhookAddress, URL: s.webhookURL, ServiceName: f.kube.service, ServiceNamespace: f.kube.namespace,
		ServicePort: int32(s.webhookServicePort), CertDir: s.webhookCertDir, CertValidity: s.webhookCertValidity,
		Hosts:  []string{f.kube.service, svc, svc + ".svc", f.kube.serviceHost()},
		Client: kc, Injector: in, Log: log, Registerer: reg}
	if s.webhookURL != "" {
		u, err := url.Parse(s.webhookURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("--webhook-url %q: want https://host[:port]/path", s.webhookURL)
		}
		w.Hosts = append(w.Hosts, u.Hostname())
	}
	if s.webhookCertDir == "" {
		store, err := f.kubeCA(ctx, log)
		if err != nil {
			return nil, err
		}
		w.CA = store.Current
	}
	return w, w.Prepare()
}
