package kubernetes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"
)

// configurationInformer follows the webhook configuration: which CAs the API server
// trusts (for the certificate switch), and changes made by others, which the leader repairs.
func (w *Webhook) configurationInformer() cache.SharedIndexInformer {
	lw := cache.NewListWatchFromClient(w.Client.AdmissionregistrationV1().RESTClient(), "mutatingwebhookconfigurations",
		"", fields.OneTermEqualSelector("metadata.name", w.Injector.WebhookConfig))
	inf := cache.NewSharedIndexInformer(lw, &admregv1.MutatingWebhookConfiguration{}, 0, cache.Indexers{})
	seen := func(obj any) {
		if c, ok := obj.(*admregv1.MutatingWebhookConfiguration); ok && len(c.Webhooks) > 0 {
			w.trust.saw(c.Webhooks[0].ClientConfig.CABundle, time.Now())
		}
		w.Injector.wake()
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: seen, UpdateFunc: func(_, cur any) { seen(cur) }, DeleteFunc: func(any) { w.Injector.wake() },
	})
	return inf
}

// current is the configuration as the informer has it (nil: none); ok is false until the
// informer has synced.
func (w *Webhook) current() (cur *admregv1.MutatingWebhookConfiguration, ok bool) {
	if !w.config.HasSynced() {
		return nil, false
	}
	obj, exists, err := w.config.GetStore().GetByKey(w.Injector.WebhookConfig)
	if err != nil || !exists {
		return nil, err == nil
	}
	cur, ok = obj.(*admregv1.MutatingWebhookConfiguration)
	return cur, ok
}

// webhookName is the configuration's name for one kind of gateway pod.
func webhookName(kind string) string { return kind + ".sidecar.wafplane.dev" }

// configuration is the MutatingWebhookConfiguration for the gateways in sidecar mode: one
// webhook per kind of gateway pod, each scoped by objectSelector (and for native Istio
// gateways namespaceSelector) to those pods, so that the API server never calls wafplane
// for any other pod. Pods labelled with an opt-out are not sent either.
func (w *Webhook) configuration(t *sidecarTargets, bundle []byte) *admregv1.MutatingWebhookConfiguration {
	cc := admregv1.WebhookClientConfig{CABundle: bundle}
	if w.URL != "" {
		cc.URL = ptr(w.URL)
	} else {
		cc.Service = &admregv1.ServiceReference{Namespace: w.ServiceNamespace, Name: w.ServiceName,
			Path: ptr(WebhookPath), Port: ptr(w.ServicePort)}
	}
	optOut := []metav1.LabelSelectorRequirement{
		{Key: LabelEnabled, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
		{Key: LabelDatadogEnabled, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
	}
	hook := func(name string, objects *metav1.LabelSelector, namespaces *metav1.LabelSelector) admregv1.MutatingWebhook {
		objects.MatchExpressions = append(objects.MatchExpressions, optOut...)
		if namespaces == nil {
			namespaces = &metav1.LabelSelector{}
		}
		return admregv1.MutatingWebhook{
			Name:         name,
			ClientConfig: cc,
			Rules: []admregv1.RuleWithOperations{{Operations: []admregv1.OperationType{admregv1.Create},
				Rule: admregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: ptr(admregv1.NamespacedScope)}}},
			// A wafplane outage must never stop gateway pods from starting; a pod
			// admitted without its processor is reported as SidecarMissing.
			FailurePolicy:           ptr(admregv1.Ignore),
			MatchPolicy:             ptr(admregv1.Equivalent),
			NamespaceSelector:       namespaces,
			ObjectSelector:          objects,
			SideEffects:             ptr(admregv1.SideEffectClassNone),
			TimeoutSeconds:          ptr(int32(5)),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr(admregv1.IfNeededReinvocationPolicy),
		}
	}
	exists := func(key string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOpExists}}}
	}
	var hooks []admregv1.MutatingWebhook
	if t.istio {
		hooks = append(hooks, hook(webhookName("istio"), exists(IstioGatewayLabel), nil))
	}
	if t.envoyGate {
		hooks = append(hooks, hook(webhookName("envoy-gateway"), exists(EnvoyGatewayOwnerName), nil))
	}
	for _, st := range t.native {
		sum := sha256.Sum256([]byte(st.key))
		ns := &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: t.nativeNamespace}}
		hooks = append(hooks, hook(webhookName("istio-gateway-"+hex.EncodeToString(sum[:5])),
			&metav1.LabelSelector{MatchLabels: st.selector}, ns))
	}
	return &admregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: w.Injector.WebhookConfig, Labels: map[string]string{LabelManagedBy: managedBy}},
		Webhooks:   hooks,
	}
}

