package snapshot

import (
	"errors"
	"fmt"

	"github.com/wafplane/wafplane/discovery"
)

// Result is the translation of one gateway: its resources, or why it has none.
type Result struct {
	Gateway   string // namespace/name
	Resources *Resources
	Err       error
	Warnings  []string // discovery.Gateway.Warnings: served, but probably not meant
	Summary   Summary
}

// Summary is what the admin console shows of a gateway beside its versions.
type Summary struct {
	Mode      string `json:"mode"` // the gateway's protection mode, defaults applied
	Listeners int    `json:"listeners"`
	Routes    int    `json:"routes"`
}

// Translate turns every gateway of the state into its resources. A gateway that fails
// validation or translation gets an Err and no resources; the others are unaffected.
func Translate(state discovery.State, opts Options) []Result {
	out := make([]Result, 0, len(state.Gateways))
	for _, g := range state.Gateways {
		res, err := TranslateGateway(g, opts)
		out = append(out, Result{Gateway: g.Key(), Resources: res, Err: err, Warnings: append(g.Warnings(), bodyLimitWarnings(g, opts.ProcessorMaxBodyLimit)...),
			Summary: Summary{Mode: discovery.Resolve(g.Protection, nil).Mode, Listeners: len(g.Listeners), Routes: len(g.Routes)}})
	}
	return out
}

// translation is the work area for one gateway.
type translation struct {
	gw             discovery.Gateway
	key            string
	opts           Options
	gatewayEff     discovery.Effective
	protected      bool // some route runs the WAF, so the filter is in the chain
	res            *Resources
	backends       map[string]discovery.Backend
	attachedRoutes map[int]bool
	errs           []error
}

// TranslateGateway builds, validates and checks one gateway's resources.
func TranslateGateway(g discovery.Gateway, opts Options) (*Resources, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	opts, host, port, err := opts.resolved()
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", g.Key(), err)
	}
	t := &translation{
		gw: g, key: g.Key(), opts: opts,
		gatewayEff:     discovery.Resolve(g.Protection, nil),
		res:            &Resources{Gateway: g.Key()},
		backends:       map[string]discovery.Backend{},
		attachedRoutes: map[int]bool{},
	}
	t.protected = g.Protected()
	for _, group := range portGroups(g.Listeners) {
		t.res.Listeners = append(t.res.Listeners, t.listener(group))
	}
	for i, r := range g.Routes {
		if !t.attachedRoutes[i] {
			t.errs = append(t.errs, fmt.Errorf("gateway %s: routes[%d] %q: attaches to no listener (check listeners and hostnames)", t.key, i, r.Name))
		}
	}
	if t.protected {
		t.res.Clusters = append(t.res.Clusters, processorCluster(opts, host, port))
		t.res.Extensions = append(t.res.Extensions, extProcConfig(t.key, t.gatewayEff, opts.ProcessorCluster))
	}
	if err := errors.Join(t.errs...); err != nil {
		return nil, err
	}
	if err := t.res.finish(); err != nil {
		return nil, fmt.Errorf("gateway %s: %w", t.key, err)
	}
	return t.res, nil
}

// addBackend records the cluster of a backend once; two different backends under one
// name are an error.
func (t *translation) addBackend(b discovery.Backend) {
	name := clusterName(b)
	if prev, ok := t.backends[name]; ok {
		if err := sameBackend(prev, b); err != nil {
			t.errs = append(t.errs, fmt.Errorf("gateway %s: %w", t.key, err))
		}
		return
	}
	if name == t.opts.ProcessorCluster {
		t.errs = append(t.errs, fmt.Errorf("gateway %s: backend %q: the name is reserved for the processor cluster", t.key, name))
		return
	}
	t.backends[name] = b
	c, cla := backendCluster(b, t.opts.BackendConnectTimeout)
	t.res.Clusters = append(t.res.Clusters, c)
	if cla != nil {
		t.res.Endpoints = append(t.res.Endpoints, cla)
	}
}
