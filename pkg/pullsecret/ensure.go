package pullsecret

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
)

// Result is what Ensure did or found.
type Result string

const (
	// Current: the managed copy already matched the source; no API call was made.
	Current Result = "current"
	// Created: the copy was created.
	Created Result = "created"
	// Stale: a managed copy exists with other content. The hot path does not
	// update it: a replica whose view of the source lags could otherwise roll a
	// rotated copy back. The leader's reconciler brings it up to date (it is
	// triggered by the copy's own events and by every change of the source).
	Stale Result = "stale"
	// Exists: a create raced with another writer (another replica, the reconciler);
	// the Secret exists, which is what the Pod needs.
	Exists Result = "exists"
	// Unmanaged: a Secret of that name exists without the managed label. It is the
	// user's and is left exactly as it is; the Pod still references it.
	Unmanaged Result = "unmanaged"
	// DryRun: the copy is missing or stale, and nothing was written because the
	// request was a dry run.
	DryRun Result = "dry-run"
	// Failed: the Secret could not be ensured; the error says why.
	Failed Result = "error"
)

// recentTTL covers the gap between a write and the informer seeing it (usually
// milliseconds), so that the Pods that follow the first one in a new namespace do
// not create again. Short, so a copy deleted right after is soon re-checked.
const recentTTL = 5 * time.Second

// writeTimeout bounds a write that outlives the admission that started it (its
// caller gave up at the budget): it still finishes, for the Pods that come next.
const writeTimeout = 15 * time.Second

// Ensurer makes sure the managed Secret exists and is current in a namespace.
type Ensurer struct {
	// Cache reads Secrets from the manager's narrow cache (the managed name
	// cluster-wide); Client creates.
	Cache  client.Reader
	Client client.Client
	Source *Source
	Config *config.Config
	Log    logr.Logger
	// OnFailure, if set, hears of namespaces where the create failed, so the
	// reconciler can retry (Reconciler.Retry).
	OnFailure func(namespace string)

	flights singleflight.Group
	mu      sync.Mutex
	recent  map[string]recentWrite // namespace -> the content last written there
	now     func() time.Time
}

type recentWrite struct {
	hash string
	at   time.Time
}

// Ensure makes the managed Secret in namespace current with the source, within the
// configured budget. It never returns an error for a caller to deny a Pod on: every
// error is a reason for a warning, and the Pod is patched regardless, because the
// kubelet re-reads pull Secrets on each pull attempt and the reconciler retries.
//
// Concurrent calls for one namespace share one API write. A dry run writes nothing.
func (e *Ensurer) Ensure(ctx context.Context, namespace string, dryRun bool) (Result, error) {
	res, err := e.ensure(ctx, namespace, dryRun)
	ensureTotal.WithLabelValues(string(res)).Inc()
	var terminating *TerminatingError
	if res == Failed && !dryRun && e.OnFailure != nil && !errors.As(err, &terminating) {
		e.OnFailure(namespace)
	}
	return res, err
}

func (e *Ensurer) ensure(ctx context.Context, namespace string, dryRun bool) (Result, error) {
	snap := e.Source.Current()
	if snap == nil {
		return Failed, fmt.Errorf("no valid source Secret %s", e.Source.Ref())
	}
	// The budget covers the cache read too: a cache that has not synced blocks.
	ctx, cancel := context.WithTimeout(ctx, e.Config.EnsureTimeout.Duration)
	defer cancel()
	if res, err := e.fromCache(ctx, namespace, snap); res != "" {
		return res, err
	}
	if dryRun {
		return DryRun, nil
	}

	// The key holds the hash so a flight for an older source never answers for a newer one.
	ch := e.flights.DoChan(namespace+"/"+snap.Hash, func() (res any, err error) {
		// A panic here would be re-raised in a goroutine of singleflight's and
		// kill the process: turn it into an error for the callers.
		defer func() {
			if p := recover(); p != nil {
				res, err = Failed, fmt.Errorf("internal error ensuring Secret %s/%s: %v", namespace, e.Config.SecretName, p)
			}
		}()
		// Detached from the first caller: if it gives up, the create still completes
		// for the Pods queued behind it.
		wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		defer wcancel()
		return e.create(wctx, namespace, snap)
	})
	select {
	case r := <-ch:
		res, _ := r.Val.(Result)
		if r.Err != nil {
			return Failed, r.Err
		}
		return res, nil
	case <-ctx.Done():
		if ctx.Err() == context.DeadlineExceeded {
			return Failed, fmt.Errorf("ensuring Secret %s/%s took longer than ensureTimeout %s; "+
				"it is still being written in the background", namespace, e.Config.SecretName, e.Config.EnsureTimeout.Duration)
		}
		return Failed, fmt.Errorf("ensuring Secret %s/%s: the admission request was cancelled: %w", namespace, e.Config.SecretName, ctx.Err())
	}
}

