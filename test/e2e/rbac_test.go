package e2e

import (
	"context"
	"path/filepath"
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
