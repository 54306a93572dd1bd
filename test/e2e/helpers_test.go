package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regcred-webhook/regcred-webhook/test/e2e/framework"
)

const (
	harborImage   = "harbor.example.com/team-a/api:1.4.2"
	harborIPImage = "10.20.30.40:8443/team-a/worker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	injected      = "regcred-webhook.io/injected"
	optOut        = "regcred-webhook.io/inject"
	managedBy     = "app.kubernetes.io/managed-by"
	sourceName    = framework.Fullname + "-source"
)

var nsCounter atomic.Int32

// newNamespace creates a fresh namespace with labels.
func newNamespace(t *testing.T, prefix string, labels map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%s", prefix, nsCounter.Add(1), rand.String(4))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := cp.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return name
}

func podWith(ns string, images ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-", Namespace: ns}}
	for i, img := range images {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
	}
	return p
}

// create stores p through the API server and returns what it stored.
func create(t *testing.T, p *corev1.Pod, opts ...client.CreateOption) *corev1.Pod {
	t.Helper()
	if err := cp.Client.Create(context.Background(), p, opts...); err != nil {
		t.Fatalf("creating Pod in %s: %v", p.Namespace, err)
	}
	return p
}

func pullSecrets(p *corev1.Pod) []string {
	var out []string
	for _, r := range p.Spec.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out
}

func assertPatched(t *testing.T, p *corev1.Pod, want ...string) {
	t.Helper()
	if fmt.Sprint(pullSecrets(p)) != fmt.Sprint(want) {
		t.Errorf("Pod %s/%s imagePullSecrets = %v, want %v", p.Namespace, p.Name, pullSecrets(p), want)
	}
	if p.Annotations[injected] != "regcred" {
		t.Errorf("Pod %s/%s annotation %s = %q", p.Namespace, p.Name, injected, p.Annotations[injected])
	}
}

func assertUntouched(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if len(p.Spec.ImagePullSecrets) != 0 || p.Annotations[injected] != "" {
		t.Errorf("Pod %s/%s was mutated: imagePullSecrets %v, annotations %v", p.Namespace, p.Name, pullSecrets(p), p.Annotations)
	}
}

func getSecret(t *testing.T, ns, name string) (*corev1.Secret, error) {
	t.Helper()
	s := &corev1.Secret{}
	err := cp.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s)
	return s, err
}

func sourceSecret(t *testing.T) *corev1.Secret {
	t.Helper()
	s, err := getSecret(t, framework.Namespace, sourceName)
	if err != nil {
		t.Fatalf("source Secret: %v", err)
	}
	return s
}

// assertManagedCopy checks the copy in ns: managed label, the source's content, and
// nothing copied from the source's metadata.
func assertManagedCopy(t *testing.T, ns string) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	// The Pod is stored right after the webhook's create returned; the copy exists.
	s, err := getSecret(t, ns, "regcred")
	if err != nil {
		t.Fatalf("managed Secret in %s: %v", ns, err)
	}
	src := sourceSecret(t)
	if s.Labels[managedBy] != "regcred-webhook" {
		t.Errorf("copy labels = %v", s.Labels)
	}
	for k := range s.Labels {
		if k != managedBy {
			t.Errorf("copy has label %s (from the source?)", k)
		}
	}
	for k := range src.Annotations {
		if _, ok := s.Annotations[k]; ok {
			t.Errorf("copy has the source's annotation %s", k)
		}
	}
	if s.Type != corev1.SecretTypeDockerConfigJson || string(s.Data[corev1.DockerConfigJsonKey]) != string(src.Data[corev1.DockerConfigJsonKey]) {
		t.Errorf("copy in %s differs from the source", ns)
	}
	return s
}

// webhookCalls is controller-runtime's own count of admission requests served.
func webhookCalls(t *testing.T) int {
	t.Helper()
	return metricSum(t, install.Metrics, "controller_runtime_webhook_requests_total{", `webhook="/mutate-v1-pod"`)
}

// metricSum adds up the samples of one metric, filtered by a label substring, from
// the replica whose metrics listen on port.
func metricSum(t *testing.T, port int, prefix, label string) int {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	total := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) && strings.Contains(line, label) {
			f := strings.Fields(line)
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += int(n)
		}
	}
	return total
}

// auditEvent is the part of an audit.k8s.io/v1 Event the tests read.
type auditEvent struct {
	Verb      string                    `json:"verb"`
	Stage     string                    `json:"stage"`
	UserAgent string                    `json:"userAgent"`
	User      struct{ Username string } `json:"user"`
	ObjectRef struct {
		Resource, Namespace, Name string
	} `json:"objectRef"`
	ResponseStatus struct{ Code int } `json:"responseStatus"`
}

// secretWrites returns the API server's record of writes to Secrets named name in
// the given namespaces, by namespace.
func secretWrites(t *testing.T, verb, name string, namespaces ...string) map[string][]auditEvent {
	t.Helper()
	want := map[string]bool{}
	for _, ns := range namespaces {
		want[ns] = true
	}
	f, err := os.Open(cp.AuditLog)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	out := map[string][]auditEvent{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev auditEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Stage != "ResponseComplete" {
			continue
		}
		if ev.Verb == verb && ev.ObjectRef.Resource == "secrets" && ev.ObjectRef.Name == name && want[ev.ObjectRef.Namespace] {
			out[ev.ObjectRef.Namespace] = append(out[ev.ObjectRef.Namespace], ev)
		}
	}
	return out
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	if err := framework.Eventually(context.Background(), timeout, cond); err != nil {
		t.Fatalf("%s: %v\nwebhook log tail:\n%s", what, err, install.Webhook.Tail(15))
	}
}

func deployment(ns string, replicas int32, image string) *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}},
			},
		},
	}
}

// replicaPorts are a replica's webhook, metrics and probe ports.
type replicaPorts struct{ webhook, metrics, probes int }

// startSecondReplica starts replica-2 on free ports (it serves admissions; only the
// leader, replica-1, reconciles). The caller stops it.
func startSecondReplica(t *testing.T) (*framework.Process, replicaPorts) {
	t.Helper()
	var p replicaPorts
	for _, port := range []*int{&p.webhook, &p.metrics, &p.probes} {
		var err error
		if *port, err = framework.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	second, err := install.StartReplica(context.Background(), "replica-2", p.webhook, p.metrics, p.probes)
	if err != nil {
		t.Fatal(err)
	}
	return second, p
}
