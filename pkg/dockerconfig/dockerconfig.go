// Package dockerconfig parses, validates and builds the .dockerconfigjson
// content of kubernetes.io/dockerconfigjson Secrets.
//
// Validation follows what the kubelet needs (pkg/credentialprovider): it
// decodes every entry of every pull Secret of a Pod before pulling any image,
// and one undecodable `auth` fails the pull of every image of that Pod. A
// source Secret that passes Validate can therefore be copied into namespaces
// without risk of breaking Pods that pull from other registries.
//
// Nothing in this package ever puts a credential into an error or into the
// printed form of its types: they end up in admission warnings, events and
// logs.
package dockerconfig

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/go-logr/logr"
)

// redacted replaces every secret value in printed and logged output.
const redacted = "<redacted>"

// Config is the content of a kubernetes.io/dockerconfigjson Secret's
// .dockerconfigjson key.
type Config struct {
	Auths map[string]AuthEntry `json:"auths"`
}

// AuthEntry is the credential of one registry key. The field set is the
// Docker CLI's; the kubelet reads username, password and auth (auth wins when
// set) and ignores the tokens.
type AuthEntry struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	Email         string `json:"email,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

var (
	_ fmt.Stringer   = AuthEntry{}
	_ fmt.GoStringer = AuthEntry{}
	_ logr.Marshaler = AuthEntry{}
	_ fmt.Stringer   = Config{}
	_ fmt.GoStringer = Config{}
	_ logr.Marshaler = Config{}
)

// Parse decodes and validates the .dockerconfigjson bytes. Its errors name
// the registry key, what is wrong and how to fix it, and never contain a
// credential.
func Parse(data []byte) (*Config, error) {
	var c Config
	// encoding/json, like the kubelet, so that field names match
	// case-insensitively and duplicate keys resolve the same way.
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, jsonError(data, err)
	}
	if c.Auths == nil && looksLikeDockercfg(data) {
		return nil, errors.New(`.dockerconfigjson has no "auths" object; this looks like the legacy .dockercfg format: wrap the registries in {"auths": {...}}, or store it in a kubernetes.io/dockercfg Secret`)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// jsonError rewrites a decoding error without the input text that
// encoding/json quotes (a syntax error quotes the offending character, a type
// error the offending number), which could be part of a password.
func jsonError(data []byte, err error) error {
	const fix = "fix the JSON, e.g. regenerate it with `kubectl create secret docker-registry --dry-run=client -o yaml`"
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		line, col := position(data, syntaxErr.Offset)
		return fmt.Errorf(".dockerconfigjson is not valid JSON: syntax error at line %d, column %d (byte %d); %s", line, col, syntaxErr.Offset, fix)
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		// encoding/json's field path leaves out map keys ("auths.password"),
		// so find the registry entries at fault by decoding them one by one.
		if err := entryTypeErrors(data); err != nil {
			return err
		}
		line, col := position(data, typeErr.Offset)
		if typeErr.Field == "" {
			return fmt.Errorf(".dockerconfigjson must be a JSON object with an \"auths\" object, found %s at line %d, column %d; %s", kind(typeErr.Value), line, col, fix)
		}
		return fmt.Errorf(".dockerconfigjson field %q has the wrong type (%s) at line %d, column %d: \"auths\" must map registry hosts to objects of strings; %s", typeErr.Field, kind(typeErr.Value), line, col, fix)
	}
	return fmt.Errorf(".dockerconfigjson cannot be decoded; %s", fix)
}

// entryTypeErrors names every registry whose entry is not an object of
// strings, or returns nil when the type error lies outside the entries.
func entryTypeErrors(data []byte) error {
	var raw struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	if json.Unmarshal(data, &raw) != nil {
		return nil
	}
	var errs []error
	for _, host := range slices.Sorted(maps.Keys(raw.Auths)) {
		var e AuthEntry
		var typeErr *json.UnmarshalTypeError
		if !errors.As(json.Unmarshal(raw.Auths[host], &e), &typeErr) {
			continue
		}
		if typeErr.Field == "" {
			errs = append(errs, fmt.Errorf(`registry %q: the entry must be an object such as {"auth": "<base64 of username:password>"}, found %s`, host, kind(typeErr.Value)))
		} else {
			errs = append(errs, fmt.Errorf("registry %q: %s must be a string, found %s", host, typeErr.Field, kind(typeErr.Value)))
		}
	}
	return errors.Join(errs...)
}

// kind keeps only the JSON type of an UnmarshalTypeError's Value, which is
// "number 1234" for numbers.
func kind(value string) string {
	k, _, _ := strings.Cut(value, " ")
	return k
}

// position turns a byte offset into a 1-based line and column, which is what
// an operator looking at a multi-line file needs.
func position(data []byte, offset int64) (line, col int) {
	if offset < 0 {
		offset = 0
	}
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	if col == 0 {
		col = 1
	}
	return line, col
}

// looksLikeDockercfg reports whether data is the legacy ~/.dockercfg layout:
// a non-empty JSON object whose values are all objects, keyed directly by
// registry, where a config.json without "auths" ({"credsStore": "desktop"})
// has string values.
func looksLikeDockercfg(data []byte) bool {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil || len(top) == 0 {
		return false
	}
	for _, v := range top {
		if !bytes.HasPrefix(bytes.TrimSpace(v), []byte("{")) {
			return false
		}
	}
	return true
}

// Validate reports every problem at once (errors.Join), each naming the
// registry key, in key order.
func (c *Config) Validate() error {
	if c == nil || len(c.Auths) == 0 {
		return errors.New(`.dockerconfigjson has no registries: "auths" must map at least one registry host (e.g. "harbor.example.com") to its credentials`)
	}
	var errs []error
	for _, host := range c.Hosts() {
		if host == "" {
			errs = append(errs, errors.New(`auths has an empty registry key: use the registry host, e.g. "harbor.example.com" or "10.0.0.5:8443"`))
			continue
		}
		entry := c.Auths[host]
		for _, err := range entry.validate() {
			errs = append(errs, fmt.Errorf("registry %q: %w", host, err))
		}
	}
	return errors.Join(errs...)
}

// validate returns the entry's problems, without the registry key.
func (e AuthEntry) validate() []error {
	var errs []error
	hasUserPass := e.Username != "" || e.Password != ""
	switch {
	case e.Auth != "":
		user, pass, err := decodeAuth(e.Auth)
		if err != nil {
			return append(errs, err)
		}
		if user == "" {
			errs = append(errs, errors.New(`auth decodes to an empty username; set auth to base64("<username>:<password>")`))
		}
		// The kubelet silently prefers auth; a mismatch means one of them is
		// stale, and nobody can tell which.
		if e.Username != "" && e.Username != user {
			errs = append(errs, errors.New("username does not match the username inside auth; remove username and password, or regenerate auth from them"))
		}
		if e.Password != "" && e.Password != pass {
			errs = append(errs, errors.New("password does not match the password inside auth; remove username and password, or regenerate auth from them"))
		}
	case hasUserPass:
		if e.Username == "" {
			errs = append(errs, errors.New("password is set but username is empty; set both, or set auth to base64(\"<username>:<password>\")"))
		}
		if e.Password == "" {
			errs = append(errs, errors.New("username is set but password is empty; set both, or set auth to base64(\"<username>:<password>\")"))
		}
	case e.IdentityToken != "" || e.RegistryToken != "":
		// Docker clients log in with these. The kubelet does not read them
		// from pull Secrets (its DockerConfigEntry has no such fields), so
		// it pulls such a registry anonymously; accepted so that a Secret
		// produced by `docker login` against a token-based registry is not
		// rejected outright.
	default:
		errs = append(errs, errors.New(`has no credentials: set auth to base64("<username>:<password>"), or username and password`))
	}
	return errs
}

// Credentials returns the username and password the kubelet would use: those
// inside auth when auth is set, else the username and password fields.
func (e AuthEntry) Credentials() (username, password string, err error) {
	if e.Auth == "" {
		return e.Username, e.Password, nil
	}
	return decodeAuth(e.Auth)
}

// decodeAuth decodes auth exactly as the kubelet does
// (credentialprovider.decodeDockerConfigFieldAuth): padded standard base64 if
// it ends in '=', else unpadded, split at the first ':'. Its errors carry no
// part of the input.
func decodeAuth(auth string) (username, password string, err error) {
	var decoded []byte
	if strings.HasSuffix(strings.TrimSpace(auth), "=") {
		decoded, err = base64.StdEncoding.DecodeString(auth)
	} else {
		decoded, err = base64.RawStdEncoding.DecodeString(auth)
	}
	if err != nil {
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) {
			return "", "", fmt.Errorf(`auth is not valid base64 (bad data at byte %d), so the kubelet would fail every image pull of Pods using this Secret; set auth to base64("<username>:<password>") with the standard alphabet`, int64(corrupt))
		}
		return "", "", errors.New(`auth is not valid base64, so the kubelet would fail every image pull of Pods using this Secret; set auth to base64("<username>:<password>") with the standard alphabet`)
	}
	username, password, ok := strings.Cut(string(decoded), ":")
	if !ok {
		return "", "", errors.New(`auth does not decode to "<username>:<password>" (no ':'), so the kubelet would fail every image pull of Pods using this Secret; encode the username and password joined by ':'`)
	}
	return username, password, nil
}

// Hosts returns the auths keys, sorted.
func (c *Config) Hosts() []string {
	if c == nil {
		return nil
	}
	hosts := make([]string, 0, len(c.Auths))
	for h := range c.Auths {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	return hosts
}

// Credential is one registry login for Build.
type Credential struct {
	Host, Username, Password string
}

// String keeps a Credential's password out of logs and errors.
func (c Credential) String() string {
	return fmt.Sprintf("{Host:%s Username:%s Password:%s}", c.Host, c.Username, redactedIfSet(c.Password))
}

// GoString keeps a Credential's password out of %#v.
func (c Credential) GoString() string {
	return fmt.Sprintf("dockerconfig.Credential{Host:%q, Username:%q, Password:%q}", c.Host, c.Username, redactedIfSet(c.Password))
}

// Build returns the .dockerconfigjson bytes for the given registries, with
// auth = base64(username:password) and username and password also set, as
// `kubectl create secret docker-registry` writes them. The output is
// deterministic (sorted keys), so that equal input gives an equal Hash.
// Errors name the host, never the password.
func Build(creds ...Credential) ([]byte, error) {
	if len(creds) == 0 {
		return nil, errors.New("no registries: give at least one registry host with its username and password")
	}
	var errs []error
	auths := make(map[string]AuthEntry, len(creds))
	for i, c := range creds {
		name := fmt.Sprintf("registry %q", c.Host)
		switch _, dup := auths[c.Host]; {
		case c.Host == "":
			name = fmt.Sprintf("registry #%d", i+1)
			errs = append(errs, fmt.Errorf(`%s: host is empty; set it to the registry host, e.g. "harbor.example.com" or "10.0.0.5:8443"`, name))
		case dup:
			errs = append(errs, fmt.Errorf("%s: listed more than once; a dockerconfig holds one credential per host, remove all but one", name))
			continue
		}
		if c.Username == "" {
			errs = append(errs, fmt.Errorf("%s: username is empty; set the registry account, e.g. the Harbor robot account name", name))
		}
		if strings.Contains(c.Username, ":") {
			errs = append(errs, fmt.Errorf(`%s: username contains ':', which cannot be encoded in auth (base64("<username>:<password>") is split at the first ':'); use the registry account's real name`, name))
		}
		if c.Password == "" {
			errs = append(errs, fmt.Errorf("%s: password is empty; set the registry account's password or token", name))
		}
		auths[c.Host] = AuthEntry{
			Username: c.Username,
			Password: c.Password,
			Auth:     base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password)),
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// json.Marshal sorts map keys, which makes the output deterministic.
	data, err := json.Marshal(Config{Auths: auths})
	if err != nil {
		return nil, errors.New("encoding .dockerconfigjson failed")
	}
	return data, nil
}

