package dockerconfig

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
)

// Every secret in these tests contains "s3cr3t", so that one substring check
// catches a leak of any of them; base64 forms are checked separately.
const (
	robot    = "robot$ci+puller"
	password = "s3cr3t-Pa55"
	harbor   = "harbor.example.com"
	harborIP = "10.0.0.5:8443"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func b64raw(s string) string { return base64.RawStdEncoding.EncodeToString([]byte(s)) }

// entryJSON builds `{"auths":{host: entry}}` with entry given as JSON.
func entryJSON(host, entry string) string {
	return fmt.Sprintf(`{"auths":{%q:%s}}`, host, entry)
}

func TestParse(t *testing.T) {
	robotAuth := b64(robot + ":" + password)
	tests := []struct {
		name      string
		data      string
		wantHosts []string
		wantUser  string // of the first host, via Credentials
		wantPass  string
		wantErr   []string // substrings; nil means success
	}{
		{
			name:      "auth",
			data:      entryJSON(harbor, fmt.Sprintf(`{"auth":%q}`, robotAuth)),
			wantHosts: []string{harbor}, wantUser: robot, wantPass: password,
		},
		{
			name:      "username and password",
			data:      entryJSON(harbor, fmt.Sprintf(`{"username":%q,"password":%q}`, robot, password)),
			wantHosts: []string{harbor}, wantUser: robot, wantPass: password,
		},
		{
			name:      "auth agreeing with username and password, as kubectl writes it",
			data:      entryJSON(harbor, fmt.Sprintf(`{"username":%q,"password":%q,"email":"ci@example.com","auth":%q}`, robot, password, robotAuth)),
			wantHosts: []string{harbor}, wantUser: robot, wantPass: password,
		},
		{
			name:      "unpadded auth, which the kubelet accepts",
			data:      entryJSON(harbor, fmt.Sprintf(`{"auth":%q}`, b64raw("u:s3cr3t"))),
			wantHosts: []string{harbor}, wantUser: "u", wantPass: "s3cr3t",
		},
		{
			name:      "password containing ':' stays whole",
			data:      entryJSON(harbor, fmt.Sprintf(`{"auth":%q}`, b64("u:s3cr3t:with:colons"))),
			wantHosts: []string{harbor}, wantUser: "u", wantPass: "s3cr3t:with:colons",
		},
		{
			name:      "domain and ip alias",
			data:      fmt.Sprintf(`{"auths":{%q:{"auth":%q},%q:{"auth":%q}}}`, harborIP, robotAuth, harbor, robotAuth),
			wantHosts: []string{harborIP, harbor}, wantUser: robot, wantPass: password,
		},
		{
			name:      "identitytoken only",
			data:      entryJSON(harbor, `{"identitytoken":"s3cr3t-token"}`),
			wantHosts: []string{harbor},
		},
		{
			name:      "registrytoken only",
			data:      entryJSON(harbor, `{"registrytoken":"s3cr3t-token"}`),
			wantHosts: []string{harbor},
		},
		{
			name:      "other docker config fields are ignored, as by the kubelet",
			data:      fmt.Sprintf(`{"auths":{%q:{"auth":%q}},"HttpHeaders":{"User-Agent":"x"},"credsStore":"desktop"}`, harbor, robotAuth),
			wantHosts: []string{harbor}, wantUser: robot, wantPass: password,
		},
		{
			name:      "field names are case-insensitive, as for the kubelet",
			data:      fmt.Sprintf(`{"Auths":{%q:{"Auth":%q}}}`, harbor, robotAuth),
			wantHosts: []string{harbor}, wantUser: robot, wantPass: password,
		},
		{
			name:    "bad base64",
			data:    entryJSON(harbor, `{"auth":"s3cr3t!!not-base64"}`),
			wantErr: []string{`registry "harbor.example.com": auth is not valid base64`, "byte"},
		},
		{
			name:    "url-safe base64 alphabet",
			data:    entryJSON(harbor, fmt.Sprintf(`{"auth":%q}`, base64.URLEncoding.EncodeToString([]byte("u:s3cr3t>>>???")))),
			wantErr: []string{`registry "harbor.example.com": auth is not valid base64`},
		},
		{
			name:    "auth without colon",
			data:    entryJSON(harbor, fmt.Sprintf(`{"auth":%q}`, b64("s3cr3t"))),
			wantErr: []string{`registry "harbor.example.com": auth does not decode to "<username>:<password>"`},
		},
		{
			name:    "auth with empty username",
			data:    entryJSON(harbor, fmt.Sprintf(`{"auth":%q}`, b64(":s3cr3t"))),
			wantErr: []string{`registry "harbor.example.com": auth decodes to an empty username`},
		},
		{
			name:    "auth disagrees with username",
			data:    entryJSON(harbor, fmt.Sprintf(`{"username":"someone-else","password":%q,"auth":%q}`, password, robotAuth)),
			wantErr: []string{`registry "harbor.example.com": username does not match the username inside auth`},
		},
		{
			name:    "auth disagrees with password",
			data:    entryJSON(harbor, fmt.Sprintf(`{"username":%q,"password":"old-s3cr3t","auth":%q}`, robot, robotAuth)),
			wantErr: []string{`registry "harbor.example.com": password does not match the password inside auth`},
		},
		{
			name:    "username without password",
			data:    entryJSON(harbor, fmt.Sprintf(`{"username":%q}`, robot)),
			wantErr: []string{`registry "harbor.example.com": username is set but password is empty`},
		},
		{
			name:    "password without username",
			data:    entryJSON(harbor, fmt.Sprintf(`{"password":%q}`, password)),
			wantErr: []string{`registry "harbor.example.com": password is set but username is empty`},
		},
		{
			name:    "no credentials",
			data:    entryJSON(harbor, `{"email":"ci@example.com"}`),
			wantErr: []string{`registry "harbor.example.com": has no credentials`},
		},
		{
			name:    "null entry",
			data:    entryJSON(harbor, `null`),
			wantErr: []string{`registry "harbor.example.com": has no credentials`},
		},
		{
			name:    "empty key",
			data:    entryJSON("", fmt.Sprintf(`{"auth":%q}`, robotAuth)),
			wantErr: []string{"auths has an empty registry key"},
		},
		{
			name:    "missing auths",
			data:    `{}`,
			wantErr: []string{`has no registries: "auths" must map at least one registry host`},
		},
		{
			name:    "null auths",
			data:    `{"auths":null}`,
			wantErr: []string{"has no registries"},
		},
		{
			name:    "empty auths",
			data:    `{"auths":{}}`,
			wantErr: []string{"has no registries"},
		},
		{
			name:    "config.json without auths",
			data:    `{"credsStore":"desktop"}`,
			wantErr: []string{"has no registries"},
		},
		{
			name:    "legacy .dockercfg layout",
			data:    fmt.Sprintf(`{%q:{"auth":%q}}`, harbor, robotAuth),
			wantErr: []string{"legacy .dockercfg format", `{"auths": {...}}`},
		},
		{
			name:    "not JSON",
			data:    `s3cr3t`,
			wantErr: []string{"is not valid JSON: syntax error at line 1, column 1"},
		},
		{
			name:    "empty input",
			data:    ``,
			wantErr: []string{"is not valid JSON"},
		},
		{
			// json's message would quote the 'q' of the bad escape, which
			// is a character of the password.
			name:    "syntax error inside the password",
			data:    "{\"auths\": {\n  \"harbor.example.com\": {\"username\": \"u\", \"password\": \"s3cr3t\\q\"}}}",
			wantErr: []string{"syntax error at line 2, column 63 (byte 75)"},
		},
		{
			name:    "syntax error right after the password",
			data:    `{"auths":{"harbor.example.com":{"username":"u","password":"s3cr3t" "x"}}}`,
			wantErr: []string{"syntax error at line 1"},
		},
		{
			name:    "trailing data",
			data:    fmt.Sprintf(`{"auths":{%q:{"auth":%q}}} s3cr3t`, harbor, robotAuth),
			wantErr: []string{"syntax error at line 1"},
		},
		{
			// json's message would be "cannot unmarshal number 7353312373 into ...".
			name:    "numeric password",
			data:    `{"auths":{"harbor.example.com":{"username":"u","password":7353312373}}}`,
			wantErr: []string{`registry "harbor.example.com": password must be a string, found number`},
		},
		{
			name:    "entry is a string",
			data:    `{"auths":{"harbor.example.com":"s3cr3t"}}`,
			wantErr: []string{`registry "harbor.example.com": the entry must be an object`, "found string"},
		},
		{
			name:    "every bad entry is named",
			data:    `{"auths":{"b.example.com":{"auth":["s3cr3t"]},"a.example.com":{"username":true},"c.example.com":{"auth":"ok"}}}`,
			wantErr: []string{`registry "a.example.com": username must be a string, found bool`, `registry "b.example.com": auth must be a string, found array`},
		},
		{
			name:    "auths is an array",
			data:    `{"auths":["s3cr3t"]}`,
			wantErr: []string{`field "auths" has the wrong type (array) at line 1, column 10`},
		},
		{
			name:    "top level is an array",
			data:    `["s3cr3t"]`,
			wantErr: []string{"must be a JSON object", "found array"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.data))
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("Parse succeeded, want an error containing %q", tc.wantErr)
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				assertNoSecret(t, err.Error(), tc.data)
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := cfg.Hosts(); !slices.Equal(got, tc.wantHosts) {
				t.Errorf("Hosts() = %q, want %q", got, tc.wantHosts)
			}
			user, pass, err := cfg.Auths[tc.wantHosts[0]].Credentials()
			if err != nil || user != tc.wantUser || pass != tc.wantPass {
				t.Errorf("Credentials() = (%q, %q, %v), want (%q, %q)", user, pass, err, tc.wantUser, tc.wantPass)
			}
		})
	}
}

