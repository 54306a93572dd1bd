package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regcred-webhook/regcred-webhook/test/e2e/framework"
)

// Scenario 7: with the webhook down, Pods are still created (failurePolicy Ignore);
// once it is back, new Pods are patched.
func TestFailOpenAndRecover(t *testing.T) {
	install.Stop()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = install.StartWebhook(context.Background())
		}
	})
	ns := newNamespace(t, "down", nil)
	assertUntouched(t, create(t, podWith(ns, harborImage)))

	if err := install.StartWebhook(context.Background()); err != nil {
		t.Fatal(err)
	}
	restarted = true
	assertPatched(t, create(t, podWith(ns, harborImage)), "regcred")
	assertManagedCopy(t, ns)
}

// Scenario 8: a new serving certificate from the same CA, written over the old files,
// is served without a restart, and admissions keep working.
func TestServingCertRotation(t *testing.T) {
	before, err := install.ServingCert()
	if err != nil {
		t.Fatal(err)
	}
	caSecret, err := getSecret(t, framework.Namespace, framework.Fullname+"-ca")
	if err != nil {
		t.Fatal(err)
	}
	crt, key := signServingCert(t, caSecret.Data["tls.crt"], caSecret.Data["tls.key"])
	pid := install.Webhook
	if err := framework.WriteCert(install.CertDir, crt, key); err != nil {
		t.Fatal(err)
	}
	var served []byte
	eventually(t, 30*time.Second, "the new certificate served", func() (bool, error) {
		c, err := install.ServingCert()
		if err != nil {
			return false, nil
		}
		served = c.Raw
		return c.SerialNumber.Cmp(before.SerialNumber) != 0, nil
	})
	block, _ := pem.Decode(crt)
	if !bytes.Equal(served, block.Bytes) {
		t.Fatal("the served certificate is not the one written")
	}
	if install.Webhook != pid || !install.Webhook.Running() {
		t.Fatal("the webhook restarted")
	}
	ns := newNamespace(t, "rotated", nil)
	assertPatched(t, create(t, podWith(ns, harborImage)), "regcred")
}

// signServingCert issues a leaf for 127.0.0.1 from the chart's CA.
func signServingCert(t *testing.T, caPEM, caKeyPEM []byte) (crtPEM, keyPEM []byte) {
	t.Helper()
	cb, _ := pem.Decode(caPEM)
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := pem.Decode(caKeyPEM)
	caKey, err := parseKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "rotated"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{framework.Fullname + "." + framework.Namespace + ".svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func parseKey(der []byte) (any, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return x509.ParsePKCS1PrivateKey(der)
}

// Scenario 9: without a source Secret, Pods are allowed unpatched, the webhook stays
// ready and says so once; once the source is back, the next Pod is patched.
func TestMissingSource(t *testing.T) {
	ctx := context.Background()
	src := sourceSecret(t)
	restored := false
	restore := func() {
		if restored {
			return
		}
		s := src.DeepCopy()
		s.ResourceVersion, s.UID, s.CreationTimestamp = "", "", src.CreationTimestamp
		s.ManagedFields = nil
		if err := cp.Client.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Errorf("restoring the source: %v", err)
		}
		restored = true
	}
	t.Cleanup(restore)

	logStart := len(install.Webhook.Logs())
	if err := cp.Client.Delete(ctx, src); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, "nosource", nil)
	// The informer sees the delete shortly; until then Pods are still patched.
	eventually(t, 10*time.Second, "Pods admitted unpatched once the source is gone", func() (bool, error) {
		p := podWith(ns, harborImage)
		if err := cp.Client.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err
		}
		return len(p.Spec.ImagePullSecrets) == 0, nil
	})
	for range 3 {
		assertUntouched(t, create(t, podWith(ns, harborImage)))
	}
	if code, err := install.Ready(); code != http.StatusOK {
		t.Errorf("/readyz = %d, %v: a missing source must not make the webhook unready", code, err)
	}
	logs := string(install.Webhook.Logs()[logStart:])
	if n := strings.Count(logs, `"msg":"no valid source Secret`); n != 1 {
		t.Errorf("%d log lines about the missing source, want exactly 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "kubectl create secret docker-registry") {
		t.Errorf("the log line does not say how to fix it:\n%s", logs)
	}

	restore()
	eventually(t, 10*time.Second, "Pods patched again once the source is back", func() (bool, error) {
		p := podWith(ns, harborImage)
		if err := cp.Client.Create(ctx, p); err != nil {
			return false, err
		}
		return len(p.Spec.ImagePullSecrets) == 1, nil
	})
	assertManagedCopy(t, ns)
}

// The binary's logs are JSON lines and never carry a credential.
func TestLogsAreJSONWithoutCredentials(t *testing.T) {
	logs := install.Webhook.Logs()
	if len(logs) == 0 {
		t.Fatal("no logs")
	}
	src := sourceSecret(t)
	// The password, its auth form, and the whole .dockerconfigjson raw and in the
	// base64 a logged Secret object would show.
	forbidden := []string{password, base64.StdEncoding.EncodeToString([]byte("robot$e2e+puller:" + password)),
		string(src.Data[corev1.DockerConfigJsonKey]), base64.StdEncoding.EncodeToString(src.Data[corev1.DockerConfigJsonKey])}
	lines := bytes.Split(bytes.TrimSpace(logs), []byte("\n"))
	for i, line := range lines {
		if !json.Valid(line) {
			t.Errorf("log line %d is not JSON: %s", i+1, line)
		}
		for _, f := range forbidden {
			if bytes.Contains(line, []byte(f)) {
				t.Fatalf("log line %d contains a credential", i+1)
			}
		}
	}
	t.Logf("%d JSON log lines checked", len(lines))
}
