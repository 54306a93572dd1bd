package e2e

import (
	"context"
	"os"
	"os/exec"
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

// `regcred-webhook cleanup` (the chart's post-delete hook), as the hook's own
// ServiceAccount and ClusterRole: every managed copy goes, a user's regcred stays. Runs last (file
// order): it removes the copies the other tests made.
func TestCleanupSubcommand(t *testing.T) {
	ctx := context.Background()
	managedNS := newNamespace(t, "cleanup", nil)
	assertPatched(t, create(t, podWith(managedNS, harborImage)), "regcred")
	userNS := newNamespace(t, "cleanup-user", nil)
	own := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: userNS},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"x":{"auth":"eDp5"}}}`)}}
	if err := cp.Client.Create(ctx, own); err != nil {
		t.Fatal(err)
	}
	// The running webhook would recreate copies for new Pods; none are created here.
	install.Stop()
	t.Cleanup(func() { _ = install.StartWebhook(ctx) })

	// As the chart's post-delete hook runs it: its own ServiceAccount and
	// ClusterRole (rendered with cleanupOnUninstall), no config file, only the name.
	objs, err := framework.Render(root, filepath.Join(root, "test/e2e/testdata/values.yaml"),
		filepath.Join(root, "test/e2e/testdata/values-options.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var hook []*unstructured.Unstructured
	for _, o := range framework.OfKind(objs, "ServiceAccount", "ClusterRole", "ClusterRoleBinding") {
		if o.GetAnnotations()["helm.sh/hook"] == "post-delete" {
			hook = append(hook, o)
		}
	}
	if len(hook) != 3 {
		t.Fatalf("the chart rendered %d post-delete RBAC hook objects, want 3", len(hook))
	}
	if err := framework.Apply(ctx, cp.Client, hook); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cp.KubeconfigAs("system:serviceaccount:" + framework.Namespace + ":" + framework.Fullname + "-cleanup")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(install.Binary, "cleanup", "--kubeconfig="+kubeconfig, "--secret-name=regcred")
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+framework.Namespace)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cleanup failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	var left corev1.SecretList
	if err := cp.Client.List(ctx, &left, client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", "regcred")}); err != nil {
		t.Fatal(err)
	}
	for _, s := range left.Items {
		if s.Labels[managedBy] == "regcred-webhook" {
			t.Errorf("managed copy %s/%s survived cleanup", s.Namespace, s.Name)
		}
	}
	if _, err := getSecret(t, managedNS, "regcred"); !apierrors.IsNotFound(err) {
		t.Errorf("managed copy in %s: %v", managedNS, err)
	}
	if _, err := getSecret(t, userNS, "regcred"); err != nil {
		t.Errorf("the user's regcred was deleted: %v", err)
	}
}
