package chart_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
)

// The cert-manager and Prometheus Operator objects the chart renders, with
// only the fields the chart sets: decoding strictly into them catches a
// misspelt field. (Their Go modules are not dependencies of this project;
// the e2e suite applies the manifests to an API server with the real CRDs.)
type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		IsCA        bool     `json:"isCA"`
		CommonName  string   `json:"commonName"`
		SecretName  string   `json:"secretName"`
		DNSNames    []string `json:"dnsNames"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		Usages      []string `json:"usages"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		IssuerRef issuerRef `json:"issuerRef"`
	} `json:"spec"`
}

type issuerRef struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Group string `json:"group"`
}

type issuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SelfSigned *struct{} `json:"selfSigned"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca"`
	} `json:"spec"`
}

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Scheme        string `json:"scheme"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// renderedConfig mirrors the binary's config file field for field, so strict
// decoding fails on anything the chart adds that the contract does not have.
type renderedConfig struct {
	SecretName   string `json:"secretName"`
	SourceSecret struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"sourceSecret"`
	ExcludeNamespaces []string `json:"excludeNamespaces"`
	EnsureTimeout     string   `json:"ensureTimeout"`
	Reconcile         struct {
		ProvisionAllNamespaces bool `json:"provisionAllNamespaces"`
		RestartStuckPods       bool `json:"restartStuckPods"`
	} `json:"reconcile"`
}

type dockerConfigJSON struct {
	Auths map[string]struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Auth     string `json:"auth"`
	} `json:"auths"`
}

// scenarios are the renders every structural check runs on: both secret
// modes and the three certificate modes, plus every option on.
var scenarios = []struct {
	name string
	o    renderOpts
}{
	{"registries, self-signed CA", renderOpts{files: []string{"minimal.yaml"}}},
	{"existingSecret, issuerRef", renderOpts{files: []string{"existing-secret-issuer.yaml"}}},
	{"registries, no cert-manager", renderOpts{files: []string{"no-cert-manager.yaml"}}},
	{"two registries", renderOpts{files: []string{"two-registries.yaml"}}},
	{"every option on", renderOpts{files: []string{"everything.yaml"}}},
	{"other release name", renderOpts{release: "platform", namespace: "platform", files: []string{"minimal.yaml"}}},
	{"fullnameOverride", renderOpts{files: []string{"minimal.yaml"}, set: []string{"fullnameOverride=pull-secrets"}}},
}

func TestWebhookConfiguration(t *testing.T) {
	for _, tc := range []struct {
		name          string
		o             renderOpts
		failurePolicy admissionregistrationv1.FailurePolicyType
		timeout       int32
		skipped       []string // kubernetes.io/metadata.name NotIn values
		caBundle      string   // "" means cert-manager injects it
	}{
		{
			name: "defaults", o: renderOpts{files: []string{"minimal.yaml"}},
			failurePolicy: admissionregistrationv1.Ignore, timeout: 5,
			skipped: []string{"kube-system", "kube-public", "kube-node-lease", releaseNS},
		},
		{
			name: "issuerRef", o: renderOpts{files: []string{"existing-secret-issuer.yaml"}},
			failurePolicy: admissionregistrationv1.Ignore, timeout: 5,
			skipped: []string{"kube-system", "kube-public", "kube-node-lease", releaseNS},
		},
		{
			// The release namespace is listed once even when excludeNamespaces has it.
			name: "Fail, 10s, own excludes", o: renderOpts{files: []string{"everything.yaml"}},
			failurePolicy: admissionregistrationv1.Fail, timeout: 10,
			skipped: []string{"kube-system", releaseNS, "legacy"},
		},
		{
			name: "no excludes", o: renderOpts{files: []string{"minimal.yaml"}, set: []string{"excludeNamespaces=null"}},
			failurePolicy: admissionregistrationv1.Ignore, timeout: 5,
			skipped: []string{releaseNS},
		},
		{
			name: "without cert-manager", o: renderOpts{files: []string{"no-cert-manager.yaml"}},
			failurePolicy: admissionregistrationv1.Ignore, timeout: 5,
			skipped:  []string{"kube-system", "kube-public", "kube-node-lease", releaseNS},
			caBundle: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.o)
			if got := m.names("MutatingWebhookConfiguration"); !slices.Equal(got, []string{fullname}) {
				t.Fatalf("MutatingWebhookConfigurations = %v, want [%s]", got, fullname)
			}
			mwc := get[admissionregistrationv1.MutatingWebhookConfiguration](t, m, "MutatingWebhookConfiguration", fullname)
			if len(mwc.Webhooks) != 1 {
				t.Fatalf("%d webhooks, want 1", len(mwc.Webhooks))
			}
			w := mwc.Webhooks[0]
			eq(t, "name", w.Name, "pods.regcred-webhook.io")
			eq(t, "admissionReviewVersions", fmt.Sprint(w.AdmissionReviewVersions), "[v1]")
			eq(t, "failurePolicy", deref(w.FailurePolicy), tc.failurePolicy)
			eq(t, "sideEffects", deref(w.SideEffects), admissionregistrationv1.SideEffectClassNoneOnDryRun)
			eq(t, "reinvocationPolicy", deref(w.ReinvocationPolicy), admissionregistrationv1.IfNeededReinvocationPolicy)
			eq(t, "timeoutSeconds", deref(w.TimeoutSeconds), tc.timeout)
			eq(t, "matchPolicy", deref(w.MatchPolicy), admissionregistrationv1.Equivalent)
			if w.ObjectSelector != nil {
				t.Errorf("objectSelector = %v, want none", w.ObjectSelector)
			}

			// CREATE of core/v1 pods (no other Pod UPDATE: imagePullSecrets
			// are immutable), and UPDATE of pods/ephemeralcontainers, which
			// the webhook answers with a warning, never a patch or a denial.
			wantRules := []admissionregistrationv1.RuleWithOperations{
				{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule: admissionregistrationv1.Rule{
						APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
						Scope: ptr(admissionregistrationv1.NamespacedScope),
					},
				},
				{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule: admissionregistrationv1.Rule{
						APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/ephemeralcontainers"},
						Scope: ptr(admissionregistrationv1.NamespacedScope),
					},
				},
			}
			eqJSON(t, "rules", w.Rules, wantRules)

			svc := w.ClientConfig.Service
			if svc == nil {
				t.Fatal("clientConfig.service is not set")
			}
			eq(t, "service.name", svc.Name, fullname)
			eq(t, "service.namespace", svc.Namespace, releaseNS)
			eq(t, "service.path", deref(svc.Path), "/mutate-v1-pod")
			eq(t, "service.port", deref(svc.Port), int32(443))
			if w.ClientConfig.URL != nil {
				t.Errorf("clientConfig.url = %q, want none", *w.ClientConfig.URL)
			}

			wantSelector := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "regcred-webhook.io/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: tc.skipped},
			}}
			eqJSON(t, "namespaceSelector", w.NamespaceSelector, wantSelector)
			sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
			if err != nil {
				t.Fatalf("namespaceSelector: %v", err)
			}
			for _, ns := range []struct {
				labels map[string]string
				want   bool
			}{
				{map[string]string{"kubernetes.io/metadata.name": "team-a"}, true},
				{map[string]string{"kubernetes.io/metadata.name": "team-a", "regcred-webhook.io/inject": "true"}, true},
				{map[string]string{"kubernetes.io/metadata.name": "team-a", "regcred-webhook.io/inject": "false"}, false},
				{map[string]string{"kubernetes.io/metadata.name": releaseNS}, false},
			} {
				if got := sel.Matches(labels.Set(ns.labels)); got != ns.want {
					t.Errorf("namespace %v: called = %v, want %v", ns.labels, got, ns.want)
				}
			}

			inject, hasInject := mwc.Annotations["cert-manager.io/inject-ca-from"]
			if tc.caBundle == "" {
				eq(t, "cert-manager.io/inject-ca-from", inject, releaseNS+"/"+fullname+"-serving-cert")
				if len(w.ClientConfig.CABundle) != 0 {
					t.Errorf("caBundle is set (%q) although cainjector owns it", w.ClientConfig.CABundle)
				}
			} else {
				if hasInject {
					t.Errorf("inject-ca-from = %q without cert-manager", inject)
				}
				eq(t, "caBundle", string(w.ClientConfig.CABundle), tc.caBundle)
			}
		})
	}
}

