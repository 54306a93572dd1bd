// Package chart_test checks the Helm chart in charts/regcred-webhook with the
// pinned helm binary that hack/tools.sh builds from the Go module proxy:
// lint, the rendered objects (decoded strictly into the k8s API types), the
// values schema, the RBAC rules and the generated deploy/ manifest.
package chart_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	// Release name and namespace of most renders. The namespace differs from
	// the release name so a test catches a template that confuses them.
	releaseName = "regcred-webhook"
	releaseNS   = "registry-system"
	// The full name for releaseName: it contains the chart name, so it is
	// used as is.
	fullname = "regcred-webhook"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error

	// helmHome isolates helm from the user's config, cache and plugins.
	helmHome string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "regcred-chart-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helmHome = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the module root: the test runs in test/chart.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("%s is not the repository root: %v", dir, err)
	}
	return dir
}

func chartDir(t testing.TB) string {
	return filepath.Join(repoRoot(t), "charts", "regcred-webhook")
}

// helm returns the pinned helm binary, building it with hack/tools.sh on
// first use. It fails the test, never skips it, when helm cannot be had.
func helm(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() {
		root := repoRoot(t)
		out, err := exec.Command("bash", filepath.Join(root, "hack", "tools.sh"), "helm-path").Output()
		if err != nil {
			helmErr = fmt.Errorf("hack/tools.sh helm-path: %w", err)
			return
		}
		p := strings.TrimSpace(string(out))
		if _, err := os.Stat(p); err != nil {
			build := exec.Command("bash", filepath.Join(root, "hack", "tools.sh"), "helm")
			build.Dir = root
			if out, err := build.CombinedOutput(); err != nil {
				helmErr = fmt.Errorf("hack/tools.sh helm: %w\n%s", err, out)
				return
			}
		}
		if _, err := os.Stat(p); err != nil {
			helmErr = fmt.Errorf("helm is still missing after hack/tools.sh helm: %w", err)
			return
		}
		helmPath = p
	})
	if helmErr != nil {
		t.Fatalf("cannot get the pinned helm: %v", helmErr)
	}
	return helmPath
}

// runHelm runs helm with args in the repository root and returns its stdout,
// and an error carrying stderr when it fails.
func runHelm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\nstderr:\n%s\nstdout:\n%s",
			strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// renderOpts are the inputs of one `helm template`.
type renderOpts struct {
	release   string   // default releaseName
	namespace string   // default releaseNS
	files     []string // values files under testdata/
	set       []string // --set key=value
	extra     []string // more flags
}

func (o renderOpts) args(t testing.TB) []string {
	release, ns := o.release, o.namespace
	if release == "" {
		release = releaseName
	}
	if ns == "" {
		ns = releaseNS
	}
	args := []string{"template", release, chartDir(t), "--namespace", ns}
	for _, f := range o.files {
		args = append(args, "--values", testdata(t, f))
	}
	for _, s := range o.set {
		args = append(args, "--set", s)
	}
	return append(args, o.extra...)
}

func testdata(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("values file: %v", err)
	}
	return p
}

// render runs `helm template` and fails the test if it fails.
func render(t testing.TB, o renderOpts) *manifest {
	t.Helper()
	out, err := runHelm(t, o.args(t)...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseManifest(out)
	if err != nil {
		t.Fatalf("parse the rendered manifest: %v\n%s", err, out)
	}
	return m
}

// renderErr runs `helm template` that must fail and returns helm's error.
func renderErr(t testing.TB, o renderOpts) string {
	t.Helper()
	out, err := runHelm(t, o.args(t)...)
	if err == nil {
		t.Fatalf("helm template succeeded, want an error; output:\n%s", out)
	}
	return err.Error()
}

// object is one rendered document.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	raw []byte
}

func (o object) String() string { return o.Kind + "/" + o.Metadata.Name }

type manifest struct{ objects []object }

func parseManifest(s string) (*manifest, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(s)))
	m := &manifest{}
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return nil, err
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, fmt.Errorf("%w in:\n%s", err, doc)
		}
		if len(probe) == 0 { // only comments
			continue
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, err
		}
		if o.Kind == "" || o.APIVersion == "" || o.Metadata.Name == "" {
			return nil, fmt.Errorf("document without apiVersion, kind or name:\n%s", doc)
		}
		o.raw = doc
		m.objects = append(m.objects, o)
	}
}

// find returns the objects of a kind, in render order.
func (m *manifest) find(kind string) []object {
	var out []object
	for _, o := range m.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (m *manifest) has(kind, name string) bool {
	for _, o := range m.objects {
		if o.Kind == kind && o.Metadata.Name == name {
			return true
		}
	}
	return false
}

func (m *manifest) names(kind string) []string {
	var out []string
	for _, o := range m.find(kind) {
		out = append(out, o.Metadata.Name)
	}
	slices.Sort(out)
	return out
}

// get decodes the object kind/name strictly into T: a field T does not know
// (a typo in a template) fails the test.
func get[T any](t testing.TB, m *manifest, kind, name string) *T {
	t.Helper()
	for _, o := range m.objects {
		if o.Kind == kind && o.Metadata.Name == name {
			return decode[T](t, o)
		}
	}
	var have []string
	for _, o := range m.objects {
		have = append(have, o.String())
	}
	t.Fatalf("no %s %q rendered; have %v", kind, name, have)
	return nil
}

func decode[T any](t testing.TB, o object) *T {
	t.Helper()
	v := new(T)
	if err := yaml.UnmarshalStrict(o.raw, v); err != nil {
		t.Fatalf("decode %s strictly: %v\n%s", o, err, o.raw)
	}
	return v
}
