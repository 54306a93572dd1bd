package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regcred-webhook/regcred-webhook/pkg/dockerconfig"
	"github.com/regcred-webhook/regcred-webhook/test/e2e/framework"
)

// namespacesWithCopies makes n namespaces, each with a patched Pod and so a managed copy.
func namespacesWithCopies(t *testing.T, prefix string, n int) []string {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = newNamespace(t, prefix, nil)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, ns := range names {
		wg.Go(func() {
			p := podWith(ns, harborImage)
			if err := cp.Client.Create(context.Background(), p); err != nil {
				errs <- err
			} else if len(p.Spec.ImagePullSecrets) != 1 {
				errs <- fmt.Errorf("pod in %s not patched", ns)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return names
}

// copies returns each namespace's managed copy.
func copies(t *testing.T, names []string) map[string]*corev1.Secret {
	t.Helper()
	out := map[string]*corev1.Secret{}
	for _, ns := range names {
		s, err := getSecret(t, ns, "regcred")
		if err != nil {
			t.Fatalf("copy in %s: %v", ns, err)
		}
		out[ns] = s
	}
	return out
}

// setSource writes new robot credentials into the source Secret.
func setSource(t *testing.T, password string) string {
	t.Helper()
	data, err := dockerconfig.Build(
		dockerconfig.Credential{Host: "harbor.example.com", Username: "robot$e2e+puller", Password: password},
		dockerconfig.Credential{Host: "10.20.30.40:8443", Username: "robot$e2e+puller", Password: password},
	)
	if err != nil {
		t.Fatal(err)
	}
	src := sourceSecret(t)
	src.Data[corev1.DockerConfigJsonKey] = data
	if err := cp.Client.Update(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	return dockerconfig.Hash(data)
}

// Issue 5: a rotated source reaches every copy in 200 namespaces within 10 s, written
// by the leader only while a second replica runs; an unchanged source causes no write,
// neither on a touch of the source nor on a full resync by a new leader.
func TestRotationPropagates(t *testing.T) {
	ctx := context.Background()
	names := namespacesWithCopies(t, "rotate", 200)

	// A second replica: it serves admissions, but only the leader reconciles.
	second, _ := startSecondReplica(t)
	defer second.Stop()

	rotatedPassword := "rotated-Pa55word-do-not-log"
	t.Cleanup(func() { setSource(t, password) })
	start := time.Now()
	hash := setSource(t, rotatedPassword)
	eventually(t, 10*time.Second, "all 200 copies rotated", func() (bool, error) {
		for _, s := range copies(t, names) {
			if s.Annotations["regcred-webhook.io/content-hash"] != hash {
				return false, nil
			}
		}
		return true, nil
	})
	t.Logf("200 copies rotated in %s", time.Since(start).Round(time.Millisecond))
	src := sourceSecret(t)
	for ns, s := range copies(t, names) {
		if string(s.Data[corev1.DockerConfigJsonKey]) != string(src.Data[corev1.DockerConfigJsonKey]) {
			t.Fatalf("copy in %s differs from the rotated source", ns)
		}
	}
	writers := map[string]int{}
	for _, evs := range secretWrites(t, "update", "regcred", names...) {
		for _, ev := range evs {
			writers[ev.UserAgent]++
		}
	}
	for ua, n := range writers {
		if !strings.Contains(ua, "(replica-1)") {
			t.Errorf("%d updates by %q: only the leader (replica-1) may write", n, ua)
		}
	}
	if writers[agentOf(t, writers, "replica-1")] != 200 {
		t.Errorf("updates by the leader = %v, want 200 (one per copy)", writers)
	}
	eventually(t, 10*time.Second, "a Propagated Event on the source", func() (bool, error) {
		return hasEvent(t, framework.Namespace, sourceName, "Propagated"), nil
	})

	// Unchanged content: touching the source, and a new leader's full resync, write nothing.
	// The API server turns an update that changes nothing into a no-op that keeps the
	// resourceVersion, so count the update requests in the audit log as well.
	before := copies(t, names)
	updates := func() int {
		n := 0
		for _, evs := range secretWrites(t, "update", "regcred", names...) {
			n += len(evs)
		}
		return n
	}
	updatesBefore := updates()
	unchanged := func(when string) {
		t.Helper()
		for ns, s := range copies(t, names) {
			if s.ResourceVersion != before[ns].ResourceVersion {
				t.Errorf("%s: copy in %s rewritten with unchanged content (resourceVersion %s -> %s)",
					when, ns, before[ns].ResourceVersion, s.ResourceVersion)
			}
		}
		if n := updates() - updatesBefore; n != 0 {
			t.Errorf("%s: %d update requests for copies whose content was already current", when, n)
		}
	}
	mark := len(install.Webhook.Logs())
	src = sourceSecret(t)
	src.Annotations = map[string]string{"touched": time.Now().Format(time.RFC3339Nano)}
	if err := cp.Client.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, install.Webhook, mark, `"msg":"fan-out finished"`)
	unchanged("after a touch of the source")

	second.Stop()
	install.Stop()
	mark = len(install.Webhook.Logs())
	if err := install.StartWebhook(ctx); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, install.Webhook, mark, `"msg":"fan-out finished"`) // the new leader's full resync
	// ...and every copy's own reconcile from the initial list (200 copies, the source).
	eventually(t, 30*time.Second, "the new leader reconciled every copy", func() (bool, error) {
		done := metricSum(t, install.Metrics, "controller_runtime_reconcile_total{", `controller="pullsecret"`)
		depth := metricSum(t, install.Metrics, "workqueue_depth{", `name="pullsecret"`)
		return done >= len(names)+1 && depth == 0, nil
	})
	unchanged("after a new leader's resync")
}

// waitForLog waits for text in p's log after byte offset from.
func waitForLog(t *testing.T, p *framework.Process, from int, text string) {
	t.Helper()
	eventually(t, 30*time.Second, "log line "+text, func() (bool, error) {
		logs := p.Logs()
		return len(logs) > from && strings.Contains(string(logs[from:]), text), nil
	})
}

func agentOf(t *testing.T, writers map[string]int, replica string) string {
	t.Helper()
	for ua := range writers {
		if strings.Contains(ua, "("+replica+")") {
			return ua
		}
	}
	return ""
}

// waitForLeader waits until the running replica-1 leads (its reconciler runs then):
// the Lease names it.
func waitForLeader(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, "replica-1 elected leader", func() (bool, error) {
		lease := &coordinationv1.Lease{}
		err := cp.Client.Get(context.Background(), client.ObjectKey{Namespace: framework.Namespace, Name: "regcred-webhook.io"}, lease)
		if err != nil || lease.Spec.HolderIdentity == nil {
			return false, client.IgnoreNotFound(err)
		}
		return strings.Contains(string(install.Webhook.Logs()), *lease.Spec.HolderIdentity), nil
	})
}

func hasEvent(t *testing.T, ns, name, reason string) bool {
	t.Helper()
	var list eventsv1.EventList
	if err := cp.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			return true
		}
	}
	return false
}

