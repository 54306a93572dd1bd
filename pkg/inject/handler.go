// Package inject is the admission handler for /mutate-v1-pod: it decides whether a
// Pod pulls from a configured registry, ensures the managed Secret, and patches the
// Pod's imagePullSecrets.
package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
	"github.com/regcred-webhook/regcred-webhook/pkg/pullsecret"
)

const (
	// Path is where the handler is served.
	Path = "/mutate-v1-pod"
	// OptOutAnnotation set to "false" on a Pod leaves it untouched. The same key as a
	// namespace label makes the API server skip the namespace (chart's namespaceSelector).
	OptOutAnnotation = "regcred-webhook.io/inject"
	// InjectedAnnotation records on a patched Pod which Secret was added.
	InjectedAnnotation = "regcred-webhook.io/injected"
)

// Snapshots yields the current valid source, nil while there is none.
type Snapshots interface {
	Current() *pullsecret.Snapshot
}

// Ensurer makes the managed Secret exist in a namespace (see pullsecret.Ensurer).
type Ensurer interface {
	Ensure(ctx context.Context, namespace string, dryRun bool) (pullsecret.Result, error)
}

// Handler is the controller-runtime admission.Handler for Pod CREATE.
type Handler struct {
	Config  *config.Config
	Source  Snapshots
	Ensurer Ensurer
	Log     logr.Logger

	unmanagedLogged sync.Map // namespaces whose unmanaged Secret decision was logged
}

var _ admission.Handler = (*Handler)(nil)

// Handle never denies a Pod for the webhook's own trouble: every failure to ensure
// the Secret becomes a warning on an allowed (and still patched) response.
func (h *Handler) Handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	// controller-runtime's own recovery answers 500, which the API server treats as
	// a denial whatever the failurePolicy: a bug here must not block Pods.
	defer func() {
		if p := recover(); p != nil {
			h.Log.Error(fmt.Errorf("panic: %v", p), "admission handler failed; allowing the Pod unchanged",
				"namespace", req.Namespace, "stack", string(debug.Stack()))
			resp = admission.Allowed("internal error")
			resp.Warnings = []string{"regcred-webhook: internal error, the Pod was admitted without changes"}
		}
	}()
	if req.SubResource == "ephemeralcontainers" && req.Operation == admissionv1.Update {
		return h.ephemeral(req)
	}
	if req.Operation != admissionv1.Create {
		// imagePullSecrets are immutable after creation; nothing to do on UPDATE.
		return admission.Allowed("only CREATE is mutated")
	}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return admission.Allowed(fmt.Sprintf("not a Pod: %s %s", req.Kind.String(), req.SubResource))
	}
	if len(req.Object.Raw) == 0 {
		return admission.Errored(http.StatusBadRequest,
			fmt.Errorf("admission request %s carries no Pod in request.object", req.UID))
	}
	pod := &podView{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return admission.Errored(http.StatusBadRequest,
			fmt.Errorf("request.object is not a decodable v1 Pod: %w", err))
	}
	// Pods made by controllers have no namespace of their own yet.
	namespace := req.Namespace
	if namespace == "" {
		namespace = pod.Metadata.Namespace
	}
	log := h.Log.WithValues("namespace", namespace, "pod", podName(pod, req))

	var warnings []string
	skip := func(reason string) admission.Response {
		log.V(1).Info("pod not mutated", "reason", reason)
		r := admission.Allowed(reason)
		r.Warnings = warnings
		return r
	}

	switch {
	case h.Config.Excluded(namespace):
		return skip("namespace is excluded")
	case pod.Metadata.Annotations[corev1.MirrorPodAnnotationKey] != "":
		return skip("mirror pod")
	}
	if v, ok := pod.Metadata.Annotations[OptOutAnnotation]; ok {
		inject, err := strconv.ParseBool(v)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("regcred-webhook: annotation %s=%q is not a boolean; "+
				"use \"false\" to opt out. Ignoring it", OptOutAnnotation, v))
		} else if !inject {
			return skip("opted out by annotation")
		}
	}
	snap := h.Source.Current()
	if snap == nil {
		// Logged once by the source tracker, not per Pod.
		return skip("no registry known: the source Secret is missing or invalid")
	}
	image, key, ok := firstMatch(pod, snap)
	if !ok {
		return skip("no image from a configured registry")
	}

	secret := h.Config.SecretName
	dryRun := req.DryRun != nil && *req.DryRun
	res, err := h.Ensurer.Ensure(ctx, namespace, dryRun)
	if err != nil {
		log.Error(err, "managed Secret not ensured; patching the Pod anyway", "secret", secret)
		warnings = append(warnings, fmt.Sprintf("regcred-webhook: %v; the Pod references it anyway (the kubelet reads it at each pull attempt)", err))
	}
	if res == pullsecret.Unmanaged {
		if _, seen := h.unmanagedLogged.LoadOrStore(namespace, true); !seen {
			log.Info("a Secret with the managed name exists without the managed label: left untouched, Pods reference it",
				"secret", secret)
		}
	}

	ops := patch(pod, secret)
	log.V(1).Info("pod mutated", "image", image, "registry", key, "secret", secret, "ensure", res, "dryRun", dryRun, "ops", len(ops))
	if len(ops) == 0 {
		// Reinvocation, or the user listed the Secret and the annotation already.
		r := admission.Allowed("already references " + secret)
		r.Warnings = warnings
		return r
	}
	r := admission.Patched("imagePullSecrets: "+secret, ops...)
	r.Warnings = warnings
	return r
}