func TestDeployment(t *testing.T) {
	defaultArgs := []string{
		"--config=/etc/regcred-webhook/config.yaml",
		"--cert-dir=/etc/regcred-webhook/certs",
		"--webhook-port=9443",
		"--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081",
		"--leader-elect",
		"--zap-log-level=info",
	}
	for _, tc := range []struct {
		name      string
		o         renderOpts
		image     string
		args      []string
		port      int32
		tlsSecret string
		check     func(t *testing.T, spec corev1.PodSpec, d *appsv1.Deployment)
	}{
		{
			name: "defaults", o: renderOpts{files: []string{"minimal.yaml"}},
			image: "ghcr.io/regcred-webhook/regcred-webhook:0.1.0", args: defaultArgs, port: 9443,
			tlsSecret: fullname + "-tls",
			check: func(t *testing.T, spec corev1.PodSpec, d *appsv1.Deployment) {
				eq(t, "priorityClassName", spec.PriorityClassName, "")
				if len(spec.ImagePullSecrets)+len(spec.NodeSelector)+len(spec.Tolerations) != 0 || spec.Affinity != nil {
					t.Errorf("scheduling/pull fields set without values: %+v", spec)
				}
				want := []corev1.TopologySpreadConstraint{{
					MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.ScheduleAnyway,
					LabelSelector:  &metav1.LabelSelector{MatchLabels: selectorLabels(releaseName)},
					MatchLabelKeys: []string{"pod-template-hash"},
				}}
				eqJSON(t, "topologySpreadConstraints", spec.TopologySpreadConstraints, want)
			},
		},
		{
			name: "every option on", o: renderOpts{files: []string{"everything.yaml"}},
			image: "ghcr.io/regcred-webhook/regcred-webhook@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			args: []string{
				"--config=/etc/regcred-webhook/config.yaml",
				"--cert-dir=/etc/regcred-webhook/certs",
				"--webhook-port=8443",
				"--metrics-bind-address=:8080",
				"--health-probe-bind-address=:8081",
				"--leader-elect",
				"--zap-log-level=3",
			},
			port: 8443, tlsSecret: fullname + "-tls",
			check: func(t *testing.T, spec corev1.PodSpec, d *appsv1.Deployment) {
				eq(t, "priorityClassName", spec.PriorityClassName, "system-cluster-critical")
				eqJSON(t, "imagePullSecrets", spec.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "harbor-pull-self"}})
				eqJSON(t, "nodeSelector", spec.NodeSelector, map[string]string{"kubernetes.io/os": "linux"})
				eq(t, "tolerations", len(spec.Tolerations), 1)
				eq(t, "podAnnotations", d.Spec.Template.Annotations["example.com/team"], "platform")
			},
		},
		{
			name: "without cert-manager", o: renderOpts{files: []string{"no-cert-manager.yaml"}},
			image: "ghcr.io/regcred-webhook/regcred-webhook:0.1.0", args: defaultArgs, port: 9443,
			tlsSecret: "my-webhook-tls",
		},
		{
			name: "image tag and replicas", o: renderOpts{files: []string{"minimal.yaml"},
				set: []string{"image.tag=0.2.0-rc.1", "replicaCount=3", "logLevel=debug"}},
			image: "ghcr.io/regcred-webhook/regcred-webhook:0.2.0-rc.1",
			args:  append(slices.Clone(defaultArgs[:6]), "--zap-log-level=debug"), port: 9443,
			tlsSecret: fullname + "-tls",
			check: func(t *testing.T, spec corev1.PodSpec, d *appsv1.Deployment) {
				eq(t, "replicas", deref(d.Spec.Replicas), int32(3))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.o)
			d := get[appsv1.Deployment](t, m, "Deployment", fullname)
			if tc.name != "image tag and replicas" {
				eq(t, "replicas", deref(d.Spec.Replicas), int32(2))
			}
			eqJSON(t, "selector", d.Spec.Selector, &metav1.LabelSelector{MatchLabels: selectorLabels(releaseName)})
			spec := d.Spec.Template.Spec
			eq(t, "serviceAccountName", spec.ServiceAccountName, fullname)
			checkRestricted(t, spec)
			if _, ok := d.Spec.Template.Annotations["checksum/config"]; !ok {
				t.Error("no checksum/config annotation on the Pod template")
			}

			if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
				t.Fatalf("want exactly one container, got %d (+%d init)", len(spec.Containers), len(spec.InitContainers))
			}
			c := spec.Containers[0]
			eq(t, "image", c.Image, tc.image)
			eq(t, "imagePullPolicy", c.ImagePullPolicy, corev1.PullIfNotPresent)
			eqJSON(t, "args", c.Args, tc.args)
			if len(c.Command) != 0 {
				t.Errorf("command = %v, want the image's entrypoint", c.Command)
			}
			// POD_NAMESPACE defaults the source Secret's namespace; POD_NAME goes
			// into the user agent, so the audit log tells replicas apart.
			eqJSON(t, "env", c.Env, []corev1.EnvVar{
				{
					Name:      "POD_NAMESPACE",
					ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
				},
				{
					Name:      "POD_NAME",
					ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
				},
			})
			eqJSON(t, "ports", c.Ports, []corev1.ContainerPort{
				{Name: "webhook", ContainerPort: tc.port, Protocol: corev1.ProtocolTCP},
				{Name: "metrics", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
				{Name: "probes", ContainerPort: 8081, Protocol: corev1.ProtocolTCP},
			})
			for _, p := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Errorf("%s probe: want an HTTP GET, got %+v", p.name, p.probe)
					continue
				}
				eq(t, p.name+" path", p.probe.HTTPGet.Path, p.path)
				eq(t, p.name+" port", p.probe.HTTPGet.Port.String(), "probes")
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("resources = %+v, want cpu/memory requests and a memory limit", c.Resources)
			}

			// config.yaml and certs/ in one read-only projected volume: no
			// subPath (the kubelet would never update it) and no mount nested
			// in a read-only ConfigMap volume.
			eqJSON(t, "volumeMounts", c.VolumeMounts, []corev1.VolumeMount{
				{Name: "config", MountPath: "/etc/regcred-webhook", ReadOnly: true},
			})
			if len(spec.Volumes) != 1 || spec.Volumes[0].Projected == nil {
				t.Fatalf("volumes = %+v, want one projected volume", spec.Volumes)
			}
			eqJSON(t, "projected sources", spec.Volumes[0].Projected.Sources, []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: fullname},
					Items:                []corev1.KeyToPath{{Key: "config.yaml", Path: "config.yaml"}},
				}},
				{Secret: &corev1.SecretProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: tc.tlsSecret},
					Items: []corev1.KeyToPath{
						{Key: "tls.crt", Path: "certs/tls.crt"},
						{Key: "tls.key", Path: "certs/tls.key"},
					},
				}},
			})
			if tc.check != nil {
				tc.check(t, spec, d)
			}
		})
	}
}

