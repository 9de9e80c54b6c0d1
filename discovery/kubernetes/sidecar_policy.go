package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// noPolicy is the policy sidecars get when serve runs without --policy.
const noPolicy = "# wafplane serve runs without --policy: no IP denylist, custom rules or overrides\n"

// policyPoll is how often the policy file is read for changes to pass on to sidecars.
const policyPoll = 5 * time.Second

// policyRead is the policy file as last read.
type policyRead struct {
	data []byte
	err  error
}

// policyContent is what the sidecars' ConfigMap holds: the policy file as last read.
func (in *Injector) policyContent() ([]byte, error) {
	if in.PolicyFile == "" {
		return []byte(noPolicy), nil
	}
	if r := in.policy.Load(); r != nil {
		return r.data, r.err
	}
	return nil, fmt.Errorf("%s: not read yet", in.PolicyFile)
}

// readPolicyFile reads the policy file and says whether it changed.
func (in *Injector) readPolicyFile() bool {
	b, err := os.ReadFile(in.PolicyFile)
	prev := in.policy.Swap(&policyRead{data: b, err: err})
	return prev == nil || !bytes.Equal(prev.data, b) || (prev.err == nil) != (err == nil)
}

// watchPolicyFile reads the policy file every policyPoll and wakes the loop when it
// changed, so that the ConfigMaps, and through them the sidecars, follow it.
func (in *Injector) watchPolicyFile(ctx context.Context, poke func()) {
	t := time.NewTicker(policyPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if in.readPolicyFile() {
				poke()
			}
		}
	}
}

// reconcilePolicy keeps the ConfigMap PolicyConfigMap in every namespace whose gateway
// pods run sidecars, holding the policy file; the sidecars mount it and reload it when
// the kubelet updates it. ConfigMaps of namespaces without sidecars any more are deleted.
func (w *writer) reconcilePolicy(ctx context.Context, o objects, inj *injection) error {
	current := map[string]*corev1.ConfigMap{}
	for _, cm := range o.configMaps {
		if cm.Name == PolicyConfigMap && cm.Labels[LabelSidecarPolicy] == "true" {
			current[cm.Namespace] = cm
		}
	}
	var want []byte
	if len(inj.sidecars.namespaces) > 0 {
		b, err := w.injector.policyContent()
		if err != nil {
			return fmt.Errorf("policy for sidecars: %w (the ConfigMaps keep the previous policy)", err)
		}
		want = b
	}
	namespaces := make([]string, 0, len(inj.sidecars.namespaces))
	for ns := range inj.sidecars.namespaces {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	var errs []error
	for _, ns := range namespaces {
		api := w.kc.CoreV1().ConfigMaps(ns)
		cur := current[ns]
		delete(current, ns)
		switch {
		case cur == nil:
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: PolicyConfigMap, Namespace: ns,
				Labels: map[string]string{LabelManagedBy: managedBy, LabelSidecarPolicy: "true"}}, Data: map[string]string{policyKey: string(want)}}
			_, err := api.Create(ctx, cm, metav1.CreateOptions{FieldManager: managedBy})
			switch {
			case apierrors.IsAlreadyExists(err):
				// Not in the cache yet, or another's: the label tells on the next pass.
				errs = append(errs, fmt.Errorf("ConfigMap %s/%s exists without the label %s=true: left alone; the sidecars there get no policy until it is removed",
					ns, PolicyConfigMap, LabelSidecarPolicy))
			case err != nil:
				errs = append(errs, fmt.Errorf("create ConfigMap %s/%s: %w", ns, PolicyConfigMap, err))
			}
		case !bytes.Equal([]byte(cur.Data[policyKey]), want):
			upd := cur.DeepCopy()
			upd.Data = map[string]string{policyKey: string(want)}
			if _, err := api.Update(ctx, upd, metav1.UpdateOptions{FieldManager: managedBy}); err != nil {
				errs = append(errs, fmt.Errorf("update ConfigMap %s/%s: %w", ns, PolicyConfigMap, err))
			}
		}
	}
	for ns, cm := range current {
		err := w.kc.CoreV1().ConfigMaps(ns).Delete(ctx, cm.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr(cm.UID)}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete ConfigMap %s/%s: %w", ns, cm.Name, err))
		}
	}
	return errors.Join(errs...)
}
