package kubernetes

import (
	"context"
	"time"

	"github.com/wafplane/wafplane/discovery"
)

// Injection modes: the processor as one shared Service (external) or as a container in
// each gateway pod (sidecar, Datadog's default).
const (
	ModeExternal = "external"
	ModeSidecar  = "sidecar"
)

// sidecarMode says whether a proxy type's gateways get the sidecar: every gateway type in
// sidecar mode; mesh workloads (istio-sidecar) always call the processor Service.
func (in *Injector) sidecarMode(proxy string) bool {
	return in.Mode == ModeSidecar && proxy != discovery.ProxyIstioSidecar
}

func (in *Injector) readyChan() chan struct{} {
	in.initOnce.Do(func() { in.ready = make(chan struct{}) })
	return in.ready
}

// waitTargets returns the gateways in sidecar mode, waiting up to limit (or ctx) for the
// first reading of the cluster: a pod created while wafplane starts is not let through
// without its processor for want of a few seconds.
func (in *Injector) waitTargets(ctx context.Context, limit time.Duration) *sidecarTargets {
	if t := in.targets.Load(); t != nil {
		return t
	}
	select {
	case <-in.readyChan():
	case <-ctx.Done():
	case <-time.After(limit):
	}
	return in.targets.Load()
}

// sidecarTarget is a protected gateway whose pods get the processor container.
type sidecarTarget struct {
	key, proxy string
	selector   map[string]string // native Istio Gateways: the pods' labels
}

// sidecarTargets are the gateways in sidecar mode, by what identifies their pods.
type sidecarTargets struct {
	byKey            map[string]sidecarTarget // ForeignGateway.Key()
	native           []sidecarTarget
	nativeNamespace  string
	istio, envoyGate bool // the proxy types are injected (for the webhook's selectors)
}

// sidecarTargetsOf picks the gateways of a plan that run in sidecar mode; those whose
// protection is off get nothing.
func (in *Injector) sidecarTargetsOf(inj *injection) *sidecarTargets {
	t := &sidecarTargets{byKey: map[string]sidecarTarget{}, nativeNamespace: in.istioGatewayNamespace(),
		istio:     inj.enabled[discovery.ProxyIstio] && in.sidecarMode(discovery.ProxyIstio),
		envoyGate: inj.enabled[discovery.ProxyEnvoyGateway] && in.sidecarMode(discovery.ProxyEnvoyGateway)}
	for _, fg := range inj.gateways {
		g := fg.model
		if !in.sidecarMode(g.Proxy) || discovery.Resolve(g.Protection, nil).Mode == discovery.ModeOff {
			continue
		}
		st := sidecarTarget{key: g.Key(), proxy: g.Proxy, selector: g.Selector}
		if g.Proxy == discovery.ProxyIstioGateway {
			t.native = append(t.native, st)
		} else {
			t.byKey[st.key] = st
		}
	}
	return t
}

// match finds the gateway whose Envoys a pod runs, if it is in sidecar mode.
func (t *sidecarTargets) match(namespace string, labels map[string]string) (sidecarTarget, bool) {
	if t == nil {
		return sidecarTarget{}, false
	}
	if name := labels[EnvoyGatewayOwnerName]; name != "" {
		st, ok := t.byKey[discovery.ProxyEnvoyGateway+":"+labels[EnvoyGatewayOwnerNamespace]+"/"+name]
		return st, ok
	}
	if name := labels[IstioGatewayLabel]; name != "" {
		st, ok := t.byKey[discovery.ProxyIstio+":"+namespace+"/"+name]
		return st, ok
	}
	if namespace != t.nativeNamespace {
		return sidecarTarget{}, false
	}
	// An EnvoyFilter with a workload selector applies to the pods of its namespace only.
	for _, st := range t.native {
		if selects(st.selector, labels) {
			return st, true
		}
	}
	return sidecarTarget{}, false
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}
