package chart_test

import (
	"strings"
	"testing"
)

// TestSchemaRejects renders values the schema must refuse and checks that
// helm's error names the offending value in words a user can act on. Each
// values file is valid apart from the one mistake it is named after.
func TestSchemaRejects(t *testing.T) {
	const schemaErr = "values don't meet the specifications of the schema(s)"
	for _, tc := range []struct {
		file string
		want []string // each must appear in helm's error
	}{
		{"wrong-type.yaml", []string{"at '/replicaCount': got string, want integer"}},
		{"unknown-key.yaml", []string{"additional properties 'registry' not allowed"}},
		{"failure-policy.yaml", []string{"at '/webhook/failurePolicy': value must be one of 'Ignore', 'Fail'"}},
		{"timeout-0.yaml", []string{"at '/webhook/timeoutSeconds': minimum: got 0, want 1"}},
		{"timeout-31.yaml", []string{"at '/webhook/timeoutSeconds': maximum: got 31, want 30"}},
		{"neither.yaml", []string{
			"'oneOf' failed, none matched",
			"at '/registries': minItems: got 0, want 1",
			"at '/existingSecret': minLength: got 0, want 1",
		}},
		{"both.yaml", []string{
			"'oneOf' failed, none matched",
			"at '/existingSecret': maxLength: got 12, want 0",
			"at '/registries': maxItems: got 1, want 0",
		}},
		{"password-number.yaml", []string{"at '/registries/0/password': got number, want string"}},
		{"registry-no-password.yaml", []string{"at '/registries/0': missing property 'password'"}},
		{"no-cert-manager-no-ca.yaml", []string{
			"at '/tls/secretName': minLength: got 0, want 1",
			"at '/webhook/caBundle': minLength: got 0, want 1",
		}},
		{"ca-bundle-pem.yaml", []string{"at '/webhook/caBundle':", "does not match pattern"}},
		{"issuer-kind-only.yaml", []string{"at '/certManager/issuerRef': properties 'name' required, if 'kind' exists"}},
		{"log-level.yaml", []string{"at '/logLevel'", "value must be one of 'debug', 'info', 'error', 'panic'"}},
	} {
		t.Run(strings.TrimSuffix(tc.file, ".yaml"), func(t *testing.T) {
			msg := renderErr(t, renderOpts{files: []string{"invalid/" + tc.file}})
			if !strings.Contains(msg, schemaErr) {
				t.Errorf("not rejected by the schema:\n%s", msg)
			}
			for _, want := range tc.want {
				if !strings.Contains(msg, want) {
					t.Errorf("error does not say %q:\n%s", want, msg)
				}
			}
		})
	}
}

// TestTemplateGuards: with the schema skipped (helm --skip-schema-validation,
// Argo CD skipSchemaValidation) the templates still refuse what cannot work,
// and they catch what JSON Schema cannot express (a host listed twice).
func TestTemplateGuards(t *testing.T) {
	skip := []string{"--skip-schema-validation"}
	for _, tc := range []struct {
		name string
		o    renderOpts
		want string
	}{
		{"neither", renderOpts{files: []string{"invalid/neither.yaml"}, extra: skip},
			"set registries ([{host, username, password}]) or existingSecret"},
		{"both", renderOpts{files: []string{"invalid/both.yaml"}, extra: skip},
			"set either registries or existingSecret, not both"},
		{"no CA without cert-manager", renderOpts{files: []string{"invalid/no-cert-manager-no-ca.yaml"}, extra: skip},
			"certManager.enabled=false needs webhook.caBundle"},
		{"no TLS Secret without cert-manager", renderOpts{
			files: []string{"invalid/no-cert-manager-no-ca.yaml"}, set: []string{"webhook.caBundle=Zm9v"}, extra: skip},
			"certManager.enabled=false needs tls.secretName"},
		{"issuerRef without name", renderOpts{files: []string{"invalid/issuer-kind-only.yaml"}, extra: skip},
			"certManager.issuerRef needs a name"},
		{"source named like the copies", renderOpts{files: []string{"existing-secret-issuer.yaml"}, set: []string{"existingSecret=regcred"}},
			`the source Secret and secretName are both "regcred"`},
		{"host listed twice", renderOpts{files: []string{"two-registries.yaml"}, set: []string{"registries[1].host=harbor.example.com"}},
			`registries: host "harbor.example.com" is listed twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := renderErr(t, tc.o); !strings.Contains(msg, tc.want) {
				t.Errorf("error does not say %q:\n%s", tc.want, msg)
			}
		})
	}
}
