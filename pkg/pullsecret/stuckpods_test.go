package pullsecret

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/regcred-webhook/regcred-webhook/pkg/registry"
)

func stuckPod(owner string, image, reason string, pullSecrets ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team", UID: "u1"}}
	if owner != "" {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: owner, Name: "o", Controller: ptr.To(true), APIVersion: "apps/v1", UID: "o1"}}
	}
	p.Spec.Containers = []corev1.Container{{Name: "app", Image: image}}
	for _, s := range pullSecrets {
		p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	if reason != "" {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}}
	}
	return p
}

func TestDecideStuck(t *testing.T) {
	m, err := registry.NewMatcher([]string{"harbor.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	const h = "harbor.example.com/team/app:1"
	notController := stuckPod("ReplicaSet", h, "ImagePullBackOff")
	notController.OwnerReferences[0].Controller = nil
	deleting := stuckPod("ReplicaSet", h, "ImagePullBackOff")
	deleting.DeletionTimestamp = &metav1.Time{}
	optedOut := stuckPod("ReplicaSet", h, "ImagePullBackOff")
	optedOut.Annotations = map[string]string{NamespaceOptOutLabel: "false"}
	initStuck := stuckPod("Job", "busybox", "")
	initStuck.Spec.InitContainers = []corev1.Container{{Name: "init", Image: h}}
	initStuck.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want StuckAction
		why  string
	}{
		{"ReplicaSet pod in ImagePullBackOff", stuckPod("ReplicaSet", h, "ImagePullBackOff"), Restart, "its ReplicaSet recreates it"},
		{"StatefulSet pod in ErrImagePull", stuckPod("StatefulSet", h, "ErrImagePull"), Restart, "StatefulSet"},
		{"DaemonSet pod", stuckPod("DaemonSet", h, "ImagePullBackOff"), Restart, "DaemonSet"},
		{"Job init container", initStuck, Restart, "container init is in ErrImagePull"},
		{"bare pod is reported", stuckPod("", h, "ImagePullBackOff"), Report, "no controller"},
		{"owner that is not a controller", notController, Report, "no controller"},
		{"unknown controller kind is reported", stuckPod("Workflow", h, "ImagePullBackOff"), Report, ""},
		{"already has the Secret", stuckPod("ReplicaSet", h, "ImagePullBackOff", "regcred"), Leave, ""},
		{"other registry", stuckPod("ReplicaSet", "quay.io/x/y", "ImagePullBackOff"), Leave, ""},
		{"running", stuckPod("ReplicaSet", h, ""), Leave, ""},
		{"other waiting reason", stuckPod("ReplicaSet", h, "ContainerCreating"), Leave, ""},
		{"being deleted", deleting, Leave, ""},
		{"opted out by annotation", optedOut, Leave, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := DecideStuck(tt.pod, m, "regcred")
			if got != tt.want || !strings.Contains(why, tt.why) {
				t.Errorf("DecideStuck = %v %q, want %v containing %q", got, why, tt.want, tt.why)
			}
		})
	}
	if got, _ := DecideStuck(stuckPod("ReplicaSet", h, "ImagePullBackOff"), nil, "regcred"); got != Leave {
		t.Error("no registry known must leave every Pod alone")
	}
}

func TestStripPodKeepsTheDecision(t *testing.T) {
	m, _ := registry.NewMatcher([]string{"harbor.example.com"})
	full := stuckPod("ReplicaSet", "harbor.example.com/team/app:1", "ImagePullBackOff")
	full.Annotations = map[string]string{"big": strings.Repeat("x", 4096), NamespaceOptOutLabel: "true"}
	full.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: strings.Repeat("y", 4096)}}
	full.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	slimObj, err := stripPod(full)
	if err != nil {
		t.Fatal(err)
	}
	slim := slimObj.(*corev1.Pod)
	if a1, _ := DecideStuck(full, m, "regcred"); a1 != Restart {
		t.Fatal("fixture must be a restart")
	}
	if a2, _ := DecideStuck(slim, m, "regcred"); a2 != Restart {
		t.Error("the stripped Pod decides differently")
	}
	if len(slim.Annotations) != 1 || slim.Annotations[NamespaceOptOutLabel] != "true" || slim.Spec.Containers[0].Env != nil || slim.ManagedFields != nil {
		t.Error("stripPod kept fields the decision does not read")
	}
	if slim.UID != full.UID || slim.ResourceVersion != full.ResourceVersion {
		t.Error("stripPod dropped what the delete precondition needs")
	}
}

