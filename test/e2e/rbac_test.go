package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regcred-webhook/regcred-webhook/test/e2e/framework"
)

// The chart's RBAC, as the webhook's ServiceAccount: the field-selected list that
// the narrow cache makes is allowed, everything wider is forbidden.
func TestChartRBACIsLeastPrivilege(t *testing.T) {
	sa, err := client.New(cp.ConfigAs(framework.ServiceAccount), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := newNamespace(t, "rbac", nil)
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-password", Namespace: ns}, StringData: map[string]string{"p": "x"}}
	if err := cp.Client.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		do      func() error
		allowed bool
	}{
		{"list regcred cluster-wide by field selector", func() error {
			return sa.List(ctx, &corev1.SecretList{}, client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", "regcred")})
		}, true},
		{"list the source by field selector", func() error {
			return sa.List(ctx, &corev1.SecretList{}, client.InNamespace(framework.Namespace),
				client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", sourceName)})
		}, true},
		{"list all Secrets", func() error { return sa.List(ctx, &corev1.SecretList{}) }, false},
		{"list Secrets in a namespace", func() error { return sa.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)) }, false},
		{"get another Secret", func() error {
			return sa.Get(ctx, client.ObjectKeyFromObject(other), &corev1.Secret{})
		}, false},
		{"delete another Secret", func() error { return sa.Delete(ctx, other.DeepCopy()) }, false},
		{"list Pods", func() error { return sa.List(ctx, &corev1.PodList{}) }, false},
		{"get a Namespace (restore checks scope)", func() error {
			return sa.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		}, true},
		{"list Namespaces", func() error { return sa.List(ctx, &corev1.NamespaceList{}) }, false},
		{"delete a managed copy (only the uninstall hook may)", func() error {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: ns}}
			return sa.Delete(ctx, s)
		}, false},
		{"list ConfigMaps", func() error { return sa.List(ctx, &corev1.ConfigMapList{}) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			switch {
			case tt.allowed && err != nil:
				t.Errorf("want allowed, got %v", err)
			case !tt.allowed && !apierrors.IsForbidden(err):
				t.Errorf("want Forbidden, got %v", err)
			}
		})
	}
}

// Issue 3: every object the chart renders, and deploy/regcred-webhook.yaml, is valid
// for a real kube-apiserver (server-side dry run, cert-manager's CRDs installed).
func TestManifestsServerSideDryRun(t *testing.T) {
	valuesDir := filepath.Join(root, "test/e2e/testdata")
	renders := map[string][]string{
		"registries, self-signed chain": {filepath.Join(valuesDir, "values.yaml")},
		"existingSecret, issuerRef":     {filepath.Join(valuesDir, "values-existing.yaml")},
		"all options on":                {filepath.Join(valuesDir, "values.yaml"), filepath.Join(valuesDir, "values-options.yaml")},
	}
	for name, files := range renders {
		t.Run(name, func(t *testing.T) {
			objs, err := framework.Render(root, files...)
			if err != nil {
				t.Fatal(err)
			}
			dryRunApply(t, objs)
		})
	}
	t.Run("deploy/regcred-webhook.yaml", func(t *testing.T) {
		objs, err := framework.ReadYAMLFile(filepath.Join(root, "deploy/regcred-webhook.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		dryRunApply(t, objs)
	})
}

// dryRunApply sends every object to the API server as a dry-run create, or a dry-run
// update when it exists already (the test install made it).
func dryRunApply(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	if len(objs) == 0 {
		t.Fatal("nothing rendered")
	}
	for _, o := range objs {
		o = o.DeepCopy()
		namespaced, err := cp.Client.IsObjectNamespaced(o)
		if err != nil {
			t.Errorf("%s %s: the API server does not know this kind: %v", o.GetKind(), o.GetName(), err)
			continue
		}
		if namespaced && o.GetNamespace() == "" {
			o.SetNamespace(framework.Namespace)
		}
		err = cp.Client.Create(ctx, o, client.DryRunAll)
		if apierrors.IsAlreadyExists(err) {
			cur := &unstructured.Unstructured{}
			cur.SetGroupVersionKind(o.GroupVersionKind())
			if err = cp.Client.Get(ctx, client.ObjectKeyFromObject(o), cur); err == nil {
				o.SetResourceVersion(cur.GetResourceVersion())
				err = cp.Client.Update(ctx, o, client.DryRunAll)
			}
		}
		if err != nil {
			t.Errorf("%s %s/%s rejected by the API server: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// The chart's ValidatingAdmissionPolicy closes what RBAC cannot: `create` on Secrets
// cannot be name-restricted, so without it the webhook's identity could create
// kube-system/regcred as a ServiceAccount token Secret and read the token.
func TestManagedSecretsPolicy(t *testing.T) {
	sa, err := client.New(cp.ConfigAs(framework.ServiceAccount), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := newNamespace(t, "policy", nil)
	managed := map[string]string{managedBy: "regcred-webhook"}
	dockercfg := map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"h":{"auth":"eDp5"}}}`)}
	tests := []struct {
		name string
		obj  *corev1.Secret
		want string // part of the denial; "" = allowed
	}{
		{name: "a service account token named regcred in kube-system", obj: &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "kube-system", Labels: managed,
				Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
			Type: corev1.SecretTypeServiceAccountToken}, want: "kubernetes.io/dockerconfigjson"},
		{name: "another name", obj: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: ns, Labels: managed},
			Type: corev1.SecretTypeDockerConfigJson, Data: dockercfg}, want: "regcred"},
		{name: "without the managed label", obj: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: ns},
			Type: corev1.SecretTypeDockerConfigJson, Data: dockercfg}, want: "managed-by"},
		{name: "the managed copy itself", obj: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: ns, Labels: managed},
			Type: corev1.SecretTypeDockerConfigJson, Data: dockercfg}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sa.Create(ctx, tt.obj.DeepCopy())
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want allowed, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want denied mentioning %q, got %v", tt.want, err)
			}
		})
	}

	// Taking over a user's Secret by adding the label is denied too.
	userNS := newNamespace(t, "policy-user", nil)
	own := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: userNS}, Type: corev1.SecretTypeDockerConfigJson, Data: dockercfg}
	if err := cp.Client.Create(ctx, own); err != nil {
		t.Fatal(err)
	}
	taken := own.DeepCopy()
	taken.Labels = managed
	if err := sa.Update(ctx, taken); err == nil || !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) {
		t.Errorf("the webhook's identity took over a user's Secret: %v", err)
	}
}