// Issue 5: a deleted copy comes back, an edited copy is reverted, a user's regcred is
// never touched, and an opted-out namespace is not restored into.
func TestRestore(t *testing.T) {
	ctx := context.Background()
	waitForLeader(t)
	names := namespacesWithCopies(t, "restore", 3)
	deleted, edited, optedOut := names[0], names[1], names[2]

	s, _ := getSecret(t, deleted, "regcred")
	if err := cp.Client.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the deleted copy restored", func() (bool, error) {
		r, err := getSecret(t, deleted, "regcred")
		return err == nil && r.UID != s.UID, nil
	})
	assertManagedCopy(t, deleted)
	eventually(t, 10*time.Second, "a Restored Event", func() (bool, error) { return hasEvent(t, deleted, "regcred", "Restored"), nil })

	e, _ := getSecret(t, edited, "regcred")
	e.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{"evil.example.com":{"auth":"eDp5"}}}`)
	if err := cp.Client.Update(ctx, e); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the edited copy reverted", func() (bool, error) {
		r, err := getSecret(t, edited, "regcred")
		return err == nil && string(r.Data[corev1.DockerConfigJsonKey]) == string(sourceSecret(t).Data[corev1.DockerConfigJsonKey]), nil
	})

	ns := &corev1.Namespace{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: optedOut}, ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels[optOut] = "false"
	if err := cp.Client.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	o, _ := getSecret(t, optedOut, "regcred")
	if err := cp.Client.Delete(ctx, o); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Second, true, func(context.Context) (bool, error) {
		_, err := getSecret(t, optedOut, "regcred")
		return err == nil, nil
	})
	if err == nil {
		t.Errorf("the copy was restored into namespace %s, which opted out", optedOut)
	}
}

// Issue 5: the reconciler never touches a regcred without the managed label.
func TestReconcilerLeavesUnmanaged(t *testing.T) {
	ctx := context.Background()
	waitForLeader(t)
	ns := newNamespace(t, "user-owned", nil)
	own := &corev1.Secret{}
	own.Name, own.Namespace, own.Type = "regcred", ns, corev1.SecretTypeDockerConfigJson
	own.Data = map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"harbor.example.com":{"auth":"b3duOnVzZXI="}}}`)}
	if err := cp.Client.Create(ctx, own); err != nil {
		t.Fatal(err)
	}
	assertPatched(t, create(t, podWith(ns, harborImage)), "regcred")
	// A rotation fans out to managed copies only.
	t.Cleanup(func() { setSource(t, password) })
	mark := len(install.Webhook.Logs())
	hash := setSource(t, "another-rotation-do-not-log")
	waitForLog(t, install.Webhook, mark, hash) // the fan-out of the new content ran
	after, err := getSecret(t, ns, "regcred")
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != own.ResourceVersion {
		t.Errorf("the user's regcred was written: resourceVersion %s -> %s", own.ResourceVersion, after.ResourceVersion)
	}
}