// assertNoSecret fails if s contains any password or token used in the
// tests, or any auth value of data.
func assertNoSecret(t *testing.T, s, data string) {
	t.Helper()
	secrets := []string{"s3cr3t", password, b64(robot + ":" + password), "7353312373"}
	var parsed struct {
		Auths map[string]map[string]any `json:"auths"`
	}
	_ = json.Unmarshal([]byte(data), &parsed)
	for _, e := range parsed.Auths {
		if a, ok := e["auth"].(string); ok && a != "" {
			secrets = append(secrets, a)
		}
	}
	for _, secret := range secrets {
		if strings.Contains(s, secret) {
			t.Errorf("%q leaks secret %q", s, secret)
		}
	}
	// encoding/json quotes offending input characters like this.
	if strings.Contains(s, "invalid character") || strings.Contains(s, "cannot unmarshal") {
		t.Errorf("%q carries encoding/json's message, which quotes input", s)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := &Config{Auths: map[string]AuthEntry{
		"c.example.com": {Username: robot},
		harbor:          {Auth: b64(robot + ":" + password)},
		"a.example.com": {Auth: "s3cr3t%%"},
		"b.example.com": {},
		"":              {Auth: b64(robot + ":" + password)},
	}}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate succeeded")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		"auths has an empty registry key",
		`registry "a.example.com": auth is not valid base64`,
		`registry "b.example.com": has no credentials`,
		`registry "c.example.com": username is set but password is empty`,
	}
	if len(got) != len(want) {
		t.Fatalf("Validate() reported %d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
	assertNoSecret(t, err.Error(), "")
}

func TestValidateNil(t *testing.T) {
	var cfg *Config
	if err := cfg.Validate(); err == nil {
		t.Error("nil Config validated")
	}
	if cfg.Hosts() != nil {
		t.Error("nil Config has hosts")
	}
}

func TestCredentialsPreferAuth(t *testing.T) {
	// The kubelet uses auth when it is set; Credentials must agree even for a
	// Config that was not validated.
	e := AuthEntry{Username: "stale", Password: "stale", Auth: b64(robot + ":" + password)}
	user, pass, err := e.Credentials()
	if err != nil || user != robot || pass != password {
		t.Errorf("Credentials() = (%q, %q, %v), want (%q, %q)", user, pass, err, robot, password)
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		creds   []Credential
		want    string
		wantErr []string
	}{
		{
			name:  "one registry",
			creds: []Credential{{Host: harbor, Username: robot, Password: password}},
			want:  `{"auths":{"harbor.example.com":{"username":"robot$ci+puller","password":"s3cr3t-Pa55","auth":"` + b64(robot+":"+password) + `"}}}`,
		},
		{
			name: "keys sorted",
			creds: []Credential{
				{Host: harbor, Username: "u1", Password: "p1"},
				{Host: harborIP, Username: "u2", Password: "p2"},
			},
			want: `{"auths":{"10.0.0.5:8443":{"username":"u2","password":"p2","auth":"` + b64("u2:p2") + `"},"harbor.example.com":{"username":"u1","password":"p1","auth":"` + b64("u1:p1") + `"}}}`,
		},
		{
			name:    "nothing",
			wantErr: []string{"no registries"},
		},
		{
			name:    "empty host",
			creds:   []Credential{{Host: harbor, Username: "u", Password: "s3cr3t"}, {Username: "u", Password: "s3cr3t"}},
			wantErr: []string{"registry #2: host is empty"},
		},
		{
			name:    "empty username",
			creds:   []Credential{{Host: harbor, Password: "s3cr3t"}},
			wantErr: []string{`registry "harbor.example.com": username is empty`},
		},
		{
			name:    "empty password",
			creds:   []Credential{{Host: harbor, Username: robot}},
			wantErr: []string{`registry "harbor.example.com": password is empty`},
		},
		{
			name:    "colon in username",
			creds:   []Credential{{Host: harbor, Username: "robot:ci", Password: "s3cr3t"}},
			wantErr: []string{`registry "harbor.example.com": username contains ':'`},
		},
		{
			name:    "duplicate host",
			creds:   []Credential{{Host: harbor, Username: "u", Password: "s3cr3t-1"}, {Host: harbor, Username: "u", Password: "s3cr3t-2"}},
			wantErr: []string{`registry "harbor.example.com": listed more than once`},
		},
		{
			name: "every problem at once",
			creds: []Credential{
				{Host: harbor, Username: "a:b", Password: "s3cr3t"},
				{Host: harborIP},
			},
			wantErr: []string{
				`registry "harbor.example.com": username contains ':'`,
				`registry "10.0.0.5:8443": username is empty`,
				`registry "10.0.0.5:8443": password is empty`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Build(tc.creds...)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("Build succeeded: %s", got)
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				assertNoSecret(t, err.Error(), "")
				return
			}
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("Build() =\n%s\nwant\n%s", got, tc.want)
			}
			if _, err := Parse(got); err != nil {
				t.Errorf("Parse(Build()) = %v", err)
			}
			rev := slices.Clone(tc.creds)
			slices.Reverse(rev)
			if again, _ := Build(rev...); !bytes.Equal(again, got) {
				t.Errorf("Build depends on argument order:\n%s\n%s", got, again)
			}
		})
	}
}

