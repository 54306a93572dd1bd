// Package framework runs the real parts for the end-to-end tests and `make demo`:
// kube-apiserver + etcd (envtest), kube-controller-manager, cert-manager's issuers,
// the chart's objects, and the regcred-webhook binary as a subprocess.
package framework

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/regcred-webhook/regcred-webhook/test/e2e/certmanager"
)

// ControlPlane is a kube-apiserver + etcd with an audit log, and optionally a
// kube-controller-manager.
type ControlPlane struct {
	Env       *envtest.Environment
	Config    *rest.Config // admin
	Client    client.Client
	Dir       string // scratch space, removed by Stop
	AuditLog  string
	Admin     string // admin kubeconfig path
	kcm       *Process
	cancelCM  context.CancelFunc
	repoRoot  string
	assetsDir string
	stopOnce  sync.Once
}

// auditPolicy records writes to Secrets only: enough to count the webhook's
// creates, small enough to parse.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources: [{group: "", resources: ["secrets"]}]
  verbs: [create, update, patch, delete]
- level: None
`

// RepoRoot finds the module root from the working directory.
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the regcred-webhook module")
	}
	return filepath.Dir(mod), nil
}

// Tool runs hack/tools.sh with args and returns its last output line (a path).
func Tool(repoRoot string, args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot, "hack/tools.sh")}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/tools.sh %s: %w", strings.Join(args, " "), err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// StartControlPlane builds (or reuses) the binaries and starts etcd, kube-apiserver
// with cert-manager's CRDs, and cert-manager's self-signed and CA issuers.
func StartControlPlane(ctx context.Context, withControllerManager bool) (*ControlPlane, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	if _, err := Tool(root, "control-plane"); err != nil {
		return nil, err
	}
	assets, err := Tool(root, "assets")
	if err != nil {
		return nil, err
	}
	crds, err := certmanager.CRDPaths()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "regcred-e2e-")
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Dir: dir, repoRoot: root, assetsDir: assets, AuditLog: filepath.Join(dir, "audit.log")}
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	cp.Env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDInstallOptions:     envtest.CRDInstallOptions{Paths: crds, ErrorIfPathMissing: true},
	}
	api := cp.Env.ControlPlane.GetAPIServer()
	api.Configure().
		Set("audit-policy-file", policy).
		Set("audit-log-path", cp.AuditLog).
		Set("audit-log-mode", "blocking")
	track(cp.Stop)
	cfg, err := cp.Env.Start()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	cp.Config = cfg
	if cp.Client, err = client.New(cfg, client.Options{}); err != nil {
		cp.Stop()
		return nil, err
	}
	if err := cp.writeAdminKubeconfig(); err != nil {
		cp.Stop()
		return nil, err
	}
	cmCtx, cancel := context.WithCancel(ctx)
	cp.cancelCM = cancel
	if err := certmanager.Start(cmCtx, cfg); err != nil {
		cp.Stop()
		return nil, fmt.Errorf("starting cert-manager's issuers: %w", err)
	}
	if withControllerManager {
		if err := cp.startControllerManager(); err != nil {
			cp.Stop()
			return nil, err
		}
	}
	return cp, nil
}

func (cp *ControlPlane) writeAdminKubeconfig() error {
	user, err := cp.Env.AddUser(envtest.User{Name: "e2e-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	cp.Admin = filepath.Join(cp.Dir, "admin.kubeconfig")
	return os.WriteFile(cp.Admin, kc, 0o600)
}

// KubeconfigAs writes a kubeconfig that impersonates username (e.g. the chart's
// ServiceAccount), so its requests are authorised by that identity's RBAC alone.
func (cp *ControlPlane) KubeconfigAs(username string) (string, error) {
	kc, err := clientcmd.LoadFromFile(cp.Admin)
	if err != nil {
		return "", err
	}
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = username
	}
	path := filepath.Join(cp.Dir, strings.NewReplacer(":", "_", "/", "_").Replace(username)+".kubeconfig")
	return path, clientcmd.WriteToFile(*kc, path)
}

// ConfigAs is a rest.Config that impersonates username.
func (cp *ControlPlane) ConfigAs(username string) *rest.Config {
	c := rest.CopyConfig(cp.Config)
	c.Impersonate = rest.ImpersonationConfig{UserName: username}
	return c
}

func (cp *ControlPlane) startControllerManager() error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	cp.kcm = &Process{
		Name: "kube-controller-manager",
		Path: filepath.Join(cp.assetsDir, "kube-controller-manager"),
		Args: []string{
			"--kubeconfig=" + cp.Admin,
			"--controllers=deployment-controller,replicaset-controller,namespace-controller,garbage-collector-controller",
			"--leader-elect=false",
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port),
			"--concurrent-replicaset-syncs=5",
		},
		LogFile: filepath.Join(cp.Dir, "kube-controller-manager.log"),
	}
	if err := cp.kcm.Start(); err != nil {
		return err
	}
	// Ready when its /healthz answers; a bad flag ends the process at once instead.
	insecure := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health probe of a test process
	}}
	err = Eventually(context.Background(), 30*time.Second, func() (bool, error) {
		if !cp.kcm.Running() {
			return false, fmt.Errorf("kube-controller-manager exited:\n%s", cp.kcm.Tail(10))
		}
		resp, err := insecure.Get("https://127.0.0.1:" + strconv.Itoa(port) + "/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("kube-controller-manager not healthy: %w", err)
	}
	return nil
}

// Stop stops everything in reverse order: the API server before etcd (envtest does
// that), and removes the scratch folder. Safe to call more than once.
func (cp *ControlPlane) Stop() { cp.stopOnce.Do(cp.stop) }

func (cp *ControlPlane) stop() {
	if cp.kcm != nil {
		cp.kcm.Stop()
	}
	if cp.cancelCM != nil {
		cp.cancelCM()
	}
	if cp.Env != nil {
		_ = cp.Env.Stop()
	}
	if os.Getenv("E2E_KEEP") == "" {
		_ = os.RemoveAll(cp.Dir)
	}
}

// FreePort asks the kernel for an unused loopback port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Process is a child process in its own process group that dies with its parent
// (Pdeathsig), so an interrupted test leaves nothing running.
type Process struct {
	Name    string
	Path    string
	Args    []string
	Env     []string
	LogFile string
	cmd     *exec.Cmd
	done    chan struct{}
}

// Start launches the process, appending its output to LogFile.
func (p *Process) Start() error {
	f, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p.cmd = exec.Command(p.Path, p.Args...)
	p.cmd.Env = append(os.Environ(), p.Env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", p.Name, err)
	}
	p.done = make(chan struct{})
	track(p.Stop)
	go func() {
		_ = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return nil
}

// Running reports whether the process has not exited.
func (p *Process) Running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM to the process group, and SIGKILL after 10s.
func (p *Process) Stop() {
	if !p.Running() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Logs returns what the process wrote so far.
func (p *Process) Logs() []byte {
	b, _ := os.ReadFile(p.LogFile)
	return b
}

// Tail returns the last n lines of the log, for failure messages.
func (p *Process) Tail(n int) string {
	lines := bytes.Split(bytes.TrimSpace(p.Logs()), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
