package pullsecret

import (
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
	"github.com/regcred-webhook/regcred-webhook/pkg/dockerconfig"
)

const secretPassword = "p4ss-w0rd-never-logged"

var ref = config.SecretRef{Namespace: "regcred-webhook", Name: "source"}

func sourceSecret(t *testing.T, typ corev1.SecretType, data []byte) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name, ResourceVersion: "5"},
		Type:       typ,
		Data:       map[string][]byte{},
	}
	if data != nil {
		s.Data[corev1.DockerConfigJsonKey] = data
	}
	return s
}

func build(t *testing.T, hosts ...string) []byte {
	t.Helper()
	var creds []dockerconfig.Credential
	for _, h := range hosts {
		creds = append(creds, dockerconfig.Credential{Host: h, Username: "robot$ci+puller", Password: secretPassword})
	}
	b, err := dockerconfig.Build(creds...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		secret  *corev1.Secret
		wantErr string
		match   string // an image that must match when valid
	}{
		{name: "valid", secret: sourceSecret(t, corev1.SecretTypeDockerConfigJson, build(t, "harbor.example.com", "10.0.0.5:8443")),
			match: "10.0.0.5:8443/team/app:1"},
		{name: "opaque type", secret: sourceSecret(t, corev1.SecretTypeOpaque, build(t, "harbor.example.com")),
			wantErr: `has type "Opaque", want "kubernetes.io/dockerconfigjson"`},
		{name: "no key", secret: sourceSecret(t, corev1.SecretTypeDockerConfigJson, nil), wantErr: `has no ".dockerconfigjson" key`},
		{name: "not json", secret: sourceSecret(t, corev1.SecretTypeDockerConfigJson, []byte(`{"auths": {"h": {"password": "`+secretPassword)),
			wantErr: "regcred-webhook/source"},
		{name: "empty auths", secret: sourceSecret(t, corev1.SecretTypeDockerConfigJson, []byte(`{"auths":{}}`)),
			wantErr: "regcred-webhook/source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := Validate(tt.secret)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), secretPassword) {
					t.Fatalf("error leaks the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if snap.Hash != dockerconfig.Hash(tt.secret.Data[corev1.DockerConfigJsonKey]) {
				t.Errorf("hash = %s", snap.Hash)
			}
			if _, ok := snap.Matcher.Match(tt.match); !ok {
				t.Errorf("%s must match", tt.match)
			}
		})
	}
}

// captured records log lines; the source must log a problem once, not per event.
type captured struct{ lines []string }

func (c *captured) logger() logr.Logger {
	return funcr.New(func(prefix, args string) { c.lines = append(c.lines, prefix+" "+args) }, funcr.Options{Verbosity: 1})
}

func TestSourceStateAndLogging(t *testing.T) {
	var logs captured
	s := NewSource(ref, logs.logger())
	if s.Current() != nil {
		t.Fatal("no snapshot before any event")
	}
	s.markSynced() // the initial list had no source
	s.markSynced()
	if s.Current() != nil || !strings.Contains(s.Problem(), "not found") || !strings.Contains(s.Problem(), "kubectl create secret docker-registry") {
		t.Fatalf("problem = %q", s.Problem())
	}
	valid := sourceSecret(t, corev1.SecretTypeDockerConfigJson, build(t, "harbor.example.com"))
	s.Set(valid)
	s.Set(valid) // a resync: no new line
	if s.Current() == nil || s.Problem() != "" {
		t.Fatalf("valid source not published: %q", s.Problem())
	}
	other := valid.DeepCopy()
	other.Name = "unrelated"
	other.Data[corev1.DockerConfigJsonKey] = []byte("garbage")
	s.Set(other) // not the source: ignored
	if s.Current() == nil {
		t.Fatal("an unrelated Secret withdrew the snapshot")
	}
	bad := sourceSecret(t, corev1.SecretTypeDockerConfigJson, []byte(`{"auths":{"h":{"password":"`+secretPassword+`"`))
	for range 5 {
		s.Set(bad)
	}
	if s.Current() != nil {
		t.Fatal("an invalid source must withdraw the snapshot")
	}
	rotated := sourceSecret(t, corev1.SecretTypeDockerConfigJson, build(t, "harbor.example.com", "10.0.0.5:8443"))
	s.Set(rotated)
	if s.Current() == nil || s.Current().Hash == dockerconfig.Hash(valid.Data[corev1.DockerConfigJsonKey]) {
		t.Fatal("rotation not published")
	}
	s.Delete()
	if s.Current() != nil {
		t.Fatal("deleted source still published")
	}

	var notFound, invalid, loaded int
	for _, l := range logs.lines {
		if strings.Contains(l, secretPassword) {
			t.Fatalf("log line leaks the password: %s", l)
		}
		switch {
		case strings.Contains(l, "not found"):
			notFound++
		case strings.Contains(l, "no valid source Secret"):
			invalid++
		case strings.Contains(l, "source Secret loaded"):
			loaded++
		}
	}
	// not found (sync) + not found (delete); the five invalid sets log once.
	if notFound != 2 || invalid != 1 || loaded != 2 {
		t.Errorf("log lines: notFound=%d invalid=%d loaded=%d, want 2, 1, 2:\n%s", notFound, invalid, loaded, strings.Join(logs.lines, "\n"))
	}
}