// TestGracefulShutdown: a terminating webhook Pod keeps serving for
// shutdownDelaySeconds (a preStop sleep: the image is distroless, there is no
// shell to exec) while the API server still routes admissions to it, within
// a grace period that leaves time for the shutdown after SIGTERM.
func TestGracefulShutdown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     renderOpts
		delay int64 // preStop sleep seconds; 0: no lifecycle at all
		grace int64
	}{
		{"defaults", renderOpts{files: []string{"minimal.yaml"}}, 10, 30},
		{"every option on", renderOpts{files: []string{"everything.yaml"}}, 10, 30},
		{"longer delay and grace", renderOpts{files: []string{"minimal.yaml"},
			set: []string{"shutdownDelaySeconds=25", "terminationGracePeriodSeconds=60"}}, 25, 60},
		{"grace just above the delay", renderOpts{files: []string{"minimal.yaml"},
			set: []string{"shutdownDelaySeconds=10", "terminationGracePeriodSeconds=11"}}, 10, 11},
		{"0 disables the hook", renderOpts{files: []string{"minimal.yaml"}, set: []string{"shutdownDelaySeconds=0"}}, 0, 30},
		{"0 with the shortest grace", renderOpts{files: []string{"minimal.yaml"},
			set: []string{"shutdownDelaySeconds=0", "terminationGracePeriodSeconds=1"}}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.o)
			d := get[appsv1.Deployment](t, m, "Deployment", fullname)
			spec := d.Spec.Template.Spec
			eq(t, "terminationGracePeriodSeconds", deref(spec.TerminationGracePeriodSeconds), tc.grace)
			if len(spec.Containers) != 1 {
				t.Fatalf("containers = %d, want 1", len(spec.Containers))
			}
			var want *corev1.Lifecycle
			if tc.delay > 0 {
				want = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: tc.delay}}}
			}
			eqJSON(t, "lifecycle", spec.Containers[0].Lifecycle, want)
		})
	}

	// The cleanup Job's Pod runs to completion: no delay there.
	m := render(t, renderOpts{files: []string{"everything.yaml"}})
	job := get[batchv1.Job](t, m, "Job", fullname+"-cleanup")
	if c := job.Spec.Template.Spec.Containers[0]; c.Lifecycle != nil {
		t.Errorf("cleanup container lifecycle = %+v, want none", c.Lifecycle)
	}
}

// TestConfigChecksum: a config change rolls the Pods, anything else does not.
func TestConfigChecksum(t *testing.T) {
	checksum := func(set ...string) string {
		m := render(t, renderOpts{files: []string{"minimal.yaml"}, set: set})
		return get[appsv1.Deployment](t, m, "Deployment", fullname).Spec.Template.Annotations["checksum/config"]
	}
	base := checksum()
	if len(base) != 64 {
		t.Fatalf("checksum/config = %q, want a sha256", base)
	}
	for _, set := range []string{"secretName=harbor", "webhook.timeoutSeconds=10", "reconcile.restartStuckPods=true", "excludeNamespaces={kube-system}"} {
		if checksum(set) == base {
			t.Errorf("--set %s changes the config but not checksum/config", set)
		}
	}
	for _, set := range []string{"replicaCount=3", "logLevel=debug", "registries[0].password=rotated"} {
		if checksum(set) != base {
			t.Errorf("--set %s changes checksum/config but not the config", set)
		}
	}
}

