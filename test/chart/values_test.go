package chart_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// freeForm values hold Kubernetes objects or lists the chart passes through:
// they are documented as a whole, not field by field.
var freeForm = map[string]bool{
	"registries": true, "excludeNamespaces": true, "imagePullSecrets": true,
	"certManager.issuerRef": true, "serviceAccount.annotations": true,
	"podAnnotations": true, "podLabels": true, "podSecurityContext": true, "securityContext": true,
	"resources": true, "nodeSelector": true, "tolerations": true, "affinity": true,
	"topologySpreadConstraints": true, "serviceMonitor.labels": true,
	"networkPolicy.webhookFrom": true, "networkPolicy.metricsFrom": true,
}

// valuePaths flattens values.yaml into the dotted paths users set.
func valuePaths(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	var paths []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			p := prefix + k
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 && !freeForm[p] {
				walk(p+".", sub)
				continue
			}
			paths = append(paths, p)
		}
	}
	walk("", values)
	sort.Strings(paths)
	return paths
}

// TestValuesDocumented: every value has a comment in values.yaml, a row in
// the README's values table, and a schema entry.
func TestValuesDocumented(t *testing.T) {
	paths := valuePaths(t)
	if len(paths) < 30 {
		t.Fatalf("only %d values found: %v", len(paths), paths)
	}

	readme, err := os.ReadFile(filepath.Join(chartDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(chartDir(t), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	eq(t, "$schema", schema["$schema"], any("http://json-schema.org/draft-07/schema#"))
	eq(t, "top-level additionalProperties", schema["additionalProperties"], any(false))

	commented := commentedKeys(t)
	for _, p := range paths {
		if !strings.Contains(string(readme), "| `"+p+"` |") {
			t.Errorf("value %s has no row in the README's values table", p)
		}
		parts := strings.Split(p, ".")
		for i := range parts {
			if k := strings.Join(parts[:i+1], "."); !commented[k] {
				t.Errorf("value %s has no comment above it in values.yaml", k)
			}
		}
		node := schema
		for _, part := range strings.Split(p, ".") {
			props, _ := node["properties"].(map[string]any)
			next, ok := props[part].(map[string]any)
			if !ok {
				t.Errorf("value %s is not in values.schema.json", p)
				break
			}
			node = next
		}
	}

	// And no README row for a value that does not exist.
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z.]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		if !slices.Contains(paths, m[1]) {
			t.Errorf("the README documents %s, which values.yaml does not have", m[1])
		}
	}
}

// commentedKeys returns the dotted paths of the keys in values.yaml whose
// preceding non-blank line is a comment.
func commentedKeys(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`^( *)([A-Za-z][A-Za-z0-9]*):`)
	out := map[string]bool{}
	var stack []string // keys by indentation level (2 spaces)
	prev := ""
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		if m := key.FindStringSubmatch(line); m != nil {
			level := len(m[1]) / 2
			if level > len(stack) {
				prev = trimmed
				continue // inside a free-form default (e.g. podSecurityContext)
			}
			stack = append(stack[:level], m[2])
			if strings.HasPrefix(prev, "#") {
				out[strings.Join(stack, ".")] = true
			}
		}
		prev = trimmed
	}
	return out
}
