package pullsecret

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
	"github.com/regcred-webhook/regcred-webhook/pkg/dockerconfig"
)

type recon struct {
	r        *Reconciler
	c        client.Client
	updates  atomic.Int32
	creates  atomic.Int32
	recorder *events.FakeRecorder
	snap     *Snapshot
}

func newRecon(t *testing.T, provisionAll bool, failUpdateIn string, objs ...client.Object) *recon {
	t.Helper()
	cfg, err := config.Parse(nil, ref.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SourceSecret = ref
	cfg.Reconcile.ProvisionAllNamespaces = provisionAll
	src := sourceSecret(t, corev1.SecretTypeDockerConfigJson, build(t, "harbor.example.com"))
	x := &recon{recorder: events.NewFakeRecorder(100)}
	x.c = fake.NewClientBuilder().WithObjects(append(objs, src)...).WithInterceptorFuncs(interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, o ...client.UpdateOption) error {
			x.updates.Add(1)
			if obj.GetNamespace() == failUpdateIn {
				return apierrors.NewInternalError(errors.New("etcd timeout"))
			}
			return c.Update(ctx, obj, o...)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, o ...client.CreateOption) error {
			x.creates.Add(1)
			return c.Create(ctx, obj, o...)
		},
	}).Build()
	source := NewSource(ref, logr.Discard())
	source.Set(src)
	x.snap = source.Current()
	x.r = &Reconciler{Cache: x.c, Client: x.c, Namespaces: x.c, Source: source, Config: cfg,
		Ensurer: &Ensurer{Config: cfg}, Recorder: x.recorder, Log: logr.Discard()}
	return x
}

func ns(name string, labels map[string]string, terminating bool) *corev1.Namespace {
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if terminating {
		n.Status.Phase = corev1.NamespaceTerminating
	}
	return n
}

func managedCopy(namespace string, data []byte, hash string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: namespace,
			Labels:      map[string]string{ManagedByLabel: ManagedByValue},
			Annotations: map[string]string{SourceAnnotation: ref.String(), HashAnnotation: hash}},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
}

func (x *recon) get(t *testing.T, namespace string) (*corev1.Secret, error) {
	t.Helper()
	s := &corev1.Secret{}
	return s, x.c.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: "regcred"}, s)
}

func (x *recon) events() string {
	var out []string
	for {
		select {
		case e := <-x.recorder.Events:
			out = append(out, e)
		default:
			return strings.Join(out, "\n")
		}
	}
}

func TestFanOut(t *testing.T) {
	old := []byte(`{"auths":{"harbor.example.com":{"auth":"b2xkOm9sZA=="}}}`)
	current := build(t, "harbor.example.com")
	unmanaged := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "mine"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: old}}
	x := newRecon(t, false, "broken",
		managedCopy("a", old, dockerconfig.Hash(old)),
		managedCopy("b", old, dockerconfig.Hash(old)),
		managedCopy("c", current, dockerconfig.Hash(current)),
		managedCopy("broken", old, dockerconfig.Hash(old)),
		unmanaged,
	)
	err := x.r.fanOut(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 of 3") {
		t.Errorf("want the failed namespace reported for a retry, got %v", err)
	}
	if got := x.updates.Load(); got != 3 {
		t.Errorf("updates = %d, want 3 (a, b, broken; c is current, mine is not ours)", got)
	}
	for _, n := range []string{"a", "b", "c"} {
		s, _ := x.get(t, n)
		if !IsCurrent(s, ref, x.snap) {
			t.Errorf("copy in %s not current", n)
		}
	}
	if s, _ := x.get(t, "mine"); string(s.Data[corev1.DockerConfigJsonKey]) != string(old) {
		t.Error("the unmanaged Secret was changed")
	}
	if ev := x.events(); !strings.Contains(ev, "PropagationFailed") || !strings.Contains(ev, "updated 2 managed copies") {
		t.Errorf("events = %q", ev)
	}

	// Everything current now (but broken): a second pass writes nothing else.
	x.updates.Store(0)
	_ = x.r.fanOut(context.Background())
	if got := x.updates.Load(); got != 1 {
		t.Errorf("second pass updates = %d, want 1 (only the still-broken one)", got)
	}
}

