//go:build integration

package failover

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/netns"
	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/server"
	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// fullEnv set to 1 repeats every case (make test-failover); without it
// each case runs once (make test).
const fullEnv = "DOTS_FAILOVER_FULL"

// cluster is two server nodes and a client node on one bridge, one pool
// (the cloud PV) and one VIP (the server's Service address).
type cluster struct {
	t        *testing.T
	net      *netns.Net
	a, b, cl *netns.Node
	vip      netip.Addr
	pool     testenv.TestPool
	srv      *nodeServer // the server running now
	where    *netns.Node // the node that holds the VIP
	vol      *csi.Volume
	nfs      *client
	detach   time.Duration // the last forced export
	zfsFuse  bool          // the ZFS is zfs-fuse (else OpenZFS)
	v4       libnfs.Client // an NFSv4.0 client that never reclaims (libnfs)
}

const (
	volumeName = "failover-vol"
	recordFile = "records"
	probeFile  = "probe-v4"
)

func newCluster(t *testing.T) *cluster {
	t.Helper()
	testenv.EnsureRpcbind(t) // ganesha registers NFSv3 with it, from any namespace (a unix socket)
	n := netns.New(t)
	c := &cluster{t: t, net: n}
	c.a, c.b, c.cl = n.AddNode("a"), n.AddNode("b"), n.AddNode("client")
	c.vip = n.Floating()
	c.a.AddAddr(c.vip)
	c.where = c.a
	c.pool = testenv.NewTestPool(t, "dotsv")
	c.srv = c.startServer(t, c.a)

	// A volume published to the client node only: its export admits that
	// node's address and no other (per-node exports).
	ctrl := c.controller()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mode := &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}
	vcap := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}, AccessMode: mode}
	resp, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: volumeName, VolumeCapabilities: []*csi.VolumeCapability{vcap},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	c.vol = resp.GetVolume()
	node := api.NodeID{Name: "failover-client", Addresses: []netip.Addr{c.cl.Addr}}.String()
	if _, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: c.vol.GetVolumeId(),
		NodeId: node, VolumeCapability: vcap}); err != nil {
		t.Fatal(err)
	}
	// What NFSv4 clients open (libnfs cannot create files over NFSv4 on
	// zfs-fuse: ENVIRONMENT.md).
	if err := os.WriteFile(filepath.Join(c.localPath(), probeFile), []byte("v4"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.v4 = libnfs.Client{Host: c.vip.String(), Port: nfsPort, Version: 4, Netns: c.cl.Name}
	c.nfs = startClient(t, c.cl, clientConfig{Server: c.vip.String(), NFSPort: nfsPort, MountPort: mountPort,
		Export: c.export(), File: recordFile, Probe: probeFile, Interval: 100 * time.Millisecond})
	c.zfsFuse = detectZFSFuse(t)
	return c
}

func (c *cluster) export() string    { return c.vol.GetVolumeContext()[api.ContextExport] }
func (c *cluster) localPath() string { return c.vol.GetVolumeContext()[api.ContextLocalPath] }

// controller dials the server's API on the VIP as the controller does.
func (c *cluster) controller() csi.ControllerClient {
	conn, err := grpc.NewClient(fmt.Sprintf("passthrough:///%s:%d", c.vip, apiPort),
		grpc.WithTransportCredentials(testenv.ClientCreds(c.t)))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = conn.Close() })
	return csi.NewControllerClient(conn)
}

// TestFailover moves one server between nodes while a client writes, in
// the three ways a server stops, and measures what the client sees.
func TestFailover(t *testing.T) {
	c := newCluster(t)
	t.Run("fence", c.fence)
	reps := 1
	if os.Getenv(fullEnv) == "1" {
		reps = 3
	}
	for range reps {
		t.Run("graceful", func(t *testing.T) { c.runCase(t, "graceful", c.graceful, c.other(), false) })
		// The crashed server's node had a client too, which dies with it
		// and never reclaims.
		t.Run("crash", func(t *testing.T) { c.runCase(t, "crash", c.crash, c.other(), true) })
		t.Run("in-place", func(t *testing.T) { c.runCase(t, "in-place", c.graceful, c.where, false) })
	}
	// Now, while its server serves: the cleanups stop the last server
	// (started after the client, so stopped before it), and a client
	// caught in a write to a stopped server would never read "stop".
	c.nfs.stop()
}

