package registry

import (
	"slices"
	"strings"
	"sync"
	"testing"
)

const (
	digest    = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hubV1     = "https://index.docker.io/v1/"
	harbor    = "harbor.example.com"
	harborIP  = "10.0.0.5:8443"
	teamA     = "harbor.example.com/team-a"
	anyDomain = "*.harbor.example.com"
)

// matchCases is shared by TestMatch and as the seed corpus of FuzzMatch.
// Every expectation was checked against the kubelet's own
// credentialprovider.BasicDockerKeyring (v1.37.2) and parsers.ParseImageName.
// wantKey "" means the kubelet would pull without these credentials.
var matchCases = []struct {
	name    string
	keys    []string
	image   string
	wantKey string
}{
	// Harbor by domain.
	{"domain", []string{harbor}, "harbor.example.com/team-a/app:1.0", harbor},
	{"domain, https scheme and /v2/ suffix", []string{"https://harbor.example.com/v2/"}, "harbor.example.com/app", "https://harbor.example.com/v2/"},
	{"domain, http scheme", []string{"http://harbor.example.com"}, "harbor.example.com/app", "http://harbor.example.com"},
	{"domain, trailing slash", []string{"harbor.example.com/"}, "harbor.example.com/app", "harbor.example.com/"},
	{"domain, user info and query are dropped", []string{"https://robot@harbor.example.com?x=1"}, "harbor.example.com/app", "https://robot@harbor.example.com?x=1"},
	{"domain, other registry", []string{harbor}, "registry.example.com/app", ""},
	{"domain, subdomain is another host", []string{harbor}, "a.harbor.example.com/app", ""},
	{"domain, trailing dot is another label", []string{"harbor.example.com."}, "harbor.example.com/app", ""},
	{"domain, hosts are case-sensitive", []string{harbor}, "Harbor.example.com/app", ""},
	{"domain, upper-case key matches the same spelling", []string{"Harbor.example.com"}, "Harbor.example.com/app", "Harbor.example.com"},
	{"domain, upper-case scheme is not a scheme", []string{"HTTPS://harbor.example.com"}, "harbor.example.com/app", ""},

	// Harbor by IP:port, and ports.
	{"ip:port", []string{harborIP}, "10.0.0.5:8443/team-a/app:1.0", harborIP},
	{"ip:port, https and /v2/", []string{"https://10.0.0.5:8443/v2/"}, "10.0.0.5:8443/app", "https://10.0.0.5:8443/v2/"},
	{"ip:port, image without port", []string{harborIP}, "10.0.0.5/app", ""},
	{"ip, image with port", []string{"10.0.0.5"}, "10.0.0.5:8443/app", ""},
	{"ip:port, other port", []string{harborIP}, "10.0.0.5:9443/app", ""},
	{"domain:443 is not the default port", []string{"harbor.example.com:443"}, "harbor.example.com/app", ""},
	{"domain, image with port", []string{harbor}, "harbor.example.com:443/app", ""},
	{"ports compare as strings", []string{"10.0.0.5:08443"}, "10.0.0.5:8443/app", ""},
	{"domain and ip alias, image by ip", []string{harbor, harborIP}, "10.0.0.5:8443/app", harborIP},
	{"domain and ip alias, image by domain", []string{harbor, harborIP}, "harbor.example.com/app", harbor},

	// Path prefixes.
	{"path, inside", []string{teamA}, "harbor.example.com/team-a/app", teamA},
	{"path, the repository itself", []string{teamA}, "harbor.example.com/team-a:1", teamA},
	{"path, other project", []string{teamA}, "harbor.example.com/team-b/app", ""},
	{"path, plain string prefix", []string{teamA}, "harbor.example.com/team-ab/app", teamA},
	{"path, trailing slash excludes the repository itself", []string{"harbor.example.com/team-a/"}, "harbor.example.com/team-a:1", ""},
	{"path, trailing slash excludes the sibling", []string{"harbor.example.com/team-a/"}, "harbor.example.com/team-ab/app", ""},
	{"path, longest first", []string{harbor, teamA}, "harbor.example.com/team-a/app", teamA},
	{"path, falls back to the host", []string{harbor, teamA}, "harbor.example.com/team-b/app", harbor},
	{"path after /v2/", []string{"https://harbor.example.com/v2/team-a"}, "harbor.example.com/team-a/app", "https://harbor.example.com/v2/team-a"},
	{"path, /v1 without slash is a path", []string{"harbor.example.com/v1"}, "harbor.example.com/app", ""},
	{"path, /v1 without slash matches its own", []string{"harbor.example.com/v1"}, "harbor.example.com/v1/app", "harbor.example.com/v1"},

	// Globs, per host label.
	{"glob, one label", []string{anyDomain}, "a.harbor.example.com/app", anyDomain},
	{"glob, not the bare domain", []string{anyDomain}, "harbor.example.com/app", ""},
	{"glob, not two labels", []string{anyDomain}, "a.b.harbor.example.com/app", ""},
	{"glob, with port", []string{"*.example.com:8443"}, "a.example.com:8443/app", "*.example.com:8443"},
	{"glob, port still exact", []string{"*.example.com:8443"}, "a.example.com/app", ""},
	{"glob, ? starts a URL query, not a glob", []string{"harbor-?.example.com"}, "harbor-1.example.com/app", ""},
	{"glob, ? key is host harbor-", []string{"harbor-?.example.com"}, "harbor-/app", ""},
	{"glob, several labels", []string{"*.*.example.com"}, "a.b.example.com/app", "*.*.example.com"},
	{"glob, partial label", []string{"harbor-*.example.com"}, "harbor-eu.example.com/app", "harbor-*.example.com"},
	{"glob, ip octet", []string{"10.0.0.*:8443"}, "10.0.0.7:8443/app", "10.0.0.*:8443"},
	{"glob, exact host wins by order", []string{anyDomain, "a.harbor.example.com"}, "a.harbor.example.com/app", "a.harbor.example.com"},
	{"glob, *.* matches Docker Hub by URL", []string{"*.*"}, "nginx", "*.*"},
	{"glob, * matches a single-label host", []string{"*"}, "localhost/app", "*"},

	// Docker Hub.
	{"hub, nginx", []string{hubV1}, "nginx", hubV1},
	{"hub, library/nginx", []string{hubV1}, "library/nginx", hubV1},
	{"hub, docker.io/library/nginx", []string{hubV1}, "docker.io/library/nginx", hubV1},
	{"hub, index.docker.io/library/nginx", []string{hubV1}, "index.docker.io/library/nginx:1.27", hubV1},
	{"hub, user repository", []string{hubV1}, "bitnami/redis:7", hubV1},
	{"hub, not for another registry", []string{hubV1}, "harbor.example.com/app", ""},
	{"hub, scheme-less key", []string{"index.docker.io"}, "nginx:latest", "index.docker.io"},
	{"hub, docker.io key matches by URL", []string{"docker.io"}, "nginx", "docker.io"},
	{"hub, docker.io/library key", []string{"docker.io/library"}, "nginx", "docker.io/library"},
	{"hub, docker.io/library key, user repository", []string{"docker.io/library"}, "bitnami/redis", ""},
	{"hub, index.docker.io path keys are never used", []string{"index.docker.io/library"}, "nginx", ""},
	{"hub, registry-1.docker.io is not recognised", []string{"registry-1.docker.io"}, "nginx", ""},
	{"hub, alongside harbor", []string{hubV1, harbor}, "nginx", hubV1},
	{"hub, URL match wins over the fallback", []string{hubV1, "*.*"}, "nginx", "*.*"},
	{"hub, localhost/ counts as Docker Hub", []string{hubV1}, "localhost/app", hubV1},
	{"hub, localhost:5000/ does not", []string{hubV1}, "localhost:5000/app", ""},
	{"hub, upper-case single-label host counts", []string{hubV1}, "Registry/app", hubV1},

	// Tags and digests play no part.
	{"tag", []string{harbor}, "harbor.example.com/app:1.0", harbor},
	{"digest", []string{harbor}, "harbor.example.com/app@" + digest, harbor},
	{"tag and digest", []string{harbor}, "harbor.example.com/app:1.0@" + digest, harbor},
	{"ip:port, tag and digest", []string{harborIP}, "10.0.0.5:8443/app:1.0@" + digest, harborIP},
	{"hub, digest", []string{hubV1}, "nginx@" + digest, hubV1},

	// localhost and IPv6.
	{"localhost:5000", []string{"localhost:5000"}, "localhost:5000/app:1", "localhost:5000"},
	{"localhost:5000, image without port", []string{"localhost:5000"}, "localhost/app", ""},
	{"ipv6 with port", []string{"[::1]:5000"}, "[::1]:5000/app", "[::1]:5000"},
	{"ipv6 without port is a character class", []string{"[::1]"}, "[::1]/app", ""},

	// Images the kubelet cannot parse are never pulled with credentials.
	{"empty image", []string{hubV1, "*.*", "*"}, "", ""},
	{"upper-case repository", []string{harbor}, "harbor.example.com/Team/app", ""},
	{"upper-case familiar name", []string{hubV1}, "NGINX", ""},
	{"bad tag", []string{harbor}, "harbor.example.com/app:bad tag", ""},
	{"bad digest", []string{harbor}, "harbor.example.com/app@sha256:abc", ""},
	{"scheme in image", []string{harbor}, "https://harbor.example.com/app", ""},
	{"leading space", []string{hubV1}, " nginx", ""},
	{"64-hex identifier", []string{hubV1}, strings.Repeat("ab", 32), ""},
	{"garbage", []string{hubV1, "*"}, "::/@@", ""},

	// Keys.
	{"no keys", nil, "nginx", ""},
	{"same host twice reports the smallest key", []string{"https://harbor.example.com/v2/", harbor}, "harbor.example.com/app", harbor},
	{"an ignored key does not hide a good one", []string{"harbor.example.com:abc", harbor}, "harbor.example.com/app", harbor},
}

