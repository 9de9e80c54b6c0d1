package kubernetes

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/wafplane/wafplane/discovery"
)

// injectKind is a kind the injector reads or writes, and the CRD that serves it.
type injectKind struct {
	Kind, Group, Resource string
	Versions              []string // preferred first; the first one the CRD serves is used
	Owned                 bool     // written by wafplane, watched by its managed-by label
}

func (k injectKind) crd() string { return k.Resource + "." + k.Group }

var (
	kindEnvoyFilter    = injectKind{"EnvoyFilter", "networking.istio.io", "envoyfilters", []string{"v1alpha3"}, true}
	kindIstioGateway   = injectKind{"Gateway", "networking.istio.io", "gateways", []string{"v1", "v1beta1", "v1alpha3"}, false}
	kindExtension      = injectKind{"EnvoyExtensionPolicy", "gateway.envoyproxy.io", "envoyextensionpolicies", []string{"v1alpha1"}, true}
	kindBackend        = injectKind{"Backend", "gateway.envoyproxy.io", "backends", []string{"v1alpha1"}, true}
	kindReferenceGrant = injectKind{"ReferenceGrant", "gateway.networking.k8s.io", "referencegrants", []string{"v1beta1"}, true}
	injectKinds        = []injectKind{kindEnvoyFilter, kindIstioGateway, kindExtension, kindBackend, kindReferenceGrant}
)

// proxyKinds are the kinds whose CRDs must be installed for a proxy type to be injected.
var proxyKinds = map[string][]injectKind{
	discovery.ProxyEnvoyGateway: {kindExtension},
	discovery.ProxyIstio:        {kindEnvoyFilter},
	discovery.ProxyIstioGateway: {kindEnvoyFilter, kindIstioGateway},
	discovery.ProxyIstioSidecar: {kindEnvoyFilter},
}

// crdView is what the injector knows of the cluster's CRDs and of the objects it watches.
type crdView struct {
	installed  map[string]string // kind → served version used, for established CRDs
	targetRefs bool              // the EnvoyFilter CRD has spec.targetRefs
	synced     map[string]bool   // kind → its informer has synced
	objects    map[string][]*unstructured.Unstructured
}

// crdWatch detects the CRDs while running and starts an informer per kind once its CRD
// is established (stopping it when the CRD goes), so CRDs installed later need no restart.
type crdWatch struct {
	dyn    dynamic.Interface
	crds   cache.SharedIndexInformer
	resync time.Duration
	poke   func()

	mu      sync.Mutex
	running map[string]*kindInformer
}

type kindInformer struct {
	version string
	inf     cache.SharedIndexInformer
	cancel  context.CancelFunc
}

const annotationTargetRefs = "wafplane.dev/has-target-refs"

func newCRDWatch(dyn dynamic.Interface, resync time.Duration, poke func()) *crdWatch {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	inf := dynamicinformer.NewFilteredDynamicInformer(dyn, gvr, "", resync, cache.Indexers{}, nil).Informer()
	// Keep only what detection reads: CRDs such as Istio's are megabytes of schema.
	_ = inf.SetTransform(reduceCRD)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { poke() }, UpdateFunc: func(any, any) { poke() }, DeleteFunc: func(any) { poke() },
	})
	return &crdWatch{dyn: dyn, crds: inf, resync: resync, poke: poke, running: map[string]*kindInformer{}}
}

func reduceCRD(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	small := &unstructured.Unstructured{Object: map[string]any{}}
	small.SetName(u.GetName())
	small.SetResourceVersion(u.GetResourceVersion())
	wanted := false
	for _, k := range injectKinds {
		wanted = wanted || k.crd() == u.GetName()
	}
	if !wanted {
		return small, nil
	}
	var served []any
	versions, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
	targetRefs := false
	for _, v := range versions {
		vm, _ := v.(map[string]any)
		if ok, _, _ := unstructured.NestedBool(vm, "served"); ok {
			name, _, _ := unstructured.NestedString(vm, "name")
			served = append(served, name)
		}
		if _, found, _ := unstructured.NestedMap(vm, "schema", "openAPIV3Schema", "properties", "spec", "properties", "targetRefs"); found {
			targetRefs = true
		}
	}
	established := false
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		cm, _ := c.(map[string]any)
		established = established || cm["type"] == "Established" && cm["status"] == "True"
	}
	_ = unstructured.SetNestedSlice(small.Object, served, "spec", "served")
	_ = unstructured.SetNestedField(small.Object, established, "status", "established")
	if targetRefs {
		small.SetAnnotations(map[string]string{annotationTargetRefs: "true"})
	}
	return small, nil
}

// view starts and stops informers to match the established CRDs and returns what they hold.
// Only kinds whose informer has synced are listed: nothing is created or deleted from a
// cache that is still filling.
func (w *crdWatch) view(ctx context.Context) crdView {
	v := crdView{installed: map[string]string{}, synced: map[string]bool{}, objects: map[string][]*unstructured.Unstructured{}}
	byName := map[string]*unstructured.Unstructured{}
	for _, obj := range w.crds.GetStore().List() {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			byName[u.GetName()] = u
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range injectKinds {
		version := ""
		if crd := byName[k.crd()]; crd != nil {
			if ok, _, _ := unstructured.NestedBool(crd.Object, "status", "established"); ok {
				served, _, _ := unstructured.NestedStringSlice(crd.Object, "spec", "served")
				version = firstServed(k.Versions, served)
			}
			if k.crd() == kindEnvoyFilter.crd() && crd.GetAnnotations()[annotationTargetRefs] == "true" {
				v.targetRefs = true
			}
		}
		run := w.running[k.Kind]
		if run != nil && run.version != version {
			run.cancel()
			delete(w.running, k.Kind)
			run = nil
		}
		if version == "" {
			continue
		}
		v.installed[k.Kind] = version
		if run == nil {
			run = w.start(ctx, k, version)
			w.running[k.Kind] = run
		}
		if run.inf.HasSynced() {
			v.synced[k.Kind] = true
			for _, obj := range run.inf.GetStore().List() {
				if u, ok := obj.(*unstructured.Unstructured); ok {
					v.objects[k.Kind] = append(v.objects[k.Kind], u)
				}
			}
		}
	}
	return v
}

func firstServed(preferred, served []string) string {
	for _, p := range preferred {
		for _, s := range served {
			if p == s {
				return p
			}
		}
	}
	return ""
}

func (w *crdWatch) start(ctx context.Context, k injectKind, version string) *kindInformer {
	gvr := schema.GroupVersionResource{Group: k.Group, Version: version, Resource: k.Resource}
	var tweak dynamicinformer.TweakListOptionsFunc
	if k.Owned {
		selector := labels.SelectorFromSet(labels.Set{discovery.LabelManagedBy: discovery.ManagedBy}).String()
		tweak = func(o *metav1.ListOptions) { o.LabelSelector = selector }
	}
	inf := dynamicinformer.NewFilteredDynamicInformer(w.dyn, gvr, "", w.resync, cache.Indexers{}, tweak).Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { w.poke() }, UpdateFunc: func(any, any) { w.poke() }, DeleteFunc: func(any) { w.poke() },
	})
	ictx, cancel := context.WithCancel(ctx)
	go inf.Run(ictx.Done())
	go func() {
		if cache.WaitForCacheSync(ictx.Done(), inf.HasSynced) {
			w.poke()
		}
	}()
	return &kindInformer{version: version, inf: inf, cancel: cancel}
}
