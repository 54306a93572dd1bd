package pullsecret

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
)

// CacheOptions restricts the manager's Secret cache to the managed name in every
// namespace plus the source Secret in its own namespace. Caching every Secret would
// cost memory in proportion to the cluster and need a cluster-wide list privilege;
// with a metadata.name field selector the API server authorises the list and watch
// against RBAC rules with resourceNames, so the chart can grant exactly that.
//
// The AllNamespaces entry gets "metadata.namespace!=<source namespace>" added by
// controller-runtime, so the source namespace holds only the source. That namespace
// is always excluded from injection, so no copy there is ever needed.
//
// With reconcile.restartStuckPods, Pods are cached too: only Pending ones (a Pod
// stuck pulling is Pending), stripped to the fields the decision reads.
func CacheOptions(cfg *config.Config) cache.Options {
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Namespaces: map[string]cache.Config{
					cache.AllNamespaces:        {FieldSelector: fields.OneTermEqualSelector("metadata.name", cfg.SecretName)},
					cfg.SourceSecret.Namespace: {FieldSelector: fields.OneTermEqualSelector("metadata.name", cfg.SourceSecret.Name)},
				},
				// Readers must not mutate what they get: Refresh deep-copies first.
				// This saves a deep copy of a Secret on every admission.
				UnsafeDisableDeepCopy: ptr.To(true),
			},
		},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
	if cfg.Reconcile.RestartStuckPods {
		opts.ByObject[&corev1.Pod{}] = cache.ByObject{
			Field:     fields.OneTermEqualSelector("status.phase", string(corev1.PodPending)),
			Transform: stripPod,
		}
	}
	return opts
}

// SourceWatcher feeds a Source from the cache's Secret informer, and tells the
// Ensurer when a managed copy is deleted so its memo of recent creates does not hide
// the loss. It runs on every replica, leader or not: every replica admits Pods.
type SourceWatcher struct {
	Cache   cache.Informers
	Source  *Source
	Ensurer *Ensurer // optional
	// CopySeen, if set, hears of every namespace where a managed copy exists or
	// was deleted (Reconciler.MarkWanted), on every replica.
	CopySeen func(namespace string)
}

// NeedLeaderElection is false: see SourceWatcher.
func (w *SourceWatcher) NeedLeaderElection() bool { return false }

// Start registers the handlers and, once the informer has delivered its initial
// list, records a missing source so it is logged once with its fix.
func (w *SourceWatcher) Start(ctx context.Context) error {
	inf, err := w.Cache.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before the cache synced
		}
		return fmt.Errorf("getting the Secret informer: %w", err)
	}
	ref := w.Source.Ref()
	reg, err := inf.AddEventHandler(toolscache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			s, ok := obj.(*corev1.Secret)
			return ok && s.Namespace == ref.Namespace && s.Name == ref.Name
		},
		Handler: toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.Source.Set(obj.(*corev1.Secret)) },
			UpdateFunc: func(_, obj any) { w.Source.Set(obj.(*corev1.Secret)) },
			DeleteFunc: func(any) { w.Source.Delete() },
		},
	})
	if err != nil {
		return fmt.Errorf("watching the source Secret: %w", err)
	}
	if w.Ensurer != nil {
		managedCopy := func(obj any) (*corev1.Secret, bool) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			s, ok := obj.(*corev1.Secret)
			return s, ok && s.Name == w.Ensurer.Config.SecretName && IsManaged(s)
		}
		seen := func(obj any) {
			if s, ok := managedCopy(obj); ok && w.CopySeen != nil {
				w.CopySeen(s.Namespace)
			}
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    seen,
			UpdateFunc: func(_, obj any) { seen(obj) },
			DeleteFunc: func(obj any) {
				if s, ok := managedCopy(obj); ok {
					w.Ensurer.Forget(s.Namespace)
					seen(obj)
				}
			},
		}); err != nil {
			return fmt.Errorf("watching managed copies: %w", err)
		}
	}
	if err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		return reg.HasSynced(), nil
	}); err != nil {
		return nil // shutting down
	}
	w.Source.markSynced()
	<-ctx.Done()
	return nil
}
