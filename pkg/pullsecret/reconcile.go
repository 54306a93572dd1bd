package pullsecret

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
)

// NamespaceOptOutLabel set to "false" on a namespace keeps the webhook (and the
// reconciler's restores and provisioning) out of it.
const NamespaceOptOutLabel = "regcred-webhook.io/inject"

// fanOutWorkers bounds the concurrent updates of one rotation: enough to update
// hundreds of namespaces in a second or two, few enough not to flood the API server.
const fanOutWorkers = 16

// Reconciler keeps the managed copies equal to the source: it propagates a rotated
// source to every copy, restores copies that are deleted or edited while their
// namespace is in scope, and (reconcile.provisionAllNamespaces) creates the copy in
// every in-scope namespace. Those run on the leader only, through the same narrow
// cache as the webhook; the retry of a failed admission-time create runs on every
// replica (it only creates). It never writes a Secret without the managed label.
type Reconciler struct {
	// Cache is the manager's cache (Secrets: the managed name and the source only).
	Cache client.Reader
	// Client writes.
	Client client.Client
	// Namespaces reads Namespace objects: the cache when provisionAllNamespaces
	// watches them, otherwise a direct API reader (RBAC: namespaces get).
	Namespaces client.Reader
	Source     *Source
	Config     *config.Config
	Ensurer    *Ensurer
	Recorder   events.EventRecorder
	Log        logr.Logger

	// wanted holds namespaces where a managed copy has been seen (or an admission
	// failed to create one): a missing copy there is created. Without
	// provisionAllNamespaces a namespace never seen is left alone.
	wanted sync.Map
	// retries carries namespaces whose admission-time create failed on this replica.
	retries chan event.GenericEvent
}

// MarkWanted records that namespace should hold a copy (one was seen there, or a
// create failed there). Every replica calls it from its informer, so a replica that
// becomes leader knows the namespaces whose copies were deleted before it led.
func (r *Reconciler) MarkWanted(namespace string) { r.wanted.Store(namespace, struct{}{}) }

// Retry asks for the copy in namespace to be created: Ensure failed there (an API
// error or timeout). The retry controller runs on every replica, leader or not, so
// the replica that saw the failure retries it itself, with backoff. It never
// blocks; past the buffer, the leader's next fan-out or the next Pod retries anyway.
func (r *Reconciler) Retry(namespace string) {
	r.MarkWanted(namespace)
	if r.retries == nil {
		return
	}
	s := &corev1.Secret{}
	s.Namespace, s.Name = namespace, r.Config.SecretName
	select {
	case r.retries <- event.GenericEvent{Object: s}:
	default:
	}
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.retries = make(chan event.GenericEvent, 1024)
	// The retry controller only creates a missing copy (never updates content), the
	// same rule as the admission path, so every replica may run it.
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("pullsecret-retry").
		WithOptions(controller.Options{MaxConcurrentReconciles: 2, NeedLeaderElection: ptr.To(false)}).
		WatchesRawSource(source.Channel(r.retries, &handler.EnqueueRequestForObject{})).
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			return reconcile.Result{}, r.createIfMissing(ctx, req.Namespace)
		})); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("pullsecret").
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Watches(&corev1.Secret{}, r.secretEvents())
	if r.Config.Reconcile.ProvisionAllNamespaces {
		b = b.Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetName(), Name: r.Config.SecretName}}}
			}))
	}
	return b.Complete(r)
}

func (r *Reconciler) isSource(o client.Object) bool {
	ref := r.Source.Ref()
	return o.GetNamespace() == ref.Namespace && o.GetName() == ref.Name
}

func (r *Reconciler) sourceKey() reconcile.Request {
	ref := r.Source.Ref()
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}}
}

// secretEvents maps the cache's Secret events to work: the source to one fan-out,
// a managed copy to its namespace. Unmanaged Secrets are not our business.
func (r *Reconciler) secretEvents() handler.EventHandler {
	enqueue := func(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		if r.isSource(o) {
			q.Add(r.sourceKey())
			return
		}
		s, ok := o.(*corev1.Secret)
		if !ok || s.Name != r.Config.SecretName || !IsManaged(s) {
			return
		}
		r.MarkWanted(s.Namespace)
		q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(s)})
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(e.Object, q)
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			// A copy whose managed label was removed became the user's: the old
			// object decides nothing, the new one is unmanaged and ignored.
			enqueue(e.ObjectNew, q)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if s, ok := e.Object.(*corev1.Secret); ok && !r.isSource(s) && IsManaged(s) && r.Ensurer != nil {
				r.Ensurer.Forget(s.Namespace)
			}
			enqueue(e.Object, q)
		},
		GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(e.Object, q)
		},
	}
}

// Reconcile handles one request: the source (fan out) or one namespace's copy.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if req == r.sourceKey() {
		return reconcile.Result{}, r.fanOut(ctx)
	}
	return reconcile.Result{}, r.reconcileCopy(ctx, req.Namespace)
}