func TestReconcileCopy(t *testing.T) {
	current := build(t, "harbor.example.com")
	edited := managedCopy("edited", []byte(`{"auths":{"evil":{"auth":"eDp5"}}}`), "sha256:evil")
	wrongType := managedCopy("wrongtype", current, dockerconfig.Hash(current))
	wrongType.Type = corev1.SecretTypeOpaque
	tests := []struct {
		name         string
		namespace    string
		provisionAll bool
		wanted       bool // a managed copy was seen there before
		objs         []client.Object
		wantCreate   bool
		wantUpdate   bool
		wantEvent    string
	}{
		{name: "deleted copy restored", namespace: "team", wanted: true, objs: []client.Object{ns("team", nil, false)},
			wantCreate: true, wantEvent: "Restored"},
		{name: "never had a copy: left alone", namespace: "team", objs: []client.Object{ns("team", nil, false)}},
		{name: "provisionAll creates", namespace: "team", provisionAll: true, objs: []client.Object{ns("team", nil, false)}, wantCreate: true},
		{name: "opted-out namespace", namespace: "team", wanted: true, objs: []client.Object{ns("team", map[string]string{NamespaceOptOutLabel: "false"}, false)}},
		{name: "terminating namespace", namespace: "team", wanted: true, objs: []client.Object{ns("team", nil, true)}},
		{name: "excluded namespace", namespace: "kube-system", wanted: true, provisionAll: true, objs: []client.Object{ns("kube-system", nil, false)}},
		{name: "namespace gone", namespace: "team", wanted: true},
		{name: "edited copy reverted", namespace: "edited", objs: []client.Object{ns("edited", nil, false), edited},
			wantUpdate: true, wantEvent: "Restored"},
		{name: "wrong type reported, not retried", namespace: "wrongtype", objs: []client.Object{ns("wrongtype", nil, false), wrongType},
			wantEvent: "WrongType"},
		{name: "unmanaged left alone", namespace: "mine", wanted: true, objs: []client.Object{ns("mine", nil, false),
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "mine"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newRecon(t, tt.provisionAll, "", tt.objs...)
			if tt.wanted {
				x.r.wanted.Store(tt.namespace, struct{}{})
			}
			_, err := x.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: tt.namespace, Name: "regcred"}})
			if err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			if (x.creates.Load() == 1) != tt.wantCreate || (x.updates.Load() == 1) != tt.wantUpdate {
				t.Fatalf("creates=%d updates=%d, want create=%v update=%v", x.creates.Load(), x.updates.Load(), tt.wantCreate, tt.wantUpdate)
			}
			if tt.wantCreate || tt.wantUpdate {
				if s, err := x.get(t, tt.namespace); err != nil || !IsCurrent(s, ref, x.snap) {
					t.Errorf("copy not current after reconcile: %v", err)
				}
			}
			ev := x.events()
			if (tt.wantEvent == "") != (ev == "") || !strings.Contains(ev, tt.wantEvent) {
				t.Errorf("events = %q, want %q", ev, tt.wantEvent)
			}
		})
	}
}

func TestNoSourceNoWrites(t *testing.T) {
	old := []byte(`{"auths":{"h":{"auth":"eDp5"}}}`)
	x := newRecon(t, true, "", ns("team", nil, false), managedCopy("a", old, "sha256:x"))
	// The source is gone: keep every copy as it is.
	if err := x.c.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name}}); err != nil {
		t.Fatal(err)
	}
	for _, req := range []reconcile.Request{x.r.sourceKey(), {NamespacedName: types.NamespacedName{Namespace: "team", Name: "regcred"}},
		{NamespacedName: types.NamespacedName{Namespace: "a", Name: "regcred"}}} {
		if _, err := x.r.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if x.creates.Load()+x.updates.Load() != 0 {
		t.Errorf("writes without a source: %d creates, %d updates", x.creates.Load(), x.updates.Load())
	}
}