func TestMatch(t *testing.T) {
	for _, tc := range matchCases {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := NewMatcher(tc.keys)
			gotKey, ok := m.Match(tc.image)
			if ok != (tc.wantKey != "") || gotKey != tc.wantKey {
				t.Errorf("NewMatcher(%q).Match(%q) = (%q, %v), want (%q, %v)", tc.keys, tc.image, gotKey, ok, tc.wantKey, tc.wantKey != "")
			}
			// The kubelet's index is sorted, so the caller's (map) order must
			// not matter.
			rev := slices.Clone(tc.keys)
			slices.Reverse(rev)
			m2, _ := NewMatcher(rev)
			if k2, ok2 := m2.Match(tc.image); k2 != gotKey || ok2 != ok {
				t.Errorf("reversed keys: Match(%q) = (%q, %v), want (%q, %v)", tc.image, k2, ok2, gotKey, ok)
			}
		})
	}
}

func TestNewMatcherIgnoredKeys(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		wantErr string
	}{
		{"bad port", "harbor.example.com:abc", `"harbor.example.com:abc" is ignored: the kubelet cannot parse it`},
		{"unclosed ipv6", "[::1", `"[::1" is ignored`},
		{"space in host", "harbor example.com", `"harbor example.com" is ignored`},
		{"bracket inside host", "a[b.example.com", `"a[b.example.com" is ignored`},
		{"empty", "", `"" is ignored: it has no host`},
		{"scheme only", "https://", `"https://" is ignored: it has no host`},
		{"path only", "https:///team-a", `"https:///team-a" is ignored: it has no host`},
		{"normalised form does not re-parse", "harbor.example.com/%25", `"harbor.example.com/%25" is ignored: its normalised form "harbor.example.com/%"`},
		{"user info redacted", "https://robot:s3cret@harbor example.com", `"https://<redacted>@harbor example.com" is ignored`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMatcher([]string{tc.key, harbor})
			if m == nil {
				t.Fatal("NewMatcher returned a nil Matcher")
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewMatcher error = %v, want it to contain %s", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks the key's password: %v", err)
			}
			if got := m.Keys(); !slices.Equal(got, []string{harbor}) {
				t.Errorf("Keys() = %q, want only the good key", got)
			}
			if _, ok := m.Match("harbor.example.com/app"); !ok {
				t.Error("the good key no longer matches")
			}
		})
	}
}

