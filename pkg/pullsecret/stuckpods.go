package pullsecret

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
	"github.com/regcred-webhook/regcred-webhook/pkg/registry"
)

// StuckAction is what to do with a Pod that may be stuck pulling.
type StuckAction int

const (
	// Leave: not stuck on our registry, or already has the Secret.
	Leave StuckAction = iota
	// Restart: delete it; its controller recreates it through the webhook.
	Restart
	// Report: stuck, but no controller would recreate it (a bare Pod).
	Report
)

// restartableOwners are controllers that recreate a deleted Pod from a template
// that the webhook then patches.
var restartableOwners = map[string]bool{"ReplicaSet": true, "StatefulSet": true, "DaemonSet": true, "Job": true}

// DecideStuck is restartStuckPods' rule: a Pod that is not being deleted, that lacks
// the managed Secret, and that has a container waiting in ErrImagePull or
// ImagePullBackOff on an image of a configured registry, is restarted when a
// controller owns it and reported otherwise. The string says why, for the Event.
func DecideStuck(pod *corev1.Pod, m *registry.Matcher, secretName string) (StuckAction, string) {
	if pod.DeletionTimestamp != nil || m == nil {
		return Leave, ""
	}
	if v, err := strconv.ParseBool(pod.Annotations[NamespaceOptOutLabel]); err == nil && !v {
		return Leave, "" // opted out: its replacement would not get the Secret either
	}
	for _, ref := range pod.Spec.ImagePullSecrets {
		if ref.Name == secretName {
			return Leave, ""
		}
	}
	images := map[string]string{}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			images[c.Name] = c.Image
		}
	}
	var stuck string
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, st := range list {
			w := st.State.Waiting
			if w == nil || (w.Reason != "ImagePullBackOff" && w.Reason != "ErrImagePull") {
				continue
			}
			if _, ok := m.Match(images[st.Name]); ok {
				stuck = fmt.Sprintf("container %s is in %s on %s without imagePullSecret %s", st.Name, w.Reason, images[st.Name], secretName)
				break
			}
		}
		if stuck != "" {
			break
		}
	}
	if stuck == "" {
		return Leave, ""
	}
	if owner := metav1.GetControllerOf(pod); owner != nil && restartableOwners[owner.Kind] {
		return Restart, stuck + "; deleted so its " + owner.Kind + " recreates it with the Secret"
	}
	return Report, stuck + "; it has no controller to recreate it: delete and recreate it to get the Secret"
}

// StuckPods deletes controller-owned Pods stuck pulling a registry image without
// the managed Secret (Pods that arrived while the webhook was down or failed open).
// At most one restart per owning controller per ownerCooldown, so a replacement
// that gets stuck again (the webhook still unreachable) is reported, not deleted in
// a loop; deletes are rate-limited cluster-wide. Opt-in: reconcile.restartStuckPods.
type StuckPods struct {
	Cache  client.Reader
	Client client.Client
	// Namespaces reads a Namespace to check it is in scope before acting.
	Namespaces client.Reader
	Source     *Source
	Ensurer    *Ensurer
	Config     *config.Config
	Recorder   events.EventRecorder
	Log        logr.Logger
	// Limiter bounds deletions cluster-wide, so a misjudgement can never empty a
	// cluster quickly. Default: one per second, bursts of five.
	Limiter *rate.Limiter

	mu    sync.Mutex
	done  map[types.UID]time.Time // owners restarted and bare Pods reported, pruned after ownerCooldown
	slots map[types.UID]time.Time // when a Pod held back by the rate limit may go
}

// ownerCooldown is how long after restarting one of a controller's Pods another of
// its Pods is only reported: long enough that a webhook which is still unreachable
// cannot make a restart loop out of it.
const ownerCooldown = 30 * time.Minute

