//go:build integration

package helm

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Secrets of the default (generated) mode and what each certificate is.
var tlsSecrets = map[string]struct {
	identity string
	usages   []x509.ExtKeyUsage
}{
	"dots-tls-server":     {"dots-server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	"dots-tls-controller": {"dots-controller", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
}

// secretData decodes a rendered Secret's data and checks its type and keys.
func secretData(t *testing.T, s obj) map[string][]byte {
	t.Helper()
	if s["type"] != "kubernetes.io/tls" {
		t.Errorf("Secret %s: type %v, want kubernetes.io/tls", s.name(), s["type"])
	}
	raw, _ := s["data"].(map[string]any)
	out := map[string][]byte{}
	for k, v := range raw {
		b, err := base64.StdEncoding.DecodeString(v.(string))
		if err != nil {
			t.Fatalf("Secret %s: %s is not base64: %v", s.name(), k, err)
		}
		out[k] = b
	}
	keys := []string{}
	for k := range out {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !reflect.DeepEqual(keys, []string{"ca.crt", "tls.crt", "tls.key"}) {
		t.Errorf("Secret %s: keys %v, want ca.crt tls.crt tls.key", s.name(), keys)
	}
	return out
}

func parseCert(t *testing.T, what string, p []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(p)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: not a PEM certificate", what)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return c
}

// checkTLSSecrets checks the three generated Secrets: a CA, and a server and
// a controller certificate issued by it, each with its key, its identity
// and its usages. It returns the decoded data by Secret name.
func checkTLSSecrets(t *testing.T, ms manifests) map[string]map[string][]byte {
	t.Helper()
	all := map[string]map[string][]byte{}
	ca := secretData(t, ms.get(t, "Secret", "dots-tls-ca"))
	all["dots-tls-ca"] = ca
	caCert := parseCert(t, "CA", ca["tls.crt"])
	if !caCert.IsCA || caCert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate is not a CA: IsCA=%v usage=%v", caCert.IsCA, caCert.KeyUsage)
	}
	if _, err := tls.X509KeyPair(ca["tls.crt"], ca["tls.key"]); err != nil {
		t.Errorf("CA key does not match its certificate: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	for name, want := range tlsSecrets {
		d := secretData(t, ms.get(t, "Secret", name))
		all[name] = d
		if string(d["ca.crt"]) != string(ca["tls.crt"]) {
			t.Errorf("%s: ca.crt is not the CA's certificate", name)
		}
		if _, err := tls.X509KeyPair(d["tls.crt"], d["tls.key"]); err != nil {
			t.Errorf("%s: key does not match the certificate: %v", name, err)
		}
		c := parseCert(t, name, d["tls.crt"])
		if !reflect.DeepEqual(c.DNSNames, []string{want.identity}) {
			t.Errorf("%s: DNS names %v, want [%s]", name, c.DNSNames, want.identity)
		}
		for _, u := range want.usages {
			if !slices.Contains(c.ExtKeyUsage, u) {
				t.Errorf("%s: ext key usages %v lack %v", name, c.ExtKeyUsage, u)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: want.identity, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Errorf("%s does not verify against the CA as %s for %v: %v", name, want.identity, u, err)
			}
		}
		// The identity is what each side checks: the controller's
		// certificate must not pass for a server's.
		if name == "dots-tls-controller" && c.VerifyHostname("dots-server") == nil {
			t.Error("the controller's certificate passes for dots-server")
		}
	}
	return all
}

// checkTLSMounts checks that the server and the controller mount their
// Secret read-only at /etc/dots/tls and pass its files and the identities,
// and that nothing else mounts a certificate.
func checkTLSMounts(t *testing.T, ms manifests, serverSecret, controllerSecret string) {
	t.Helper()
	for _, w := range []struct {
		kind, name, secret string
		flags              map[string]string
	}{
		{"StatefulSet", "dots-server", serverSecret, map[string]string{"tls-client-identities": "dots-controller,dots-server"}},
		{"Deployment", "dots-controller", controllerSecret, map[string]string{"tls-server-identity": "dots-server", "admin-socket": "/csi/admin.sock"}},
	} {
		wl := ms.get(t, w.kind, w.name)
		c := container(t, wl, "dots")
		m := volumeMount(t, c, "tls")
		if m["mountPath"] != "/etc/dots/tls" || m["readOnly"] != true {
			t.Errorf("%s: tls mounted %v", w.name, m)
		}
		v := podVolume(t, wl, "tls")
		if dig(v, "secret", "secretName") != w.secret {
			t.Errorf("%s mounts Secret %v, want %s", w.name, dig(v, "secret", "secretName"), w.secret)
		}
		// 0440: not world-readable; the controller reads through its fsGroup.
		if dig(v, "secret", "defaultMode") != 0o440 {
			t.Errorf("%s: tls defaultMode %v, want 0440", w.name, dig(v, "secret", "defaultMode"))
		}
		var keys []string
		for _, it := range dig(v, "secret", "items").([]any) {
			if dig(it, "key") != dig(it, "path") {
				t.Errorf("%s: item %v renamed", w.name, it)
			}
			keys = append(keys, dig(it, "key").(string))
		}
		if !reflect.DeepEqual(keys, []string{"tls.crt", "tls.key", "ca.crt"}) {
			t.Errorf("%s: tls items %v", w.name, keys)
		}
		a := args(c)
		wantFlag(t, w.name, a, "tls-cert-file", "/etc/dots/tls/tls.crt")
		wantFlag(t, w.name, a, "tls-key-file", "/etc/dots/tls/tls.key")
		wantFlag(t, w.name, a, "tls-ca-file", "/etc/dots/tls/ca.crt")
		for f, want := range w.flags {
			wantFlag(t, w.name, a, f, want)
		}
		for _, arg := range a {
			if strings.HasPrefix(arg, "--insecure") {
				t.Errorf("%s: the chart must never pass %s", w.name, arg)
			}
		}
		// Rotation needs no restart: no checksum of the certificates on the
		// pods (a changed annotation would restart them).
		annotations, _ := dig(wl, "spec", "template", "metadata", "annotations").(map[string]any)
		for k := range annotations {
			if strings.Contains(k, "tls") || strings.Contains(k, "cert") {
				t.Errorf("%s: pod annotation %s would restart pods on rotation", w.name, k)
			}
		}
	}
	// The node plugin has no part in the API's TLS, and no pod mounts the CA.
	for _, kind := range []string{"Deployment", "DaemonSet", "StatefulSet"} {
		for _, wl := range ms.all(kind) {
			vs, _ := dig(wl, "spec", "template", "spec", "volumes").([]any)
			for _, v := range vs {
				s := dig(v, "secret", "secretName")
				if s == "dots-tls-ca" || (s != nil && kind == "DaemonSet") {
					t.Errorf("%s %s mounts Secret %v", kind, wl.name(), s)
				}
			}
		}
	}
}

func TestTLSGenerated(t *testing.T) {
	ms := render(t)
	checkTLSSecrets(t, ms)
	checkTLSMounts(t, ms, "dots-tls-server", "dots-tls-controller")
	if len(ms.all("Certificate"))+len(ms.all("Issuer")) != 0 {
		t.Error("generated mode renders cert-manager objects")
	}
}

// Nothing fixed: every render without a cluster to look up makes new keys,
// so no key material can hide in the chart.
func TestTLSGeneratedFreshEachRender(t *testing.T) {
	a, b := checkTLSSecrets(t, render(t)), checkTLSSecrets(t, render(t))
	for name := range a {
		for _, k := range []string{"tls.crt", "tls.key"} {
			if string(a[name][k]) == string(b[name][k]) {
				t.Errorf("%s %s is the same in two renders", name, k)
			}
		}
	}
}

func TestTLSCertManager(t *testing.T) {
	ms := render(t, "--set", "tls.certManager.enabled=true")
	if s := ms.all("Secret"); len(s) != 0 {
		t.Errorf("cert-manager mode renders Secrets: %v", s[0].name())
	}
	checkTLSMounts(t, ms, "dots-tls-server", "dots-tls-controller")

	// The chart's own CA: self-signed Issuer -> CA Certificate -> CA Issuer.
	if ss := ms.get(t, "Issuer", "dots-selfsigned"); !reflect.DeepEqual(dig(ss, "spec"), map[string]any{"selfSigned": map[string]any{}}) {
		t.Errorf("self-signed Issuer %v", dig(ss, "spec"))
	}
	ca := ms.get(t, "Certificate", "dots-ca")
	if dig(ca, "spec", "isCA") != true || dig(ca, "spec", "secretName") != "dots-tls-ca" ||
		dig(ca, "spec", "issuerRef", "name") != "dots-selfsigned" || dig(ca, "spec", "issuerRef", "kind") != "Issuer" {
		t.Errorf("CA Certificate %v", dig(ca, "spec"))
	}
	// Renewing the CA keeps its key: certificates it signed stay trusted.
	if dig(ca, "spec", "privateKey", "rotationPolicy") != "Never" {
		t.Errorf("CA key rotation policy %v", dig(ca, "spec", "privateKey"))
	}
	if dig(ms.get(t, "Issuer", "dots-ca"), "spec", "ca", "secretName") != "dots-tls-ca" {
		t.Errorf("CA Issuer %v", dig(ms.get(t, "Issuer", "dots-ca"), "spec"))
	}
	checkCertificates(t, ms, map[string]any{"name": "dots-ca", "kind": "Issuer", "group": "cert-manager.io"})

	// An issuer of the user's: nothing of the chart's own CA.
	ms = render(t, "--set", "tls.certManager.enabled=true,tls.certManager.issuerRef.name=corp-ca,tls.certManager.issuerRef.kind=ClusterIssuer")
	if n := len(ms.all("Issuer")) + len(ms.all("Secret")); n != 0 {
		t.Errorf("with an issuerRef, %d Issuers or Secrets rendered", n)
	}
	if len(ms.all("Certificate")) != 2 {
		t.Errorf("with an issuerRef, %d Certificates rendered, want server and controller", len(ms.all("Certificate")))
	}
	checkCertificates(t, ms, map[string]any{"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
}

// checkCertificates checks the server's and the controller's Certificates:
// names, usages, issuer, and the Secret the pods mount.
func checkCertificates(t *testing.T, ms manifests, issuer map[string]any) {
	t.Helper()
	for _, c := range []struct {
		cert, identity, workload, kind string
		usages                         []string
	}{
		{"dots-server", "dots-server", "dots-server", "StatefulSet", []string{"digital signature", "key encipherment", "server auth", "client auth"}},
		{"dots-controller", "dots-controller", "dots-controller", "Deployment", []string{"digital signature", "key encipherment", "client auth"}},
	} {
		spec := dig(ms.get(t, "Certificate", c.cert), "spec")
		if !reflect.DeepEqual(toStrings(dig(spec, "dnsNames")), []string{c.identity}) {
			t.Errorf("Certificate %s dnsNames %v", c.cert, dig(spec, "dnsNames"))
		}
		if got := toStrings(dig(spec, "usages")); !reflect.DeepEqual(got, c.usages) {
			t.Errorf("Certificate %s usages %v, want %v", c.cert, got, c.usages)
		}
		if !reflect.DeepEqual(dig(spec, "issuerRef"), issuer) {
			t.Errorf("Certificate %s issuerRef %v, want %v", c.cert, dig(spec, "issuerRef"), issuer)
		}
		if dig(spec, "isCA") != nil {
			t.Errorf("Certificate %s is a CA", c.cert)
		}
		mounted := dig(podVolume(t, ms.get(t, c.kind, c.workload), "tls"), "secret", "secretName")
		if dig(spec, "secretName") != mounted {
			t.Errorf("Certificate %s writes Secret %v, %s mounts %v", c.cert, dig(spec, "secretName"), c.workload, mounted)
		}
	}
}

func TestTLSExistingSecrets(t *testing.T) {
	ms := render(t, "--set", "tls.existingSecrets.server=my-server-tls,tls.existingSecrets.controller=my-controller-tls")
	if n := len(ms.all("Secret")) + len(ms.all("Certificate")) + len(ms.all("Issuer")); n != 0 {
		t.Errorf("existing Secrets mode renders %d Secrets or cert-manager objects", n)
	}
	checkTLSMounts(t, ms, "my-server-tls", "my-controller-tls")
}

func TestTLSValuesRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		flags []string
		want  string
	}{
		"unknown tls key":           {[]string{"--set", "tls.mode=plain"}, "mode"},
		"unknown cert-manager key":  {[]string{"--set", "tls.certManager.issuer=x"}, "issuer"},
		"bad issuer kind":           {[]string{"--set", "tls.certManager.enabled=true,tls.certManager.issuerRef.name=x,tls.certManager.issuerRef.kind=Vault"}, "kind"},
		"issuerRef without enabled": {[]string{"--set", "tls.certManager.issuerRef.name=corp"}, "tls.certManager.enabled"},
		"one existing Secret":       {[]string{"--set", "tls.existingSecrets.server=s"}, "both server and controller"},
		"cert-manager and existing": {[]string{"--set", "tls.certManager.enabled=true,tls.existingSecrets.server=s,tls.existingSecrets.controller=c"}, "not both"},
		"bad existing Secret name":  {[]string{"--set", "tls.existingSecrets.server=My_Secret,tls.existingSecrets.controller=c"}, "server"},
		"zero validity":             {[]string{"--set", "tls.generated.validityDays=0"}, "validityDays"},
		"bad cert-manager duration": {[]string{"--set", "tls.certManager.duration=90d"}, "duration"},
		"no plaintext option":       {[]string{"--set", "tls.insecure=true"}, "insecure"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderErr(t, tc.flags...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error mentioning %q, got %v", tc.want, err)
			}
		})
	}
}

// No private key is committed: the chart makes its keys at install time,
// cert-manager or the user make theirs in the cluster.
func TestNoPrivateKeyCommitted(t *testing.T) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	// Built from parts, so that this file does not match itself.
	key := regexp.MustCompile("-----BEGIN [A-Z0-9 ]*" + "PRIVATE KEY-----")
	files := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("../..", f))
		if err != nil {
			continue // deleted in the work tree
		}
		if key.Match(b) {
			t.Errorf("%s holds a private key", f)
		}
	}
	if len(files) < 20 {
		t.Fatalf("git ls-files listed %d files", len(files))
	}
}