func (c *cluster) other() *netns.Node {
	if c.where == c.a {
		return c.b
	}
	return c.a
}

// graceful stops the server as Kubernetes does (SIGTERM): it withdraws
// its exports, stops ganesha and exports the pool.
func (c *cluster) graceful(*testing.T) { c.srv.stop(syscall.SIGTERM) }

// crash kills the server and everything it started, then detaches the
// disk by force, as a cloud does when the node is gone: the pool is
// exported without the server's say (zpool export -f on zfs-fuse, whose
// one daemon otherwise keeps it imported for the dead server). Another
// process's mount namespace that copied the pool's mounts (any unshare on
// the machine while they were mounted) keeps the pool busy until it ends:
// after two minutes of that the pool is left imported, which zfs-fuse's
// one daemon lets the next server use (the case says detached=false).
func (c *cluster) crash(t *testing.T) {
	c.srv.crash()
	t0 := time.Now()
	err := poll.Wait(2*time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := testenv.Runner(t).Run(ctx, command.Pool("export", "-f", c.pool.Name))
		return err
	})
	c.detach = time.Since(t0)
	if err != nil {
		t.Logf("forced export: %v; holders: %q", err, holders(c.pool.Mountpoint))
	}
}

// holders lists the processes with a file, directory or mount under dir.
func holders(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		links, _ := filepath.Glob(p + "/fd/*")
		for _, l := range append(links, p+"/cwd", p+"/root") {
			if dst, err := os.Readlink(l); err == nil && strings.HasPrefix(dst, dir) {
				cmd, _ := os.ReadFile(p + "/cmdline")
				out = append(out, fmt.Sprintf("%s %s -> %s", p, strings.ReplaceAll(string(cmd), "\x00", " "), dst))
			}
		}
		if mi, err := os.ReadFile(p + "/mountinfo"); err == nil && strings.Contains(string(mi), dir) {
			self, _ := os.Readlink("/proc/self/ns/mnt")
			if ns, _ := os.Readlink(p + "/ns/mnt"); ns != self {
				cmd, _ := os.ReadFile(p + "/cmdline")
				out = append(out, fmt.Sprintf("%s %s: mount namespace %s holds it", p, strings.ReplaceAll(string(cmd), "\x00", " "), ns))
			}
		}
	}
	return out
}