// fanOut brings every managed copy to the source's content. A copy already equal is
// not written (no resourceVersion churn). One failing namespace does not stop the
// others; the error makes controller-runtime retry with backoff.
func (r *Reconciler) fanOut(ctx context.Context) error {
	snap := r.snapshot(ctx)
	if snap == nil {
		// Copies are kept: deleting them would break pulls that still work. The
		// source tracker has logged and counted the problem.
		return nil
	}
	var list corev1.SecretList
	if err := r.Cache.List(ctx, &list, client.MatchingLabels{ManagedByLabel: ManagedByValue}); err != nil {
		return fmt.Errorf("listing managed copies: %w", err)
	}
	var updated, failed atomic.Int32
	g, gctx := errgroup.WithContext(ctx)
	defer func() { _ = g.Wait() }()
	g.SetLimit(fanOutWorkers)
	ref := r.Source.Ref()
	for i := range list.Items {
		cur := &list.Items[i]
		if cur.Name != r.Config.SecretName || r.isSource(cur) || IsCurrent(cur, ref, snap) || wrongType(cur) {
			continue // wrongType: reported by reconcileCopy, an update cannot fix it
		}
		g.Go(func() error {
			err := r.Client.Update(gctx, Refresh(cur, ref, snap))
			writesTotal.WithLabelValues("update", outcome(err)).Inc()
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				// Someone wrote or deleted it since the cache saw it; that event
				// queues the copy's own reconcile, which compares again.
				return nil
			}
			if err != nil {
				failed.Add(1)
				r.Log.Error(err, "could not update managed copy", "namespace", cur.Namespace, "secret", cur.Name)
				return nil // the others go on
			}
			updated.Add(1)
			return nil
		})
	}
	// Catch up on namespaces that should hold a copy and do not: copies deleted
	// while the source was missing or before this replica led, and, with
	// provisionAllNamespaces, every namespace (the source may have appeared only now).
	have := map[string]bool{}
	for i := range list.Items {
		have[list.Items[i].Namespace] = true
	}
	var created atomic.Int32
	for _, ns := range r.candidates(ctx) {
		if have[ns] {
			continue
		}
		g.Go(func() error {
			if err := r.createIfMissing(gctx, ns); err != nil {
				failed.Add(1)
				r.Log.Error(err, "could not create managed copy", "namespace", ns)
			} else {
				created.Add(1)
			}
			return nil
		})
	}
	_ = g.Wait()
	u, f := updated.Load(), failed.Load()
	r.Log.V(1).Info("fan-out finished", "copies", len(list.Items), "updated", u, "failed", f,
		"checkedMissing", created.Load(), "contentHash", snap.Hash)
	if u == 0 && f == 0 {
		return nil
	}
	source := &corev1.Secret{}
	source.Namespace, source.Name = ref.Namespace, ref.Name
	if err := r.Cache.Get(ctx, client.ObjectKeyFromObject(source), source); err == nil {
		if f == 0 {
			r.Recorder.Eventf(source, nil, corev1.EventTypeNormal, "Propagated", "Propagate",
				"updated %d managed copies of %s to content %s", u, r.Config.SecretName, snap.Hash)
		} else {
			r.Recorder.Eventf(source, nil, corev1.EventTypeWarning, "PropagationFailed", "Propagate",
				"updated %d managed copies of %s to content %s, %d failed (retrying)", u, r.Config.SecretName, snap.Hash, f)
		}
	}
	r.Log.Info("propagated the source to managed copies", "updated", u, "failed", f, "contentHash", snap.Hash)
	if f > 0 {
		return fmt.Errorf("%d of %d managed copies could not be updated", f, u+f)
	}
	return nil
}

// snapshot is the source as the cache holds it now. Not Source.Current(): that is
// set by another handler of the same informer, which may not have run yet when this
// reconcile does, and a fan-out of the old content would be a fan-out lost. nil
// while the source is missing or invalid (the Source tracker reports that).
func (r *Reconciler) snapshot(ctx context.Context) *Snapshot {
	src := &corev1.Secret{}
	if err := r.Cache.Get(ctx, client.ObjectKey{Namespace: r.Source.Ref().Namespace, Name: r.Source.Ref().Name}, src); err != nil {
		return nil
	}
	snap, err := Validate(src)
	if err != nil {
		return nil
	}
	return snap
}

