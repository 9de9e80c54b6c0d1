package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wafplane/wafplane/discovery"
	"github.com/wafplane/wafplane/discovery/kubernetes"
	"github.com/wafplane/wafplane/snapshot"
)

// injectFlags configure the injector of `serve --source=kubernetes --inject`. The
// processor flags take the names of Datadog's injector (its Helm values map onto them).
type injectFlags struct {
	enabled, autoDetect                  bool
	proxies                              []string
	istioGatewayNamespace, istioRootNS   string
	processorService, processorNamespace string
	processorAddress                     string
	processorPort                        int
	processorTLS                         bool
}

func (i *injectFlags) register(env *envFlags) {
	env.Bool(&i.enabled, "inject", false, "protect the Gateways Istio and Envoy Gateway run: write an EnvoyFilter or EnvoyExtensionPolicy per Gateway (needs --source=kubernetes)")
	env.StringSlice(&i.proxies, "inject-proxies", nil, "proxy types to inject: envoy-gateway, istio, istio-gateway, istio-sidecar (empty with --inject-auto-detect: every type whose CRDs are installed)")
	env.Bool(&i.autoDetect, "inject-auto-detect", true, "inject every proxy type whose CRDs are installed, detected while running, when --inject-proxies is empty")
	env.String(&i.istioGatewayNamespace, "inject-istio-gateway-namespace", "istio-system", "namespace of the gateway pods native Istio Gateways select, where their EnvoyFilters go")
	env.String(&i.istioRootNS, "inject-istio-root-namespace", "istio-system", "Istio's config root namespace, never protected as a mesh namespace (istio-sidecar)")
	env.String(&i.processorService, "inject-processor-service", "", "processor Service injected gateways call (default --service-name)")
	env.String(&i.processorNamespace, "inject-processor-namespace", "", "namespace of the processor Service (default --namespace)")
	env.String(&i.processorAddress, "inject-processor-address", "", "host Envoys dial for the processor (default SERVICE.NAMESPACE.svc)")
	env.Int(&i.processorPort, "inject-processor-port", 0, "processor port Envoys dial (default --port)")
	env.Bool(&i.processorTLS, "inject-processor-tls", false, "Envoys speak TLS to the processor (default: --tls)")
}

// injector builds the kubernetes.Injector; the processor defaults are wafplane's own
// Service and ext_proc port, as the processor runs in the same process.
func (i *injectFlags) injector(k *kubeFlags, p *processorFlags, sc *sidecarFlags, tlsSet bool, reg prometheus.Registerer) (*kubernetes.Injector, error) {
	if !i.enabled {
		if sc.mode == kubernetes.ModeSidecar {
			return nil, errors.New("--inject-mode=sidecar: needs --inject")
		}
		return nil, nil
	}
	var sidecar kubernetes.SidecarSettings
	switch sc.mode {
	case kubernetes.ModeExternal:
	case kubernetes.ModeSidecar:
		var err error
		if sidecar, err = sc.settings(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("--inject-mode %q: want sidecar or external", sc.mode)
	}
	opts := snapshot.InjectOptions{
		ProcessorService:   orDefault(i.processorService, k.service),
		ProcessorNamespace: orDefault(i.processorNamespace, k.namespace),
		ProcessorAddress:   i.processorAddress,
		ProcessorPort:      uint32(i.processorPort),
		ProcessorTLS:       i.processorTLS,
	}
	if i.processorPort == 0 {
		opts.ProcessorPort = uint32(p.port)
	}
	if !tlsSet {
		opts.ProcessorTLS = p.tls
	}
	if sc.mode == kubernetes.ModeSidecar {
		opts.Sidecar, opts.SidecarPort, opts.SidecarSocket = true, uint32(sidecar.Port), kubernetes.SidecarSocket
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("--inject-processor-*: %w", err)
	}
	in := &kubernetes.Injector{
		Proxies:               i.proxies,
		AutoDetect:            i.autoDetect,
		IstioGatewayNamespace: i.istioGatewayNamespace,
		IstioRootNamespace:    i.istioRootNS,
		ProcessorService:      opts.ProcessorService,
		ProcessorNamespace:    opts.ProcessorNamespace,
		CheckProcessor:        opts.ProcessorAddress == "",
		Registerer:            reg,
		Mode:                  sc.mode,
		Sidecar:               sidecar,
		WebhookConfig:         sc.webhookConfig,
		Render: func(g discovery.ForeignGateway, targetRefs bool) ([]map[string]any, error) {
			o := opts
			o.IstioTargetRefs = targetRefs
			return snapshot.Inject(g, o)
		},
	}
	return in, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// injectionsOff is /injections when the injector is not running.
func injectionsOff(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{"enabled": false,
		"hint": "serve --source=kubernetes --inject writes EnvoyFilters and EnvoyExtensionPolicies for Istio and Envoy Gateway Gateways"})
}
