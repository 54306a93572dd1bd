// Package certmanager runs cert-manager's own controllers in-process against a
// test control plane (envtest), so that the chart's Issuer → Certificate chain
// turns into real Secrets without the cert-manager binaries or images.
//
// Only the self-signed and CA issuers and the Certificate lifecycle are run;
// the cert-manager webhook and cainjector are not (tests inject caBundles
// themselves).
package certmanager

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// Each of these registers its controller(s) in controllerpkg.Known() from
	// an init func, exactly as cert-manager's controller binary does.
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// The (Cluster)Issuer controllers look issuer types up in a registry
	// that these packages fill from their init funcs.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// ClusterResourceNamespace is where a CA ClusterIssuer's secret must live
// (cert-manager's --cluster-resource-namespace, default "cert-manager").
const ClusterResourceNamespace = "cert-manager"

// controllers are the names (as registered in controllerpkg.Known()) that make
// a Certificate issued by a self-signed or CA (Cluster)Issuer become Ready.
var controllers = []string{
	// Set the Ready condition of Issuers and ClusterIssuers.
	issuers.ControllerName,
	clusterissuers.ControllerName,
	// Signers wait for a CertificateRequest to be Approved; with no policy
	// engine, cert-manager's own approver approves everything.
	approver.ControllerName,
	// Sign CertificateRequests for self-signed and CA issuers.
	crselfsigned.CRControllerName,
	crca.CRControllerName,
	// The Certificate lifecycle: decide to issue, make a private key, create
	// the CertificateRequest, write the Secret, set Ready, prune old requests.
	trigger.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	issuing.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

// CRDPaths returns the directory holding cert-manager's CRDs in the module
// cache, for envtest.Environment.CRDInstallOptions.Paths. It asks the go tool,
// so it works from any clone once `go mod download` has run.
func CRDPaths() ([]string, error) {
	const mod = "github.com/cert-manager/cert-manager"
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m %s: %w", mod, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return nil, fmt.Errorf("%s is not in the module cache: run `go mod download %s`", mod, mod)
	}
	crds := filepath.Join(dir, "deploy", "crds")
	if _, err := os.Stat(crds); err != nil {
		return nil, err
	}
	return []string{crds}, nil
}

// Start runs cert-manager's controllers for self-signed and CA Issuers and
// ClusterIssuers and the Certificate lifecycle against the API server of cfg,
// until ctx is cancelled. It returns once their informer caches have synced.
// Controllers log to the logr.Logger in ctx (logr.NewContext), or klog.
func Start(ctx context.Context, cfg *rest.Config) error {
	factory, err := newContextFactory(ctx, cfg)
	if err != nil {
		return err
	}
	log := logf.FromContext(ctx, "certmanager")
	for _, name := range controllers {
		// The constructor registers the informers it needs on the shared
		// factories, so all must be built before the factories start.
		ctrl, err := controllerpkg.Known()[name](factory)
		if err != nil {
			return fmt.Errorf("building cert-manager controller %s: %w", name, err)
		}
		go func() {
			if err := ctrl.Run(5, ctx); err != nil && ctx.Err() == nil {
				log.Error(err, "cert-manager controller stopped", "controller", name)
			}
		}()
	}
	// Every Context from the factory shares the same informer factories.
	shared, err := factory.Build()
	if err != nil {
		return err
	}
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	go func() { // stop the informers' watches before the API server goes away
		<-ctx.Done()
		shared.SharedInformerFactory.Shutdown()
		shared.KubeSharedInformerFactory.Shutdown()
	}()
	for typ, ok := range shared.SharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cert-manager informer for %v did not sync", typ)
		}
	}
	for typ, ok := range shared.KubeSharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cert-manager informer for %v did not sync", typ)
		}
	}
	return nil
}

// newContextFactory builds cert-manager's ContextFactory for cfg.
// NewContextFactory only accepts a kubeconfig path (or in-cluster config), not
// a *rest.Config, so cfg is written to a temporary kubeconfig that is read
// once and removed.
func newContextFactory(ctx context.Context, cfg *rest.Config) (*controllerpkg.ContextFactory, error) {
	kubeconfig := clientcmdapi.NewConfig()
	kubeconfig.Clusters["envtest"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
		InsecureSkipTLSVerify:    cfg.Insecure,
		TLSServerName:            cfg.ServerName,
	}
	kubeconfig.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.CertFile,
		ClientCertificateData: cfg.CertData,
		ClientKey:             cfg.KeyFile,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Username:              cfg.Username,
		Password:              cfg.Password,
	}
	kubeconfig.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	kubeconfig.CurrentContext = "envtest"

	dir, err := os.MkdirTemp("", "certmanager-kubeconfig-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kubeconfig, path); err != nil {
		return nil, err
	}

	return controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig: path,
		// Only used when the API server has API Priority and Fairness off
		// (envtest has it on, so client-side rate limiting is disabled).
		KubernetesAPIQPS:   100,
		KubernetesAPIBurst: 200,
		IssuerOptions:      controllerpkg.IssuerOptions{ClusterResourceNamespace: ClusterResourceNamespace},
	})
}