func TestConfigMap(t *testing.T) {
	for _, tc := range []struct {
		name        string
		o           renderOpts
		secretName  string
		source      string
		excludes    []string
		ensure      string
		provision   bool
		restartPods bool
	}{
		{"defaults", renderOpts{files: []string{"minimal.yaml"}},
			"regcred", fullname + "-source", []string{"kube-system", "kube-public", "kube-node-lease"}, "2000ms", false, false},
		{"existingSecret", renderOpts{files: []string{"existing-secret-issuer.yaml"}},
			"regcred", "harbor-robot", []string{"kube-system", "kube-public", "kube-node-lease"}, "2000ms", false, false},
		{"every option on", renderOpts{files: []string{"everything.yaml"}},
			"harbor-pull", fullname + "-source", []string{"kube-system", releaseNS, "legacy"}, "4000ms", true, true},
		{"timeoutSeconds 1", renderOpts{files: []string{"minimal.yaml"}, set: []string{"webhook.timeoutSeconds=1"}},
			"regcred", fullname + "-source", []string{"kube-system", "kube-public", "kube-node-lease"}, "400ms", false, false},
		{"timeoutSeconds 30", renderOpts{files: []string{"minimal.yaml"}, set: []string{"webhook.timeoutSeconds=30"}},
			"regcred", fullname + "-source", []string{"kube-system", "kube-public", "kube-node-lease"}, "12000ms", false, false},
		{"no excludes", renderOpts{files: []string{"minimal.yaml"}, set: []string{"excludeNamespaces=null"}},
			"regcred", fullname + "-source", []string{}, "2000ms", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.o)
			cm := get[corev1.ConfigMap](t, m, "ConfigMap", fullname)
			if len(cm.Data) != 1 {
				t.Errorf("ConfigMap keys = %v, want only config.yaml", cm.Data)
			}
			raw, ok := cm.Data["config.yaml"]
			if !ok {
				t.Fatal("ConfigMap has no config.yaml")
			}
			var got renderedConfig
			if err := yaml.UnmarshalStrict([]byte(raw), &got); err != nil {
				t.Fatalf("config.yaml has a field the binary does not know: %v\n%s", err, raw)
			}
			eq(t, "secretName", got.SecretName, tc.secretName)
			eq(t, "sourceSecret.namespace", got.SourceSecret.Namespace, releaseNS)
			eq(t, "sourceSecret.name", got.SourceSecret.Name, tc.source)
			eqJSON(t, "excludeNamespaces", got.ExcludeNamespaces, tc.excludes)
			eq(t, "ensureTimeout", got.EnsureTimeout, tc.ensure)
			eq(t, "reconcile.provisionAllNamespaces", got.Reconcile.ProvisionAllNamespaces, tc.provision)
			eq(t, "reconcile.restartStuckPods", got.Reconcile.RestartStuckPods, tc.restartPods)

			// The binary's own parser accepts it and reads the same values.
			cfg, err := config.Parse([]byte(raw), releaseNS)
			if err != nil {
				t.Fatalf("the binary rejects the rendered config: %v\n%s", err, raw)
			}
			eq(t, "parsed secretName", cfg.SecretName, tc.secretName)
			eq(t, "parsed source", cfg.SourceSecret.String(), releaseNS+"/"+tc.source)
			eq(t, "parsed ensureTimeout", cfg.EnsureTimeout.Duration.String(), durationString(t, tc.ensure))
		})
	}
}

func TestSourceSecret(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     renderOpts
		auths map[string][2]string // host -> username, password; nil: no Secret rendered
	}{
		{"one registry", renderOpts{files: []string{"minimal.yaml"}}, map[string][2]string{
			"harbor.example.com": {"robot$ci+puller", `p@ss"w0rd\with$chars+and'quote`},
		}},
		{"domain and IP:port alias", renderOpts{files: []string{"two-registries.yaml"}}, map[string][2]string{
			"harbor.example.com": {"robot$ci+puller", "token-one"},
			"10.20.30.40:8443":   {"robot$ci+puller", "token-one"},
		}},
		{"non-ASCII and HTML characters", renderOpts{files: []string{"minimal.yaml"},
			set: []string{`registries[0].password=<tök&en>`}}, map[string][2]string{
			"harbor.example.com": {"robot$ci+puller", "<tök&en>"},
		}},
		{"existingSecret", renderOpts{files: []string{"existing-secret-issuer.yaml"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.o)
			pull := m.find("Secret")
			if tc.auths == nil {
				if len(pull) != 0 {
					t.Fatalf("rendered Secrets %v, want none with existingSecret", pull)
				}
				return
			}
			if len(pull) != 1 || pull[0].Metadata.Name != fullname+"-source" {
				t.Fatalf("rendered Secrets %v, want only %s-source", pull, fullname)
			}
			s := decode[corev1.Secret](t, pull[0])
			eq(t, "type", s.Type, corev1.SecretTypeDockerConfigJson)
			eq(t, "namespace", s.Namespace, releaseNS)
			if len(s.StringData) != 0 || len(s.Data) != 1 {
				t.Errorf("want only data[.dockerconfigjson], got data %v stringData %v", s.Data, s.StringData)
			}
			if _, ok := s.Annotations["helm.sh/resource-policy"]; ok {
				t.Error("the source Secret must be a normal release object (no resource-policy)")
			}
			dec := json.NewDecoder(bytes.NewReader(s.Data[corev1.DockerConfigJsonKey]))
			dec.DisallowUnknownFields()
			var cfg dockerConfigJSON
			if err := dec.Decode(&cfg); err != nil {
				t.Fatalf(".dockerconfigjson: %v\n%s", err, s.Data[corev1.DockerConfigJsonKey])
			}
			if len(cfg.Auths) != len(tc.auths) {
				t.Errorf("auths has %d hosts, want %d", len(cfg.Auths), len(tc.auths))
			}
			for host, up := range tc.auths {
				a, ok := cfg.Auths[host]
				if !ok {
					t.Errorf("auths has no %q", host)
					continue
				}
				eq(t, host+" username", a.Username, up[0])
				eq(t, host+" password", a.Password, up[1])
				eq(t, host+" auth", a.Auth, base64.StdEncoding.EncodeToString([]byte(up[0]+":"+up[1])))
			}
		})
	}
}

