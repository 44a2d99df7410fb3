package fusecompat_test

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gozfs "github.com/mistifyio/go-zfs/v4"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/zfs/fusecompat"
)

// TestMain: testenv enables the shim (this test binary is its own zfs), so
// every go-zfs call below runs real zfs-fuse through the translation.
func TestMain(m *testing.M) { testenv.Main(m) }

func realGet(t *testing.T, prop, name string) string {
	t.Helper()
	out, err := exec.Command(fusecompat.RealBinary("zfs"), "get", "-Hp", "-o", "value", prop, name).CombinedOutput()
	if err != nil {
		t.Fatalf("zfs get: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func num(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

func TestDetectAndEnable(t *testing.T) {
	fuse, err := fusecompat.Detect(context.Background())
	if err != nil || !fuse {
		t.Fatalf("Detect = %v, %v; this machine runs zfs-fuse", fuse, err)
	}
	zfsPath, err := exec.LookPath("zfs")
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	if target, err := os.Readlink(zfsPath); err != nil || target != self {
		t.Errorf("zfs in PATH is %s -> %q (%v), want a link to the test binary", zfsPath, target, err)
	}
	realZFS := fusecompat.RealBinary("zfs")
	if realZFS == "zfs" || realZFS == zfsPath || !filepath.IsAbs(realZFS) {
		t.Errorf("RealBinary(zfs) = %q", realZFS)
	}
	// Enable again: idempotent, PATH gains nothing.
	path := os.Getenv("PATH")
	if err := fusecompat.Enable(filepath.Dir(zfsPath)); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("PATH") != path || fusecompat.RealBinary("zfs") != realZFS {
		t.Errorf("second Enable changed the environment")
	}
	// The untranslated form still fails on zfs-fuse: the shim is what makes
	// go-zfs work, not a lenient CLI.
	if out, err := exec.Command(realZFS, "list", "-Hp", "-o", "name").CombinedOutput(); err == nil {
		t.Errorf("real zfs accepted -p: %s", out)
	}
}

// TestGoZFSThroughShim runs go-zfs's readers against a real pool and checks
// the values against zfs get.
func TestGoZFSThroughShim(t *testing.T) {
	p := testenv.NewPool(t, "dotsz", 256<<20)
	root := p.Name() + "/dots/volumes"
	fs, err := gozfs.CreateFilesystem(root+"/a", map[string]string{"refquota": "8388608", "compression": "gzip"})
	if err != nil {
		t.Fatalf("CreateFilesystem: %v", err)
	}
	if fs.Name != root+"/a" || fs.Compression != "gzip" || fs.Type != "filesystem" || fs.Mountpoint == "" {
		t.Errorf("dataset = %+v", fs)
	}
	data := make([]byte, 300<<10)
	_, _ = rand.Read(data) // incompressible: referenced must grow
	if err := os.WriteFile(filepath.Join(fs.Mountpoint, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := fs.Snapshot("s", false)
	if err != nil || snap.Type != "snapshot" || snap.Name != root+"/a@s" {
		t.Fatalf("Snapshot = %+v, %v", snap, err)
	}
	clone, err := snap.Clone(root+"/c", nil)
	if err != nil || clone.Origin != root+"/a@s" {
		t.Fatalf("Clone = %+v, %v", clone, err)
	}

	got, err := gozfs.GetDataset(root + "/a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Used != num(t, realGet(t, "used", got.Name)) || got.Referenced != num(t, realGet(t, "referenced", got.Name)) ||
		got.Avail != num(t, realGet(t, "available", got.Name)) || got.Usedbydataset != num(t, realGet(t, "usedbydataset", got.Name)) {
		t.Errorf("GetDataset = %+v disagrees with zfs get", got)
	}
	if got.Referenced < 300<<10 || got.Written != 0 || got.Logicalused != 0 {
		t.Errorf("GetDataset sizes = %+v", got)
	}

	list, err := gozfs.Filesystems(root)
	if err != nil || len(list) != 3 || list[0].Name != root || list[1].Name != root+"/a" || list[2].Name != root+"/c" {
		t.Fatalf("Filesystems = %v, %v", names(list), err)
	}
	snaps, err := gozfs.Snapshots(p.Name())
	if err != nil || len(snaps) != 1 || snaps[0].Name != root+"/a@s" {
		t.Fatalf("Snapshots = %v, %v", names(snaps), err)
	}
	children, err := fs.Children(0)
	if err != nil || len(children) != 1 || children[0].Name != root+"/a@s" {
		t.Fatalf("Children = %v, %v", names(children), err)
	}
	if v, err := got.GetProperty("refquota"); err != nil || v != "8388608" {
		t.Errorf("GetProperty = %q, %v", v, err)
	}

	z, err := gozfs.GetZpool(p.Name())
	if err != nil {
		t.Fatalf("GetZpool: %v", err)
	}
	if z.Health != "ONLINE" || z.Size < 200<<20 || z.Size > 300<<20 || z.Free == 0 || z.DedupRatio != 1 {
		t.Errorf("zpool = %+v", z)
	}
	// (go-zfs's ListZpools is not called: it reads every pool on the
	// machine, and other packages' tests create and destroy theirs.)

	_, err = gozfs.GetDataset(root + "/missing")
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing dataset: %v", err)
	}
	// zfs-fuse calls a just-mounted dataset busy for a moment.
	for i := 0; ; i++ {
		err := clone.Destroy(gozfs.DestroyDefault)
		if err == nil {
			break
		}
		if i == 50 || !strings.Contains(err.Error(), "busy") {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := gozfs.GetDataset(root + "/c"); err == nil {
		t.Error("clone still there after Destroy")
	}
}

func names(ds []*gozfs.Dataset) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Name)
	}
	return out
}
