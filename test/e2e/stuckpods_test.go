package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regcred-webhook/regcred-webhook/test/e2e/framework"
)

// reconfigure installs the chart's ClusterRole and ConfigMap rendered with extra
// values files, and restarts the webhook with that config. It returns a func that
// puts the default install back.
func reconfigure(t *testing.T, extra ...string) func() {
	t.Helper()
	ctx := context.Background()
	files := append([]string{filepath.Join(root, "test/e2e/testdata/values.yaml")}, extra...)
	objs, err := framework.Render(root, files...)
	if err != nil {
		t.Fatal(err)
	}
	apply := func(objs []*unstructured.Unstructured) {
		t.Helper()
		if err := framework.Apply(ctx, cp.Client, framework.OfKind(objs, "ClusterRole", "ConfigMap")); err != nil {
			t.Fatal(err)
		}
		cm := framework.Find(objs, "ConfigMap", framework.Fullname)
		cfg, _, _ := unstructured.NestedString(cm.Object, "data", "config.yaml")
		if err := os.WriteFile(install.ConfigFile, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		install.Stop()
		if err := install.StartWebhook(ctx); err != nil {
			t.Fatal(err)
		}
	}
	install.Stop()
	apply(objs)
	return func() { apply(install.Objects) }
}

// imagePullBackOff sets what the kubelet would report for a Pod that cannot pull
// (there is no kubelet here).
func imagePullBackOff(t *testing.T, p *corev1.Pod) {
	t.Helper()
	p.Status.Phase = corev1.PodPending
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: p.Spec.Containers[0].Name, Image: p.Spec.Containers[0].Image,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "ImagePullBackOff", Message: `Back-off pulling image: 401 Unauthorized`}},
	}}
	if err := cp.Client.Status().Update(context.Background(), p); err != nil {
		t.Fatalf("setting the Pod's status: %v", err)
	}
}

// Issue 5: with reconcile.restartStuckPods, a ReplicaSet Pod created while the
// webhook was down and stuck in ImagePullBackOff is replaced by a patched Pod; a
// bare Pod in the same state is only reported.
func TestRestartStuckPods(t *testing.T) {
	ctx := context.Background()
	restore := reconfigure(t, filepath.Join(root, "test/e2e/testdata/values-stuck.yaml"))
	t.Cleanup(restore)
	ns := newNamespace(t, "stuck", nil)

	install.Stop() // Pods arrive while the webhook is down (failurePolicy Ignore)
	stuck := deploymentPod(t, ns)
	assertUntouched(t, &stuck)
	imagePullBackOff(t, &stuck)
	bare := create(t, podWith(ns, harborImage))
	imagePullBackOff(t, bare)

	if err := install.StartWebhook(ctx); err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	eventually(t, 30*time.Second, "the stuck Pod replaced by a patched one", func() (bool, error) {
		if err := cp.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": "web"}); err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.UID == stuck.UID {
				return false, nil
			}
		}
		return len(pods.Items) == 1 && len(pods.Items[0].Spec.ImagePullSecrets) == 1, nil
	})
	assertPatched(t, &pods.Items[0], "regcred")
	assertManagedCopy(t, ns)
	eventually(t, 10*time.Second, "a Restarted Event on the old Pod", func() (bool, error) {
		return hasEvent(t, ns, stuck.Name, "Restarted"), nil
	})
	eventually(t, 10*time.Second, "a MissingPullSecret Event on the bare Pod", func() (bool, error) {
		return hasEvent(t, ns, bare.Name, "MissingPullSecret"), nil
	})
	still := &corev1.Pod{}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(bare), still); err != nil || still.UID != bare.UID {
		t.Errorf("the bare Pod must not be deleted: %v", err)
	}
}

// With restartStuckPods, a stuck Pod in an opted-out namespace is never deleted
// (its replacement would not get the Secret either: a restart loop).
func TestRestartStuckPodsRespectsOptOut(t *testing.T) {
	ctx := context.Background()
	restore := reconfigure(t, filepath.Join(root, "test/e2e/testdata/values-stuck.yaml"))
	t.Cleanup(restore)
	waitForLeader(t)
	ns := newNamespace(t, "stuck-optout", map[string]string{optOut: "false"})
	stuck := deploymentPod(t, ns)
	imagePullBackOff(t, &stuck)
	never(t, 4*time.Second, "the opted-out Pod deleted", func() bool {
		p := &corev1.Pod{}
		return cp.Client.Get(ctx, client.ObjectKeyFromObject(&stuck), p) != nil
	})
	if _, err := getSecret(t, ns, "regcred"); err == nil {
		t.Error("a Secret was created in an opted-out namespace")
	}
}

// Issue 5: with reconcile.provisionAllNamespaces, every in-scope namespace gets the
// copy without a Pod, new ones as they appear; an opted-out one does not.
func TestProvisionAllNamespaces(t *testing.T) {
	restore := reconfigure(t, filepath.Join(root, "test/e2e/testdata/values-provision.yaml"))
	t.Cleanup(restore)
	waitForLeader(t)
	fresh := newNamespace(t, "provisioned", nil)
	optedOut := newNamespace(t, "provision-optout", map[string]string{optOut: "false"})
	eventually(t, 15*time.Second, "the copy in a namespace with no Pod", func() (bool, error) {
		_, err := getSecret(t, fresh, "regcred")
		return err == nil, nil
	})
	assertManagedCopy(t, fresh)
	never(t, 3*time.Second, "a copy in the opted-out namespace", func() bool {
		_, err := getSecret(t, optedOut, "regcred")
		return err == nil
	})
	if _, err := getSecret(t, "kube-system", "regcred"); err == nil {
		t.Error("kube-system is excluded but got the copy")
	}

	// Installed before its source (the usual existingSecret order): once the source
	// appears, the namespaces that came meanwhile are provisioned.
	ctx := context.Background()
	src := sourceSecret(t)
	if err := cp.Client.Delete(ctx, src); err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			recreateSource(t, src)
		}
	})
	late := newNamespace(t, "provision-late", nil)
	never(t, 2*time.Second, "a copy without a source", func() bool {
		_, err := getSecret(t, late, "regcred")
		return err == nil
	})
	recreateSource(t, src)
	restored = true
	eventually(t, 15*time.Second, "the copy once the source exists", func() (bool, error) {
		_, err := getSecret(t, late, "regcred")
		return err == nil, nil
	})
}

// never fails the test if cond becomes true within d.
func never(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Errorf("unexpected: %s", what)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func recreateSource(t *testing.T, src *corev1.Secret) {
	t.Helper()
	s := src.DeepCopy()
	s.ResourceVersion, s.UID, s.ManagedFields = "", "", nil
	if err := cp.Client.Create(context.Background(), s); err != nil {
		t.Fatalf("recreating the source: %v", err)
	}
}

// deploymentPod creates a one-replica Deployment of the Harbor image in ns and
// returns its Pod once kube-controller-manager has made it.
func deploymentPod(t *testing.T, ns string) corev1.Pod {
	t.Helper()
	ctx := context.Background()
	if err := cp.Client.Create(ctx, deployment(ns, 1, harborImage)); err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	eventually(t, 30*time.Second, "the Deployment's Pod", func() (bool, error) {
		err := cp.Client.List(ctx, &pods, client.InNamespace(ns))
		return len(pods.Items) == 1, err
	})
	return pods.Items[0]
}