func TestCertManagerModes(t *testing.T) {
	serving := fullname + "-serving-cert"
	for _, tc := range []struct {
		name         string
		o            renderOpts
		issuers      []string
		certificates []string
		servingIssue issuerRef
	}{
		{
			name: "self-signed CA chain", o: renderOpts{files: []string{"minimal.yaml"}},
			issuers:      []string{fullname + "-ca", fullname + "-selfsigned"},
			certificates: []string{fullname + "-ca", serving},
			servingIssue: issuerRef{Name: fullname + "-ca", Kind: "Issuer", Group: "cert-manager.io"},
		},
		{
			name: "issuerRef name and kind", o: renderOpts{files: []string{"existing-secret-issuer.yaml"}},
			certificates: []string{serving},
			servingIssue: issuerRef{Name: "corp-ca", Kind: "ClusterIssuer", Group: "cert-manager.io"},
		},
		{
			name: "issuerRef of an external issuer", o: renderOpts{files: []string{"minimal.yaml"}, set: []string{
				"certManager.issuerRef.name=pca", "certManager.issuerRef.kind=AWSPCAClusterIssuer",
				"certManager.issuerRef.group=awspca.cert-manager.io"}},
			certificates: []string{serving},
			servingIssue: issuerRef{Name: "pca", Kind: "AWSPCAClusterIssuer", Group: "awspca.cert-manager.io"},
		},
		{
			name: "issuerRef name only", o: renderOpts{files: []string{"minimal.yaml"}, set: []string{"certManager.issuerRef.name=corp-ca"}},
			certificates: []string{serving},
			servingIssue: issuerRef{Name: "corp-ca", Kind: "Issuer", Group: "cert-manager.io"},
		},
		{
			name: "disabled", o: renderOpts{files: []string{"no-cert-manager.yaml"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.o)
			eqJSON(t, "Issuers", m.names("Issuer"), nilIfEmpty(tc.issuers))
			eqJSON(t, "Certificates", m.names("Certificate"), nilIfEmpty(tc.certificates))
			if n := len(m.find("ClusterIssuer")); n != 0 {
				t.Errorf("the chart renders %d ClusterIssuers; it must not create cluster-wide issuers", n)
			}
			for _, o := range append(m.find("Issuer"), m.find("Certificate")...) {
				eq(t, o.String()+" apiVersion", o.APIVersion, "cert-manager.io/v1")
				eq(t, o.String()+" namespace", o.Metadata.Namespace, releaseNS)
			}
			if len(tc.certificates) == 0 {
				return
			}

			c := get[certificate](t, m, "Certificate", serving)
			eq(t, "serving secretName", c.Spec.SecretName, fullname+"-tls")
			eqJSON(t, "serving dnsNames", c.Spec.DNSNames, []string{
				fullname + "." + releaseNS + ".svc",
				fullname + "." + releaseNS + ".svc.cluster.local",
			})
			eq(t, "serving duration", c.Spec.Duration, "2160h")
			eq(t, "serving renewBefore", c.Spec.RenewBefore, "720h")
			if !slices.Contains(c.Spec.Usages, "server auth") || slices.Contains(c.Spec.Usages, "client auth") {
				t.Errorf("serving usages = %v, want server auth (only)", c.Spec.Usages)
			}
			eq(t, "serving isCA", c.Spec.IsCA, false)
			eq(t, "serving key algorithm", c.Spec.PrivateKey.Algorithm, "ECDSA")
			eq(t, "serving key size", c.Spec.PrivateKey.Size, 256)
			eq(t, "serving rotationPolicy", c.Spec.PrivateKey.RotationPolicy, "Always")
			eq(t, "serving issuerRef", c.Spec.IssuerRef, tc.servingIssue)

			if len(tc.issuers) == 0 {
				return
			}
			self := get[issuer](t, m, "Issuer", fullname+"-selfsigned")
			if self.Spec.SelfSigned == nil || self.Spec.CA != nil {
				t.Errorf("%s-selfsigned spec = %+v, want selfSigned only", fullname, self.Spec)
			}
			ca := get[certificate](t, m, "Certificate", fullname+"-ca")
			eq(t, "CA isCA", ca.Spec.IsCA, true)
			eq(t, "CA secretName", ca.Spec.SecretName, fullname+"-ca")
			eq(t, "CA key algorithm", ca.Spec.PrivateKey.Algorithm, "ECDSA")
			eq(t, "CA key size", ca.Spec.PrivateKey.Size, 256)
			eq(t, "CA duration", ca.Spec.Duration, "43800h")
			// Same key across CA renewals: old and new serving certificates
			// verify against either CA certificate.
			eq(t, "CA rotationPolicy", ca.Spec.PrivateKey.RotationPolicy, "Never")
			eq(t, "CA issuerRef", ca.Spec.IssuerRef, issuerRef{Name: fullname + "-selfsigned", Kind: "Issuer", Group: "cert-manager.io"})
			caIssuer := get[issuer](t, m, "Issuer", fullname+"-ca")
			if caIssuer.Spec.CA == nil || caIssuer.Spec.SelfSigned != nil {
				t.Fatalf("%s-ca spec = %+v, want ca only", fullname, caIssuer.Spec)
			}
			eq(t, "CA Issuer secretName", caIssuer.Spec.CA.SecretName, fullname+"-ca")
		})
	}
}