func TestBuildParseRoundTrip(t *testing.T) {
	creds := []Credential{
		{Host: harbor, Username: robot, Password: password},
		{Host: harborIP, Username: "robot$team-a+ci", Password: `s3cr3t:with"quotes'<&>\and:colons`},
		{Host: "*.harbor.example.com:8443", Username: "ünïcode", Password: "s3cr3t-ünïcode"},
	}
	data, err := Build(creds...)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(Build()): %v", err)
	}
	for _, c := range creds {
		e, ok := cfg.Auths[c.Host]
		if !ok {
			t.Errorf("host %q lost", c.Host)
			continue
		}
		if e.Username != c.Username || e.Password != c.Password {
			t.Errorf("host %q: username/password = (%q, %q), want (%q, %q)", c.Host, e.Username, e.Password, c.Username, c.Password)
		}
		user, pass, err := e.Credentials()
		if err != nil || user != c.Username || pass != c.Password {
			t.Errorf("host %q: auth decodes to (%q, %q, %v), want (%q, %q)", c.Host, user, pass, err, c.Username, c.Password)
		}
	}
}

func TestHash(t *testing.T) {
	if got, want := Hash(nil), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; got != want {
		t.Errorf("Hash(nil) = %q, want %q", got, want)
	}
	if got, want := Hash([]byte("abc")), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf(`Hash("abc") = %q, want %q`, got, want)
	}
	a, _ := Build(Credential{Host: harbor, Username: robot, Password: password})
	b, _ := Build(Credential{Host: harbor, Username: robot, Password: password})
	c, _ := Build(Credential{Host: harbor, Username: robot, Password: password + "-rotated"})
	if Hash(a) != Hash(b) {
		t.Error("equal input hashes differently")
	}
	if Hash(a) == Hash(c) {
		t.Error("a rotated password does not change the hash")
	}
}

