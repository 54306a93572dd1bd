package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
	"github.com/regcred-webhook/regcred-webhook/pkg/dockerconfig"
	"github.com/regcred-webhook/regcred-webhook/pkg/pullsecret"
)

const (
	webhookNS = "regcred-webhook"
	harbor    = "harbor.example.com"
	harborIP  = "10.20.30.40:8443"
	password  = "hunter2-Very-Secret"
)

var secretsGR = schema.GroupResource{Resource: "secrets"}

// env is one handler wired to fake API clients.
type env struct {
	h       *Handler
	api     client.Client // what the API server stores
	creates atomic.Int32
	updates atomic.Int32
	source  *pullsecret.Source
	srcData []byte
}

type envOpts struct {
	objs      []client.Object
	funcs     interceptor.Funcs
	noSource  bool
	budget    time.Duration
	staleRead bool // the cache never sees writes (an informer that lags)
	cache     client.Reader
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{}
	data, err := dockerconfig.Build(
		dockerconfig.Credential{Host: harbor, Username: "robot$ci+puller", Password: password},
		dockerconfig.Credential{Host: harborIP, Username: "robot$ci+puller", Password: password},
	)
	if err != nil {
		t.Fatal(err)
	}
	e.srcData = data
	src := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred-webhook-source", Namespace: webhookNS, ResourceVersion: "1",
			Labels:      map[string]string{"argocd.argoproj.io/instance": "platform"},
			Annotations: map[string]string{"argocd.argoproj.io/tracking-id": "platform:/Secret:x"}},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
	cfg, err := config.Parse(nil, webhookNS)
	if err != nil {
		t.Fatal(err)
	}
	if o.budget > 0 {
		cfg.EnsureTimeout.Duration = o.budget
	}
	e.source = pullsecret.NewSource(cfg.SourceSecret, logr.Discard())
	if !o.noSource {
		e.source.Set(src)
	}
	inner := o.funcs
	funcs := interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			e.creates.Add(1)
			if inner.Create != nil {
				return inner.Create(ctx, c, obj, opts...)
			}
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			e.updates.Add(1)
			if inner.Update != nil {
				return inner.Update(ctx, c, obj, opts...)
			}
			return c.Update(ctx, obj, opts...)
		},
	}
	e.api = fake.NewClientBuilder().WithObjects(o.objs...).WithInterceptorFuncs(funcs).Build()
	var cache client.Reader = e.api
	if o.staleRead {
		cache = fake.NewClientBuilder().WithObjects(o.objs...).Build()
	}
	if o.cache != nil {
		cache = o.cache
	}
	e.h = &Handler{
		Config: cfg,
		Source: e.source,
		Ensurer: &pullsecret.Ensurer{
			Cache: cache, Client: e.api,
			Source: e.source, Config: cfg, Log: logr.Discard(),
		},
		Log: logr.Discard(),
	}
	return e
}

func pod(images ...string) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-"},
	}
	for i, img := range images {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
	}
	return p
}

func request(t *testing.T, ns string, op admissionv1.Operation, p *corev1.Pod, dryRun bool) admission.Request {
	t.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "uid-1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: ns,
		Operation: op,
		Object:    runtime.RawExtension{Raw: raw},
		DryRun:    ptr.To(dryRun),
	}}
}

