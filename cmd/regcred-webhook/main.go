// Command regcred-webhook is the mutating admission webhook that gives Pods pulling
// from the configured registries the managed pull Secret. main only wires: the logic
// lives in pkg/.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
	"github.com/regcred-webhook/regcred-webhook/pkg/inject"
	"github.com/regcred-webhook/regcred-webhook/pkg/pullsecret"
)

// version is stamped by the Makefile (-X main.version=...).
var version = "dev"

// leaderElectionID is the Lease name in the webhook's namespace.
const leaderElectionID = "regcred-webhook.io"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version", "--version":
			fmt.Fprintln(stdout, version)
			return 0
		case "serve":
			args = args[1:]
		case "cleanup":
			if err := cleanup(args[1:], stderr); err != nil {
				fmt.Fprintf(stderr, "regcred-webhook cleanup: %v\n", err)
				return 1
			}
			return 0
		}
	}
	if err := serve(args, stderr); err != nil {
		fmt.Fprintf(stderr, "regcred-webhook: %v\n", err)
		return 1
	}
	return 0
}

type options struct {
	configFile  string
	webhookPort int
	certDir     string
	metricsAddr string
	probeAddr   string
	leaderElect bool
	zap         zap.Options
}

func parseFlags(args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*options, error) {
	o := &options{zap: zap.Options{Development: false}}
	// flag.CommandLine: controller-runtime registers --kubeconfig there.
	fs := flag.CommandLine
	fs.SetOutput(stderr)
	fs.StringVar(&o.configFile, "config", "", "Path to the YAML config file (see README, Configuration). Empty: built-in defaults.")
	fs.IntVar(&o.webhookPort, "webhook-port", 9443, "Port the webhook server serves HTTPS on.")
	fs.StringVar(&o.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs",
		"Directory holding tls.crt and tls.key; they are reloaded when they change.")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address /healthz and /readyz bind to.")
	fs.BoolVar(&o.leaderElect, "leader-elect", false,
		"Elect one leader among the replicas for the reconciler; every replica serves admissions.")
	o.zap.BindFlags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: subcommands are serve (default), cleanup and version", fs.Arg(0))
	}
	return o, nil
}

// setup parses the flags, sets up logging and loads the config: common to serve and cleanup.
func setup(args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*options, *config.Config, logr.Logger, error) {
	o, err := parseFlags(args, stderr, extra)
	if err != nil {
		return nil, nil, logr.Discard(), err
	}
	logger := zap.New(zap.UseFlagOptions(&o.zap), zap.WriteTo(stderr))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger) // client-go's own lines in the same JSON stream
	podNamespace := os.Getenv("POD_NAMESPACE")
	var cfg *config.Config
	if o.configFile == "" {
		cfg, err = config.Parse(nil, podNamespace)
	} else {
		cfg, err = config.Load(o.configFile, podNamespace)
	}
	return o, cfg, logger, err
}

func restConfig() (*rest.Config, error) {
	c, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("no Kubernetes API configuration: %w (pass --kubeconfig, set KUBECONFIG, or run in a cluster)", err)
	}
	// The replica's name in the user agent tells replicas apart in the audit log.
	c.UserAgent = "regcred-webhook/" + version
	if pod := os.Getenv("POD_NAME"); pod != "" {
		c.UserAgent += " (" + pod + ")"
	}
	// client-go's default of 20 QPS would delay admissions queued behind a rotation
	// fan-out; API Priority and Fairness protects the API server instead.
	c.QPS, c.Burst = 100, 200
	return c, nil
}

