package kubernetes

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// gatewayPodInformers watch the pods that can run a gateway's Envoys — those Istio or
// Envoy Gateway label with their Gateway, and every pod of the native Istio gateways'
// namespace — reduced to what the sidecar check reads, so that a large cluster's pods do
// not fill wafplane's memory.
func (s *Source) gatewayPodInformers(kc kubernetes.Interface, poke func()) []cache.SharedIndexInformer {
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { poke() },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Pod)
			c, ok2 := cur.(*corev1.Pod)
			if !ok1 || !ok2 || o.Status.Phase != c.Status.Phase || (o.DeletionTimestamp == nil) != (c.DeletionTimestamp == nil) {
				poke()
			}
		},
		DeleteFunc: func(any) { poke() },
	}
	var out []cache.SharedIndexInformer
	for _, opt := range []informers.SharedInformerOption{
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = IstioGatewayLabel }),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = EnvoyGatewayOwnerName }),
		informers.WithNamespace(s.Inject.istioGatewayNamespace()),
	} {
		inf := informers.NewSharedInformerFactoryWithOptions(kc, s.Resync, opt).Core().V1().Pods().Informer()
		_ = inf.SetTransform(slimPod)
		_, _ = inf.AddEventHandler(handler)
		out = append(out, inf)
	}
	return out
}

// slimPod keeps a pod's identity, labels, phase and container names.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	names := func(cs []corev1.Container) []corev1.Container {
		out := make([]corev1.Container, len(cs))
		for i, c := range cs {
			out[i] = corev1.Container{Name: c.Name}
		}
		return out
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp},
		Spec:   corev1.PodSpec{InitContainers: names(p.Spec.InitContainers), Containers: names(p.Spec.Containers)},
		Status: corev1.PodStatus{Phase: p.Status.Phase},
	}, nil
}

// listPods reads the informers' pods, each once.
func listPods(infs []cache.SharedIndexInformer) []*corev1.Pod {
	seen := map[types.UID]bool{}
	var out []*corev1.Pod
	for _, inf := range infs {
		for _, obj := range inf.GetStore().List() {
			if p, ok := obj.(*corev1.Pod); ok && !seen[p.UID] {
				seen[p.UID] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// maxMissingShown bounds the pod names kept per gateway for /injections and Events.
const maxMissingShown = 10

// sidecarCheck is what the gateway pods show: per gateway in sidecar mode, its running
// pods without the processor (the webhook was down, or the pod predates sidecar mode),
// and the namespaces whose pods need the policy ConfigMap.
type sidecarCheck struct {
	missing    map[string][]string // gateway key → pod names, sorted, at most maxMissingShown
	missingN   map[string]int      // gateway key → how many
	namespaces map[string]bool
}

// checkSidecars is pure: pods and targets in, what is missing out.
func checkSidecars(pods []*corev1.Pod, t *sidecarTargets) sidecarCheck {
	c := sidecarCheck{missing: map[string][]string{}, missingN: map[string]int{}, namespaces: map[string]bool{}}
	if t == nil {
		return c
	}
	for _, st := range t.byKey {
		c.namespaces[gatewayNamespace(st.key)] = true
	}
	if len(t.native) > 0 {
		c.namespaces[t.nativeNamespace] = true
	}
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || optedOut(p) {
			continue
		}
		st, ok := t.match(p.Namespace, p.Labels)
		if !ok {
			continue
		}
		c.namespaces[p.Namespace] = true
		if !hasSidecar(&p.Spec) {
			c.missingN[st.key]++
			c.missing[st.key] = append(c.missing[st.key], p.Namespace+"/"+p.Name)
		}
	}
	for k, names := range c.missing {
		sort.Strings(names)
		c.missing[k] = names[:min(len(names), maxMissingShown)]
	}
	return c
}

// gatewayNamespace is the namespace of a gateway key "proxy:namespace/name".
func gatewayNamespace(key string) string {
	_, rest, _ := strings.Cut(key, ":")
	ns, _, _ := strings.Cut(rest, "/")
	return ns
}
