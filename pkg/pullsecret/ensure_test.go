package pullsecret

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
)

func newEnsurer(t *testing.T, cache client.Reader, c client.Client, budget time.Duration) *Ensurer {
	t.Helper()
	cfg, err := config.Parse(nil, ref.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SourceSecret = ref
	if budget > 0 {
		cfg.EnsureTimeout.Duration = budget
	}
	src := NewSource(ref, logr.Discard())
	src.Set(sourceSecret(t, corev1.SecretTypeDockerConfigJson, build(t, "harbor.example.com")))
	return &Ensurer{Cache: cache, Client: c, Source: src, Config: cfg, Log: logr.Discard()}
}

// blockingReader is a cache that has not synced: its reads wait for the context.
type blockingReader struct{ client.Reader }

func (blockingReader) Get(ctx context.Context, _ client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestEnsureBudgetCoversTheCacheRead(t *testing.T) {
	api := fake.NewClientBuilder().Build()
	e := newEnsurer(t, blockingReader{}, api, 50*time.Millisecond)
	start := time.Now()
	res, err := e.Ensure(context.Background(), "team", false)
	if res != Failed || err == nil {
		t.Fatalf("Ensure = %s, %v; want a failure", res, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Ensure blocked %s on an unsynced cache, past its 50ms budget", d)
	}
}

func TestForgetAfterDelete(t *testing.T) {
	api := fake.NewClientBuilder().Build()
	lagging := fake.NewClientBuilder().Build() // never sees writes
	e := newEnsurer(t, lagging, api, 0)
	ctx := context.Background()
	if res, err := e.Ensure(ctx, "team", false); res != Created || err != nil {
		t.Fatalf("first Ensure = %s, %v", res, err)
	}
	if res, _ := e.Ensure(ctx, "team", false); res != Current {
		t.Fatalf("right after a create the memo answers, got %s", res)
	}
	// The copy is deleted: the watcher calls Forget, and the next Pod creates again.
	s := &corev1.Secret{}
	s.Namespace, s.Name = "team", "regcred"
	if err := api.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	e.Forget("team")
	if res, err := e.Ensure(ctx, "team", false); res != Created || err != nil {
		t.Errorf("after Forget, Ensure = %s, %v; want created", res, err)
	}
}

func TestFlightPanicIsAnError(t *testing.T) {
	api := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error { panic("boom") },
	}).Build()
	e := newEnsurer(t, fake.NewClientBuilder().Build(), api, 0)
	res, err := e.Ensure(context.Background(), "team", false)
	if res != Failed || err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("Ensure = %s, %v; want the panic as an error", res, err)
	}
}

func TestFailureAsksForARetry(t *testing.T) {
	for _, tt := range []struct {
		name      string
		err       error
		wantRetry bool
	}{
		{"API error", apierrors.NewInternalError(errors.New("etcd timeout")), true},
		{"terminating namespace", func() error {
			e := apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "regcred", errors.New("being terminated"))
			e.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause}}
			return e
		}(), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
				Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error { return tt.err },
			}).Build()
			e := newEnsurer(t, api, api, 0)
			var retried []string
			e.OnFailure = func(ns string) { retried = append(retried, ns) }
			if res, err := e.Ensure(context.Background(), "team", false); res != Failed || err == nil {
				t.Fatalf("Ensure = %s, %v", res, err)
			}
			if (len(retried) == 1) != tt.wantRetry {
				t.Errorf("retries = %v, want retry %v", retried, tt.wantRetry)
			}
		})
	}
}
