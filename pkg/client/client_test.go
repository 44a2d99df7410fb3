package client

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/registry"
)

// The server list comes from the controller's admin socket.
func TestServersFromAdminSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/servers" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode([]registry.ServerView{{Server: discovery.Server{Name: "b"}}, {Server: discovery.Server{Name: "a"}}})
	})}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })

	c, err := Dial("unix://"+filepath.Join(t.TempDir(), "csi.sock"), "unix://"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list, err := c.Servers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "a" || list[1].Name != "b" {
		t.Fatalf("servers %+v", list)
	}
	c.adminAddr = ""
	if _, err := c.Servers(context.Background()); err == nil || !strings.Contains(err.Error(), "admin socket") {
		t.Fatalf("no admin address: %v", err)
	}
}

// The client speaks plaintext, so only to unix sockets.
func TestDialRefusesTCP(t *testing.T) {
	if _, err := Dial("tcp://127.0.0.1:7070", ""); err == nil {
		t.Fatal("dialled a TCP endpoint in plaintext")
	}
}
