package kubernetes

import (
	"bytes"
	"context"
	"crypto/sha256"
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

// policyContent is what the sidecars' ConfigMap holds: the policy file as it is now.
func (in *Injector) policyContent() ([]byte, error) {
	if in.PolicyFile == "" {
		return []byte(noPolicy), nil
	}
	return os.ReadFile(in.PolicyFile)
}

// watchPolicyFile wakes the loop when the policy file changes, so that the ConfigMaps,
// and through them the sidecars, follow it.
func (in *Injector) watchPolicyFile(ctx context.Context, poke func()) {
	if in.PolicyFile == "" {
		return
	}
	var last [sha256.Size]byte
	t := time.NewTicker(policyPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := os.ReadFile(in.PolicyFile)
		if err != nil {
			continue
		}
		if sum := sha256.Sum256(b); sum != last {
			last = sum
			poke()
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
