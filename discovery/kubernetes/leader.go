package kubernetes

import (
	"context"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// elect runs leader election on a Lease until ctx ends; leader says whether this replica
// leads, and poke makes a new leader write status at once.
func (s *Source) elect(ctx context.Context, kc kubernetes.Interface, leader *atomic.Bool, poke func()) {
	ns, name := s.LeaseNamespace, s.LeaseName
	if ns == "" {
		ns = "wafplane-system"
	}
	if name == "" {
		name = "wafplane-leader"
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: name},
		Client:     kc.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity()},
	}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			ReleaseOnCancel: true,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) {
					s.Log.Info("leading: writing status, events and provisioning", "lease", ns+"/"+name)
					leader.Store(true)
					poke()
				},
				OnStoppedLeading: func() {
					s.Log.Info("no longer leading", "lease", ns+"/"+name)
					leader.Store(false)
				},
			},
		})
	}
}