// reconcileWebhook keeps the webhook configuration as sidecar mode needs it, or, in
// external mode, deletes the one wafplane made. One made by someone else is left alone.
func (w *writer) reconcileWebhook(ctx context.Context, inj *injection) error {
	in := w.injector
	if in.WebhookConfig == "" {
		return nil // no configuration named: none to keep or delete
	}
	sidecar := in.Mode == ModeSidecar && in.Webhook != nil && inj.targets != nil
	if !sidecar && w.webhookGone {
		return nil // deleted or never made; nothing of wafplane's makes it in external mode
	}
	api := w.kc.AdmissionregistrationV1().MutatingWebhookConfigurations()
	var cur *admregv1.MutatingWebhookConfiguration
	cached := false
	if sidecar {
		cur, cached = in.Webhook.current() // the informer the webhook keeps anyway
	}
	if !cached {
		var err error
		cur, err = api.Get(ctx, in.WebhookConfig, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cur, err = nil, nil
		}
		if err != nil {
			return fmt.Errorf("webhook configuration %s: %w", in.WebhookConfig, err)
		}
	}
	if cur != nil && cur.Labels[LabelManagedBy] != managedBy {
		return fmt.Errorf("MutatingWebhookConfiguration %s exists and is not managed by wafplane: left alone; rename it or set --webhook-configuration", in.WebhookConfig)
	}
	if !sidecar {
		if cur != nil {
			err := api.Delete(ctx, cur.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr(cur.UID)}})
			if err = webhookConfigErr(err); err != nil {
				return err
			}
			w.log.Info("injector: sidecar webhook configuration deleted (external mode)", "name", cur.Name)
		}
		w.webhookGone = true
		return nil
	}
	bundle, err := in.Webhook.bundle()
	if err != nil {
		return fmt.Errorf("webhook CA bundle: %w", err)
	}
	want := in.Webhook.configuration(inj.targets, bundle)
	if cur == nil {
		_, err := api.Create(ctx, want, metav1.CreateOptions{FieldManager: managedBy})
		if err == nil {
			w.log.Info("injector: sidecar webhook configuration created", "name", want.Name, "webhooks", len(want.Webhooks))
		}
		return webhookConfigErr(err)
	}
	if webhooksEqual(cur.Webhooks, want.Webhooks) && cur.Labels[LabelManagedBy] == managedBy {
		return nil
	}
	upd := cur.DeepCopy()
	upd.Webhooks = want.Webhooks
	upd.Labels = mergeStrings(cur.Labels, want.Labels)
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{FieldManager: managedBy}); err != nil {
		return webhookConfigErr(err)
	}
	w.log.Info("injector: sidecar webhook configuration updated", "name", want.Name, "webhooks", len(want.Webhooks))
	return nil
}

// webhooksEqual compares what wafplane sets; the API server fills no other field of it.
func webhooksEqual(cur, want []admregv1.MutatingWebhook) bool {
	if len(cur) != len(want) {
		return false
	}
	for i := range want {
		c, w := cur[i], want[i]
		if !bytes.Equal(c.ClientConfig.CABundle, w.ClientConfig.CABundle) {
			return false
		}
		c.ClientConfig.CABundle, w.ClientConfig.CABundle = nil, nil
		if !equality.Semantic.DeepEqual(c, w) {
			return false
		}
	}
	return true
}

// webhookConfigErr drops what the next reconcile settles: a configuration already gone,
// or one changed or made since the informer's copy, whose event wakes the loop again.
func webhookConfigErr(err error) error {
	if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return nil
	}
	return fmt.Errorf("webhook configuration: %w", err)
}
