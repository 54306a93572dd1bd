// Package config is regcred-webhook's configuration file: its types, defaults and
// validation. The file is mounted from a ConfigMap by the chart; every field is checked
// at start so a typo fails the rollout instead of silently changing behaviour.
package config

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

const (
	// DefaultSecretName is the conventional name of the pull Secret in every namespace.
	DefaultSecretName = "regcred"
	// DefaultSourceSecretName is the name the chart gives the source Secret.
	DefaultSourceSecretName = "regcred-webhook-source"
	// DefaultEnsureTimeout leaves most of the chart's default 5s webhook timeout for
	// the API server's own work: past it the Pod is patched anyway and the reconciler
	// finishes creating the Secret.
	DefaultEnsureTimeout = 2 * time.Second
	// maxEnsureTimeout is below the API server's 30s ceiling for webhook timeouts.
	maxEnsureTimeout = 25 * time.Second
)

// DefaultExcludeNamespaces are namespaces whose Pods are never mutated.
var DefaultExcludeNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// Config is the content of the --config file.
type Config struct {
	// SecretName is the managed Secret's name in every namespace.
	SecretName string `json:"secretName,omitempty"`
	// SourceSecret is the kubernetes.io/dockerconfigjson Secret whose content is copied.
	SourceSecret SecretRef `json:"sourceSecret,omitempty"`
	// ExcludeNamespaces are never mutated; the webhook's own namespace and the
	// source's namespace are always added.
	ExcludeNamespaces []string `json:"excludeNamespaces,omitempty"`
	// EnsureTimeout bounds the Secret work inside one admission request.
	EnsureTimeout Duration `json:"ensureTimeout,omitempty"`
	// Reconcile holds the opt-in reconciler features.
	Reconcile Reconcile `json:"reconcile,omitempty"`
}

// SecretRef names a Secret.
type SecretRef struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
}

// String is namespace/name, the form kubectl users read.
func (r SecretRef) String() string { return r.Namespace + "/" + r.Name }

// Reconcile holds the reconciler's opt-in features, all off by default.
type Reconcile struct {
	// ProvisionAllNamespaces creates the Secret in every in-scope namespace, not only
	// where a matching Pod arrives. Needs namespaces list/watch.
	ProvisionAllNamespaces bool `json:"provisionAllNamespaces,omitempty"`
	// RestartStuckPods deletes controller-owned Pods stuck pulling a registry image
	// without the Secret, so their controller recreates them through the webhook.
	RestartStuckPods bool `json:"restartStuckPods,omitempty"`
}

// Duration is a time.Duration written as "2s" or "1500ms" in YAML. The JSON decoder
// does not say which field a custom decoder failed on, and ensureTimeout is the only
// duration, so the errors name it.
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a Go duration string; a bare number is refused because its
// unit would be a guess.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" { // "ensureTimeout:" with no value: the default
		return nil
	}
	if len(b) < 2 || b[0] != '"' {
		return fmt.Errorf("ensureTimeout must be a duration string such as \"2s\" or \"1500ms\", got %s", b)
	}
	v, err := time.ParseDuration(string(b[1 : len(b)-1]))
	if err != nil {
		return fmt.Errorf("ensureTimeout must be a duration such as \"2s\" or \"1500ms\": %w", err)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration back in the form it is read.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// Load reads, defaults and validates the file at path. podNamespace is the webhook's
// own namespace (env POD_NAMESPACE): the source Secret's default namespace, and a
// namespace that is always excluded.
func Load(path, podNamespace string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w (pass the file with --config)", err)
	}
	return Parse(raw, podNamespace)
}

// Parse decodes data strictly (an unknown field is an error, so a misspelt option is
// not silently ignored), applies defaults and validates.
func Parse(data []byte, podNamespace string) (*Config, error) {
	c := &Config{}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.UnmarshalStrict(data, c); err != nil {
			return nil, fmt.Errorf("config file: %w (see the Configuration section of the README for the fields)", err)
		}
	}
	c.Default(podNamespace)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Default fills unset fields. The webhook's own namespace is always excluded: its Pods