func TestPrintingRedacts(t *testing.T) {
	data, err := Build(
		Credential{Host: harbor, Username: robot, Password: password},
		Credential{Host: harborIP, Username: robot, Password: password},
	)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	entry := cfg.Auths[harbor]
	tokens := AuthEntry{Username: robot, IdentityToken: "s3cr3t-id", RegistryToken: "s3cr3t-reg"}
	cred := Credential{Host: harbor, Username: robot, Password: password}

	var printed []string
	for _, v := range []any{cfg, *cfg, cfg.Auths, entry, &entry, []AuthEntry{entry, tokens}, tokens, cred, &cred} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			printed = append(printed, fmt.Sprintf(verb, v))
		}
	}
	for _, s := range printed {
		assertNoSecret(t, s, string(data))
	}

	// Redacted, but still useful: the username and which secrets are set.
	if got, want := entry.String(), "{username:robot$ci+puller password:<redacted> auth:<redacted>}"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := fmt.Sprintf("%#v", tokens), `dockerconfig.AuthEntry{Username:"robot$ci+puller", Password:"", Auth:"", Email:"", IdentityToken:"<redacted>", RegistryToken:"<redacted>"}`; got != want {
		t.Errorf("%%#v = %q, want %q", got, want)
	}
	if got, want := fmt.Sprint(cfg), "{auths:{10.0.0.5:8443:{username:robot$ci+puller password:<redacted> auth:<redacted>} harbor.example.com:{username:robot$ci+puller password:<redacted> auth:<redacted>}}}"; got != want {
		t.Errorf("Sprint(cfg) = %q, want %q", got, want)
	}
}

func TestLoggingRedacts(t *testing.T) {
	cfg, err := Parse([]byte(entryJSON(harbor, fmt.Sprintf(`{"auth":%q,"identitytoken":"s3cr3t-id"}`, b64(robot+":"+password)))))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	log := funcr.NewJSON(func(obj string) { out.WriteString(obj + "\n") }, funcr.Options{})
	log.Info("loaded", "config", cfg, "configValue", *cfg, "entry", cfg.Auths[harbor])
	assertNoSecret(t, out.String(), "")
	for _, want := range []string{`"auth":"<redacted>"`, `"identitytoken":"<redacted>"`, `"harbor.example.com"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log %s does not contain %s", out.String(), want)
		}
	}

	// MarshalLog is also what zapr encodes.
	j, err := json.Marshal(cfg.MarshalLog())
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, string(j), "")
}