// Hash returns "sha256:<hex>" of data; it tells whether a copy of a Secret is
// current without comparing (or logging) its content.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func redactedIfSet(s string) string {
	if s == "" {
		return ""
	}
	return redacted
}

// redactedEntry is an AuthEntry safe to print: the username, and which
// secret fields are set.
type redactedEntry struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	Email         string `json:"email,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

func (e AuthEntry) redact() redactedEntry {
	return redactedEntry{
		Username:      e.Username,
		Password:      redactedIfSet(e.Password),
		Auth:          redactedIfSet(e.Auth),
		Email:         e.Email,
		IdentityToken: redactedIfSet(e.IdentityToken),
		RegistryToken: redactedIfSet(e.RegistryToken),
	}
}

// String is used by %v, %+v and %s; it shows the username and which secret
// fields are set, never their values.
func (e AuthEntry) String() string {
	r := e.redact()
	var parts []string
	for _, f := range []struct{ name, value string }{
		{"username", r.Username},
		{"password", r.Password},
		{"auth", r.Auth},
		{"email", r.Email},
		{"identitytoken", r.IdentityToken},
		{"registrytoken", r.RegistryToken},
	} {
		if f.value != "" {
			parts = append(parts, f.name+":"+f.value)
		}
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// GoString is used by %#v.
func (e AuthEntry) GoString() string {
	r := e.redact()
	return fmt.Sprintf("dockerconfig.AuthEntry{Username:%q, Password:%q, Auth:%q, Email:%q, IdentityToken:%q, RegistryToken:%q}",
		r.Username, r.Password, r.Auth, r.Email, r.IdentityToken, r.RegistryToken)
}

// MarshalLog is used by logr sinks (zapr included) instead of reflecting over
// the struct.
func (e AuthEntry) MarshalLog() any {
	return e.redact()
}

// String is used by %v, %+v and %s.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("{auths:{")
	for i, h := range c.Hosts() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%s", h, c.Auths[h])
	}
	b.WriteString("}}")
	return b.String()
}

// GoString is used by %#v.
func (c Config) GoString() string {
	var b strings.Builder
	b.WriteString("dockerconfig.Config{Auths:map[string]dockerconfig.AuthEntry{")
	for i, h := range c.Hosts() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q:%#v", h, c.Auths[h])
	}
	b.WriteString("}}")
	return b.String()
}

// MarshalLog is used by logr sinks instead of reflecting over the struct.
func (c Config) MarshalLog() any {
	auths := make(map[string]redactedEntry, len(c.Auths))
	for h, e := range c.Auths {
		auths[h] = e.redact()
	}
	return struct {
		Auths map[string]redactedEntry `json:"auths"`
	}{auths}
}