// TestOptionalObjects: off by default, and right when on.
func TestOptionalObjects(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		m := render(t, renderOpts{files: []string{"minimal.yaml"}})
		for _, kind := range []string{"ServiceMonitor", "NetworkPolicy", "Job", "Namespace", "PriorityClass"} {
			if n := m.names(kind); len(n) != 0 {
				t.Errorf("%s rendered by default: %v", kind, n)
			}
		}
		eqJSON(t, "Services", m.names("Service"), []string{fullname})
		pdb := get[policyv1.PodDisruptionBudget](t, m, "PodDisruptionBudget", fullname)
		eq(t, "minAvailable", pdb.Spec.MinAvailable.String(), "1")
		eqJSON(t, "PDB selector", pdb.Spec.Selector, &metav1.LabelSelector{MatchLabels: selectorLabels(releaseName)})

		svc := get[corev1.Service](t, m, "Service", fullname)
		eq(t, "Service type", svc.Spec.Type, corev1.ServiceTypeClusterIP)
		if len(svc.Spec.Ports) != 1 {
			t.Fatalf("Service ports = %+v, want one", svc.Spec.Ports)
		}
		eq(t, "Service port", svc.Spec.Ports[0].Port, int32(443))
		eq(t, "Service targetPort", svc.Spec.Ports[0].TargetPort.String(), "webhook")
	})

	t.Run("single replica has no PodDisruptionBudget", func(t *testing.T) {
		m := render(t, renderOpts{files: []string{"minimal.yaml"}, set: []string{"replicaCount=1"}})
		if n := m.names("PodDisruptionBudget"); len(n) != 0 {
			t.Errorf("PodDisruptionBudget %v with one replica would block every drain", n)
		}
	})

	t.Run("every option on", func(t *testing.T) {
		m := render(t, renderOpts{files: []string{"everything.yaml"}})

		metrics := get[corev1.Service](t, m, "Service", fullname+"-metrics")
		if len(metrics.Spec.Ports) != 1 || metrics.Spec.Ports[0].Name != "metrics" || metrics.Spec.Ports[0].TargetPort.String() != "metrics" {
			t.Errorf("metrics Service ports = %+v", metrics.Spec.Ports)
		}
		sm := get[serviceMonitor](t, m, "ServiceMonitor", fullname)
		eq(t, "ServiceMonitor apiVersion", sm.APIVersion, "monitoring.coreos.com/v1")
		eq(t, "ServiceMonitor release label", sm.Labels["release"], "kube-prometheus-stack")
		eqJSON(t, "ServiceMonitor namespaces", sm.Spec.NamespaceSelector.MatchNames, []string{releaseNS})
		smSel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range m.find("Service") {
			want := s.Metadata.Name == fullname+"-metrics"
			if got := smSel.Matches(labels.Set(s.Metadata.Labels)); got != want {
				t.Errorf("ServiceMonitor selects Service %s: %v, want %v", s.Metadata.Name, got, want)
			}
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor endpoints = %+v", sm.Spec.Endpoints)
		}
		ep := sm.Spec.Endpoints[0]
		eq(t, "endpoint port", ep.Port, "metrics")
		eq(t, "endpoint path", ep.Path, "/metrics")
		eq(t, "endpoint interval", ep.Interval, "30s")

		np := get[networkingv1.NetworkPolicy](t, m, "NetworkPolicy", fullname)
		eqJSON(t, "NetworkPolicy podSelector", np.Spec.PodSelector, metav1.LabelSelector{MatchLabels: selectorLabels(releaseName)})
		eqJSON(t, "NetworkPolicy policyTypes", np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress})
		if len(np.Spec.Ingress) != 2 {
			t.Fatalf("NetworkPolicy ingress = %+v, want webhook and metrics rules", np.Spec.Ingress)
		}
		webhookRule, metricsRule := np.Spec.Ingress[0], np.Spec.Ingress[1]
		if len(webhookRule.Ports) != 1 || webhookRule.Ports[0].Port.IntValue() != 8443 || len(webhookRule.From) != 0 {
			t.Errorf("webhook ingress rule = %+v, want port 8443 from anywhere", webhookRule)
		}
		if len(metricsRule.Ports) != 1 || metricsRule.Ports[0].Port.IntValue() != 8080 || len(metricsRule.From) != 1 ||
			metricsRule.From[0].NamespaceSelector == nil {
			t.Errorf("metrics ingress rule = %+v, want port 8080 from the monitoring namespace", metricsRule)
		}
	})
}

