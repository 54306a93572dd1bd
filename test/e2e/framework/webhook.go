package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Install is the chart installed into a ControlPlane with the webhook binary running
// as a subprocess in place of the Deployment (there are no nodes here).
type Install struct {
	CP         *ControlPlane
	Objects    []*unstructured.Unstructured
	Binary     string
	Webhook    *Process
	Port       int
	Metrics    int
	Probes     int
	CertDir    string
	CABundle   []byte
	ConfigFile string
	Kubeconfig string // impersonates the chart's ServiceAccount
}

// BuildBinary compiles the webhook into dir.
func BuildBinary(repoRoot, dir string) (string, error) {
	out := filepath.Join(dir, "regcred-webhook")
	cmd := exec.Command("go", "build", "-o", out, "-ldflags", "-X main.version=e2e", "./cmd/regcred-webhook")
	cmd.Dir = repoRoot
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the webhook binary: %w", err)
	}
	return out, nil
}

// InstallChart applies the chart's RBAC, config, source Secret and cert-manager chain,
// waits for cert-manager to issue the serving certificate, starts the webhook with
// it, and registers the chart's MutatingWebhookConfiguration pointed at it.
func InstallChart(ctx context.Context, cp *ControlPlane, objs []*unstructured.Unstructured, binary string) (*Install, error) {
	in := &Install{CP: cp, Objects: objs, Binary: binary, CertDir: filepath.Join(cp.Dir, "certs")}
	c := cp.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	parts := OfKind(objs, "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ConfigMap", "Secret", "Issuer", "Certificate")
	for _, o := range parts {
		if o.GetKind() == "Certificate" && o.GetName() == Fullname+"-serving-cert" {
			// The API server here reaches the webhook at 127.0.0.1, not through the
			// Service: the only change to the chart's certificate.
			if err := unstructured.SetNestedStringSlice(o.Object, []string{"127.0.0.1"}, "spec", "ipAddresses"); err != nil {
				return nil, err
			}
		}
	}
	if err := Apply(ctx, c, parts); err != nil {
		return nil, err
	}

	tlsSecret := &corev1.Secret{}
	if err := Eventually(ctx, 60*time.Second, func() (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: Fullname + "-tls"}, tlsSecret)
		return err == nil && len(tlsSecret.Data["tls.crt"]) > 0 && len(tlsSecret.Data["ca.crt"]) > 0, client.IgnoreNotFound(err)
	}); err != nil {
		return nil, fmt.Errorf("cert-manager did not issue %s-tls: %w", Fullname, err)
	}
	if err := WriteCert(in.CertDir, tlsSecret.Data["tls.crt"], tlsSecret.Data["tls.key"]); err != nil {
		return nil, err
	}
	in.CABundle = tlsSecret.Data["ca.crt"]

	cm := Find(objs, "ConfigMap", Fullname)
	if cm == nil {
		return nil, fmt.Errorf("the chart rendered no ConfigMap %s", Fullname)
	}
	cfg, _, _ := unstructured.NestedString(cm.Object, "data", "config.yaml")
	in.ConfigFile = filepath.Join(cp.Dir, "config.yaml")
	if err := os.WriteFile(in.ConfigFile, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	var err error
	if in.Kubeconfig, err = cp.KubeconfigAs(ServiceAccount); err != nil {
		return nil, err
	}
	for _, p := range []*int{&in.Port, &in.Metrics, &in.Probes} {
		if *p, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if err := in.StartWebhook(ctx); err != nil {
		return nil, err
	}
	if err := in.RegisterWebhook(ctx); err != nil {
		return nil, err
	}
	return in, nil
}

// WriteCert writes a serving key pair the way the kubelet updates a mounted Secret:
// the files are links into a "..data" link that is swapped to a new folder in one
// rename, so a reader never sees a new certificate with an old key.
func WriteCert(dir string, crt, key []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	version, err := os.MkdirTemp(dir, "..version-")
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"tls.key": key, "tls.crt": crt} {
		if err := os.WriteFile(filepath.Join(version, name), b, 0o600); err != nil {
			return err
		}
	}
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(version), tmpLink); err != nil {
		return err
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for _, name := range []string{"tls.crt", "tls.key"} {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				return err
			}
		}
	}
	if old != "" {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// StartWebhook starts the binary with the chart's flags and waits for /readyz.
func (in *Install) StartWebhook(ctx context.Context) error {
	p, err := in.StartReplica(ctx, "replica-1", in.Port, in.Metrics, in.Probes)
	if err != nil {
		return err
	}
	in.Webhook = p
	return nil
}

// StartReplica starts one more webhook process (a second replica of the
// Deployment) named name, on the given ports, and waits for its /readyz.
func (in *Install) StartReplica(ctx context.Context, name string, port, metrics, probes int) (*Process, error) {
	p := &Process{
		Name: "regcred-webhook " + name,
		Path: in.Binary,
		Args: []string{
			"--kubeconfig=" + in.Kubeconfig,
			"--config=" + in.ConfigFile,
			"--cert-dir=" + in.CertDir,
			"--webhook-port=" + strconv.Itoa(port),
			"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(metrics),
			"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(probes),
			"--leader-elect",
			"--zap-log-level=debug",
		},
		Env:     []string{"POD_NAMESPACE=" + Namespace, "POD_NAME=" + name},
		LogFile: filepath.Join(in.CP.Dir, "regcred-webhook-"+name+".log"),
	}
	if err := p.Start(); err != nil {
		return nil, err
	}
	err := Eventually(ctx, 30*time.Second, func() (bool, error) {
		if !p.Running() {
			return false, fmt.Errorf("regcred-webhook %s exited:\n%s", name, p.Tail(20))
		}
		code, _ := ready(probes)
		return code == http.StatusOK, nil
	})
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("regcred-webhook %s not ready: %w\n%s", name, err, p.Tail(20))
	}
	return p, nil
}

