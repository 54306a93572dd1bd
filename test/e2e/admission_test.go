package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Scenario 1: a Harbor Pod in a new namespace gets the Secret appended to its own
// list, and the managed copy is created with the source's content.
func TestHarborPodIsPatched(t *testing.T) {
	for _, image := range []string{harborImage, harborIPImage} {
		t.Run(image, func(t *testing.T) {
			ns := newNamespace(t, "harbor", nil)
			p := podWith(ns, "busybox:1.36", image)
			p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "team-own"}}
			stored := create(t, p)
			assertPatched(t, stored, "team-own", "regcred")
			assertManagedCopy(t, ns)
		})
	}
}

// Scenario 2: what is not from the registry, or opted out, is left alone; an
// opted-out namespace and kube-system never even reach the webhook.
func TestUntouched(t *testing.T) {
	t.Run("docker hub and other registries", func(t *testing.T) {
		ns := newNamespace(t, "hub", nil)
		assertUntouched(t, create(t, podWith(ns, "nginx:1.27", "quay.io/prometheus/node-exporter:v1.8.0", "10.20.30.40/team-a/x:1")))
		if _, err := getSecret(t, ns, "regcred"); !apierrors.IsNotFound(err) {
			t.Errorf("a Secret was created for a namespace without registry Pods: %v", err)
		}
	})
	t.Run("pod opt-out annotation", func(t *testing.T) {
		ns := newNamespace(t, "optout-pod", nil)
		p := podWith(ns, harborImage)
		p.Annotations = map[string]string{optOut: "false"}
		assertUntouched(t, create(t, p))
	})
	for name, ns := range map[string]func() string{
		"namespace opt-out label": func() string {
			return newNamespace(t, "optout-ns", map[string]string{optOut: "false"})
		},
		"kube-system": func() string { return "kube-system" },
	} {
		t.Run(name, func(t *testing.T) {
			namespace := ns()
			before := webhookCalls(t)
			assertUntouched(t, create(t, podWith(namespace, harborImage)))
			if after := webhookCalls(t); after != before {
				t.Errorf("the API server called the webhook for namespace %s (%d -> %d calls): the namespaceSelector is wrong", namespace, before, after)
			}
		})
	}
}

// Scenario 3: a Deployment's Pods, created by the ReplicaSet controller with no
// namespace of their own, are all patched, with one Secret between them.
func TestDeploymentPodsArePatched(t *testing.T) {
	ns := newNamespace(t, "deploy", nil)
	if err := cp.Client.Create(context.Background(), deployment(ns, 5, harborImage)); err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	eventually(t, 60*time.Second, "5 Pods from the Deployment", func() (bool, error) {
		err := cp.Client.List(context.Background(), &pods, client.InNamespace(ns))
		return len(pods.Items) == 5, err
	})
	for i := range pods.Items {
		assertPatched(t, &pods.Items[i], "regcred")
	}
	assertManagedCopy(t, ns)
	if creates := secretWrites(t, "create", "regcred", ns)[ns]; len(creates) != 1 {
		t.Errorf("Secret creates in %s = %d, want 1", ns, len(creates))
	}
}

// Scenario 4: a server-side dry run gets the patch and writes nothing.
func TestDryRunWritesNothing(t *testing.T) {
	ns := newNamespace(t, "dryrun", nil)
	p := create(t, podWith(ns, harborImage), client.DryRunAll)
	assertPatched(t, p, "regcred")
	if _, err := getSecret(t, ns, "regcred"); !apierrors.IsNotFound(err) {
		t.Errorf("dry run created the Secret: %v", err)
	}
	if w := secretWrites(t, "create", "regcred", ns)[ns]; len(w) != 0 {
		t.Errorf("dry run wrote %d Secret(s)", len(w))
	}
	var pods corev1.PodList
	if err := cp.Client.List(context.Background(), &pods, client.InNamespace(ns)); err != nil || len(pods.Items) != 0 {
		t.Errorf("dry run stored Pods: %v %d", err, len(pods.Items))
	}
}