// TestCleanupHook: reconcile.cleanupOnUninstall renders a post-delete hook
// that needs nothing of the release (its objects are gone by then): its own
// ServiceAccount, least-privilege ClusterRole and binding, created before the
// Job and deleted with it, and a Job that gets the Secret's name as a flag.
func TestCleanupHook(t *testing.T) {
	digest := "ghcr.io/regcred-webhook/regcred-webhook@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name       string
		o          renderOpts
		full       string
		secretName string
		image      string
	}{
		{"defaults", renderOpts{files: []string{"minimal.yaml"}, set: []string{"reconcile.cleanupOnUninstall=true"}},
			fullname, "regcred", "ghcr.io/regcred-webhook/regcred-webhook:0.1.0"},
		{"every option on", renderOpts{files: []string{"everything.yaml"}}, fullname, "harbor-pull", digest},
		{"fullnameOverride", renderOpts{files: []string{"minimal.yaml"},
			set: []string{"reconcile.cleanupOnUninstall=true", "fullnameOverride=pull-secrets"}},
			"pull-secrets", "regcred", "ghcr.io/regcred-webhook/regcred-webhook:0.1.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.o)
			name := tc.full + "-cleanup"
			sa := get[corev1.ServiceAccount](t, m, "ServiceAccount", name)
			cr := get[rbacv1.ClusterRole](t, m, "ClusterRole", name)
			crb := get[rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding", name)
			job := get[batchv1.Job](t, m, "Job", name)

			// post-delete, not pre-delete: before the release's objects are
			// deleted, the webhook's reconciler restores every copy the Job
			// deletes. Everything the Job needs exists before it (lower
			// weight) and goes with it.
			hooks := map[string]metav1.ObjectMeta{}
			for _, o := range m.objects {
				if _, ok := o.Metadata.Annotations["helm.sh/hook"]; ok {
					hooks[o.String()] = metav1.ObjectMeta{Annotations: o.Metadata.Annotations}
				}
			}
			wantHooks := []string{"ServiceAccount/" + name, "ClusterRole/" + name, "ClusterRoleBinding/" + name, "Job/" + name}
			gotHooks := slices.Sorted(maps.Keys(hooks))
			eqJSON(t, "hook objects", gotHooks, slices.Sorted(slices.Values(wantHooks)))
			for _, meta := range []metav1.ObjectMeta{sa.ObjectMeta, cr.ObjectMeta, crb.ObjectMeta, job.ObjectMeta} {
				eq(t, meta.Name+" hook", meta.Annotations["helm.sh/hook"], "post-delete")
				eq(t, meta.Name+" hook-delete-policy", meta.Annotations["helm.sh/hook-delete-policy"], "before-hook-creation,hook-succeeded")
			}
			for _, meta := range []metav1.ObjectMeta{sa.ObjectMeta, cr.ObjectMeta, crb.ObjectMeta} {
				eq(t, "weight of "+meta.Name+" (before the Job)", meta.Annotations["helm.sh/hook-weight"], "-10")
			}
			eq(t, "Job hook-weight", job.Annotations["helm.sh/hook-weight"], "0")

			// Least privilege: list (with the metadata.name field selector,
			// which passes resourceNames) and delete the managed copies only.
			eqJSON(t, "cleanup rules", cr.Rules, []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"secrets"},
				ResourceNames: []string{tc.secretName}, Verbs: []string{"list", "delete"},
			}})
			eqJSON(t, "cleanup roleRef", crb.RoleRef, rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name})
			eqJSON(t, "cleanup subjects", crb.Subjects, []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: releaseNS}})

			spec := job.Spec.Template.Spec
			eq(t, "cleanup serviceAccountName", spec.ServiceAccountName, name)
			eq(t, "cleanup restartPolicy", spec.RestartPolicy, corev1.RestartPolicyNever)
			checkRestricted(t, spec)
			if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
				t.Fatalf("cleanup containers = %d (+%d init), want 1", len(spec.Containers), len(spec.InitContainers))
			}
			c := spec.Containers[0]
			eq(t, "cleanup image", c.Image, tc.image)
			// No config file: the release's ConfigMap is gone at post-delete.
			eqJSON(t, "cleanup args", c.Args, []string{"cleanup", "--secret-name=" + tc.secretName})
			if len(spec.Volumes) != 0 || len(c.VolumeMounts) != 0 {
				t.Errorf("cleanup volumes = %+v, mounts = %+v: at post-delete the release's ConfigMap and Secrets may be gone", spec.Volumes, c.VolumeMounts)
			}
			eqJSON(t, "cleanup env", c.Env, []corev1.EnvVar{{
				Name:      "POD_NAMESPACE",
				ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
			}})

			// Its Pods are not the webhook's: no Service, PodDisruptionBudget
			// or NetworkPolicy (they all use the selector labels) selects them.
			if labels.SelectorFromSet(selectorLabels(releaseName)).Matches(labels.Set(job.Spec.Template.Labels)) {
				t.Errorf("the cleanup Pod labels %v match the webhook's selector", job.Spec.Template.Labels)
			}
			eq(t, "cleanup Pod component", job.Spec.Template.Labels["app.kubernetes.io/component"], "cleanup")
		})
	}

	t.Run("off by default", func(t *testing.T) {
		m := render(t, renderOpts{files: []string{"minimal.yaml"}})
		for _, o := range m.objects {
			if h, ok := o.Metadata.Annotations["helm.sh/hook"]; ok {
				t.Errorf("%s is a %s hook without reconcile.cleanupOnUninstall", o, h)
			}
		}
	})
}

// TestStructure runs the checks that hold for every render: labels and
// namespaces on every object, every reference resolves, no subPath, and no
// Pod other than the webhook's is selected by its Service.
func TestStructure(t *testing.T) {
	clusterScoped := map[string]bool{
		"ClusterRole": true, "ClusterRoleBinding": true, "MutatingWebhookConfiguration": true,
		"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			m := render(t, sc.o)
			release, ns := sc.o.release, sc.o.namespace
			if release == "" {
				release = releaseName
			}
			if ns == "" {
				ns = releaseNS
			}

			for _, o := range m.objects {
				l := o.Metadata.Labels
				for k, want := range map[string]string{
					"app.kubernetes.io/name":       "regcred-webhook",
					"app.kubernetes.io/instance":   release,
					"app.kubernetes.io/version":    "0.1.0",
					"app.kubernetes.io/managed-by": "Helm",
					"app.kubernetes.io/part-of":    "regcred-webhook",
					"helm.sh/chart":                "regcred-webhook-0.1.0",
				} {
					if l[k] != want {
						t.Errorf("%s: label %s = %q, want %q", o, k, l[k], want)
					}
				}
				if clusterScoped[o.Kind] {
					if o.Metadata.Namespace != "" {
						t.Errorf("%s is cluster-scoped but has namespace %q", o, o.Metadata.Namespace)
					}
				} else if o.Metadata.Namespace != ns {
					t.Errorf("%s: namespace %q, want the release namespace %q", o, o.Metadata.Namespace, ns)
				}
			}
			for name, spec := range podSpecs(t, m) {
				t.Run(name, func(t *testing.T) { checkRestricted(t, spec) })
				for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
					for _, vm := range c.VolumeMounts {
						if vm.SubPath != "" || vm.SubPathExpr != "" {
							t.Errorf("%s mounts %s with subPath: the kubelet never updates such a mount", name, vm.Name)
						}
					}
				}
			}

			checkReferences(t, m, ns)
		})
	}
}

// podSpecs returns the Pod templates of every workload rendered.
func podSpecs(t *testing.T, m *manifest) map[string]corev1.PodSpec {
	t.Helper()
	out := map[string]corev1.PodSpec{}
	for _, o := range m.objects {
		switch o.Kind {
		case "Deployment":
			out[o.String()] = decode[appsv1.Deployment](t, o).Spec.Template.Spec
		case "Job":
			out[o.String()] = decode[batchv1.Job](t, o).Spec.Template.Spec
		case "DaemonSet", "StatefulSet", "Pod", "CronJob", "ReplicaSet":
			t.Errorf("unexpected workload %s", o)
		}
	}
	return out
}

