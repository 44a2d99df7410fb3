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

// TestMoveAddr: a floating address moved from one node to another is
// answered by the new one at once, as a Service VIP after its pod moved:
// a third node's neighbour entry for it names the new node's interface.
func TestMoveAddr(t *testing.T) {
	n := New(t)
	a, b, c := n.AddNode("a"), n.AddNode("b"), n.AddNode("c")
	vip := n.Floating()
	if vip == a.Addr || vip == b.Addr || vip == c.Addr || !n.Prefix.Contains(vip) {
		t.Fatalf("floating %s clashes with nodes %s %s %s", vip, a.Addr, b.Addr, c.Addr)
	}
	a.AddAddr(vip)
	for _, owner := range []*Node{a, b} {
		if owner == b {
			n.MoveAddr(vip, a, b, c)
		}
		// Nothing listens on port 9: the owner's refusal is the answer.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", c.Name, "bash", "-c",
			"exec 3<>/dev/tcp/"+vip.String()+"/9").CombinedOutput()
		cancel()
		if !strings.Contains(string(out), "refused") {
			t.Fatalf("connect to %s while on %s: %s", vip, owner.Name, out)
		}
		if got, want := neighbour(t, c, vip.String()), mac(t, owner); got != want {
			t.Errorf("%s's neighbour entry for %s: %q, want %s (%s)", c.Name, vip, got, want, owner.Name)
		}
	}
	if has(t, a, vip.String()) || !has(t, b, vip.String()) {
		t.Errorf("after the move: on a %v, on b %v", has(t, a, vip.String()), has(t, b, vip.String()))
	}
}

func ipOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(args...)
	if err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
	return out
}

func neighbour(t *testing.T, node *Node, addr string) string {
	f := strings.Fields(ipOut(t, "-n", node.Name, "neigh", "show", addr))
	if i := indexOf(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}

func mac(t *testing.T, node *Node) string {
	f := strings.Fields(ipOut(t, "-n", node.Name, "link", "show", "dev", node.Dev))
	if i := indexOf(f, "link/ether"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	t.Fatalf("no MAC on %s", node.Dev)
	return ""
}

func has(t *testing.T, node *Node, addr string) bool {
	return strings.Contains(ipOut(t, "-n", node.Name, "-4", "addr", "show", "dev", node.Dev), " "+addr+"/")
}
