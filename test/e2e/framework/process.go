package framework

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// QuietLogs keeps the in-process helpers (envtest, cert-manager's controllers) to
// errors on stderr, and drops klog: cert-manager's transient "not found yet" errors
// during issuance are expected, and the callers check outcomes instead. Call it
// before anything starts (klog's logger must not change under running informers).
func QuietLogs() {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	klog.SetLogger(logr.Discard())
}

// StopOnInterrupt runs stop and exits on SIGINT or SIGTERM, so an interrupted run
// leaves no control plane behind.
func StopOnInterrupt(what string, stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintf(os.Stderr, "\n%s: interrupted, stopping everything it started\n", what)
		stop()
		os.Exit(130)
	}()
}