// cleanup deletes the managed copies; the chart's post-delete hook runs it, when
// the release's ConfigMap is already gone: --secret-name is all it needs.
func cleanup(args []string, stderr io.Writer) error {
	var secretName string
	_, cfg, logger, err := setup(args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&secretName, "secret-name", "", "cleanup only: the managed Secret's name (overrides the config file's secretName)")
	})
	if err != nil {
		return err
	}
	if secretName != "" {
		cfg.SecretName = secretName
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	restCfg, err := restConfig()
	if err != nil {
		return err
	}
	c, err := client.New(restCfg, client.Options{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctrl.SetupSignalHandler(), 5*time.Minute)
	defer cancel()
	n, err := pullsecret.Cleanup(ctx, c, cfg)
	logger.WithName("cleanup").Info("deleted managed Secrets", "secret", cfg.SecretName, "deleted", n, "failed", err != nil)
	return err
}

func serve(args []string, stderr io.Writer) error {
	o, cfg, logger, err := setup(args, stderr, nil)
	if err != nil {
		return err
	}
	log := logger.WithName("setup")
	podNamespace := os.Getenv("POD_NAMESPACE")
	log.Info("starting", "version", version, "secretName", cfg.SecretName, "sourceSecret", cfg.SourceSecret.String(),
		"excludeNamespaces", cfg.ExcludeNamespaces, "ensureTimeout", cfg.EnsureTimeout.Duration.String())

	restCfg, err := restConfig()
	if err != nil {
		return err
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	leNamespace := podNamespace
	if leNamespace == "" {
		leNamespace = cfg.SourceSecret.Namespace
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         pullsecret.CacheOptions(cfg),
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:        o.probeAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              leaderElectionID,
		LeaderElectionNamespace:       leNamespace,
		LeaderElectionReleaseOnCancel: true,
		WebhookServer: webhook.NewServer(webhook.Options{
			Port:    o.webhookPort,
			CertDir: o.certDir,
			TLSOpts: []func(*tls.Config){func(c *tls.Config) {
				c.MinVersion = tls.VersionTLS12
				// HTTP/2 off: its stream handling has had denial-of-service CVEs
				// (CVE-2023-44487), and admission traffic gains nothing from it.
				c.NextProtos = []string{"http/1.1"}
			}},
		}),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	source := pullsecret.NewSource(cfg.SourceSecret, logger.WithName("source"))
	ensurer := &pullsecret.Ensurer{
		Cache: mgr.GetCache(), Client: mgr.GetClient(),
		Source: source, Config: cfg, Log: logger.WithName("ensure"),
	}
	recorder := mgr.GetEventRecorder("regcred-webhook")
	var namespaces client.Reader = mgr.GetAPIReader() // RBAC: namespaces get, no watch
	if cfg.Reconcile.ProvisionAllNamespaces {
		namespaces = mgr.GetClient() // watched: RBAC namespaces list/watch
	}
	reconciler := &pullsecret.Reconciler{
		Cache: mgr.GetCache(), Client: mgr.GetClient(), Namespaces: namespaces,
		Source: source, Config: cfg, Ensurer: ensurer, Recorder: recorder, Log: logger.WithName("reconcile"),
	}
	if err := reconciler.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the reconciler: %w", err)
	}
	ensurer.OnFailure = reconciler.Retry
	if err := mgr.Add(&pullsecret.SourceWatcher{Cache: mgr.GetCache(), Source: source, Ensurer: ensurer,
		CopySeen: reconciler.MarkWanted}); err != nil {
		return err
	}
	if cfg.Reconcile.RestartStuckPods {
		if err := (&pullsecret.StuckPods{
			Cache: mgr.GetCache(), Client: mgr.GetClient(), Namespaces: namespaces, Source: source, Ensurer: ensurer,
			Config: cfg, Recorder: recorder, Log: logger.WithName("stuckpods"),
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up restartStuckPods: %w", err)
		}
	}
	mgr.GetWebhookServer().Register(inject.Path, &webhook.Admission{
		Handler:      &inject.Handler{Config: cfg, Source: source, Ensurer: ensurer, Log: logger.WithName("inject")},
		RecoverPanic: ptrTrue(),
	})

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("source", source.Synced); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("the Secret cache has not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}

	log.Info("serving", "webhookPort", o.webhookPort, "path", inject.Path, "certDir", o.certDir)
	return mgr.Start(ctrl.SetupSignalHandler())
}

func ptrTrue() *bool { t := true; return &t }
