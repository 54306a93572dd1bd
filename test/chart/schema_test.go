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
		// The binary rejects an auth whose username has a colon, and would
		// then admit every Pod unpatched.
		{"username-colon.yaml", []string{"at '/registries/0/username': 'robot:ci' does not match pattern '^[^:]+$'"}},
		{"service-account-name.yaml", []string{"at '/serviceAccount/name': 'Webhook\"SA' does not match pattern"}},
		{"shutdown-delay-negative.yaml", []string{"at '/shutdownDelaySeconds': minimum: got -1, want 0"}},
		{"grace-period-0.yaml", []string{"at '/terminationGracePeriodSeconds': minimum: got 0, want 1"}},
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
		{"username with a colon", renderOpts{files: []string{"invalid/username-colon.yaml"}, extra: skip},
			"registries[0].username must not contain ':'"},
		// Names that go into the ValidatingAdmissionPolicy's CEL literals.
		{"secretName that is no Secret name", renderOpts{files: []string{"minimal.yaml"}, set: []string{"secretName=a' || true || 'b"}, extra: skip},
			`secretName "a' || true || 'b" is not a valid Secret name`},
		{"serviceAccount.name that is no ServiceAccount name", renderOpts{files: []string{"invalid/service-account-name.yaml"}, extra: skip},
			`serviceAccount.name "Webhook\"SA" is not a valid ServiceAccount name`},
		// JSON Schema cannot compare two values: only the templates check this,
		// with or without the schema.
		{"grace period equal to the delay", renderOpts{files: []string{"minimal.yaml"}, set: []string{"terminationGracePeriodSeconds=10"}},
			"terminationGracePeriodSeconds (10) must be greater than shutdownDelaySeconds (10)"},
		{"grace period below the delay", renderOpts{files: []string{"minimal.yaml"},
			set: []string{"shutdownDelaySeconds=45", "terminationGracePeriodSeconds=30"}},
			"terminationGracePeriodSeconds (30) must be greater than shutdownDelaySeconds (45)"},
		{"grace period 0 without the schema", renderOpts{files: []string{"invalid/grace-period-0.yaml"}, extra: skip},
			"terminationGracePeriodSeconds (0) must be greater than shutdownDelaySeconds (0)"},
		{"negative delay without the schema", renderOpts{files: []string{"invalid/shutdown-delay-negative.yaml"}, extra: skip},
			"shutdownDelaySeconds must be 0 (no preStop delay) or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := renderErr(t, tc.o); !strings.Contains(msg, tc.want) {
				t.Errorf("error does not say %q:\n%s", tc.want, msg)
			}
		})
	}
}
