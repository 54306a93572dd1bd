package framework

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
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

// live is everything started so far, so that an interrupt at any moment (even in
// the middle of StartControlPlane, before its caller holds the result) stops it.
var live struct {
	sync.Mutex
	stops []func()
}

// stopping is held for a whole StopAll: an interrupt during a normal cleanup waits
// for it instead of exiting half-way through.
var stopping sync.Mutex

func track(stop func()) {
	live.Lock()
	defer live.Unlock()
	live.stops = append(live.stops, stop)
}

// StopAll stops everything this package started, the newest first: webhook
// processes, then kube-controller-manager, then kube-apiserver and etcd. Each stop
// is idempotent, so calling it after the owners stopped their parts is harmless.
func StopAll() {
	stopping.Lock()
	defer stopping.Unlock()
	live.Lock()
	stops := live.stops
	live.stops = nil
	live.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}

// StopOnInterrupt runs stop and exits on SIGINT or SIGTERM, so an interrupted run
// leaves no control plane behind. stop should end with StopAll.
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
