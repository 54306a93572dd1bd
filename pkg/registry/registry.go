// Package registry decides whether the kubelet would use a dockerconfig
// credential for an image.
//
// The webhook must inject a pull Secret exactly when that Secret would make a
// difference to the kubelet: injecting it for an image the kubelet would not
// authenticate for is noise, and missing an image the kubelet would
// authenticate for leaves the Pod in ImagePullBackOff. So the rules here are
// not Docker's, containerd's or the OCI distribution spec's, but the kubelet's
// own (k8s.io/kubernetes/pkg/credentialprovider, BasicDockerKeyring.Add and
// Lookup), quirks included. The kubelet is not imported because
// k8s.io/kubernetes is not meant to be consumed as a library; the behaviour is
// reimplemented step by step, calling the same standard-library functions in
// the same order, so that edge cases (url.Parse rejections, filepath.Match
// semantics, net.SplitHostPort failures) fall out identically.
package registry

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/distribution/reference"
)

// dockerHubKey is the normalised key whose credentials the kubelet falls back
// to for Docker Hub images. "https://index.docker.io/v1/", the key `docker
// login` writes, normalises to it.
const dockerHubKey = "index.docker.io"

// Matcher answers, for an image, which dockerconfig `auths` key the kubelet
// would use. It is built once per source Secret, is immutable afterwards and
// therefore safe for concurrent use.
type Matcher struct {
	// entries is the kubelet's index: one entry per distinct normalised key,
	// reverse-sorted so that the most specific key (longest path) of a host
	// comes first, which is the order the kubelet tries credentials in.
	entries []entry
	// hub is the entry the kubelet falls back to for Docker Hub images when
	// no key matched by URL; nil when no key normalises to index.docker.io.
	hub *entry
	// keys are the usable original keys, sorted.
	keys []string
}

// entry is one normalised key with everything Match needs precomputed, so
// that Match parses only the image.
type entry struct {
	// norm is the kubelet's normalised key: host[:port][/path], no scheme,
	// no /v1/ or /v2/ prefix.
	norm string
	// labels are the dot-separated host labels, each a filepath.Match pattern.
	labels []string
	// port is "" when the key has none; it must equal the image's exactly.
	port string
	// path is the key's path ("" or "/team-a"), a plain string prefix of the
	// image's path.
	path string
	// key is the original `auths` key reported to the caller. Several
	// original keys can normalise to the same entry ("harbor.example.com" and
	// "https://harbor.example.com/v2/"); the kubelet would offer all their
	// credentials in map order, which is random, so the smallest one is
	// reported to stay deterministic.
	key string
}

// NewMatcher builds a matcher from dockerconfig `auths` keys. It always
// returns a usable Matcher of the keys the kubelet would use; the error
// (errors.Join) names each key that was ignored and why (never nil Matcher).
//
// Besides the keys the kubelet itself ignores (url.Parse fails), keys the
// kubelet accepts but can never match any image are dropped and reported too,
// because a Secret whose only key is dead is a configuration mistake the user
// wants to hear about rather than a silent "no registry configured".
func NewMatcher(keys []string) (*Matcher, error) {
	m := &Matcher{}
	var errs []error
	byNorm := map[string]*entry{}

	// Sorting first makes the errors and the representative key of each
	// entry deterministic regardless of the caller's (map) order.
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	for _, key := range slices.Compact(sorted) {
		norm, err := normalizeKey(key)
		if err != nil {
			errs = append(errs, fmt.Errorf("registry key %q is ignored: %w", displayKey(key), err))
			continue
		}
		if _, ok := byNorm[norm]; ok {
			// The first (smallest) key already represents this entry.
			m.keys = append(m.keys, key)
			continue
		}
		e, err := compileKey(norm)
		if err != nil {
			errs = append(errs, fmt.Errorf("registry key %q is ignored: %w", displayKey(key), err))
			continue
		}
		e.key = key
		byNorm[norm] = e
		m.keys = append(m.keys, key)
	}

	m.entries = make([]entry, 0, len(byNorm))
	for _, e := range byNorm {
		m.entries = append(m.entries, *e)
	}
	// The kubelet reverse-sorts its index (sort.Reverse(sort.StringSlice)),
	// i.e. byte-wise descending, so "harbor.example.com/team-a" is tried
	// before "harbor.example.com".
	slices.SortFunc(m.entries, func(a, b entry) int { return strings.Compare(b.norm, a.norm) })
	for i := range m.entries {
		if m.entries[i].norm == dockerHubKey {
			m.hub = &m.entries[i]
		}
	}
	return m, errors.Join(errs...)
}

// normalizeKey mirrors BasicDockerKeyring.Add: the scheme is optional (and
// case-sensitive: "HTTPS://h" gets a second scheme prepended, as in the
// kubelet), user info, query and fragment are dropped, and a leading /v1/ or
// /v2/ means "the whole host".
func normalizeKey(key string) (string, error) {
	raw := key
	if !strings.HasPrefix(raw, "https://") && !strings.HasPrefix(raw, "http://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Only the cause: url.Error would repeat the whole key, user info
		// included.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return "", fmt.Errorf("the kubelet cannot parse it as a URL (%w); use host[:port][/path], e.g. harbor.example.com or 10.0.0.5:8443", err)
	}
	path := u.Path
	if strings.HasPrefix(path, "/v2/") || strings.HasPrefix(path, "/v1/") {
		path = path[3:]
	}
	if path != "" && path != "/" {
		return u.Host + path, nil
	}
	return u.Host, nil
}

