package pullsecret

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
	"github.com/regcred-webhook/regcred-webhook/pkg/dockerconfig"
	"github.com/regcred-webhook/regcred-webhook/pkg/registry"
)

// Snapshot is one valid version of the source Secret. It is immutable once published.
type Snapshot struct {
	// Data is the source's .dockerconfigjson, copied byte for byte.
	Data []byte
	// Hash is dockerconfig.Hash(Data).
	Hash string
	// Matcher decides which images the credentials are for: the auths keys.
	Matcher *registry.Matcher
	// ResourceVersion of the source this was built from.
	ResourceVersion string
	// Ignored names the auths keys the kubelet would ignore too (nil when none).
	Ignored error
}

// Source tracks the source Secret. The admission hot path reads Current without a
// lock or an API call; informer events call Set and Delete.
type Source struct {
	ref config.SecretRef
	log logr.Logger

	current atomic.Pointer[Snapshot]

	synced atomic.Bool // the informer's initial list has been seen

	mu      sync.Mutex // serialises state changes and their log lines
	problem string     // why there is no valid snapshot; "" when there is one
	seen    bool       // whether any state was set yet
}

// NewSource returns a tracker for ref with no snapshot yet.
func NewSource(ref config.SecretRef, log logr.Logger) *Source {
	return &Source{ref: ref, log: log.WithValues("source", ref.String())}
}

// Ref is the source Secret's namespace and name.
func (s *Source) Ref() config.SecretRef { return s.ref }

// Current is the valid snapshot, or nil while the source is missing or invalid.
func (s *Source) Current() *Snapshot { return s.current.Load() }

// Problem says why Current is nil ("" when it is not).
func (s *Source) Problem() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.problem
}

// Set validates secret and publishes it. An invalid source withdraws the snapshot:
// the webhook then knows no registry and allows Pods unpatched, as SPEC says.
func (s *Source) Set(secret *corev1.Secret) {
	if secret.Namespace != s.ref.Namespace || secret.Name != s.ref.Name {
		return
	}
	snap, err := Validate(secret)
	if err != nil {
		s.withdraw(err.Error())
		return
	}
	snap.ResourceVersion = secret.ResourceVersion
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.current.Swap(snap)
	s.problem = ""
	s.seen = true
	sourceValid.Set(1)
	if prev == nil || prev.Hash != snap.Hash {
		// Hosts are not credentials; the hash tells rotations apart.
		s.log.Info("source Secret loaded", "registries", snap.Matcher.Keys(), "contentHash", snap.Hash)
		if snap.Ignored != nil {
			s.log.Error(snap.Ignored, "source Secret has auths keys the kubelet cannot use; they are ignored")
		}
	}
}

// Delete records that the source is gone.
func (s *Source) Delete() { s.withdraw(s.notFound()) }

func (s *Source) notFound() string {
	return fmt.Sprintf("source Secret %s not found: create it (type kubernetes.io/dockerconfigjson, "+
		"e.g. kubectl create secret docker-registry %s -n %s --docker-server=<harbor host> "+
		"--docker-username=<robot account> --docker-password=<token>) or fix sourceSecret in the config",
		s.ref, s.ref.Name, s.ref.Namespace)
}

// markSynced reports a source that the informer's initial list did not contain.
// The check and the withdrawal are one critical section: a Set between them must
// not be overwritten.
func (s *Source) markSynced() {
	s.mu.Lock()
	if !s.seen {
		s.withdrawLocked(s.notFound())
	}
	s.mu.Unlock()
	s.synced.Store(true)
}

// Synced is a readiness check: a replica that has not yet seen the source would
// admit Pods unpatched, so it must not receive traffic. A missing or invalid source
// does not make it unready: that state is final until someone fixes the Secret, and
// an unready webhook would change nothing for the Pods (failurePolicy Ignore).
func (s *Source) Synced(*http.Request) error {
	if !s.synced.Load() {
		return errors.New("the source Secret " + s.ref.String() + " has not been read yet")
	}
	return nil
}

// withdraw logs once per distinct problem, not per admission request.
func (s *Source) withdraw(problem string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.withdrawLocked(problem)
}

func (s *Source) withdrawLocked(problem string) {
	s.current.Store(nil)
	sourceValid.Set(0)
	if s.seen && s.problem == problem {
		return
	}
	s.seen = true
	s.problem = problem
	sourceErrors.Inc()
	s.log.Error(errors.New(problem), "no valid source Secret: Pods are allowed without imagePullSecrets until it is fixed")
}

// Validate checks that secret can be copied and used, and builds its snapshot. The
// error names the problem and the fix, never a credential.
func Validate(secret *corev1.Secret) (*Snapshot, error) {
	ref := secret.Namespace + "/" + secret.Name
	if secret.Type != corev1.SecretTypeDockerConfigJson {
		return nil, fmt.Errorf("source Secret %s has type %q, want %q: recreate it with "+
			"kubectl create secret docker-registry", ref, secret.Type, corev1.SecretTypeDockerConfigJson)
	}
	data, ok := secret.Data[corev1.DockerConfigJsonKey]
	if !ok || len(data) == 0 {
		return nil, fmt.Errorf("source Secret %s has no %q key: recreate it with kubectl create secret docker-registry",
			ref, corev1.DockerConfigJsonKey)
	}
	cfg, err := dockerconfig.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("source Secret %s: %w", ref, err)
	}
	m, err := registry.NewMatcher(cfg.Hosts())
	if len(m.Keys()) == 0 {
		return nil, fmt.Errorf("source Secret %s: no auths key the kubelet could use: %v", ref, err)
	}
	// Keys the kubelet ignores are ignored here too, and reported by Set.
	return &Snapshot{Data: data, Hash: dockerconfig.Hash(data), Matcher: m, Ignored: err}, nil
}