// applied returns the Pod the API server would store after the response's patch.
func applied(t *testing.T, req admission.Request, resp admission.Response) *corev1.Pod {
	t.Helper()
	raw := req.Object.Raw
	if len(resp.Patches) > 0 {
		ops, err := json.Marshal(resp.Patches)
		if err != nil {
			t.Fatal(err)
		}
		p, err := jsonpatchapply.DecodePatch(ops)
		if err != nil {
			t.Fatalf("patch does not decode: %v", err)
		}
		if raw, err = p.Apply(raw); err != nil {
			t.Fatalf("patch does not apply to the Pod: %v\n%s", err, ops)
		}
	}
	out := &corev1.Pod{}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func pullSecretNames(p *corev1.Pod) []string {
	var names []string
	for _, r := range p.Spec.ImagePullSecrets {
		names = append(names, r.Name)
	}
	return names
}

func TestHandle(t *testing.T) {
	managedStale := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "team-a", ResourceVersion: "7",
			Labels:      map[string]string{pullsecret.ManagedByLabel: pullsecret.ManagedByValue, "team": "a"},
			Annotations: map[string]string{pullsecret.HashAnnotation: "sha256:old"}},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"old":{"auth":"eDp5"}}}`)},
	}
	unmanaged := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "team-a", ResourceVersion: "42"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"mine":{"auth":"eDp5"}}}`)},
	}
	withAnnotations := func(p *corev1.Pod, kv ...string) *corev1.Pod {
		p.Annotations = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
		return p
	}
	withPullSecrets := func(p *corev1.Pod, names ...string) *corev1.Pod {
		p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{}
		for _, n := range names {
			p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
		return p
	}
	forbiddenTerminating := interceptor.Funcs{Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
		// What the NamespaceLifecycle admission plugin answers.
		err := apierrors.NewForbidden(secretsGR, "regcred",
			errors.New("unable to create new content in namespace team-a because it is being terminated"))
		err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
			Type: corev1.NamespaceTerminatingCause, Message: "namespace team-a is being terminated", Field: "metadata.namespace"})
		return err
	}}
	quotaForbidden := interceptor.Funcs{Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
		return apierrors.NewForbidden(secretsGR, "regcred", errors.New("exceeded quota: secrets, requested: secrets=1, used: secrets=10, limited: secrets=10"))
	}}
	alreadyExists := interceptor.Funcs{Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
		return apierrors.NewAlreadyExists(secretsGR, "regcred")
	}}
	slowCreate := interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, o ...client.CreateOption) error {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		return c.Create(ctx, obj, o...)
	}}
	serverError := interceptor.Funcs{Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
		return apierrors.NewInternalError(errors.New("etcdserver: request timed out"))
	}}

	tests := []struct {
		name        string
		opts        envOpts
		ns          string
		op          admissionv1.Operation
		pod         *corev1.Pod
		dryRun      bool
		wantPatched bool     // the stored Pod references regcred and is annotated
		wantSecrets []string // the stored Pod's imagePullSecrets, in order
		wantCreates int32
		wantUpdates int32
		wantWarning string // substring of one warning; "" = no warning
		wantSecret  bool   // a managed regcred with the source's content is stored in ns
	}{
		{name: "harbor image by domain, new namespace", ns: "team-a", pod: pod(harbor + "/team-a/api:1.2"),
			wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantSecret: true},
		{name: "harbor image by IP:port", ns: "team-a", pod: pod(harborIP + "/team-a/api@sha256:" + strings.Repeat("a", 64)),
			wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantSecret: true},
		{name: "IP without the port is another registry", ns: "team-a", pod: pod("10.20.30.40/team-a/api:1")},
		{name: "appends to the Pod's own list", ns: "team-a", pod: withPullSecrets(pod(harbor+"/a/b"), "other", "more"),
			wantPatched: true, wantSecrets: []string{"other", "more", "regcred"}, wantCreates: 1, wantSecret: true},
		{name: "empty list present", ns: "team-a", pod: withPullSecrets(pod(harbor + "/a/b")),
			wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantSecret: true},
		{name: "already listed: no duplicate", ns: "team-a", pod: withPullSecrets(pod(harbor+"/a/b"), "regcred"),
			wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantSecret: true},
		{name: "reinvocation: already listed and annotated", ns: "team-a",
			pod:         withPullSecrets(withAnnotations(pod(harbor+"/a/b"), InjectedAnnotation, "regcred"), "regcred"),
			wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantSecret: true},
		{name: "existing annotations kept", ns: "team-a", pod: withAnnotations(pod(harbor+"/a/b"), "team", "a"),
			wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantSecret: true},
		{name: "init container from harbor", ns: "team-a",
			pod: func() *corev1.Pod {
				p := pod("busybox")
				p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: harbor + "/tools/migrate:3"}}
				return p
			}(),
			wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantSecret: true},
		{name: "one of three containers from harbor", ns: "team-a", pod: pod("nginx:1.27", "quay.io/x/y", harbor+"/a/b:1"),
			wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantSecret: true},
		{name: "docker hub image untouched", ns: "team-a", pod: pod("nginx:1.27", "library/redis")},
		{name: "other registry untouched", ns: "team-a", pod: pod("quay.io/prometheus/node-exporter:v1")},
		{name: "opt-out annotation", ns: "team-a", pod: withAnnotations(pod(harbor+"/a/b"), OptOutAnnotation, "false")},
		{name: "opt-out annotation, other spelling", ns: "team-a", pod: withAnnotations(pod(harbor+"/a/b"), OptOutAnnotation, "False")},
		{name: "inject annotation true is a no-op opt-in", ns: "team-a", pod: withAnnotations(pod(harbor+"/a/b"), OptOutAnnotation, "true"),
			wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantSecret: true},
		{name: "unreadable opt-out value warns and injects", ns: "team-a", pod: withAnnotations(pod(harbor+"/a/b"), OptOutAnnotation, "nope"),
			wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantSecret: true, wantWarning: "is not a boolean"},
		{name: "kube-system excluded", ns: "kube-system", pod: pod(harbor + "/a/b")},
		{name: "own namespace excluded", ns: webhookNS, pod: pod(harbor + "/a/b")},
		{name: "mirror pod", ns: "team-a", pod: withAnnotations(pod(harbor+"/a/b"), corev1.MirrorPodAnnotationKey, "abc")},
		{name: "UPDATE is not mutated", ns: "team-a", op: admissionv1.Update, pod: pod(harbor + "/a/b")},
		{name: "no source: allowed unpatched", ns: "team-a", opts: envOpts{noSource: true}, pod: pod(harbor + "/a/b")},
		{name: "dry-run: patched, nothing written", ns: "team-a", pod: pod(harbor + "/a/b"), dryRun: true,
			wantPatched: true, wantSecrets: []string{"regcred"}},
		{name: "unmanaged regcred left alone, still referenced", ns: "team-a", opts: envOpts{objs: []client.Object{unmanaged}},
			pod: pod(harbor + "/a/b"), wantPatched: true, wantSecrets: []string{"regcred"}},
		// The leader's reconciler updates stale copies: a replica whose view of the
		// source lags must not roll a rotated copy back from the hot path.
		{name: "stale managed copy: patched, left to the reconciler", ns: "team-a", opts: envOpts{objs: []client.Object{managedStale}},
			pod: pod(harbor + "/a/b"), wantPatched: true, wantSecrets: []string{"regcred"}},
		{name: "terminating namespace: patched with a warning", ns: "team-a", opts: envOpts{funcs: forbiddenTerminating},
			pod: pod(harbor + "/a/b"), wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantWarning: "is terminating"},
		{name: "quota: patched with a warning that does not blame RBAC", ns: "team-a", opts: envOpts{funcs: quotaForbidden},
			pod: pod(harbor + "/a/b"), wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantWarning: "ResourceQuota"},
		{name: "AlreadyExists is success", ns: "team-a", opts: envOpts{funcs: alreadyExists},
			pod: pod(harbor + "/a/b"), wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1},
		{name: "API error: patched with a warning", ns: "team-a", opts: envOpts{funcs: serverError},
			pod: pod(harbor + "/a/b"), wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantWarning: "could not create Secret team-a/regcred"},
		{name: "slow API past the budget: patched with a warning", ns: "team-a", opts: envOpts{funcs: slowCreate, budget: 30 * time.Millisecond},
			pod: pod(harbor + "/a/b"), wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantWarning: "longer than ensureTimeout"},
		{name: "namespace comes from the request", ns: "team-b",
			pod:         func() *corev1.Pod { p := pod(harbor + "/a/b"); p.Namespace = ""; return p }(),
			wantPatched: true, wantSecrets: []string{"regcred"}, wantCreates: 1, wantSecret: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			op := tt.op
			if op == "" {
				op = admissionv1.Create
			}
			req := request(t, tt.ns, op, tt.pod, tt.dryRun)
			resp := e.h.Handle(context.Background(), req)
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			got := applied(t, req, resp)
			if tt.wantPatched {
				if fmt.Sprint(pullSecretNames(got)) != fmt.Sprint(tt.wantSecrets) {
					t.Errorf("imagePullSecrets = %v, want %v", pullSecretNames(got), tt.wantSecrets)
				}
				if got.Annotations[InjectedAnnotation] != "regcred" {
					t.Errorf("annotation %s = %q", InjectedAnnotation, got.Annotations[InjectedAnnotation])
				}
				for k, v := range tt.pod.Annotations {
					if k != InjectedAnnotation && got.Annotations[k] != v {
						t.Errorf("annotation %s lost", k)
					}
				}
			} else if len(resp.Patches) != 0 {
				t.Errorf("want no patch, got %v", resp.Patches)
			}
			// Let a write that outlived its admission finish before counting.
			if tt.opts.budget > 0 {
				time.Sleep(400 * time.Millisecond)
			}
			if c := e.creates.Load(); c != tt.wantCreates {
				t.Errorf("creates = %d, want %d", c, tt.wantCreates)
			}
			if u := e.updates.Load(); u != tt.wantUpdates {
				t.Errorf("updates = %d, want %d", u, tt.wantUpdates)
			}
			assertWarning(t, resp.Warnings, tt.wantWarning)
			if tt.wantSecret {
				assertManagedCopy(t, e, tt.ns)
			}
		})
	}
}