// Ready returns the status code of /readyz.
func (in *Install) Ready() (int, error) { return ready(in.Probes) }

func ready(port int) (int, error) {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/readyz")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// URL is where the API server calls the webhook.
func (in *Install) URL() string {
	return "https://127.0.0.1:" + strconv.Itoa(in.Port) + "/mutate-v1-pod"
}

// RegisterWebhook applies the chart's MutatingWebhookConfiguration with only its
// clientConfig changed: a URL instead of the Service, and the CA injected the way
// cert-manager's cainjector would.
func (in *Install) RegisterWebhook(ctx context.Context) error {
	return in.RegisterWebhookAt(ctx, in.Port)
}

// RegisterWebhookAt points the API server at the replica serving on port.
func (in *Install) RegisterWebhookAt(ctx context.Context, port int) error {
	mwc := Find(in.Objects, "MutatingWebhookConfiguration", Fullname)
	if mwc == nil {
		return fmt.Errorf("the chart rendered no MutatingWebhookConfiguration %s", Fullname)
	}
	mwc = mwc.DeepCopy()
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	for i := range hooks {
		h := hooks[i].(map[string]any)
		h["clientConfig"] = map[string]any{"url": "https://127.0.0.1:" + strconv.Itoa(port) + "/mutate-v1-pod",
			"caBundle": base64.StdEncoding.EncodeToString(in.CABundle)}
	}
	if err := unstructured.SetNestedSlice(mwc.Object, hooks, "webhooks"); err != nil {
		return err
	}
	return Apply(ctx, in.CP.Client, []*unstructured.Unstructured{mwc})
}

// ServingCert returns the leaf certificate the webhook serves right now.
func (in *Install) ServingCert() (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(in.CABundle)
	conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(in.Port), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// Stop stops the webhook process.
func (in *Install) Stop() {
	if in.Webhook != nil {
		in.Webhook.Stop()
	}
}

// Eventually polls cond every 100ms until it is true, returns an error, or timeout.
func Eventually(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond()
	})
}