func TestNewMatcherReportsEveryIgnoredKey(t *testing.T) {
	_, err := NewMatcher([]string{"a.example.com:x", harbor, "", "b.example.com:y"})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, key := range []string{`"a.example.com:x"`, `""`, `"b.example.com:y"`} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
	if strings.Contains(err.Error(), `"`+harbor+`"`) {
		t.Errorf("error %q names a good key", err)
	}
}

func TestNewMatcherGoodKeysNoError(t *testing.T) {
	if _, err := NewMatcher([]string{harbor, harborIP, hubV1, anyDomain, teamA, "[::1]:5000"}); err != nil {
		t.Errorf("NewMatcher: unexpected error %v", err)
	}
}

func TestKeys(t *testing.T) {
	m, _ := NewMatcher([]string{hubV1, harborIP, harbor, "https://harbor.example.com/v2/", harbor, "bad:port"})
	want := []string{harborIP, harbor, "https://harbor.example.com/v2/", hubV1}
	got := m.Keys()
	if !slices.Equal(got, want) {
		t.Errorf("Keys() = %q, want %q", got, want)
	}
	got[0] = "mutated"
	if m.Keys()[0] != harborIP {
		t.Error("Keys() exposes the Matcher's internal slice")
	}
}

func TestNilMatcher(t *testing.T) {
	var m *Matcher
	if k, ok := m.Match("nginx"); ok || k != "" {
		t.Errorf("nil Matcher matched %q", k)
	}
	if m.Keys() != nil {
		t.Error("nil Matcher has keys")
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		image, want string
	}{
		{"nginx", "docker.io/library/nginx"},
		{"nginx:1.27", "docker.io/library/nginx"},
		{"library/nginx", "docker.io/library/nginx"},
		{"docker.io/nginx", "docker.io/library/nginx"},
		{"index.docker.io/library/nginx", "docker.io/library/nginx"},
		{"bitnami/redis@" + digest, "docker.io/bitnami/redis"},
		{"harbor.example.com/team-a/app:1.0@" + digest, "harbor.example.com/team-a/app"},
		{"10.0.0.5:8443/app", "10.0.0.5:8443/app"},
		{"localhost/app", "localhost/app"},
		{"[::1]:5000/app", "[::1]:5000/app"},
		{"Registry/app", "Registry/app"},
		{"", ""},
		{"Nginx", ""},
		{"harbor.example.com/Team/app", ""},
	}
	for _, tc := range tests {
		got, err := Normalize(tc.image)
		if tc.want == "" {
			if err == nil {
				t.Errorf("Normalize(%q) = %q, want an error", tc.image, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = (%q, %v), want %q", tc.image, got, err, tc.want)
		}
	}
}

func TestMatchConcurrent(t *testing.T) {
	m, _ := NewMatcher([]string{harbor, harborIP, hubV1})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, tc := range matchCases[:20] {
				m.Match(tc.image)
			}
		})
	}
	wg.Wait()
}