// checkReferences follows every name one object gives another.
func checkReferences(t *testing.T, m *manifest, ns string) {
	t.Helper()
	deps := m.find("Deployment")
	if len(deps) != 1 {
		t.Fatalf("want one Deployment, got %v", deps)
	}
	d := decode[appsv1.Deployment](t, deps[0])
	full := d.Name
	pod := d.Spec.Template
	spec := pod.Spec
	must := func(kind, name, why string) {
		t.Helper()
		if !m.has(kind, name) {
			t.Errorf("%s: no %s %q rendered", why, kind, name)
		}
	}

	must("ServiceAccount", spec.ServiceAccountName, "Deployment serviceAccountName")
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("Deployment selector %v does not match its Pod labels %v", d.Spec.Selector, pod.Labels)
	}
	ports := map[string]int32{}
	for _, p := range spec.Containers[0].Ports {
		ports[p.Name] = p.ContainerPort
	}

	// Service -> Pods and the webhook port.
	svc := get[corev1.Service](t, m, "Service", full)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
		t.Errorf("Service selector %v does not match the Pod labels %v", svc.Spec.Selector, pod.Labels)
	}
	for _, p := range svc.Spec.Ports {
		if _, ok := ports[p.TargetPort.String()]; !ok {
			t.Errorf("Service targetPort %q is not a container port (%v)", p.TargetPort.String(), ports)
		}
	}
	// No other Pod (the cleanup Job's) may be selected by the Service.
	for _, o := range m.find("Job") {
		j := decode[batchv1.Job](t, o)
		if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(j.Spec.Template.Labels)) {
			t.Errorf("Job %s's Pods are selected by the webhook Service", j.Name)
		}
	}

	// Webhook -> Service -> Certificate.
	mwc := get[admissionregistrationv1.MutatingWebhookConfiguration](t, m, "MutatingWebhookConfiguration", full)
	for _, w := range mwc.Webhooks {
		eq(t, "webhook service", w.ClientConfig.Service.Name, svc.Name)
		eq(t, "webhook service namespace", w.ClientConfig.Service.Namespace, ns)
	}
	tlsSecret := spec.Volumes[0].Projected.Sources[1].Secret.Name
	must("ConfigMap", spec.Volumes[0].Projected.Sources[0].ConfigMap.Name, "config volume")
	if from, ok := mwc.Annotations["cert-manager.io/inject-ca-from"]; ok {
		certNS, certName, _ := strings.Cut(from, "/")
		eq(t, "inject-ca-from namespace", certNS, ns)
		c := get[certificate](t, m, "Certificate", certName)
		eq(t, "the mounted TLS Secret is the Certificate's", tlsSecret, c.Spec.SecretName)
		if !slices.Contains(c.Spec.DNSNames, svc.Name+"."+ns+".svc") {
			t.Errorf("Certificate dnsNames %v lack the Service's %s.%s.svc", c.Spec.DNSNames, svc.Name, ns)
		}
		if len(m.find("Issuer")) > 0 { // the chart's own chain
			must("Issuer", c.Spec.IssuerRef.Name, "serving Certificate issuerRef")
		}
	}

	// RBAC bindings -> roles and the ServiceAccount.
	for _, o := range m.find("ClusterRoleBinding") {
		b := decode[rbacv1.ClusterRoleBinding](t, o)
		must("ClusterRole", b.RoleRef.Name, o.String()+" roleRef")
		for _, s := range b.Subjects {
			must("ServiceAccount", s.Name, o.String()+" subject")
			eq(t, o.String()+" subject namespace", s.Namespace, ns)
		}
	}
	for _, o := range m.find("RoleBinding") {
		b := decode[rbacv1.RoleBinding](t, o)
		must("Role", b.RoleRef.Name, o.String()+" roleRef")
		for _, s := range b.Subjects {
			must("ServiceAccount", s.Name, o.String()+" subject")
		}
	}

	// ValidatingAdmissionPolicyBinding -> policy -> the webhook's
	// ServiceAccount: the one whose Secret writes it limits.
	for _, o := range m.find("ValidatingAdmissionPolicyBinding") {
		b := decode[admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, o)
		must("ValidatingAdmissionPolicy", b.Spec.PolicyName, o.String()+" policyName")
	}
	for _, o := range m.find("ValidatingAdmissionPolicy") {
		p := decode[admissionregistrationv1.ValidatingAdmissionPolicy](t, o)
		want := `request.userInfo.username == "system:serviceaccount:` + ns + ":" + spec.ServiceAccountName + `"`
		if len(p.Spec.MatchConditions) != 1 || p.Spec.MatchConditions[0].Expression != want {
			t.Errorf("%s matchConditions = %+v, want the one expression %s", o, p.Spec.MatchConditions, want)
		}
	}

	// PodDisruptionBudget -> Pods.
	for _, o := range m.find("PodDisruptionBudget") {
		p := decode[policyv1.PodDisruptionBudget](t, o)
		s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || !s.Matches(labels.Set(pod.Labels)) {
			t.Errorf("PodDisruptionBudget selector %v does not match the Pods", p.Spec.Selector)
		}
	}
}

// checkRestricted asserts the Pod Security Standard "restricted" profile.
func checkRestricted(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil {
		t.Fatal("no pod securityContext")
	}
	eq(t, "runAsNonRoot", deref(psc.RunAsNonRoot), true)
	eq(t, "runAsUser", deref(psc.RunAsUser), int64(65532))
	eq(t, "runAsGroup", deref(psc.RunAsGroup), int64(65532))
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile = %+v, want RuntimeDefault", psc.SeccompProfile)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("host namespaces are used")
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("hostPath volume %s", v.Name)
		}
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s has no securityContext", c.Name)
			continue
		}
		eq(t, c.Name+" allowPrivilegeEscalation", deref(sc.AllowPrivilegeEscalation), false)
		eq(t, c.Name+" readOnlyRootFilesystem", deref(sc.ReadOnlyRootFilesystem), true)
		eq(t, c.Name+" privileged", deref(sc.Privileged), false)
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %s capabilities = %+v, want drop [ALL] and no add", c.Name, sc.Capabilities)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				t.Errorf("container %s uses hostPort %d", c.Name, p.HostPort)
			}
		}
	}
}

func selectorLabels(release string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "regcred-webhook", "app.kubernetes.io/instance": release}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// eqJSON compares through JSON, which is what the API server would see.
func eqJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func ptr[T any](v T) *T { return &v }

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func durationString(t *testing.T, ms string) string {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(ms, "%dms", &n); err != nil {
		t.Fatalf("ensureTimeout %q: %v", ms, err)
	}
	return (time.Duration(n) * time.Millisecond).String()
}