// fence: while the server serves, a second server on the same pool, on
// the other node, is refused, and the first serves on.
func (c *cluster) fence(t *testing.T) {
	before := c.nfs.acked()
	runDir := filepath.Join(c.pool.Dir, "run-fence")
	args := c.serverArgs(c.other(), runDir)
	// Its own addresses: the VIP is the first server's.
	for i, a := range args {
		if strings.HasPrefix(a, "tcp://") {
			args[i] = fmt.Sprintf("tcp://%s:%d", c.other().Addr, apiPort)
		} else if a == fmt.Sprintf("%s:%d", c.vip, httpPort) {
			args[i] = fmt.Sprintf("%s:%d", c.other().Addr, httpPort)
		} else if a == c.vip.String() {
			args[i] = c.other().Addr.String()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	var buf bytes.Buffer
	cmd := c.other().Command(ctx, testenv.DotsBinary(t), args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	out := buf.String()
	refusedIn := time.Since(t0)
	if err == nil || !strings.Contains(out, "served by another server on this host") {
		t.Fatalf("a second server on the served pool: %v\n%s", err, out)
	}
	c.nfs.waitFor("writes after the refusal", time.Minute, func() bool { return len(c.nfs.acks) >= before+10 })
	fmt.Printf("failover: fence second_server=refused refused_s=%.2f first_serves=yes writes_during=%d\n",
		refusedIn.Seconds(), c.nfs.acked()-before)
}

// figures of one case.
type figures struct {
	firstWrite, maxGap, ready, newOpen, grace time.Duration
	detach                                    time.Duration // the forced export of a crash
	detached                                  bool
	graceEnded                                bool
	lost, estale, remounts, clids, reclaimed  int
	acked                                     int
	devSame                                   bool
}

// runCase stops the server with stop, moves the VIP to node `to` (if it
// is elsewhere), starts the server there on the same pool and measures
// what the clients saw. With deadClient, an NFSv4.0 client that will not
// come back opens a file first: the server records it, and the new server
// must wait the whole grace period for it.
func (c *cluster) runCase(t *testing.T, name string, stop func(*testing.T), to *netns.Node, deadClient bool) {
	cl := c.nfs
	base := cl.acked()
	cl.waitFor("steady writes before the "+name, time.Minute, func() bool { return len(cl.acks) >= base+10 })
	// The NFSv4.1 client holds a session the server recorded in its
	// recovery database (on the pool).
	cl.waitFor("the NFSv4.1 client opening", time.Minute, func() bool {
		return len(cl.v41) > 0 && cl.v41[len(cl.v41)-1].Kind == "v41-open"
	})
	if deadClient {
		c.openV4(t)
	}
	devBefore := c.dev(t)
	cl.mu.Lock()
	errsBefore, remountsBefore := len(cl.errs), len(cl.remounts)
	cl.mu.Unlock()

	t0 := time.Now()
	// On a shared machine another process's mount namespace may hold
	// the pool's datasets and keep it busy: say who, if stopping drags.
	slow := time.AfterFunc(5*time.Second, func() { t.Logf("%s: still stopping; holders: %q", name, holders(c.pool.Mountpoint)) })
	stop(t)
	slow.Stop()
	detached := !c.imported(t)
	if to != c.where {
		c.net.MoveAddr(c.vip, c.where, to, c.cl)
		c.where = to
	}
	c.srv.grace.close()
	c.srv = c.startServer(t, to)
	var f figures
	f.ready = c.srv.readyAt.Sub(t0)
	f.detach, f.detached = c.detach, detached
	c.detach = 0

	cl.waitFor("a write after the "+name, 2*time.Minute, func() bool { return len(cl.acks) > 0 && cl.acks[len(cl.acks)-1].After(t0) })
	cl.waitFor("an NFSv4.1 open after the "+name, 3*time.Minute, func() bool {
		for _, e := range cl.v41 {
			if e.Kind == "v41-open" && time.Unix(0, e.At).After(t0) {
				f.newOpen = time.Unix(0, e.At).Sub(t0)
				return true
			}
		}
		return false
	})
	if err := c.srv.grace.waitEnd(2 * time.Minute); err != nil {
		t.Errorf("the grace period did not end: %v", err)
	}
	f.grace, f.graceEnded, f.clids, f.reclaimed = c.srv.grace.result()
	now := cl.acked()
	cl.waitFor("steady writes after the "+name, time.Minute, func() bool { return len(cl.acks) >= now+10 })

	cl.mu.Lock()
	acks := append([]time.Time(nil), cl.acks...)
	for _, e := range cl.errs[errsBefore:] {
		if e.Stale {
			f.estale++
		}
	}
	f.remounts = len(cl.remounts) - remountsBefore
	cl.mu.Unlock()
	ackedBefore := 0
	for i, at := range acks {
		if at.Before(t0) {
			ackedBefore = i + 1
		} else if f.firstWrite == 0 {
			f.firstWrite = at.Sub(t0)
		}
		if i > 0 && at.After(t0.Add(-time.Second)) {
			f.maxGap = max(f.maxGap, at.Sub(acks[i-1]))
		}
	}
	f.acked = len(acks)
	f.devSame = c.dev(t) == devBefore

	// Every acknowledged record, read back through the client's handle
	// and from the volume's files on the server side.
	v := cl.verify(len(acks))
	if v.Msg != "" {
		t.Errorf("the client's read-back: %s", v.Msg)
	}
	bad := map[int]bool{}
	for _, i := range append(v.Bad, c.serverSideBad(t, len(acks))...) {
		bad[i] = true
	}
	for i := range bad {
		if i < ackedBefore {
			f.lost++
		}
	}

	fmt.Printf("failover: %s first_write_s=%.1f max_gap_s=%.1f lost=%d estale=%d ready_s=%.1f detach_s=%.2f detached=%v new_open_s=%.1f grace_s=%.1f clids=%d reclaimed=%d remounts=%d dev_same=%v acked=%d\n",
		name, f.firstWrite.Seconds(), f.maxGap.Seconds(), f.lost, f.estale, f.ready.Seconds(), f.detach.Seconds(), f.detached, f.newOpen.Seconds(),
		f.grace.Seconds(), f.clids, f.reclaimed, f.remounts, f.devSame, f.acked)

	if f.lost != 0 || len(bad) != 0 {
		t.Errorf("%s: %d records acknowledged before the stop lost or corrupt; bad records %v", name, f.lost, keys(bad))
	}
	// Handles across a pool export and import: OpenZFS resolves a file
	// handle from the object number and generation on the pool, so it
	// survives; zfs-fuse's FUSE mount cannot look an inode up by handle
	// (no export support), so a handle works only while the kernel still
	// caches its inode, which the export drops. The client then opens the
	// file again by name, which works. (A pool left imported keeps them.)
	switch {
	case c.zfsFuse && f.detached && (f.estale == 0 || f.remounts == 0):
		t.Errorf("%s on zfs-fuse: estale=%d remounts=%d, want the old handle stale and the file found again", name, f.estale, f.remounts)
	case !c.zfsFuse && f.estale > 0:
		t.Errorf("%s on OpenZFS: %d ESTALE, want handles to survive", name, f.estale)
	}
	// The recovery database moved with the pool: the new server knows the
	// NFSv4 clients recorded before the stop, and ends grace early only
	// when all of them reclaimed.
	full := server.DefaultGracePeriod
	switch {
	case f.clids < 1 || (deadClient && f.clids < 2):
		t.Errorf("%s: the new server's recovery database holds %d clients, want the ones recorded before the stop", name, f.clids)
	case deadClient && (f.reclaimed >= f.clids || f.grace < full-time.Second):
		t.Errorf("%s: grace %v with %d of %d clients reclaimed, want the full %v", name, f.grace, f.reclaimed, f.clids, full)
	case !deadClient && (f.reclaimed != f.clids || f.grace >= full-time.Second):
		t.Errorf("%s: grace %v with %d of %d clients reclaimed, want it ended early", name, f.grace, f.reclaimed, f.clids)
	}
}

// openV4 opens and reads the probe file with libnfs over NFSv4.0: a
// client the server records in its recovery database and that never
// reclaims (libnfs opens for writing only with an exclusive create, which
// zfs-fuse refuses: ENVIRONMENT.md).
func (c *cluster) openV4(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.v4.ReadFile(ctx, c.export(), probeFile); err != nil {
		t.Fatalf("NFSv4 open before the stop: %v", err)
	}
}

// imported reports whether the pool is imported (on this machine's one
// zfs-fuse: on any node).
func (c *cluster) imported(t *testing.T) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := testenv.Runner(t).Run(ctx, command.Pool("list", "-H", "-o", "name", c.pool.Name))
	return err == nil
}

// dev is the device number of the volume's mount on the server side.
func (c *cluster) dev(t *testing.T) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(c.localPath(), &st); err != nil {
		t.Fatal(err)
	}
	return st.Dev
}

// serverSideBad checks the first n records in the volume's file itself.
func (c *cluster) serverSideBad(t *testing.T, n int) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.localPath(), recordFile))
	if err != nil {
		t.Errorf("reading the records on the server side: %v", err)
		return nil
	}
	var bad []int
	for i := range n {
		if (i+1)*recordSize > len(b) || !bytes.Equal(b[i*recordSize:(i+1)*recordSize], record(i)) {
			bad = append(bad, i)
		}
	}
	return bad
}

func keys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}

// detectZFSFuse tells zfs-fuse from OpenZFS, as the server does.
func detectZFSFuse(t *testing.T) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := zfs.DetectFlavor(ctx, testenv.Runner(t), zfs.CLIAuto)
	if err != nil {
		t.Fatal(err)
	}
	return f.CLI == zfs.CLIZFSFuse
}