// displayKey hides user info ("https://user:password@host") from a key that
// is about to be logged; the kubelet drops it, but it would be a credential in
// an error message.
func displayKey(key string) string {
	scheme, rest, ok := strings.Cut(key, "://")
	if !ok {
		scheme, rest = "", key
	}
	authority, path, hasPath := strings.Cut(rest, "/")
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return key
	}
	out := "<redacted>" + authority[at:]
	if hasPath {
		out += "/" + path
	}
	if ok {
		out = scheme + "://" + out
	}
	return out
}

// compileKey precomputes what the kubelet's URLsMatchStr derives from the
// normalised key on every lookup: it re-parses the key as a scheme-less URL,
// splits host and port, and splits the host into labels.
func compileKey(norm string) (*entry, error) {
	u, err := parseSchemeless(norm)
	if err != nil {
		// The kubelet accepted the key in Add but fails to re-parse its
		// normalised form (e.g. "h/%25" unescapes to "h/%"), so every lookup
		// errors and the key never matches.
		return nil, fmt.Errorf("its normalised form %q is not a valid URL (%w), so the kubelet never matches it; remove percent-escapes from the key", norm, err)
	}
	if u.Host == "" {
		// An image reference always has a non-empty registry host, and the
		// empty glob matches only the empty string.
		return nil, errors.New("it has no host, so the kubelet never matches it; use host[:port][/path], e.g. harbor.example.com")
	}
	host, port := splitHostPort(u.Host)
	return &entry{norm: norm, labels: strings.Split(host, "."), port: port, path: u.Path}, nil
}

// parseSchemeless mirrors credentialprovider.ParseSchemelessURL; the scheme
// it sets is irrelevant to matching, so it is not cleared.
func parseSchemeless(s string) (*url.URL, error) {
	return url.Parse("https://" + s)
}

// splitHostPort mirrors credentialprovider.SplitURL, including its fallback:
// a host net.SplitHostPort rejects ("harbor.example.com", "[::1]") is taken
// whole, without port. Splitting into labels is left to the caller so that
// Match can walk the image's labels without allocating a slice.
func splitHostPort(hostport string) (host, port string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport, ""
	}
	return host, port
}

// Match reports the first key (the kubelet's order: the longest/most specific
// first, i.e. the kubelet's reverse-sorted index) that the kubelet would use
// for image, if any. image is a container image as written in a Pod spec.
func (m *Matcher) Match(image string) (key string, ok bool) {
	if m == nil || len(m.entries) == 0 {
		return "", false
	}
	// The kubelet looks up credentials for the normalised repository name
	// (parsers.ParseImageName), so tag and digest play no part and an image
	// the kubelet cannot parse is never pulled, with or without credentials.
	repo, err := Normalize(image)
	if err != nil {
		return "", false
	}
	if u, err := parseSchemeless(repo); err == nil {
		host, port := splitHostPort(u.Host)
		for i := range m.entries {
			if m.entries[i].matches(host, port, u.Path) {
				return m.entries[i].key, true
			}
		}
	}
	// As in the kubelet, the Docker Hub fallback applies only when no key
	// matched by URL, and is decided on the repository name, not the URL.
	if m.hub != nil && isDefaultRegistryMatch(repo) {
		return m.hub.key, true
	}
	return "", false
}

// matches mirrors credentialprovider.URLsMatch, in the same order of checks;
// the label count is compared as strings.Split would produce it.
func (e *entry) matches(host, port, path string) bool {
	if e.port != port {
		return false
	}
	if strings.Count(host, ".")+1 != len(e.labels) {
		return false
	}
	// The kubelet compares paths as plain strings, so the key
	// "harbor.example.com/team-a" also matches "harbor.example.com/team-ab/x".
	if !strings.HasPrefix(path, e.path) {
		return false
	}
	rest := host
	for _, pattern := range e.labels {
		label, after, _ := strings.Cut(rest, ".")
		rest = after
		// A malformed pattern is an error in the kubelet, which Lookup
		// treats as no match.
		if matched, err := filepath.Match(pattern, label); err != nil || !matched {
			return false
		}
	}
	return true
}

// isDefaultRegistryMatch mirrors the kubelet's function of the same name. It
// runs on the normalised name, so its first part is always a registry host;
// the kubelet nonetheless treats any first part without '.' or ':' as Docker
// Hub, which makes "localhost/x" (and upper-case single-label hosts such as
// "Registry/x") eligible for Docker Hub credentials.
func isDefaultRegistryMatch(repo string) bool {
	first, _, hasSlash := strings.Cut(repo, "/")
	if first == "" {
		return false
	}
	if !hasSlash {
		return true
	}
	if first == "docker.io" || first == "index.docker.io" {
		return true
	}
	return !strings.ContainsAny(first, ".:")
}

// Keys returns the usable keys, sorted.
func (m *Matcher) Keys() []string {
	if m == nil {
		return nil
	}
	return slices.Clone(m.keys)
}

// Normalize returns the repository the kubelet looks credentials up for
// ("docker.io/library/nginx" for "nginx:1.27"): the image's normalised name
// without tag or digest.
func Normalize(image string) (string, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", err
	}
	return named.Name(), nil
}
