package inject

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/regcred-webhook/regcred-webhook/pkg/pullsecret"
)

// typicalPod is what an Argo CD-deployed workload looks like at admission: an app
// container from Harbor, a Docker Hub sidecar, an init container from Harbor, with
// the usual labels, resources, probes and env.
func typicalPod() *corev1.Pod {
	p := pod("nginx:1.27-alpine", harbor+"/team-a/api:1.4.2", harbor+"/team-a/worker:1.4.2")
	p.Labels = map[string]string{"app.kubernetes.io/name": "api", "app.kubernetes.io/instance": "team-a-api", "pod-template-hash": "5d9f8c7b6"}
	p.Annotations = map[string]string{"prometheus.io/scrape": "true", "kubectl.kubernetes.io/default-container": "c1"}
	p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: harbor + "/team-a/migrate:1.4.2"}}
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		c.Env = []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz"}}}
	}
	return p
}

// sharedCache reads like the manager's Secret cache with UnsafeDisableDeepCopy: a
// map lookup and a shallow struct copy. The fake client instead round-trips every
// Get through JSON, which would dominate the measurement.
type sharedCache struct {
	mu      sync.RWMutex
	secrets map[client.ObjectKey]*corev1.Secret
}

func (c *sharedCache) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.secrets[key]
	if !ok {
		return apierrors.NewNotFound(secretsGR, key.Name)
	}
	*obj.(*corev1.Secret) = *s
	return nil
}

func (c *sharedCache) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("not used by the hot path")
}

// warmCache holds the copy that the warm-up admission created.
func warmCache(b *testing.B, e *env, c *sharedCache, ns string) {
	s := &corev1.Secret{}
	if err := e.api.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "regcred"}, s); err != nil {
		b.Fatal(err)
	}
	c.mu.Lock()
	c.secrets[client.ObjectKeyFromObject(s)] = s
	c.mu.Unlock()
	e.h.Ensurer.(*pullsecret.Ensurer).Forget(ns) // read the cache, not the memo
}

// BenchmarkHandle is the hot path: the copy is current in the cache, so the
// admission costs no API call.
func BenchmarkHandle(b *testing.B) {
	c := &sharedCache{secrets: map[client.ObjectKey]*corev1.Secret{}}
	e := newEnv(&testing.T{}, envOpts{cache: c})
	req := request(&testing.T{}, "team-a", admissionv1.Create, typicalPod(), false)
	ctx := context.Background()
	if resp := e.h.Handle(ctx, req); len(resp.Patches) != 2 { // creates the copy once
		b.Fatalf("warm-up not patched: %+v", resp)
	}
	warmCache(b, e, c, "team-a")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if resp := e.h.Handle(ctx, req); len(resp.Patches) != 2 {
			b.Fatal("not patched")
		}
	}
	if e.creates.Load() != 1 {
		b.Fatalf("creates = %d: the hot path wrote", e.creates.Load())
	}
}

// BenchmarkBaselineDecoderAndDiff is the textbook controller-runtime way, measured
// in the same run for a ratio: decode with admission.Decoder, mutate the Pod, and
// let PatchResponseFromRaw diff the re-encoded Pod. Same decision, same ensure.
func BenchmarkBaselineDecoderAndDiff(b *testing.B) {
	c := &sharedCache{secrets: map[client.ObjectKey]*corev1.Secret{}}
	e := newEnv(&testing.T{}, envOpts{cache: c})
	req := request(&testing.T{}, "team-a", admissionv1.Create, typicalPod(), false)
	ctx := context.Background()
	e.h.Handle(ctx, req)
	warmCache(b, e, c, "team-a")
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	dec := admission.NewDecoder(scheme)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p := &corev1.Pod{}
		if err := dec.Decode(req, p); err != nil {
			b.Fatal(err)
		}
		snap := e.source.Current()
		matched := false
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			if _, ok := snap.Matcher.Match(c.Image); ok {
				matched = true
				break
			}
		}
		if !matched {
			b.Fatal("no match")
		}
		if _, err := e.h.Ensurer.Ensure(ctx, req.Namespace, false); err != nil {
			b.Fatal(err)
		}
		p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: "regcred"})
		p.Annotations[InjectedAnnotation] = "regcred"
		raw, err := json.Marshal(p)
		if err != nil {
			b.Fatal(err)
		}
		if resp := admission.PatchResponseFromRaw(req.Object.Raw, raw); len(resp.Patches) != 2 {
			b.Fatalf("baseline patch = %v", resp.Patches)
		}
	}
}

// BenchmarkHandleSkip is a Pod the webhook leaves alone (Docker Hub only).
func BenchmarkHandleSkip(b *testing.B) {
	e := newEnv(&testing.T{}, envOpts{})
	req := request(&testing.T{}, "team-a", admissionv1.Create, pod("nginx:1.27", "redis:7", "quay.io/x/y:1"), false)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp := e.h.Handle(ctx, req); len(resp.Patches) != 0 {
			b.Fatal("patched")
		}
	}
}
