package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// cluster is a control plane on loopback.
type cluster struct {
	dir        string
	bin        string // the tools' bin directory
	url        string // https://127.0.0.1:PORT
	kubeconfig string // admin (system:masters)
	config     *rest.Config
	apiserver  *proc
	kcm        *proc
}

// storageControllers are the kube-controller-manager controllers the
// storage path needs: binding, expansion and protection of PVs and PVCs,
// garbage collection and namespaces, service account tokens, the
// StatefulSet controller, which creates the claims of step 5, and the
// attach-detach controller, which makes a VolumeAttachment for each dots
// volume a pod on a node uses (the CSIDriver requires attach) and deletes it
// when no pod there uses it any more.
var storageControllers = []string{
	"persistentvolume-binder-controller",
	"persistentvolume-expander-controller",
	"persistentvolume-protection-controller",
	"persistentvolumeclaim-protection-controller",
	"garbage-collector-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"statefulset-controller",
	"persistentvolume-attach-detach-controller",
}

// startCluster starts etcd, kube-apiserver and kube-controller-manager
// with the storage controllers.
func startCluster(t *testing.T, toolsBin, dir string) *cluster {
	t.Helper()
	return startClusterWith(t, toolsBin, dir, storageControllers)
}

// startClusterWith starts etcd, kube-apiserver and kube-controller-manager
// running the given controllers, with more kube-controller-manager flags.
func startClusterWith(t *testing.T, toolsBin, dir string, controllers []string, kcmFlags ...string) *cluster {
	t.Helper()
	c := &cluster{dir: dir, bin: toolsBin}
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	writePKI(t, pki)

	clientPort, peerPort := freePort(t), freePort(t)
	etcd := startProc(t, dir, "etcd", filepath.Join(toolsBin, "etcd"),
		"--name=e2e", "--data-dir="+filepath.Join(dir, "etcd"),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", clientPort),
		fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", clientPort),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", peerPort),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", peerPort),
		fmt.Sprintf("--initial-cluster=e2e=http://127.0.0.1:%d", peerPort),
		"--unsafe-no-fsync", "--log-level=warn")
	waitFor(t, "etcd healthy", time.Minute, etcd, func() error {
		return httpOK(fmt.Sprintf("http://127.0.0.1:%d/health", clientPort))
	})

	apiPort := freePort(t)
	c.url = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	c.apiserver = startProc(t, dir, "kube-apiserver", filepath.Join(toolsBin, "kube-apiserver"),
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", clientPort),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file="+filepath.Join(pki, "apiserver.crt"),
		"--tls-private-key-file="+filepath.Join(pki, "apiserver.key"),
		"--client-ca-file="+filepath.Join(pki, "ca.crt"),
		"--service-account-key-file="+filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=Node,RBAC",
		// The chart's node plugin and servers are privileged.
		"--allow-privileged=true",
		// csi-resizer v1.14 watches VolumeAttributesClasses in v1beta1,
		// which Kubernetes 1.34 serves only when asked.
		"--runtime-config=storage.k8s.io/v1beta1=true",
		"--profiling=false", "--v=1")
	c.kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	writeKubeconfig(t, c.kubeconfig, c.url, filepath.Join(pki, "ca.crt"), &clientcmdapi.AuthInfo{
		ClientCertificate: filepath.Join(pki, "admin.crt"), ClientKey: filepath.Join(pki, "admin.key"),
	})
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c.config = cfg
	ready := adminHTTP(t, pki)
	waitFor(t, "kube-apiserver ready", 2*time.Minute, c.apiserver, func() error {
		resp, err := ready.Get(c.url + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})

	c.kcm = startProc(t, dir, "kube-controller-manager", filepath.Join(toolsBin, "kube-controller-manager"),
		append([]string{"--kubeconfig=" + c.kubeconfig,
			"--authentication-kubeconfig=" + c.kubeconfig,
			"--authorization-kubeconfig=" + c.kubeconfig,
			"--leader-elect=false",
			"--controllers=" + strings.Join(controllers, ","),
			"--service-account-private-key-file=" + filepath.Join(pki, "sa.key"),
			"--root-ca-file=" + filepath.Join(pki, "ca.crt"),
			"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", freePort(t)),
			"--v=2"}, kcmFlags...)...)
	return c
}

// startScheduler starts kube-scheduler with its default profile: it binds
// the pods the StatefulSet controller makes to nodes.
func (c *cluster) startScheduler(t *testing.T) *proc {
	t.Helper()
	return startProc(t, c.dir, "kube-scheduler", filepath.Join(c.bin, "kube-scheduler"),
		"--kubeconfig="+c.kubeconfig,
		"--authentication-kubeconfig="+c.kubeconfig,
		"--authorization-kubeconfig="+c.kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", freePort(t)),
		"--v=2")
}

func adminHTTP(t *testing.T, pki string) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool},
	}}
}

func writeKubeconfig(t *testing.T, path, server, caFile string, auth *clientcmdapi.AuthInfo) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos["user"] = auth
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "user"}
	cfg.CurrentContext = "e2e"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
}

// writePKI writes a CA, the apiserver's serving certificate for loopback,
// an admin client certificate (system:masters) and the service-account
// signing key pair.
func writePKI(t *testing.T, dir string) {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dots-e2e-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER)

	leaf := func(name string, tmpl *x509.Certificate) {
		key := newKey(t)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(dir, name+".crt"), "CERTIFICATE", der)
		kder, _ := x509.MarshalECPrivateKey(key)
		writePEM(t, filepath.Join(dir, name+".key"), "EC PRIVATE KEY", kder)
	}
	leaf("apiserver", &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	})
	leaf("admin", &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "e2e-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})

	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa))
	pub, _ := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	writePEM(t, filepath.Join(dir, "sa.pub"), "PUBLIC KEY", pub)
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