func assertWarning(t *testing.T, warnings []string, want string) {
	t.Helper()
	if want == "" {
		if len(warnings) > 0 {
			t.Errorf("unexpected warnings %q", warnings)
		}
		return
	}
	for _, w := range warnings {
		if strings.Contains(w, want) {
			if strings.Contains(w, password) {
				t.Errorf("warning leaks the password: %q", w)
			}
			return
		}
	}
	t.Errorf("warnings %q do not contain %q", warnings, want)
}

func assertManagedCopy(t *testing.T, e *env, ns string) {
	t.Helper()
	s := &corev1.Secret{}
	if err := e.api.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "regcred"}, s); err != nil {
		t.Fatalf("managed Secret not stored: %v", err)
	}
	if s.Type != corev1.SecretTypeDockerConfigJson {
		t.Errorf("type = %s", s.Type)
	}
	if string(s.Data[corev1.DockerConfigJsonKey]) != string(e.srcData) {
		t.Errorf("content differs from the source")
	}
	if s.Labels[pullsecret.ManagedByLabel] != pullsecret.ManagedByValue {
		t.Errorf("labels = %v", s.Labels)
	}
	for k := range s.Labels {
		if strings.HasPrefix(k, "argocd") {
			t.Errorf("label %s copied from the source", k)
		}
	}
	for k := range s.Annotations {
		if strings.HasPrefix(k, "argocd") {
			t.Errorf("annotation %s copied from the source", k)
		}
	}
	if s.Annotations[pullsecret.HashAnnotation] != dockerconfig.Hash(e.srcData) {
		t.Errorf("hash annotation = %q", s.Annotations[pullsecret.HashAnnotation])
	}
}