// SetupWithManager registers the controller on the Pod cache (Pending Pods only,
// stripped to what DecideStuck reads: see CacheOptions).
func (s *StuckPods) SetupWithManager(mgr ctrl.Manager) error {
	if s.Limiter == nil {
		s.Limiter = rate.NewLimiter(rate.Every(time.Second), 5)
	}
	s.done = map[types.UID]time.Time{}
	s.slots = map[types.UID]time.Time{}
	return ctrl.NewControllerManagedBy(mgr).
		Named("stuckpods").
		For(&corev1.Pod{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(s)
}

// Reconcile decides for one Pod.
func (s *StuckPods) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	snap := s.Source.Current()
	if snap == nil || s.Config.Excluded(req.Namespace) {
		return reconcile.Result{}, nil
	}
	pod := &corev1.Pod{}
	if err := s.Cache.Get(ctx, req.NamespacedName, pod); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	action, why := DecideStuck(pod, snap.Matcher, s.Config.SecretName)
	if action == Leave {
		return reconcile.Result{}, nil
	}
	ns := &corev1.Namespace{}
	if err := s.Namespaces.Get(ctx, client.ObjectKey{Name: pod.Namespace}, ns); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if in, _, _ := NamespaceInScope(ns, s.Config); !in {
		return reconcile.Result{}, nil
	}
	var owner types.UID
	if ref := metav1.GetControllerOf(pod); ref != nil {
		owner = ref.UID
	}
	if action == Restart && s.seen(owner) {
		action, why = Report, why+"; not deleted: a Pod of the same controller was restarted less than "+
			ownerCooldown.String()+" ago (is the webhook reachable?)"
	}
	log := s.Log.WithValues("namespace", pod.Namespace, "pod", pod.Name)
	if action == Report {
		if s.seen(pod.UID) {
			return reconcile.Result{}, nil
		}
		s.mark(pod.UID)
		log.Info("pod stuck pulling without the managed Secret", "reason", why)
		s.Recorder.Eventf(pod, nil, corev1.EventTypeWarning, "MissingPullSecret", "Report", "%s", why)
		return reconcile.Result{}, nil
	}
	if wait := s.slot(pod.UID); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	// The replacement is patched by the webhook; make sure the Secret it will
	// reference exists before the old Pod goes.
	if _, err := s.Ensurer.Ensure(ctx, pod.Namespace, false); err != nil {
		log.Error(err, "managed Secret not ensured before restarting the pod")
	}
	uid, rv := pod.UID, pod.ResourceVersion
	err := s.Client.Delete(ctx, pod, client.Preconditions{UID: &uid, ResourceVersion: &rv})
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		return reconcile.Result{}, nil // gone or changed: the next event decides again
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("deleting stuck pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	s.mark(owner)
	log.Info("restarted a pod stuck pulling without the managed Secret", "reason", why)
	s.Recorder.Eventf(pod, nil, corev1.EventTypeNormal, "Restarted", "Delete", "%s", why)
	return reconcile.Result{}, nil
}

// slot returns how long the Pod must wait for the cluster-wide delete rate. Each
// Pod held back reserves its own future slot once, so a backlog drains at the
// limiter's rate with one reconcile per Pod, not a retry every second.
func (s *StuckPods) slot(uid types.UID) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if at, ok := s.slots[uid]; ok {
		if now.Before(at) {
			return at.Sub(now)
		}
		delete(s.slots, uid)
		return 0
	}
	if d := s.Limiter.Reserve().Delay(); d > 0 {
		s.slots[uid] = now.Add(d)
		return d
	}
	return 0
}

func (s *StuckPods) seen(uid types.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.done[uid]
	return ok
}

func (s *StuckPods) mark(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for u, at := range s.done {
		if now.Sub(at) > ownerCooldown {
			delete(s.done, u)
		}
	}
	s.done[uid] = now
}

// stripPod keeps what DecideStuck and the delete need: a cluster's Pending Pods
// cost a few hundred bytes each in the cache instead of their full spec.
func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			OwnerReferences: p.OwnerReferences, DeletionTimestamp: p.DeletionTimestamp,
		},
	}
	if v, ok := p.Annotations[NamespaceOptOutLabel]; ok {
		slim.Annotations = map[string]string{NamespaceOptOutLabel: v}
	}
	slim.Spec.ImagePullSecrets = p.Spec.ImagePullSecrets
	for _, c := range p.Spec.InitContainers {
		slim.Spec.InitContainers = append(slim.Spec.InitContainers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range p.Spec.Containers {
		slim.Spec.Containers = append(slim.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	slimStatus := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		var out []corev1.ContainerStatus
		for _, st := range in {
			if st.State.Waiting != nil {
				out = append(out, corev1.ContainerStatus{Name: st.Name,
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: st.State.Waiting.Reason}}})
			}
		}
		return out
	}
	slim.Status.InitContainerStatuses = slimStatus(p.Status.InitContainerStatuses)
	slim.Status.ContainerStatuses = slimStatus(p.Status.ContainerStatuses)
	slim.Status.Phase = p.Status.Phase
	return slim, nil
}