// reconcileCopy restores one namespace's copy.
func (r *Reconciler) reconcileCopy(ctx context.Context, namespace string) error {
	snap := r.snapshot(ctx)
	if snap == nil {
		return nil
	}
	log := r.Log.WithValues("namespace", namespace, "secret", r.Config.SecretName)
	ref := r.Source.Ref()
	cur := &corev1.Secret{}
	err := r.Cache.Get(ctx, client.ObjectKey{Namespace: namespace, Name: r.Config.SecretName}, cur)
	switch {
	case err == nil && !IsManaged(cur):
		return nil // the user's Secret
	case err == nil && IsCurrent(cur, ref, snap):
		return nil
	case err == nil && wrongType(cur):
		// type is immutable and this role may not delete: say so once, no retry loop.
		r.Recorder.Eventf(cur, nil, corev1.EventTypeWarning, "WrongType", "Update",
			"managed copy has type %q, want %q, which an update cannot change: delete it and it is recreated", cur.Type, corev1.SecretTypeDockerConfigJson)
		log.Info("managed copy has the wrong type; delete it to have it recreated", "type", cur.Type)
		return nil
	case err == nil:
		// Edited by hand (or missed by a fan-out): put the source's content back.
		if err := r.Client.Update(ctx, Refresh(cur, ref, snap)); err != nil {
			writesTotal.WithLabelValues("update", outcome(err)).Inc()
			return fmt.Errorf("restoring Secret %s/%s: %w", namespace, r.Config.SecretName, err)
		}
		writesTotal.WithLabelValues("update", "success").Inc()
		r.Recorder.Eventf(cur, nil, corev1.EventTypeNormal, "Restored", "Update",
			"content differed from the source %s; restored to %s", ref, snap.Hash)
		log.Info("restored an edited managed copy", "contentHash", snap.Hash)
		return nil
	case !apierrors.IsNotFound(err):
		return err
	}

	_, wanted := r.wanted.Load(namespace)
	if !wanted && !r.Config.Reconcile.ProvisionAllNamespaces {
		return nil
	}
	return r.createIfMissing(ctx, namespace)
}

// candidates are the namespaces that should hold a copy: those known to have
// wanted one, and every namespace with provisionAllNamespaces.
func (r *Reconciler) candidates(ctx context.Context) []string {
	seen := map[string]bool{}
	var out []string
	add := func(ns string) {
		if !seen[ns] {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	r.wanted.Range(func(k, _ any) bool { add(k.(string)); return true })
	if r.Config.Reconcile.ProvisionAllNamespaces {
		var list corev1.NamespaceList
		if err := r.Namespaces.List(ctx, &list); err != nil {
			r.Log.Error(err, "listing namespaces to provision")
		}
		for i := range list.Items {
			add(list.Items[i].Name)
		}
	}
	return out
}

// createIfMissing creates the copy in namespace if it has none and the namespace
// is in scope. It never updates: content is the leader's fan-out's job.
func (r *Reconciler) createIfMissing(ctx context.Context, namespace string) error {
	snap := r.snapshot(ctx)
	if snap == nil {
		return nil // the source's appearance triggers a fan-out that catches up
	}
	log := r.Log.WithValues("namespace", namespace, "secret", r.Config.SecretName)
	ref := r.Source.Ref()
	cur := &corev1.Secret{}
	err := r.Cache.Get(ctx, client.ObjectKey{Namespace: namespace, Name: r.Config.SecretName}, cur)
	if err == nil || !apierrors.IsNotFound(err) {
		return client.IgnoreNotFound(err)
	}
	in, why, err := r.inScope(ctx, namespace)
	if err != nil {
		return err
	}
	if !in {
		r.wanted.Delete(namespace)
		log.V(1).Info("not creating the managed copy", "reason", why)
		return nil
	}
	_, wanted := r.wanted.Load(namespace)
	desired := Desired(r.Config.SecretName, namespace, ref, snap)
	err = r.Client.Create(ctx, desired)
	writesTotal.WithLabelValues("create", outcome(err)).Inc()
	switch {
	case apierrors.IsAlreadyExists(err):
		return nil // the webhook or the user was faster
	case err != nil:
		return fmt.Errorf("creating Secret %s/%s: %w", namespace, r.Config.SecretName, err)
	}
	r.MarkWanted(namespace)
	if wanted {
		r.Recorder.Eventf(desired, nil, corev1.EventTypeNormal, "Restored", "Create",
			"managed copy of %s was missing; recreated", ref)
		log.Info("restored a missing managed copy", "contentHash", snap.Hash)
	} else {
		log.Info("provisioned the managed copy", "contentHash", snap.Hash)
	}
	return nil
}

func wrongType(s *corev1.Secret) bool { return s.Type != corev1.SecretTypeDockerConfigJson }

// inScope reports whether the reconciler may create the copy in namespace: not
// excluded, not opted out, and not terminating.
func (r *Reconciler) inScope(ctx context.Context, namespace string) (bool, string, error) {
	if r.Config.Excluded(namespace) {
		return false, "namespace is excluded", nil
	}
	ns := &corev1.Namespace{}
	if err := r.Namespaces.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return false, "namespace is gone", nil
		}
		return false, "", fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	return NamespaceInScope(ns, r.Config)
}

// NamespaceInScope is the decision of inScope for a Namespace object.
func NamespaceInScope(ns *corev1.Namespace, cfg *config.Config) (bool, string, error) {
	switch {
	case cfg.Excluded(ns.Name):
		return false, "namespace is excluded", nil
	case ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating:
		return false, "namespace is terminating", nil
	case ns.Labels[NamespaceOptOutLabel] == "false":
		return false, "namespace opted out", nil
	}
	return true, "", nil
}