func TestUnmanagedSecretKeepsResourceVersion(t *testing.T) {
	unmanaged := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "team-a"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"mine":{"auth":"eDp5"}}}`)},
	}
	e := newEnv(t, envOpts{objs: []client.Object{unmanaged}})
	before := &corev1.Secret{}
	if err := e.api.Get(context.Background(), client.ObjectKeyFromObject(unmanaged), before); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		resp := e.h.Handle(context.Background(), request(t, "team-a", admissionv1.Create, pod(harbor+"/a/b"), false))
		if len(resp.Patches) == 0 {
			t.Fatal("the Pod must still reference the user's regcred")
		}
	}
	after := &corev1.Secret{}
	if err := e.api.Get(context.Background(), client.ObjectKeyFromObject(unmanaged), after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion || string(after.Data[corev1.DockerConfigJsonKey]) != `{"auths":{"mine":{"auth":"eDp5"}}}` {
		t.Errorf("unmanaged Secret changed: rv %s -> %s", before.ResourceVersion, after.ResourceVersion)
	}
	if e.creates.Load()+e.updates.Load() != 0 {
		t.Errorf("writes = %d creates, %d updates; want none", e.creates.Load(), e.updates.Load())
	}
}

func TestConcurrentAdmissionsCreateOnce(t *testing.T) {
	// The create takes a while, as on a busy API server, so the 50 admissions overlap.
	slow := interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, o ...client.CreateOption) error {
		time.Sleep(50 * time.Millisecond)
		return c.Create(ctx, obj, o...)
	}}
	// staleRead: the cache does not see the write, as an informer that lags; only
	// the in-flight collapse and the memo of recent writes prevent more creates.
	e := newEnv(t, envOpts{funcs: slow, staleRead: true})
	var wg sync.WaitGroup
	var patched atomic.Int32
	start := make(chan struct{})
	for range 50 {
		wg.Go(func() {
			<-start
			resp := e.h.Handle(context.Background(), request(t, "fresh", admissionv1.Create, pod(harbor+"/a/b:1"), false))
			if resp.Allowed && len(resp.Patches) == 2 && len(resp.Warnings) == 0 {
				patched.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := e.creates.Load(); got != 1 {
		t.Errorf("creates = %d, want exactly 1", got)
	}
	if got := patched.Load(); got != 50 {
		t.Errorf("patched without warning = %d, want 50", got)
	}
	// Later Pods, while the cache still lags, cost no API call either.
	e.h.Handle(context.Background(), request(t, "fresh", admissionv1.Create, pod(harbor+"/a/b:1"), false))
	if got := e.creates.Load(); got != 1 {
		t.Errorf("creates after the burst = %d, want 1", got)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, envOpts{})
	tests := []struct {
		name string
		req  admission.Request
		want string
	}{
		{name: "no object", req: admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Operation: admissionv1.Create, Namespace: "a",
			Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}}}, want: "carries no Pod"},
		{name: "not a pod", req: admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Operation: admissionv1.Create, Namespace: "a",
			Kind:   metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Object: runtime.RawExtension{Raw: []byte(`{"spec":{"containers":"oops"}}`)}}}, want: "not a decodable v1 Pod"},
		{name: "garbage", req: admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Operation: admissionv1.Create, Namespace: "a",
			Kind:   metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Object: runtime.RawExtension{Raw: []byte(`\x00{`)}}}, want: "not a decodable v1 Pod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.h.Handle(context.Background(), tt.req)
			if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
				t.Fatalf("want a 400 error response, got %+v", resp)
			}
			if !strings.Contains(resp.Result.Message, tt.want) {
				t.Errorf("message %q does not contain %q", resp.Result.Message, tt.want)
			}
		})
	}
	// A different kind is not ours to judge: allowed untouched.
	other := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u", Operation: admissionv1.Create, Namespace: "a",
		Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}}}
	if resp := e.h.Handle(context.Background(), other); !resp.Allowed || len(resp.Patches) != 0 {
		t.Errorf("a non-Pod must be allowed unpatched: %+v", resp)
	}
}

// rawRequest is a CREATE whose object is exactly raw, for shapes a typed Pod
// cannot produce (null, [] and {} survive as written).
func rawRequest(ns, raw string) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-raw", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: ns, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: []byte(raw)},
	}}
}

func TestPatchOnRawShapes(t *testing.T) {
	const img = `"image":"harbor.example.com/a/b:1"`
	tests := []struct {
		name        string
		raw         string
		wantSecrets []string
		wantAnnots  map[string]string
		wantNoPatch bool
	}{
		{name: "no fields at all", raw: `{"metadata":{"generateName":"x-"},"spec":{"containers":[{"name":"c",` + img + `}]}}`,
			wantSecrets: []string{"regcred"}, wantAnnots: map[string]string{InjectedAnnotation: "regcred"}},
		{name: "null list and null annotations", raw: `{"metadata":{"annotations":null},"spec":{"imagePullSecrets":null,"containers":[{"name":"c",` + img + `}]}}`,
			wantSecrets: []string{"regcred"}, wantAnnots: map[string]string{InjectedAnnotation: "regcred"}},
		{name: "empty list and empty annotations", raw: `{"metadata":{"annotations":{}},"spec":{"imagePullSecrets":[],"containers":[{"name":"c",` + img + `}]}}`,
			wantSecrets: []string{"regcred"}, wantAnnots: map[string]string{InjectedAnnotation: "regcred"}},
		{name: "list and annotation with slashes and tildes kept", raw: `{"metadata":{"annotations":{"a~b/c":"1"}},"spec":{"imagePullSecrets":[{"name":"own"}],"containers":[{"name":"c",` + img + `}]}}`,
			wantSecrets: []string{"own", "regcred"}, wantAnnots: map[string]string{"a~b/c": "1", InjectedAnnotation: "regcred"}},
		{name: "reinvocation: nothing to do", raw: `{"metadata":{"annotations":{"regcred-webhook.io/injected":"regcred"}},"spec":{"imagePullSecrets":[{"name":"regcred"}],"containers":[{"name":"c",` + img + `}]}}`,
			wantSecrets: []string{"regcred"}, wantAnnots: map[string]string{InjectedAnnotation: "regcred"}, wantNoPatch: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			req := rawRequest("team-a", tt.raw)
			resp := e.h.Handle(context.Background(), req)
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			if tt.wantNoPatch && len(resp.Patches) != 0 {
				t.Fatalf("want no patch on reinvocation, got %v", resp.Patches)
			}
			got := applied(t, req, resp)
			if fmt.Sprint(pullSecretNames(got)) != fmt.Sprint(tt.wantSecrets) {
				t.Errorf("imagePullSecrets = %v, want %v", pullSecretNames(got), tt.wantSecrets)
			}
			if fmt.Sprint(got.Annotations) != fmt.Sprint(tt.wantAnnots) {
				t.Errorf("annotations = %v, want %v", got.Annotations, tt.wantAnnots)
			}
		})
	}
}

func TestEphemeralContainers(t *testing.T) {
	e := newEnv(t, envOpts{})
	withEphemeral := func(pullSecrets []string, images ...string) *corev1.Pod {
		p := pod("nginx")
		for _, n := range pullSecrets {
			p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
		for i, img := range images {
			p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
				EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: fmt.Sprintf("debug%d", i), Image: img}})
		}
		return p
	}
	tests := []struct {
		name     string
		old, new *corev1.Pod
		want     string // a warning substring; "" = none
	}{
		{name: "registry image, Pod without the Secret", old: withEphemeral(nil), new: withEphemeral(nil, harbor+"/tools/debug:1"),
			want: "ephemeral container debug0 pulls harbor.example.com/tools/debug:1 without imagePullSecret regcred"},
		{name: "registry image, Pod has the Secret", old: withEphemeral([]string{"regcred"}), new: withEphemeral([]string{"regcred"}, harbor+"/tools/debug:1")},
		{name: "docker hub image", old: withEphemeral(nil), new: withEphemeral(nil, "busybox:1.36")},
		{name: "only the new container is judged", old: withEphemeral(nil, harbor+"/tools/debug:1"),
			new: withEphemeral(nil, harbor+"/tools/debug:1", "busybox")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := request(t, "team-a", admissionv1.Update, tt.new, false)
			req.SubResource = "ephemeralcontainers"
			old, _ := json.Marshal(tt.old)
			req.OldObject = runtime.RawExtension{Raw: old}
			resp := e.h.Handle(context.Background(), req)
			if !resp.Allowed || len(resp.Patches) != 0 {
				t.Fatalf("want allowed without patch, got %+v", resp)
			}
			assertWarning(t, resp.Warnings, tt.want)
		})
	}
}

type panickingEnsurer struct{}

func (panickingEnsurer) Ensure(context.Context, string, bool) (pullsecret.Result, error) {
	panic("boom")
}

// A bug must not deny Pods: controller-runtime's own recovery answers 500, which
// the API server enforces as a denial whatever the failurePolicy.
func TestPanicAllowsThePod(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.h.Ensurer = panickingEnsurer{}
	resp := e.h.Handle(context.Background(), request(t, "team-a", admissionv1.Create, pod(harbor+"/a/b"), false))
	if !resp.Allowed || len(resp.Patches) != 0 {
		t.Fatalf("want allowed and unchanged, got %+v", resp)
	}
	assertWarning(t, resp.Warnings, "internal error")
}
