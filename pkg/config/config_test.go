package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse(nil, "regcred-webhook")
	if err != nil {
		t.Fatalf("empty file with POD_NAMESPACE set must be valid: %v", err)
	}
	if c.SecretName != "regcred" {
		t.Errorf("secretName = %q, want regcred", c.SecretName)
	}
	if got := c.SourceSecret.String(); got != "regcred-webhook/regcred-webhook-source" {
		t.Errorf("sourceSecret = %q", got)
	}
	for _, ns := range []string{"kube-system", "kube-public", "kube-node-lease", "regcred-webhook"} {
		if !c.Excluded(ns) {
			t.Errorf("namespace %q must be excluded by default", ns)
		}
	}
	if c.Excluded("default") {
		t.Error("namespace default must not be excluded")
	}
	if c.EnsureTimeout.Duration != DefaultEnsureTimeout {
		t.Errorf("ensureTimeout = %s", c.EnsureTimeout)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		podNS    string
		wantErrs []string // every substring must appear
		check    func(t *testing.T, c *Config)
	}{
		{
			name:  "full file",
			podNS: "ops",
			yaml: `
secretName: harbor-pull
sourceSecret: {namespace: registry, name: harbor-robot}
excludeNamespaces: [kube-system, batch]
ensureTimeout: 1500ms
reconcile: {provisionAllNamespaces: true, restartStuckPods: true}
`,
			check: func(t *testing.T, c *Config) {
				if c.SecretName != "harbor-pull" || c.SourceSecret.String() != "registry/harbor-robot" {
					t.Errorf("got %+v", c)
				}
				if !c.Excluded("batch") || !c.Excluded("ops") || !c.Excluded("registry") || c.Excluded("kube-public") {
					t.Errorf("excludeNamespaces = %v: an explicit list replaces the default, plus the own and the source's namespace", c.ExcludeNamespaces)
				}
				if c.EnsureTimeout.Duration != 1500*time.Millisecond {
					t.Errorf("ensureTimeout = %s", c.EnsureTimeout)
				}
				if !c.Reconcile.ProvisionAllNamespaces || !c.Reconcile.RestartStuckPods {
					t.Errorf("reconcile = %+v", c.Reconcile)
				}
			},
		},
		{
			name:  "own namespace listed explicitly is not duplicated",
			podNS: "ops",
			yaml:  "excludeNamespaces: [ops]\n",
			check: func(t *testing.T, c *Config) {
				if len(c.ExcludeNamespaces) != 1 {
					t.Errorf("excludeNamespaces = %v", c.ExcludeNamespaces)
				}
			},
		},
		{name: "empty ensureTimeout is the default", podNS: "ops", yaml: "ensureTimeout:\n",
			check: func(t *testing.T, c *Config) {
				if c.EnsureTimeout.Duration != DefaultEnsureTimeout {
					t.Errorf("ensureTimeout = %s", c.EnsureTimeout)
				}
			}},
		{name: "unknown field is refused", podNS: "ops", yaml: "secretNme: x\n", wantErrs: []string{`unknown field "secretNme"`}},
		{name: "misplaced reconcile option", podNS: "ops", yaml: "provisionAllNamespaces: true\n", wantErrs: []string{`unknown field "provisionAllNamespaces"`}},
		{name: "wrong type", podNS: "ops", yaml: "excludeNamespaces: kube-system\n", wantErrs: []string{"excludeNamespaces"}},
		{name: "bare number duration", podNS: "ops", yaml: "ensureTimeout: 2\n", wantErrs: []string{"ensureTimeout", `"1500ms"`}},
		{name: "bad duration", podNS: "ops", yaml: "ensureTimeout: soon\n", wantErrs: []string{"ensureTimeout", "must be a duration"}},
		{name: "not yaml", podNS: "ops", yaml: "secretName: [\n", wantErrs: []string{"config file"}},
		{
			name:     "no namespace anywhere",
			yaml:     "",
			wantErrs: []string{"sourceSecret.namespace: Required value", "POD_NAMESPACE"},
		},
		{
			name:  "every problem at once",
			podNS: "ops",
			yaml: `
secretName: Regcred
sourceSecret: {namespace: "Bad_NS", name: "-x"}
excludeNamespaces: [kube-system, kube-system, "UPPER"]
ensureTimeout: 40s
`,
			wantErrs: []string{
				`secretName: Invalid value: "Regcred"`,
				`sourceSecret.namespace: Invalid value: "Bad_NS"`,
				`sourceSecret.name: Invalid value: "-x"`,
				`excludeNamespaces[1]: Duplicate value: "kube-system"`,
				`excludeNamespaces[2]: Invalid value: "UPPER"`,
				`ensureTimeout: Invalid value: "40s"`,
			},
		},
		{
			name:     "source equal to the copy",
			podNS:    "ops",
			yaml:     "secretName: regcred\nsourceSecret: {name: regcred}\n",
			wantErrs: []string{"sourceSecret.name", "must differ from secretName"},
		},
		{name: "negative duration", podNS: "ops", yaml: "ensureTimeout: -1s\n", wantErrs: []string{"ensureTimeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), tt.podNS)
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error containing %q, got none", tt.wantErrs)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("secretName: pull\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, "ops")
	if err != nil || c.SecretName != "pull" {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"), "ops")
	if err == nil || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("a missing file must name the flag, got %v", err)
	}
}
