package chart_test

import (
	"strings"
	"testing"
)

// TestHelmLintStrict lints the chart with the values a user must give, and
// with the other secret and certificate modes. --strict turns every warning
// and every missing template value into a failure.
func TestHelmLintStrict(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
	}{
		{"minimal: one registry", []string{"minimal.yaml"}},
		{"existingSecret with certManager.issuerRef", []string{"existing-secret-issuer.yaml"}},
		{"cert-manager disabled", []string{"no-cert-manager.yaml"}},
		{"every option on", []string{"everything.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir(t), "--namespace", releaseNS}
			for _, f := range tc.files {
				args = append(args, "--values", testdata(t, f))
			}
			out, err := runHelm(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
				t.Fatalf("unexpected lint output:\n%s", out)
			}
		})
	}
}

// TestHelmLintStrictRejectsDefaults: the chart's own defaults name no
// registry, so linting without a values file must fail, with the reason.
func TestHelmLintStrictRejectsDefaults(t *testing.T) {
	out, err := runHelm(t, "lint", "--strict", chartDir(t))
	if err == nil {
		t.Fatalf("helm lint --strict passed without a registry:\n%s", out)
	}
	for _, want := range []string{"/registries': minItems: got 0, want 1", "/existingSecret': minLength: got 0, want 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("lint error does not say %q:\n%v", want, err)
		}
	}
}

// TestKubeVersion: the chart needs 1.30 (ValidatingAdmissionPolicy v1 and
// the preStop sleep action), provider builds with a pre-release suffix
// included, and Helm refuses an older cluster before applying anything.
func TestKubeVersion(t *testing.T) {
	for _, tc := range []struct {
		kube string
		ok   bool
	}{
		{"1.29.9", false},
		{"1.27.0", false},
		{"1.30.0", true},
		{"v1.30.4-eks-a737599", true},
		{"1.37.2", true},
	} {
		t.Run(tc.kube, func(t *testing.T) {
			o := renderOpts{files: []string{"minimal.yaml"}, extra: []string{"--kube-version", tc.kube}}
			if tc.ok {
				m := render(t, o)
				if len(m.find("ValidatingAdmissionPolicy")) != 1 {
					t.Error("no ValidatingAdmissionPolicy rendered")
				}
				return
			}
			if msg := renderErr(t, o); !strings.Contains(msg, "chart requires kubeVersion: >=1.30.0-0") {
				t.Errorf("error does not name the required version:\n%s", msg)
			}
		})
	}
}
