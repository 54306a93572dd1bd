package pullsecret

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
)

func TestCleanup(t *testing.T) {
	managed := func(ns string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: ns,
			Labels: map[string]string{ManagedByLabel: ManagedByValue}}}
	}
	objs := []client.Object{
		managed("a"), managed("b"), managed("broken"),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "mine"}},                         // the user's
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "a", Labels: managed("x").Labels}}, // not the managed name
	}
	c := fake.NewClientBuilder().WithObjects(objs...).
		WithIndex(&corev1.Secret{}, "metadata.name", func(o client.Object) []string { return []string{o.GetName()} }).
		WithInterceptorFuncs(interceptor.Funcs{Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, o ...client.DeleteOption) error {
			if obj.GetNamespace() == "broken" {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "regcred", errors.New("nope"))
			}
			return c.Delete(ctx, obj, o...)
		}}).Build()
	cfg, err := config.Parse(nil, "regcred-webhook")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Cleanup(context.Background(), c, cfg)
	if n != 2 {
		t.Errorf("deleted %d, want 2", n)
	}
	if err == nil || !apierrors.IsForbidden(errors.Unwrap(err.(interface{ Unwrap() []error }).Unwrap()[0])) {
		t.Errorf("want the Forbidden delete reported, got %v", err)
	}
	for _, key := range []client.ObjectKey{{Namespace: "mine", Name: "regcred"}, {Namespace: "a", Name: "other"}, {Namespace: "broken", Name: "regcred"}} {
		if err := c.Get(context.Background(), key, &corev1.Secret{}); err != nil {
			t.Errorf("%s must survive: %v", key, err)
		}
	}
	for _, ns := range []string{"a", "b"} {
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "regcred"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			t.Errorf("managed copy in %s not deleted: %v", ns, err)
		}
	}
}
