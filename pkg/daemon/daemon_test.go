package daemon

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/credentials/insecure"

	"github.com/dots-csi/dots/pkg/csirpc"
)

func spec(endpoint string) Spec {
	return Spec{Name: "test", Endpoint: endpoint, HTTPAddress: "127.0.0.1:0", Metrics: NewRegistry(), Codes: csirpc.NewCodes()}
}

// A network endpoint without credentials is refused before anything listens.
func TestTCPNeedsCredentials(t *testing.T) {
	err := Run(context.Background(), spec("tcp://127.0.0.1:0"), func(Addrs) error {
		t.Error("served plaintext over TCP")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "needs TLS credentials") {
		t.Fatalf("err = %v", err)
	}
	// An explicit plaintext choice is served.
	s := spec("tcp://127.0.0.1:0")
	s.Creds = insecure.NewCredentials()
	ctx, cancel := context.WithCancel(context.Background())
	if err := Run(ctx, s, func(Addrs) error { cancel(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// The admin handlers answer on an owner-only unix socket, not on the TCP
// HTTP address.
func TestAdminSocket(t *testing.T) {
	dir := t.TempDir()
	s := spec("unix://" + filepath.Join(dir, "csi.sock"))
	s.AdminSocket = filepath.Join(dir, "admin", "admin.sock")
	s.AdminHandlers = map[string]http.Handler{"/servers": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "the list")
	})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := Run(ctx, s, func(a Addrs) error {
		defer cancel()
		if a.Admin != s.AdminSocket {
			t.Errorf("Addrs.Admin = %q", a.Admin)
		}
		for _, p := range []string{s.AdminSocket, filepath.Join(dir, "csi.sock")} {
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v, mode %v; want 0600", p, err, fi.Mode())
			}
		}
		c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", s.AdminSocket)
		}}}
		resp, err := c.Get("http://admin/servers")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "the list" {
			t.Errorf("admin /servers: %q", body)
		}
		resp, err = http.Get("http://" + a.HTTP + "/servers")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("TCP /servers: %s, want 404", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.AdminSocket); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
}
