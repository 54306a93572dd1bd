package pullsecret

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	sourceValid = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "regcred_webhook_source_valid",
		Help: "1 while the source Secret is present and valid, 0 while Pods are admitted unpatched.",
	})
	sourceErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "regcred_webhook_source_errors_total",
		Help: "Times the source Secret was found missing or invalid.",
	})
	ensureTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcred_webhook_ensure_total",
		Help: "Managed Secret ensures by outcome (current, stale, created, exists, unmanaged, dry-run, error).",
	}, []string{"result"})
	writesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcred_webhook_secret_writes_total",
		Help: "API writes of managed Secrets by verb and outcome.",
	}, []string{"verb", "outcome"})
)

func init() {
	metrics.Registry.MustRegister(sourceValid, sourceErrors, ensureTotal, writesTotal)
}
