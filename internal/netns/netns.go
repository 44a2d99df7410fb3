// Package netns builds simulated nodes for integration tests: network
// namespaces joined by a bridge in the root namespace, so each node's
// traffic reaches a server in the root namespace from an address of its
// own. Everything a test makes is named after its process, removed at
// cleanup, and removed by a later run if the process died first.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/testenv"
)

// prefix starts every namespace name and bridge alias: prefix-PID-TAG.
const prefix = "dotst"

// commandTimeout bounds each ip command.
const commandTimeout = 30 * time.Second

// Net is a bridge in the root namespace with an address of its own (the
// servers') in a /24 that nothing else on the machine routes.
type Net struct {
	t      testing.TB
	tag    string
	Bridge string
	Prefix netip.Prefix
	Host   netip.Addr // the bridge's address: bind servers here
	nodes  int
}

// Node is one network namespace with one address on the Net.
type Node struct {
	Name string // the namespace, for `ip netns exec`
	Addr netip.Addr
}

// New makes a Net, removed at cleanup. Namespaces and bridges left by
// dead test processes are removed first.
func New(t testing.TB) *Net {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network namespaces need root")
	}
	CleanStale(t)
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	n := &Net{t: t, tag: hex.EncodeToString(b)}
	n.Bridge = "dt" + n.tag + "br"
	p, err := freeSubnet(b[0], b[1])
	if err != nil {
		t.Fatal(err)
	}
	n.Prefix, n.Host = p, p.Addr().Next()
	t.Cleanup(n.remove)
	n.ip("link", "add", n.Bridge, "type", "bridge")
	n.ip("link", "set", n.Bridge, "alias", n.owner())
	n.ip("addr", "add", netip.PrefixFrom(n.Host, p.Bits()).String(), "dev", n.Bridge)
	n.ip("link", "set", n.Bridge, "up")
	return n
}

// owner names what this process made: prefix-PID-TAG.
func (n *Net) owner() string { return fmt.Sprintf("%s-%d-%s", prefix, os.Getpid(), n.tag) }

// AddNode makes a namespace with an address on the Net; label is for
// people reading `ip netns`.
func (n *Net) AddNode(label string) *Node {
	n.t.Helper()
	n.nodes++
	i := n.nodes
	node := &Node{Name: fmt.Sprintf("%s-%s", n.owner(), label), Addr: n.Host}
	for range i {
		node.Addr = node.Addr.Next()
	}
	host, peer := fmt.Sprintf("dt%sh%d", n.tag, i), fmt.Sprintf("dt%sn%d", n.tag, i)
	n.ip("netns", "add", node.Name)
	n.ip("link", "add", host, "type", "veth", "peer", "name", peer)
	n.ip("link", "set", host, "master", n.Bridge)
	n.ip("link", "set", host, "up")
	n.ip("link", "set", peer, "netns", node.Name)
	n.ip("-n", node.Name, "addr", "add", netip.PrefixFrom(node.Addr, n.Prefix.Bits()).String(), "dev", peer)
	n.ip("-n", node.Name, "link", "set", peer, "up")
	n.ip("-n", node.Name, "link", "set", "lo", "up")
	return node
}

func (n *Net) ip(args ...string) {
	n.t.Helper()
	if out, err := run(args...); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces (their veth ends go with them, and the
// pairs with those) and the bridge.
func (n *Net) remove() {
	for _, ns := range namespaces() {
		if strings.HasPrefix(ns, n.owner()+"-") {
			if out, err := run("netns", "delete", ns); err != nil {
				n.t.Errorf("ip netns delete %s: %v: %s", ns, err, out)
			}
		}
	}
	if out, err := run("link", "delete", n.Bridge); err != nil {
		n.t.Errorf("ip link delete %s: %v: %s", n.Bridge, err, out)
	}
}

// CleanStale removes the namespaces and bridges of test processes that
// are gone.
func CleanStale(t testing.TB) {
	t.Helper()
	for _, ns := range namespaces() {
		if pid, ok := ownerPID(ns); ok && !testenv.PidAlive(pid) {
			if out, err := run("netns", "delete", ns); err != nil {
				t.Logf("removing stale namespace %s: %v: %s", ns, err, out)
			}
		}
	}
	out, err := run("-o", "link", "show", "type", "bridge")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		i := indexOf(f, "alias")
		if len(f) < 2 || i < 0 || i+1 >= len(f) {
			continue
		}
		if pid, ok := ownerPID(f[i+1]); ok && !testenv.PidAlive(pid) {
			name := strings.TrimSuffix(f[1], ":")
			if out, err := run("link", "delete", name); err != nil {
				t.Logf("removing stale bridge %s: %v: %s", name, err, out)
			}
		}
	}
}

func indexOf(f []string, s string) int {
	for i, x := range f {
		if x == s {
			return i
		}
	}
	return -1
}

// ownerPID reads PID from prefix-PID-TAG[-LABEL].
func ownerPID(name string) (int, bool) {
	f := strings.Split(name, "-")
	if len(f) < 3 || f[0] != prefix {
		return 0, false
	}
	pid, err := strconv.Atoi(f[1])
	return pid, err == nil && pid > 0
}

func namespaces() []string {
	out, err := run("netns", "list")
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// freeSubnet picks 10.A.B.0/24 (A in 200..249) that no route of the
// machine overlaps, starting from the random a, b.
func freeSubnet(a, b byte) (netip.Prefix, error) {
	out, err := run("-o", "-4", "route", "show", "table", "all")
	if err != nil {
		return netip.Prefix{}, err
	}
	var used []netip.Prefix
	for _, f := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(f); err == nil {
			used = append(used, p)
		} else if ip, err := netip.ParseAddr(f); err == nil {
			used = append(used, netip.PrefixFrom(ip, 32))
		}
	}
	for i := range 256 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200 + a%50, b + byte(i), 0}), 24)
		if !slices.ContainsFunc(used, p.Overlaps) {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free 10.x.y.0/24 for a test network")
}

func run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	return string(out), err
}