// must start even when the webhook is down. So is the source Secret's namespace.
func (c *Config) Default(podNamespace string) {
	if c.SecretName == "" {
		c.SecretName = DefaultSecretName
	}
	if c.SourceSecret.Namespace == "" {
		c.SourceSecret.Namespace = podNamespace
	}
	if c.SourceSecret.Name == "" {
		c.SourceSecret.Name = DefaultSourceSecretName
	}
	if c.ExcludeNamespaces == nil {
		c.ExcludeNamespaces = append([]string(nil), DefaultExcludeNamespaces...)
	}
	// The source's namespace too: the cache holds only the source there (so a copy
	// could never be seen as current), and a copy beside the source adds nothing.
	for _, ns := range []string{podNamespace, c.SourceSecret.Namespace} {
		if ns != "" && !sets.New(c.ExcludeNamespaces...).Has(ns) {
			c.ExcludeNamespaces = append(c.ExcludeNamespaces, ns)
		}
	}
	if c.EnsureTimeout.Duration == 0 {
		c.EnsureTimeout.Duration = DefaultEnsureTimeout
	}
}

// Validate returns every problem at once, each with its field path and the fix.
func (c *Config) Validate() error {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(c.SecretName) {
		errs = append(errs, field.Invalid(field.NewPath("secretName"), c.SecretName, msg))
	}
	src := field.NewPath("sourceSecret")
	if c.SourceSecret.Namespace == "" {
		errs = append(errs, field.Required(src.Child("namespace"),
			"set it, or run the webhook with env POD_NAMESPACE (the chart does) to default it to the webhook's namespace"))
	} else {
		for _, msg := range validation.IsDNS1123Label(c.SourceSecret.Namespace) {
			errs = append(errs, field.Invalid(src.Child("namespace"), c.SourceSecret.Namespace, msg))
		}
	}
	for _, msg := range validation.IsDNS1123Subdomain(c.SourceSecret.Name) {
		errs = append(errs, field.Invalid(src.Child("name"), c.SourceSecret.Name, msg))
	}
	if c.SourceSecret.Name == c.SecretName && c.SourceSecret.Namespace != "" {
		// The copy in the source namespace would be the source itself.
		errs = append(errs, field.Invalid(src.Child("name"), c.SourceSecret.Name,
			"must differ from secretName: the source would be overwritten by its own copy"))
	}
	seen := sets.New[string]()
	for i, ns := range c.ExcludeNamespaces {
		p := field.NewPath("excludeNamespaces").Index(i)
		for _, msg := range validation.IsDNS1123Label(ns) {
			errs = append(errs, field.Invalid(p, ns, msg))
		}
		if seen.Has(ns) {
			errs = append(errs, field.Duplicate(p, ns))
		}
		seen.Insert(ns)
	}
	if d := c.EnsureTimeout.Duration; d <= 0 || d > maxEnsureTimeout {
		errs = append(errs, field.Invalid(field.NewPath("ensureTimeout"), d.String(),
			fmt.Sprintf("must be between 1ms and %s, and well below the webhook's timeoutSeconds", maxEnsureTimeout)))
	}
	if len(errs) == 0 {
		return nil
	}
	return &ValidationError{Errs: errs}
}

// ValidationError lists every problem in the file, one per line, each with its field path.
type ValidationError struct{ Errs field.ErrorList }

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problem(s)):", len(e.Errs))
	for _, err := range e.Errs {
		b.WriteString("\n  - " + err.Error())
	}
	return b.String()
}

// Excluded reports whether Pods in namespace are never mutated by configuration.
func (c *Config) Excluded(namespace string) bool {
	for _, ns := range c.ExcludeNamespaces {
		if ns == namespace {
			return true
		}
	}
	return false
}
