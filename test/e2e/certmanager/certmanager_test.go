package certmanager

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
)

const ns = "certs"

func TestStartIssuesCAChain(t *testing.T) {
	// First, so that its cleanup runs last: everything below may log while it stops.
	log := testLogger(t)
	env := &envtest.Environment{BinaryAssetsDirectory: assetsDir(t)}
	crds, err := CRDPaths()
	if err != nil {
		t.Fatal(err)
	}
	env.CRDInstallOptions.Paths = crds
	env.CRDInstallOptions.ErrorIfPathMissing = true
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	// Registered after env.Stop, so it runs first: controllers stop before
	// the API server does.
	ctx, cancel := context.WithCancel(logr.NewContext(context.Background(), log))
	t.Cleanup(cancel)

	kube := kubernetes.NewForConfigOrDie(cfg)
	cm := cmclient.NewForConfigOrDie(cfg)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The chart's chain: selfSigned Issuer → CA Certificate → CA Issuer → serving Certificate.
	issuers := []*cmapi.Issuer{
		{ObjectMeta: metav1.ObjectMeta{Name: "selfsigned"}, Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{
			SelfSigned: &cmapi.SelfSignedIssuer{}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "ca"}, Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{
			CA: &cmapi.CAIssuer{SecretName: "x-ca"}}}},
	}
	certs := []*cmapi.Certificate{
		{ObjectMeta: metav1.ObjectMeta{Name: "x-ca"}, Spec: cmapi.CertificateSpec{
			IsCA: true, CommonName: "x-ca", SecretName: "x-ca",
			IssuerRef: cmmeta.IssuerReference{Kind: "Issuer", Name: "selfsigned"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "x-serving"}, Spec: cmapi.CertificateSpec{
			DNSNames: []string{"svc.certs.svc"}, IPAddresses: []string{"127.0.0.1"}, SecretName: "x-tls",
			IssuerRef: cmmeta.IssuerReference{Kind: "Issuer", Name: "ca"}}},
	}
	for _, iss := range issuers {
		if _, err := cm.CertmanagerV1().Issuers(ns).Create(ctx, iss, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range certs {
		if _, err := cm.CertmanagerV1().Certificates(ns).Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A ClusterIssuer too, to check the clusterissuers controller runs.
	if _, err := cm.CertmanagerV1().ClusterIssuers().Create(ctx, &cmapi.ClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "selfsigned"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	begin := time.Now()
	if err := Start(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("controllers started in %v", time.Since(begin))

	var secret *corev1.Secret
	eventually(t, 20*time.Second, "serving Certificate Ready and Secret x-tls filled", func() bool {
		c, err := cm.CertmanagerV1().Certificates(ns).Get(ctx, "x-serving", metav1.GetOptions{})
		if err != nil || !ready(c.Status.Conditions) {
			return false
		}
		secret, err = kube.CoreV1().Secrets(ns).Get(ctx, "x-tls", metav1.GetOptions{})
		return err == nil && len(secret.Data["tls.crt"]) > 0 && len(secret.Data["tls.key"]) > 0 && len(secret.Data["ca.crt"]) > 0
	})
	t.Logf("serving certificate issued %v after Start was called", time.Since(begin))

	if _, err := tls.X509KeyPair(secret.Data["tls.crt"], secret.Data["tls.key"]); err != nil {
		t.Errorf("tls.key does not match tls.crt: %v", err)
	}
	caSecret, err := kube.CoreV1().Secrets(ns).Get(ctx, "x-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(caSecret.Data["tls.crt"]) != string(secret.Data["ca.crt"]) {
		t.Errorf("x-tls ca.crt is not the CA Certificate's tls.crt")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		t.Fatal("ca.crt holds no PEM certificate")
	}
	block, _ := pem.Decode(secret.Data["tls.crt"])
	if block == nil {
		t.Fatal("tls.crt holds no PEM block")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"svc.certs.svc", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("tls.crt does not verify for %s against ca.crt: %v", name, err)
		}
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IP SANs = %v, want [127.0.0.1]", leaf.IPAddresses)
	}

	eventually(t, 5*time.Second, "ClusterIssuer Ready", func() bool {
		ci, err := cm.CertmanagerV1().ClusterIssuers().Get(ctx, "selfsigned", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range ci.Status.Conditions {
			if c.Type == cmapi.IssuerConditionReady && c.Status == cmmeta.ConditionTrue {
				return true
			}
		}
		return false
	})
}

func ready(conds []cmapi.CertificateCondition) bool {
	for _, c := range conds {
		if c.Type == cmapi.CertificateConditionReady && c.Status == cmmeta.ConditionTrue {
			return true
		}
	}
	return false
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testLogger sends cert-manager's logs (errors and V(0) info only) to t.Log,
// and drops them once the test has finished: controller goroutines may still
// log while they wind down, and t.Log after the test completes panics.
// (klog, used by client-go itself, is left alone: klog.SetLogger is not safe
// while informers run, and it prints nothing here at the default verbosity.)
func testLogger(t *testing.T) logr.Logger {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Log(prefix, args)
		}
	}, funcr.Options{})
	return log
}

// assetsDir is where kube-apiserver and etcd are: $KUBEBUILDER_ASSETS, or the
// folder hack/tools.sh builds them into.
func assetsDir(t *testing.T) string {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	out, err := exec.Command("bash", filepath.Join(root, "hack", "tools.sh"), "assets").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := strings.TrimSpace(string(out))
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			t.Fatalf("%s not built yet (run `bash hack/tools.sh control-plane`): %v", bin, err)
		}
	}
	return dir
}
