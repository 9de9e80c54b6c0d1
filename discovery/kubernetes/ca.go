package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/wafplane/wafplane/xds/pki"
)

// CA Secret keys.
const (
	caBundleKey = "ca.crt"
	caKeyKey    = "ca.key"
)

// CAStore keeps the xDS CA in a Secret of wafplane's namespace: made on the first start,
// replaced before it expires (the old one stays trusted while it is valid), and read again
// now and then so that every replica uses the one another replica rotated.
type CAStore struct {
	Client          kubernetes.Interface
	Namespace, Name string
	Log             *slog.Logger

	current atomic.Pointer[pki.CA]
}

// Current is the CA in use; Load must have succeeded once.
func (s *CAStore) Current() *pki.CA { return s.current.Load() }

// Load reads the CA, making or rotating it when needed.
func (s *CAStore) Load(ctx context.Context) (*pki.CA, error) {
	for attempt := 0; attempt < 5; attempt++ {
		ca, err := s.load(ctx)
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			continue // another replica wrote it first: read theirs
		}
		if err != nil {
			return nil, fmt.Errorf("xDS CA Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
		s.current.Store(ca)
		return ca, nil
	}
	return nil, fmt.Errorf("xDS CA Secret %s/%s: kept changing while being written", s.Namespace, s.Name)
}

func (s *CAStore) load(ctx context.Context) (*pki.CA, error) {
	secrets := s.Client.CoreV1().Secrets(s.Namespace)
	now := time.Now()
	sec, err := secrets.Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ca, err := pki.New(now)
		if err != nil {
			return nil, err
		}
		data, err := caData(ca)
		if err != nil {
			return nil, err
		}
		_, err = secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace,
			Labels: map[string]string{LabelManagedBy: managedBy}}, Type: corev1.SecretTypeOpaque, Data: data}, metav1.CreateOptions{FieldManager: managedBy})
		if err == nil {
			s.Log.Info("xDS CA created", "secret", s.Namespace+"/"+s.Name, "ca", ca.Fingerprint(), "expires", ca.Cert.NotAfter)
		}
		return ca, err
	}
	if err != nil {
		return nil, err
	}
	ca, err := pki.Parse(sec.Data[caBundleKey], sec.Data[caKeyKey])
	if err != nil {
		return nil, err
	}
	next, changed, err := ca.Rotated(now)
	if err != nil || !changed {
		return next, err
	}
	data, err := caData(next)
	if err != nil {
		return nil, err
	}
	sec = sec.DeepCopy()
	sec.Data = data
	if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{FieldManager: managedBy}); err != nil {
		return nil, err
	}
	s.Log.Info("xDS CA rotated", "secret", s.Namespace+"/"+s.Name, "ca", next.Fingerprint(), "previous", ca.Fingerprint())
	return next, nil
}

func caData(ca *pki.CA) (map[string][]byte, error) {
	key, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	return map[string][]byte{caBundleKey: ca.BundlePEM(), caKeyKey: key}, nil
}

// Run reads the CA again every interval until ctx ends.
func (s *CAStore) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := s.Load(ctx); err != nil {
				s.Log.Error("reloading the xDS CA; the previous one stays in use", "error", err)
			}
		}
	}
}
