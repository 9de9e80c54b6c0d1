package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	"github.com/wafplane/wafplane/discovery"
)

// Hold-off of the event loop: a burst of changes becomes one conversion once the cluster
// has been quiet for HoldOff, or at the latest MaxHoldOff after the first change.
const (
	HoldOff    = 100 * time.Millisecond
	MaxHoldOff = time.Second
)

// Source serves the Gateways of the cluster whose GatewayClass names ControllerName.
type Source struct {
	Config         *rest.Config
	ControllerName string // DefaultControllerName when empty
	Log            *slog.Logger
	// LeaseNamespace and LeaseName locate the leader-election Lease; only the leader
	// writes status and Events and provisions Envoys. Every replica serves xDS.
	LeaseNamespace, LeaseName string
	// Provision, when set, makes an Envoy Deployment, Service and bootstrap ConfigMap per
	// Gateway.
	Provision *Provisioner
	// Inject, when set, protects the Gateways Istio and Envoy Gateway run (inject.go).
	Inject *Injector
	// Resync is the informers' resync period; 0 disables.
	Resync time.Duration
}

var _ discovery.Source = (*Source)(nil)

// listers are the informers' caches, read as one snapshot of the cluster.
type listers struct {
	informers []cache.SharedIndexInformer
	read      func() (objects, error)
}

// Run watches the cluster and sends an Update after every burst of changes, never before
// the informers have synced.
func (s *Source) Run(ctx context.Context, updates chan<- discovery.Update) error {
	if s.ControllerName == "" {
		s.ControllerName = DefaultControllerName
	}
	// client-go logs through klog; send it to our logger, in our format. The API server's
	// warnings (deprecations, defaulting) are for whoever fixes the code: debug.
	klog.SetSlogLogger(s.Log.With("library", "client-go"))
	s.Config = rest.CopyConfig(s.Config)
	s.Config.WarningHandler = apiWarnings{s.Log}
	kc, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	gc, err := gwclient.NewForConfig(s.Config)
	if err != nil {
		return fmt.Errorf("gateway API client: %w", err)
	}
	trigger := make(chan struct{}, 1)
	var other atomic.Bool // something besides EndpointSlices changed since the last conversion
	other.Store(true)
	wake := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	poke := func() { other.Store(true); wake() }
	sidecar := s.Inject != nil && s.Inject.Mode == ModeSidecar
	l := s.watch(kc, gc, poke, wake)
	w := &writer{kc: kc, gc: gc, log: s.Log, controller: s.ControllerName, provision: s.Provision, injector: s.Inject}
	var crds *crdWatch
	var meshPods cache.SharedIndexInformer
	var gatewayPods []cache.SharedIndexInformer
	if s.Inject != nil {
		if err := s.Inject.Validate(); err != nil {
			return err
		}
		// The injector's writes get their own budget, so that 500 Gateways converge in
		// seconds without starving status writes and Events.
		dc := rest.CopyConfig(s.Config)
		dc.QPS, dc.Burst = 2*max(s.Config.QPS, 50), 2*max(s.Config.Burst, 100)
		if w.dyn, err = dynamic.NewForConfig(dc); err != nil {
			return fmt.Errorf("dynamic client: %w", err)
		}
		s.Inject.metrics = newInjectorMetrics(s.Inject.Registerer)
		s.Inject.log = s.Log.With("part", "injector")
		crds = newCRDWatch(w.dyn, s.Resync, poke)
		l.informers = append(l.informers, crds.crds)
		if meshPods, err = s.meshPodInformer(poke); err != nil {
			return err
		}
		l.informers = append(l.informers, meshPods)
		s.Inject.poke.Store(&poke)
		if sidecar {
			gatewayPods = s.gatewayPodInformers(kc, poke)
			l.informers = append(l.informers, gatewayPods...)
			if s.Inject.PolicyFile != "" {
				s.Inject.readPolicyFile() // before the first reconcile
				go s.Inject.watchPolicyFile(ctx, poke)
			}
		}
	}
	if err := w.start(ctx); err != nil {
		return err
	}
	go w.run(ctx)
	var leader atomic.Bool
	elected := make(chan struct{})
	go func() { defer close(elected); s.elect(ctx, kc, &leader, poke) }()
	// On shutdown the leader gives its Lease up (ReleaseOnCancel) before Run returns, so a
	// standby replica takes over at once instead of after the lease duration.
	defer func() {
		select {
		case <-elected:
		case <-time.After(5 * time.Second):
		}
	}()

	for _, inf := range l.informers {
		go inf.Run(ctx.Done())
	}
	s.Log.Info("waiting for informers to sync")
	synced := make([]cache.InformerSynced, len(l.informers))
	for i, inf := range l.informers {
		synced[i] = inf.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ctx.Err()
	}
	s.Log.Info("informers synced")
	poke()
	var quiet, deadline <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
			quiet = time.After(HoldOff)
			if deadline == nil {
				deadline = time.After(MaxHoldOff)
			}
			continue
		case <-quiet:
		case <-deadline:
		}
		quiet, deadline = nil, nil
		o, err := l.read()
		if err != nil {
			s.Log.Error("reading the informers", "error", err)
			continue
		}
		endpointsOnly := !other.Swap(false)
		c := convert(o, s.ControllerName, metav1.Now())
		if crds != nil {
			for _, obj := range meshPods.GetStore().List() {
				if p, ok := obj.(*metav1.PartialObjectMetadata); ok {
					o.meshPods = append(o.meshPods, p)
				}
			}
			o.gatewayPods = listPods(gatewayPods)
			c.injection = s.Inject.plan(o, crds.view(ctx))
			s.Inject.report(c.injection, leader.Load())
		}
		select {
		case updates <- discovery.Update{State: c.state, EndpointsOnly: endpointsOnly}:
		case <-ctx.Done():
			return nil
		}
		if leader.Load() {
			w.submit(o, c)
		}
	}
}