func FuzzMatch(f *testing.F) {
	for _, tc := range matchCases {
		f.Add(strings.Join(tc.keys, "\n"), tc.image)
	}
	f.Fuzz(func(t *testing.T, keyList, image string) {
		keys := strings.Split(keyList, "\n")
		m, _ := NewMatcher(keys)
		if m == nil {
			t.Fatal("nil Matcher")
		}
		key, ok := m.Match(image)
		if !ok {
			if key != "" {
				t.Fatalf("no match but key %q", key)
			}
			return
		}
		repo, err := Normalize(image)
		if err != nil {
			t.Fatalf("Match(%q) = %q but Normalize fails: %v", image, key, err)
		}
		if !slices.Contains(m.Keys(), key) {
			t.Fatalf("Match returned %q, not one of Keys() %q", key, m.Keys())
		}
		// The kubelet only ever sees the normalised name.
		if k2, ok2 := m.Match(repo); k2 != key || !ok2 {
			t.Fatalf("Match(%q) = %q but Match(%q) = (%q, %v)", image, key, repo, k2, ok2)
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	m, err := NewMatcher([]string{harbor, harborIP, hubV1})
	if err != nil {
		b.Fatal(err)
	}
	const image = "harbor.example.com/team-a/app:1.4.2"
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := m.Match(image); !ok {
			b.Fatal("no match")
		}
	}
}