func TestIsCurrentAndRefresh(t *testing.T) {
	data := build(t, "harbor.example.com")
	snap := &Snapshot{Data: data, Hash: dockerconfig.Hash(data)}
	want := Desired("regcred", "team-a", ref, snap)
	if !IsCurrent(want, ref, snap) {
		t.Fatal("Desired must be current")
	}
	mutations := map[string]func(s *corev1.Secret){
		"label removed":       func(s *corev1.Secret) { delete(s.Labels, ManagedByLabel) },
		"data edited":         func(s *corev1.Secret) { s.Data[corev1.DockerConfigJsonKey] = []byte(`{}`) },
		"extra key":           func(s *corev1.Secret) { s.Data["x"] = []byte("y") },
		"hash annotation off": func(s *corev1.Secret) { s.Annotations[HashAnnotation] = "sha256:0" },
		"other source":        func(s *corev1.Secret) { s.Annotations[SourceAnnotation] = "x/y" },
		"type":                func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque },
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			s := want.DeepCopy()
			s.Labels["team"] = "a"
			mutate(s)
			if IsCurrent(s, ref, snap) {
				t.Fatal("must not be current")
			}
			before := s.DeepCopy()
			r := Refresh(s, ref, snap)
			if name != "type" && !IsCurrent(r, ref, snap) {
				t.Errorf("Refresh did not bring it current: %+v", r)
			}
			if r.Labels["team"] != "a" {
				t.Error("Refresh dropped a label someone else added")
			}
			if s.Labels[ManagedByLabel] != before.Labels[ManagedByLabel] || len(s.Data) != len(before.Data) {
				t.Error("Refresh mutated its input (it may be the shared cache copy)")
			}
		})
	}
}

func TestCacheOptionsAreNarrow(t *testing.T) {
	cfg, err := config.Parse([]byte("sourceSecret: {name: harbor-source}\n"), "regcred-webhook")
	if err != nil {
		t.Fatal(err)
	}
	opts := CacheOptions(cfg)
	if len(opts.ByObject) != 1 {
		t.Fatalf("ByObject = %v", opts.ByObject)
	}
	for obj, by := range opts.ByObject {
		if _, ok := obj.(*corev1.Secret); !ok {
			t.Fatalf("unexpected object %T", obj)
		}
		want := map[string]fields.Selector{
			cache.AllNamespaces: fields.OneTermEqualSelector("metadata.name", "regcred"),
			"regcred-webhook":   fields.OneTermEqualSelector("metadata.name", "harbor-source"),
		}
		if len(by.Namespaces) != len(want) {
			t.Fatalf("namespaces = %v", by.Namespaces)
		}
		for ns, sel := range want {
			got, ok := by.Namespaces[ns]
			if !ok || got.FieldSelector == nil || got.FieldSelector.String() != sel.String() {
				t.Errorf("namespace %q: selector %v, want %v", ns, got.FieldSelector, sel)
			}
		}
	}
}

func TestSyncedIsReadiness(t *testing.T) {
	s := NewSource(ref, logr.Discard())
	if err := s.Synced(nil); err == nil {
		t.Fatal("ready before the source was read")
	}
	s.markSynced() // no source in the initial list: still ready, the problem is logged
	if err := s.Synced(nil); err != nil {
		t.Fatalf("not ready after sync: %v", err)
	}
}