// watch builds the informers; changes call poke, EndpointSlice changes call slicePoke.
func (s *Source) watch(kc kubernetes.Interface, gc gwclient.Interface, poke, slicePoke func()) listers {
	core := informers.NewSharedInformerFactory(kc, s.Resync)
	gw := gwinformers.NewSharedInformerFactory(gc, s.Resync)
	classes := gw.Gateway().V1().GatewayClasses()
	gateways := gw.Gateway().V1().Gateways()
	routes := gw.Gateway().V1().HTTPRoutes()
	grants := gw.Gateway().V1().ReferenceGrants()
	namespaces := core.Core().V1().Namespaces()
	services := core.Core().V1().Services()
	slices := core.Discovery().V1().EndpointSlices()
	secrets := core.Core().V1().Secrets()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	// Provisioned objects only: they carry our label.
	owned := informers.NewSharedInformerFactoryWithOptions(kc, s.Resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelManagedBy + "=" + managedBy }))
	deployments := owned.Apps().V1().Deployments()
	configMaps := owned.Core().V1().ConfigMaps()
	// Our own status writes change Gateway API objects without changing their spec; they
	// must not wake the loop, or a stream of them would hold every conversion back to
	// MaxHoldOff.
	specHandler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(old, cur any) { specChanged(old, cur, poke) },
		DeleteFunc: func(any) { poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{classes.Informer(), gateways.Informer(), routes.Informer()} {
		_, _ = inf.AddEventHandler(specHandler)
	}
	_, _ = slices.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { slicePoke() },
		UpdateFunc: func(any, any) { slicePoke() },
		DeleteFunc: func(any) { slicePoke() },
	})
	others := []cache.SharedIndexInformer{grants.Informer(), namespaces.Informer(), services.Informer(), secrets.Informer()}
	if s.Provision != nil {
		others = append(others, deployments.Informer())
	}
	ownConfigMaps := s.Provision != nil || s.Inject != nil // bootstraps; sidecars' policy (kept or deleted)
	if ownConfigMaps {
		others = append(others, configMaps.Informer())
	}
	for _, inf := range others {
		_, _ = inf.AddEventHandler(handler)
	}
	infs := append([]cache.SharedIndexInformer{classes.Informer(), gateways.Informer(), routes.Informer(), slices.Informer()}, others...)
	all := labels.Everything()
	return listers{informers: infs, read: func() (objects, error) {
		var o objects
		var errs []error
		var err error
		o.classes, err = classes.Lister().List(all)
		errs = append(errs, err)
		o.gateways, err = gateways.Lister().List(all)
		errs = append(errs, err)
		o.routes, err = routes.Lister().List(all)
		errs = append(errs, err)
		o.grants, err = grants.Lister().List(all)
		errs = append(errs, err)
		o.namespaces, err = namespaces.Lister().List(all)
		errs = append(errs, err)
		o.services, err = services.Lister().List(all)
		errs = append(errs, err)
		o.slices, err = slices.Lister().List(all)
		errs = append(errs, err)
		secretList, err := secrets.Lister().List(all)
		errs = append(errs, err)
		if s.Provision != nil {
			o.deployments, err = deployments.Lister().List(all)
			errs = append(errs, err)
		}
		if ownConfigMaps {
			o.configMaps, err = configMaps.Lister().List(all)
			errs = append(errs, err)
		}
		for _, sec := range secretList {
			if sec.Type == corev1.SecretTypeTLS {
				o.secrets = append(o.secrets, sec)
			}
		}
		return o, errors.Join(errs...)
	}}
}

func identity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, time.Now().UnixNano())
}

// specChanged pokes unless only the status changed: same generation, labels and
// annotations (the model reads nothing else that can change without a new generation).
func specChanged(old, cur any, poke func()) {
	o, ok1 := old.(metav1.Object)
	c, ok2 := cur.(metav1.Object)
	if ok1 && ok2 && o.GetGeneration() == c.GetGeneration() &&
		maps.Equal(o.GetLabels(), c.GetLabels()) && maps.Equal(o.GetAnnotations(), c.GetAnnotations()) {
		return
	}
	poke()
}

// apiWarnings logs the API server's warning headers at debug.
type apiWarnings struct{ log *slog.Logger }

func (a apiWarnings) HandleWarningHeader(code int, agent, text string) {
	a.log.Debug("API server warning", "code", code, "agent", agent, "warning", text)
}

// meshPodInformer watches the metadata of pods labelled wafplane.dev/protect=true, and of
// no other pod: which namespaces have workloads that opted in.
func (s *Source) meshPodInformer(poke func()) (cache.SharedIndexInformer, error) {
	mc, err := metadata.NewForConfig(s.Config)
	if err != nil {
		return nil, fmt.Errorf("metadata client: %w", err)
	}
	selector := discovery.LabelProtect + "=true"
	inf := metadatainformer.NewFilteredMetadataInformer(mc, corev1.SchemeGroupVersion.WithResource("pods"), "", s.Resync,
		cache.Indexers{}, func(o *metav1.ListOptions) { o.LabelSelector = selector }).Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { poke() }, UpdateFunc: func(any, any) {}, DeleteFunc: func(any) { poke() },
	})
	return inf, nil
}
