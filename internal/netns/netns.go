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
	Dev  string // its interface on the Net
	net  *Net
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
	i, addr := n.next()
	host, peer := fmt.Sprintf("dt%sh%d", n.tag, i), fmt.Sprintf("dt%sn%d", n.tag, i)
	node := &Node{Name: fmt.Sprintf("%s-%s", n.owner(), label), Addr: addr, Dev: peer, net: n}
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

// next hands out the next address of the Net (nodes and floating
// addresses share the sequence, so none is given twice).
func (n *Net) next() (int, netip.Addr) {
	n.nodes++
	a := n.Host
	for range n.nodes {
		a = a.Next()
	}
	return n.nodes, a
}

// Floating returns an address of the Net that no node has: a Service VIP
// that a test gives to one node and moves to another (MoveAddr).
func (n *Net) Floating() netip.Addr {
	_, a := n.next()
	return a
}

// Command is name with args run in the node's network namespace only:
// nsenter --net, not `ip netns exec`, which also gives the process a
// mount namespace of its own. Mounts the process makes or waits for (a
// storage server's zfs-fuse datasets, mounted by the machine's one
// daemon) must stay in the machine's mount namespace: this one's root is
// not shared, so later mounts would not propagate into a copy.
func (node *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + node.Name, "--", name}, args...)...)
}

// AddAddr gives the node a second address on the Net.
func (node *Node) AddAddr(a netip.Addr) {
	n := node.net
	n.t.Helper()
	n.ip("-n", node.Name, "addr", "add", netip.PrefixFrom(a, n.Prefix.Bits()).String(), "dev", node.Dev)
}

// MoveAddr moves address a from one node to another, as a Service VIP
// follows its pod: gone from `from` first, so it is never on both, then
// on `to`. The neighbour entries of a are flushed on every node and on
// the bridge, so senders ask again who has it instead of sending to the
// old node until their entries expire (the part a gratuitous ARP, or
// kube-proxy's rewrite of the Service's endpoints, plays in a cluster).
func (n *Net) MoveAddr(a netip.Addr, from, to *Node, others ...*Node) {
	n.t.Helper()
	cidr := netip.PrefixFrom(a, n.Prefix.Bits()).String()
	n.ip("-n", from.Name, "addr", "del", cidr, "dev", from.Dev)
	n.ip("-n", to.Name, "addr", "add", cidr, "dev", to.Dev)
	for _, o := range append([]*Node{from, to}, others...) {
		n.ip("-n", o.Name, "neigh", "flush", "to", a.String())
	}
	n.ip("neigh", "flush", "to", a.String(), "dev", n.Bridge)
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