// podView is the part of a Pod the decision and the patch read. Decoding only this
// costs a fraction of a full corev1.Pod (docs/performance.md): the API server
// has validated the rest, and the webhook must not depend on fields it does not own.
type podView struct {
	Metadata struct {
		Name         string            `json:"name"`
		Namespace    string            `json:"namespace"`
		GenerateName string            `json:"generateName"`
		Annotations  map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		InitContainers      []container                   `json:"initContainers"`
		Containers          []container                   `json:"containers"`
		EphemeralContainers []container                   `json:"ephemeralContainers"`
		ImagePullSecrets    []corev1.LocalObjectReference `json:"imagePullSecrets"`
	} `json:"spec"`
}

type container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

// ephemeral answers an UPDATE of pods/ephemeralcontainers (kubectl debug). An
// ephemeral container cannot gain imagePullSecrets: it pulls with the Pod's. So a
// new one from a configured registry in a Pod without the Secret gets a warning,
// never a denial.
func (h *Handler) ephemeral(req admission.Request) admission.Response {
	snap := h.Source.Current()
	pod, old := &podView{}, &podView{}
	if snap == nil || json.Unmarshal(req.Object.Raw, pod) != nil {
		return admission.Allowed("")
	}
	_ = json.Unmarshal(req.OldObject.Raw, old) // absent: every container is new
	for _, ref := range pod.Spec.ImagePullSecrets {
		if ref.Name == h.Config.SecretName {
			return admission.Allowed("")
		}
	}
	existing := map[string]bool{}
	for _, c := range old.Spec.EphemeralContainers {
		existing[c.Name] = true
	}
	var warnings []string
	for _, c := range pod.Spec.EphemeralContainers {
		if _, ok := snap.Matcher.Match(c.Image); ok && !existing[c.Name] {
			warnings = append(warnings, fmt.Sprintf("regcred-webhook: ephemeral container %s pulls %s without imagePullSecret %s "+
				"(the Pod was created without it, and ephemeral containers cannot add one); the pull may fail", c.Name, c.Image, h.Config.SecretName))
		}
	}
	r := admission.Allowed("")
	r.Warnings = warnings
	return r
}

// firstMatch returns the first image that the kubelet would pull with the source's
// credentials, and the auths key it would use.
func firstMatch(pod *podView, snap *pullsecret.Snapshot) (image, key string, ok bool) {
	for _, list := range [][]container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if key, ok := snap.Matcher.Match(list[i].Image); ok {
				return list[i].Image, key, true
			}
		}
	}
	return "", "", false
}

// patch appends the Secret to spec.imagePullSecrets (never replacing the list, never
// a duplicate) and sets the injected annotation. Ops are built by hand: a diff of
// the re-encoded Pod would cost a full marshal per admission and could rewrite
// fields the webhook does not own.
func patch(pod *podView, secret string) []jsonpatch.JsonPatchOperation {
	var ops []jsonpatch.JsonPatchOperation
	listed := false
	for _, ref := range pod.Spec.ImagePullSecrets {
		if ref.Name == secret {
			listed = true
			break
		}
	}
	switch {
	case listed:
	case len(pod.Spec.ImagePullSecrets) == 0:
		// Absent or empty: "add" creates the member (or replaces an empty list).
		ops = append(ops, jsonpatch.NewOperation("add", "/spec/imagePullSecrets",
			[]map[string]string{{"name": secret}}))
	default:
		ops = append(ops, jsonpatch.NewOperation("add", "/spec/imagePullSecrets/-",
			map[string]string{"name": secret}))
	}
	switch {
	case pod.Metadata.Annotations[InjectedAnnotation] == secret:
	case pod.Metadata.Annotations == nil:
		ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations",
			map[string]string{InjectedAnnotation: secret}))
	default:
		ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations/"+escapePointer(InjectedAnnotation), secret))
	}
	return ops
}

// escapePointer escapes a JSON pointer reference token (RFC 6901).
func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func podName(pod *podView, req admission.Request) string {
	switch {
	case pod.Metadata.Name != "":
		return pod.Metadata.Name
	case req.Name != "":
		return req.Name
	case pod.Metadata.GenerateName != "":
		return pod.Metadata.GenerateName + "*"
	}
	return ""
}
