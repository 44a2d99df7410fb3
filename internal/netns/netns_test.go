//go:build integration

package netns

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNodesReachTheHostFromTheirOwnAddresses: a listener on the bridge
// address sees each node's own address as the peer.
func TestNodesReachTheHostFromTheirOwnAddresses(t *testing.T) {
	n := New(t)
	a, b := n.AddNode("a"), n.AddNode("b")
	if a.Addr == b.Addr || !n.Prefix.Contains(a.Addr) || !n.Prefix.Contains(b.Addr) {
		t.Fatalf("addresses %s %s on %s", a.Addr, b.Addr, n.Prefix)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(n.Host.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	for _, node := range []*Node{a, b} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		// bash's /dev/tcp: no client tool needed inside the namespace.
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", node.Name, "bash", "-c",
			"exec 3<>/dev/tcp/"+n.Host.String()+"/"+itoa(port)+"; echo hi >&3")
		if out, err := cmd.CombinedOutput(); err != nil {
			cancel()
			t.Fatalf("connect from %s: %v: %s", node.Name, err, out)
		}
		cancel()
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		peer := c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
		if peer != node.Addr.String() {
			t.Errorf("node %s connected from %s, want %s", node.Name, peer, node.Addr)
		}
	}
	names := strings.Join(namespaces(), " ")
	if !strings.Contains(names, a.Name) {
		t.Errorf("namespace %s not listed: %s", a.Name, names)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