func TestStuckPodsReconcile(t *testing.T) {
	const h = "harbor.example.com/team/app:1"
	first := stuckPod("ReplicaSet", h, "ImagePullBackOff")
	sameOwner := stuckPod("ReplicaSet", h, "ImagePullBackOff") // the replacement, stuck again
	sameOwner.Name, sameOwner.UID = "p1b", "u1b"
	second := stuckPod("ReplicaSet", h, "ImagePullBackOff")
	second.Name, second.UID = "p2", "u2"
	second.OwnerReferences[0].UID = "o2"
	bare := stuckPod("", h, "ImagePullBackOff")
	bare.Name, bare.UID = "bare", "u3"
	optedOutPod := stuckPod("ReplicaSet", h, "ImagePullBackOff")
	optedOutPod.Name, optedOutPod.UID, optedOutPod.Annotations = "optout", "u4", map[string]string{NamespaceOptOutLabel: "false"}
	optedOutPod.OwnerReferences[0].UID = "o4"
	inOptedOutNS := stuckPod("ReplicaSet", h, "ImagePullBackOff")
	inOptedOutNS.Namespace, inOptedOutNS.UID = "quiet", "u5"
	inOptedOutNS.OwnerReferences[0].UID = "o5"
	c := fake.NewClientBuilder().WithObjects(first, sameOwner, second, bare, optedOutPod, inOptedOutNS,
		ns("team", nil, false), ns("quiet", map[string]string{NamespaceOptOutLabel: "false"}, false)).Build()
	e := newEnsurer(t, c, c, 0)
	rec := events.NewFakeRecorder(10)
	s := &StuckPods{Cache: c, Client: c, Namespaces: c, Source: e.Source, Ensurer: e, Config: e.Config, Recorder: rec, Log: logr.Discard(),
		Limiter: rate.NewLimiter(rate.Every(time.Hour), 1), done: map[types.UID]time.Time{}, slots: map[types.UID]time.Time{}}
	ctx := context.Background()
	do := func(p *corev1.Pod) reconcile.Result {
		t.Helper()
		res, err := s.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(p)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	exists := func(p *corev1.Pod) bool {
		return c.Get(ctx, client.ObjectKeyFromObject(p), &corev1.Pod{}) == nil
	}
	do(first)
	if exists(first) {
		t.Error("the stuck ReplicaSet Pod was not deleted")
	}
	if _, err := getCopy(c, "team"); err != nil {
		t.Errorf("the Secret must exist before the Pod is restarted: %v", err)
	}
	do(sameOwner)
	if !exists(sameOwner) {
		t.Error("a second Pod of the same controller must not be restarted within the cool-down (restart loop)")
	}
	res := do(second)
	if res.RequeueAfter < 30*time.Minute || !exists(second) {
		t.Errorf("the rate limit must hold another controller's restart back until its slot (requeue %v, exists %v)", res.RequeueAfter, exists(second))
	}
	do(bare)
	do(bare)
	if !exists(bare) {
		t.Error("a bare Pod must never be deleted")
	}
	do(optedOutPod)
	do(inOptedOutNS)
	if !exists(optedOutPod) || !exists(inOptedOutNS) {
		t.Error("an opted-out Pod or namespace must be left alone")
	}
	if _, err := getCopy(c, "quiet"); err == nil {
		t.Error("no Secret may be created in an opted-out namespace")
	}
	got := ""
	for len(rec.Events) > 0 {
		got += <-rec.Events + "\n"
	}
	if strings.Count(got, "Restarted") != 1 || strings.Count(got, "MissingPullSecret") != 2 || !strings.Contains(got, "less than 30m0s ago") {
		t.Errorf("events = %q, want one Restarted and two MissingPullSecret (the bare Pod, the replacement)", got)
	}
}

func getCopy(c client.Client, namespace string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	return s, c.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: "regcred"}, s)
}
