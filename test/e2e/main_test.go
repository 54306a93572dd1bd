// Package e2e runs the webhook against a real kube-apiserver + etcd, with the chart's
// own RBAC, config, cert-manager chain and MutatingWebhookConfiguration, the real
// binary over real TLS, and kube-controller-manager for workload controllers.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regcred-webhook/regcred-webhook/test/e2e/framework"
)

const password = "e2e-Pa55word-do-not-log"

var (
	cp      *framework.ControlPlane
	install *framework.Install
	root    string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	framework.QuietLogs()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cleanup := framework.StopAll
	framework.StopOnInterrupt("e2e", cleanup)
	defer cleanup()

	if err := setup(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup failed: %v\n", err)
		return 1
	}
	return m.Run()
}

func setup(ctx context.Context) error {
	start := time.Now()
	var err error
	if root, err = framework.RepoRoot(); err != nil {
		return err
	}
	if cp, err = framework.StartControlPlane(ctx, true); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "e2e: control plane up in %s (%s)\n", time.Since(start).Round(time.Millisecond), cp.Dir)
	bin, err := framework.BuildBinary(root, cp.Dir)
	if err != nil {
		return err
	}
	objs, err := framework.Render(root, filepath.Join(root, "test/e2e/testdata/values.yaml"))
	if err != nil {
		return err
	}
	if install, err = framework.InstallChart(ctx, cp, objs, bin); err != nil {
		return err
	}
	// The API server picks the webhook configuration up asynchronously.
	probe := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-probe"}}
	if err := cp.Client.Create(ctx, probe); err != nil {
		return err
	}
	if err := framework.Eventually(ctx, 30*time.Second, func() (bool, error) {
		p := podWith(probe.Name, harborImage)
		err := cp.Client.Create(ctx, p, client.DryRunAll)
		return err == nil && len(p.Spec.ImagePullSecrets) == 1, nil
	}); err != nil {
		return fmt.Errorf("the API server never called the webhook: %w\n%s", err, install.Webhook.Tail(20))
	}
	fmt.Fprintf(os.Stderr, "e2e: chart installed and webhook serving in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}