// Scenario 5: a user's own regcred is referenced and never modified.
func TestUnmanagedSecretUntouched(t *testing.T) {
	ns := newNamespace(t, "unmanaged", nil)
	own := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: ns, Labels: map[string]string{"owner": "team-a"}},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"harbor.example.com":{"auth":"dGVhbTpvd24="}}}`)},
	}
	if err := cp.Client.Create(context.Background(), own); err != nil {
		t.Fatal(err)
	}
	rv := own.ResourceVersion
	for range 3 {
		assertPatched(t, create(t, podWith(ns, harborImage)), "regcred")
	}
	after, err := getSecret(t, ns, "regcred")
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != rv || after.Labels[managedBy] != "" {
		t.Errorf("unmanaged Secret changed: resourceVersion %s -> %s, labels %v", rv, after.ResourceVersion, after.Labels)
	}
	if w := secretWrites(t, "update", "regcred", ns)[ns]; len(w) != 0 {
		t.Errorf("the webhook updated the user's Secret %d time(s)", len(w))
	}
}

// Scenario 6: 200 Pods at once across 20 new namespaces: all patched, exactly one
// Secret create per namespace, none failed (counted in the API server's audit log).
func TestConcurrentBurst(t *testing.T) {
	const namespaces, perNS = 20, 10
	var names []string
	for range namespaces {
		names = append(names, newNamespace(t, "burst", nil))
	}
	var wg sync.WaitGroup
	errs := make(chan error, namespaces*perNS)
	pods := make(chan *corev1.Pod, namespaces*perNS)
	for _, ns := range names {
		for range perNS {
			wg.Go(func() {
				p := podWith(ns, harborImage)
				if err := cp.Client.Create(context.Background(), p); err != nil {
					errs <- err
					return
				}
				pods <- p
			})
		}
	}
	wg.Wait()
	close(errs)
	close(pods)
	for err := range errs {
		t.Errorf("create failed: %v", err)
	}
	n := 0
	for p := range pods {
		n++
		assertPatched(t, p, "regcred")
	}
	if n != namespaces*perNS {
		t.Fatalf("stored %d Pods, want %d", n, namespaces*perNS)
	}
	writes := secretWrites(t, "create", "regcred", names...)
	for _, ns := range names {
		evs := writes[ns]
		if len(evs) != 1 {
			t.Errorf("namespace %s: %d Secret creates, want exactly 1", ns, len(evs))
		}
		for _, ev := range evs {
			if ev.ResponseStatus.Code != 201 {
				t.Errorf("namespace %s: a Secret create answered %d", ns, ev.ResponseStatus.Code)
			}
		}
		assertManagedCopy(t, ns)
	}
	t.Logf("%s", fmt.Sprint(len(writes), " namespaces, one create each"))
}

// warningCollector records the API server's Warning headers.
type warningCollector struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningCollector) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

// warningClient is an admin client that records the API server's warnings.
func warningClient(t *testing.T) (client.Client, *warningCollector) {
	t.Helper()
	w := &warningCollector{}
	cfg := rest.CopyConfig(cp.Config)
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

// SPEC: ephemeral containers arrive through a subresource and cannot gain pull
// secrets: `kubectl debug` with a registry image on a Pod without the Secret gets a
// warning, never a denial.
func TestEphemeralContainerWarning(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "debug", nil)
	p := create(t, podWith(ns, "nginx:1.27"))
	c, warnings := warningClient(t)
	p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debugger", Image: "harbor.example.com/tools/debug:1", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		ImagePullPolicy: corev1.PullIfNotPresent}}}
	if err := c.SubResource("ephemeralcontainers").Update(ctx, p); err != nil {
		t.Fatalf("adding an ephemeral container must never be denied: %v", err)
	}
	warnings.mu.Lock()
	defer warnings.mu.Unlock()
	if !strings.Contains(strings.Join(warnings.warnings, "\n"), "ephemeral container debugger pulls harbor.example.com/tools/debug:1 without imagePullSecret regcred") {
		t.Errorf("warnings = %q", warnings.warnings)
	}
}

// SPEC: an API error while ensuring the Secret never blocks the Pod; it is patched,
// the response carries a warning, and the reconciler retries. A ResourceQuota
// refuses the create here; once it is lifted the copy appears with no new Pod. The
// API server calls a second replica that does not lead: the replica that saw the
// failure retries it itself.
func TestAPIErrorWarnsAndIsRetried(t *testing.T) {
	ctx := context.Background()
	waitForLeader(t)
	second, ports := startSecondReplica(t)
	defer second.Stop()
	if err := install.RegisterWebhookAt(ctx, ports.webhook); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = install.RegisterWebhook(ctx) })
	probeNS := newNamespace(t, "probe2", nil)
	eventually(t, 30*time.Second, "the API server calling replica-2", func() (bool, error) {
		p := podWith(probeNS, "nginx")
		if err := cp.Client.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err
		}
		return metricSum(t, ports.metrics, "controller_runtime_webhook_requests_total{", `webhook="/mutate-v1-pod"`) > 0, nil
	})

	ns := newNamespace(t, "quota", nil)
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "no-secrets", Namespace: ns},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceSecrets: resource.MustParse("0")}}}
	if err := cp.Client.Create(ctx, quota); err != nil {
		t.Fatal(err)
	}
	// No quota controller runs here: publish the status it would, so that quota
	// admission enforces the limit.
	quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{corev1.ResourceSecrets: resource.MustParse("0")}}
	if err := cp.Client.Status().Update(ctx, quota); err != nil {
		t.Fatal(err)
	}
	c, warnings := warningClient(t)
	p := podWith(ns, harborImage)
	if err := c.Create(ctx, p); err != nil {
		t.Fatalf("the Pod must be admitted: %v", err)
	}
	assertPatched(t, p, "regcred")
	warnings.mu.Lock()
	got := strings.Join(warnings.warnings, "\n")
	warnings.mu.Unlock()
	if !strings.Contains(got, "regcred-webhook:") || !strings.Contains(got, "forbidden") {
		t.Errorf("warnings = %q, want the webhook's warning about the refused create", got)
	}
	if _, err := getSecret(t, ns, "regcred"); err == nil {
		t.Fatal("the quota should have refused the Secret")
	}
	if err := cp.Client.Delete(ctx, quota); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the reconciler's retry creates the copy", func() (bool, error) {
		_, err := getSecret(t, ns, "regcred")
		return err == nil, nil
	})
	assertManagedCopy(t, ns)
}