// fromCache answers without an API call when it can: the copy is current, stale
// (the reconciler's job), not ours, or we created it moments ago and the informer
// has not caught up. "" means it is missing.
func (e *Ensurer) fromCache(ctx context.Context, namespace string, snap *Snapshot) (Result, error) {
	cur := &corev1.Secret{}
	err := e.Cache.Get(ctx, client.ObjectKey{Namespace: namespace, Name: e.Config.SecretName}, cur)
	switch {
	case err == nil && !IsManaged(cur):
		return Unmanaged, nil
	case err == nil && IsCurrent(cur, e.Source.Ref(), snap):
		return Current, nil
	case err == nil:
		return Stale, nil
	case !apierrors.IsNotFound(err):
		return Failed, explain(err, namespace, e.Config.SecretName, "read")
	case e.recentlyWrote(namespace, snap.Hash):
		return Current, nil
	}
	return "", nil
}

// create runs once per namespace and content at a time.
func (e *Ensurer) create(ctx context.Context, namespace string, snap *Snapshot) (Result, error) {
	// A flight that just ended may have done the work; the cache or memo says so.
	if res, err := e.fromCache(ctx, namespace, snap); res != "" {
		return res, err
	}
	err := e.Client.Create(ctx, Desired(e.Config.SecretName, namespace, e.Source.Ref(), snap))
	writesTotal.WithLabelValues("create", outcome(err)).Inc()
	switch {
	case err == nil:
		e.remember(namespace, snap.Hash)
		e.Log.Info("created managed Secret", "namespace", namespace, "secret", e.Config.SecretName, "contentHash", snap.Hash)
		return Created, nil
	case apierrors.IsAlreadyExists(err):
		// Another writer won (another replica, the reconciler, the user); the
		// Secret exists, which is what the Pod needs.
		e.Log.V(1).Info("managed Secret created concurrently elsewhere", "namespace", namespace, "secret", e.Config.SecretName)
		return Exists, nil
	default:
		return Failed, explain(err, namespace, e.Config.SecretName, "create")
	}
}

func (e *Ensurer) remember(namespace, hash string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock()
	if e.recent == nil {
		e.recent = map[string]recentWrite{}
	}
	// Prune on insert so the map stays as small as the set of namespaces written in
	// the last recentTTL.
	if len(e.recent) > 64 {
		for ns, w := range e.recent {
			if now.Sub(w.at) > recentTTL {
				delete(e.recent, ns)
			}
		}
	}
	e.recent[namespace] = recentWrite{hash: hash, at: now}
}

func (e *Ensurer) recentlyWrote(namespace, hash string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	w, ok := e.recent[namespace]
	return ok && w.hash == hash && e.clock().Sub(w.at) <= recentTTL
}

// Forget drops what Ensure remembers about namespace, so the next call trusts only
// the cache. The reconciler calls it when it sees the copy deleted.
func (e *Ensurer) Forget(namespace string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.recent, namespace)
}

func (e *Ensurer) clock() time.Time {
	if e.now != nil {
		return e.now()
	}
	return time.Now()
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "success"
	case apierrors.IsAlreadyExists(err):
		return "already-exists"
	case apierrors.IsConflict(err):
		return "conflict"
	case apierrors.IsForbidden(err):
		return "forbidden"
	default:
		return "error"
	}
}

// explain turns an API error into a warning an operator can act on.
func explain(err error, namespace, name, verb string) error {
	switch {
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return &TerminatingError{Namespace: namespace, Secret: name}
	case apierrors.IsForbidden(err):
		return fmt.Errorf("forbidden to %s Secret %s/%s (RBAC, a ResourceQuota or an admission policy): %w", verb, namespace, name, err)
	case errors.Is(err, context.DeadlineExceeded) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err):
		return fmt.Errorf("timed out trying to %s Secret %s/%s: %w", verb, namespace, name, err)
	default:
		return fmt.Errorf("could not %s Secret %s/%s: %w", verb, namespace, name, err)
	}
}

// TerminatingError: the namespace is being deleted, so no Secret can be created
// there and none needs to be (nothing to retry).
type TerminatingError struct{ Namespace, Secret string }

func (e *TerminatingError) Error() string {
	return fmt.Sprintf("namespace %s is terminating, Secret %s was not created", e.Namespace, e.Secret)
}
