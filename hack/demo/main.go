// Command demo shows regcred-webhook working on a local control plane: `make demo`.
// It starts kube-apiserver, etcd and kube-controller-manager, installs the chart's
// RBAC, config, source Secret and cert-manager chain, runs the webhook binary, then
// deploys a Harbor workload and a Docker Hub Pod and prints what the API server stored.
// Everything it starts is stopped when it ends, also on Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regcred-webhook/regcred-webhook/pkg/dockerconfig"
	"github.com/regcred-webhook/regcred-webhook/test/e2e/framework"
)

const (
	demoNS      = "shop"
	harborImage = "harbor.example.com/shop/checkout:2.3.1"
	hubImage    = "nginx:1.27-alpine"
)

func main() {
	framework.QuietLogs()
	os.Exit(run())
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run() int {
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var cp *framework.ControlPlane
	var in *framework.Install
	cleanup := func() {
		step("cleaning up: stopping the webhook, kube-controller-manager, kube-apiserver and etcd")
		framework.StopAll()
	}
	framework.StopOnInterrupt("demo", cleanup)
	defer cleanup()

	fail := func(what string, err error, fix string) int {
		fmt.Fprintf(os.Stderr, "demo: %s: %v\n  what to do: %s\n", what, err, fix)
		return 1
	}

	root, err := framework.RepoRoot()
	if err != nil {
		return fail("finding the repository", err, "run `make demo` from the repository")
	}
	step("starting a local control plane: etcd, kube-apiserver, kube-controller-manager, cert-manager's issuers")
	if cp, err = framework.StartControlPlane(ctx, true); err != nil {
		return fail("starting the control plane", err,
			"run `bash hack/tools.sh control-plane` to (re)build the binaries; check that no other kube-apiserver holds the ports")
	}
	step("building the webhook binary")
	bin, err := framework.BuildBinary(root, cp.Dir)
	if err != nil {
		return fail("building", err, "run `make build` and fix the compile error")
	}
	step("rendering the Helm chart for a sample Harbor at harbor.example.com (robot$shop+puller)")
	objs, err := framework.Render(root, filepath.Join(root, "hack/demo/values.yaml"))
	if err != nil {
		return fail("rendering the chart", err, "run `helm lint --strict charts/regcred-webhook -f hack/demo/values.yaml`")
	}
	step("installing the chart's RBAC, config, source Secret and certificates; starting the webhook as the chart's ServiceAccount")
	if in, err = framework.InstallChart(ctx, cp, objs, bin); err != nil {
		return fail("installing", err, "the webhook's log is printed above; `go test ./test/e2e/` runs the same setup with more detail")
	}
	c := cp.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: demoNS}}); err != nil {
		return fail("creating namespace "+demoNS, err, "see the error")
	}
	// The API server loads webhook configurations asynchronously: wait for the first call.
	if err := framework.Eventually(ctx, 30*time.Second, func() (bool, error) {
		p := demoPod("probe", harborImage)
		return c.Create(ctx, p, client.DryRunAll) == nil && len(p.Spec.ImagePullSecrets) > 0, nil
	}); err != nil {
		return fail("waiting for the API server to call the webhook", err, "see the webhook log:\n"+in.Webhook.Tail(20))
	}

	step("applying Deployment %s/checkout (3 replicas of %s) and Pod %s/web (%s)", demoNS, harborImage, demoNS, hubImage)
	if err := c.Create(ctx, checkout()); err != nil {
		return fail("creating the Deployment", err, "see the error")
	}
	if err := c.Create(ctx, demoPod("web", hubImage)); err != nil {
		return fail("creating the Pod", err, "see the error")
	}
	var pods corev1.PodList
	if err := framework.Eventually(ctx, 60*time.Second, func() (bool, error) {
		err := c.List(ctx, &pods, client.InNamespace(demoNS))
		return len(pods.Items) == 4, err
	}); err != nil {
		return fail("waiting for the Deployment's Pods", err, "kube-controller-manager's log is in "+cp.Dir)
	}

	fmt.Println()
	fmt.Printf("Pods stored by the API server in namespace %s:\n", demoNS)
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	for _, p := range pods.Items {
		var names []string
		for _, r := range p.Spec.ImagePullSecrets {
			names = append(names, r.Name)
		}
		fmt.Printf("  %-28s image=%-42s imagePullSecrets=%v\n", p.Name, p.Spec.Containers[0].Image, names)
	}
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: demoNS, Name: "regcred"}, s); err != nil {
		return fail("reading the managed Secret", err, "the webhook log says why:\n"+in.Webhook.Tail(20))
	}
	fmt.Printf("\nSecret %s/regcred created by the webhook (type %s, labels %v):\n", demoNS, s.Type, s.Labels)
	cfg, err := dockerconfig.Parse(s.Data[corev1.DockerConfigJsonKey])
	if err != nil {
		return fail("decoding the managed Secret", err, "this is a bug: please report it")
	}
	for _, host := range cfg.Hosts() {
		user, _, _ := cfg.Auths[host].Credentials()
		fmt.Printf("  auths[%q]: username=%q password=<redacted>\n", host, user)
	}
	raw, _ := json.Marshal(s.Annotations)
	fmt.Printf("  annotations: %s\n", raw)

	fmt.Printf("\nThe Harbor Pods reference regcred; the Docker Hub Pod is untouched. (%s)\n\n",
		time.Since(start).Round(100*time.Millisecond))
	if strings.Contains(string(in.Webhook.Logs()), "demo-Pa55") {
		return fail("checking the webhook log", fmt.Errorf("the log contains the password"), "this is a bug: please report it")
	}
	return 0
}

func demoPod(name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: demoNS},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

func checkout() *appsv1.Deployment {
	labels := map[string]string{"app": "checkout"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: demoNS},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "checkout", Image: harborImage}}},
			},
		},
	}
}
