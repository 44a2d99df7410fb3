package zfs

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// step is one command a scripted runner expects, and its answer.
type step struct {
	argv   string // "zpool import -d /d -o cachefile=none tank"
	stderr string // non-empty: the command fails with this message
	out    string // what the command prints
	check  func(t *testing.T)
}

// scriptRunner answers the commands of one scenario, in order, and fails
// the test on any command it does not expect: the sequence is the
// contract.
type scriptRunner struct {
	t     *testing.T
	steps []step
	ran   []string
}

func (r *scriptRunner) Run(_ context.Context, c command.Cmd) ([]byte, error) {
	r.t.Helper()
	got := c.String()
	r.ran = append(r.ran, got)
	if len(r.steps) == 0 {
		r.t.Fatalf("unexpected command %q (ran %q)", got, r.ran)
	}
	s := r.steps[0]
	r.steps = r.steps[1:]
	if got != s.argv {
		r.t.Fatalf("command %d = %q, want %q", len(r.ran), got, s.argv)
	}
	if s.check != nil {
		s.check(r.t)
	}
	if s.stderr != "" {
		return nil, &command.Error{Cmd: got, Stderr: s.stderr, Err: errors.New("exit status 1")}
	}
	return []byte(s.out), nil
}

func (r *scriptRunner) done() {
	r.t.Helper()
	if len(r.steps) > 0 {
		r.t.Errorf("commands not run: %+v (ran %q)", r.steps, r.ran)
	}
}

// What the zpools say (OpenZFS 2.x, cmd/zpool/zpool_main.c; zfs-fuse 0.7).
const (
	notImported = "cannot open 'tank': no such pool"
	noPool      = "cannot import 'tank': no such pool available"
	foreign     = "cannot import 'tank': pool was previously in use from another system.\n" +
		"Last accessed by node-a (hostid=5ac3e1) at Tue Mar  3 10:00:00 2026\n" +
		"The pool can be imported, use 'zpool import -f' to import the pool."
	active = "cannot import 'tank': pool is imported on node-a (hostid: 0x5ac3e1)\n" +
		"Export the pool on the other system, then run 'zpool import'."
	fuseForeign = "cannot import 'tank': pool may be in use from other system, it was last accessed by vm (hostid: 0x7f0100) on Tue Mar  3 10:00:00 2026\n" +
		"use '-f' to import anyway"
)

const (
	list     = "zpool list -H -o name tank"
	imp      = "zpool import -d /pv -o cachefile=none tank"
	impForce = "zpool import -d /pv -o cachefile=none -f tank"
	fence    = "zpool set multihost=on tank"
)

// TestAttachFencing runs the import sequence of each case a server meets
// at its start, on both flavours: which commands, in which order, with or
// without -f, and what the caller gets.
func TestAttachFencing(t *testing.T) {
	const id = 0x1234abcd
	for _, c := range []struct {
		name   string
		cli    CLI
		hostID uint32
		force  bool
		steps  []step
		want   error // nil: attached
	}{
		{"openzfs clean import", CLIOpenZFS, id, false,
			[]step{{argv: list, stderr: notImported}, {argv: imp}, {argv: fence}}, nil},
		{"openzfs already imported here", CLIOpenZFS, id, false,
			[]step{{argv: list}, {argv: fence}}, nil},
		// The other node died: multihost's activity check, run by -f,
		// found it quiet.
		{"openzfs crash takeover", CLIOpenZFS, id, false,
			[]step{{argv: list, stderr: notImported}, {argv: imp, stderr: foreign}, {argv: impForce}, {argv: fence}}, nil},
		// The other node still writes: refused, never forced further.
		{"openzfs other host active", CLIOpenZFS, id, false,
			[]step{{argv: list, stderr: notImported}, {argv: imp, stderr: active}, {argv: list, stderr: notImported}}, ErrPoolInUse},
		{"openzfs activity seen by -f", CLIOpenZFS, id, false,
			[]step{{argv: list, stderr: notImported}, {argv: imp, stderr: foreign}, {argv: impForce, stderr: active},
				{argv: list, stderr: notImported}}, ErrPoolInUse},
		// Without a hostid there is no multihost: nothing proves the
		// other side gone, so no -f unless the operator says so.
		{"openzfs unfenced foreign", CLIOpenZFS, 0, false,
			[]step{{argv: list, stderr: notImported}, {argv: imp, stderr: foreign}, {argv: list, stderr: notImported}}, ErrPoolForeign},
		{"openzfs unfenced forced", CLIOpenZFS, 0, true,
			[]step{{argv: list, stderr: notImported}, {argv: imp, stderr: foreign}, {argv: impForce}}, nil},
		{"openzfs create", CLIOpenZFS, id, false,
			[]step{{argv: list, stderr: notImported}, {argv: imp, stderr: noPool},
				{argv: "zpool create -o cachefile=none -o multihost=on -m /mnt tank /pv/pool.img"}, {argv: fence}}, nil},
		{"zfs-fuse create", CLIZFSFuse, id, false,
			[]step{{argv: list, stderr: notImported}, {argv: imp, stderr: noPool},
				{argv: "zpool create -o cachefile=none -m /mnt tank /pv/pool.img"}}, nil},
		{"zfs-fuse foreign", CLIZFSFuse, id, false,
			[]step{{argv: list, stderr: notImported}, {argv: imp, stderr: fuseForeign}, {argv: list, stderr: notImported}}, ErrPoolForeign},
		{"zfs-fuse forced", CLIZFSFuse, id, true,
			[]step{{argv: list, stderr: notImported}, {argv: imp, stderr: fuseForeign}, {argv: impForce}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			hostid := filepath.Join(dir, "hostid")
			// The hostid is on disk before any zpool command runs on
			// OpenZFS, and never written on zfs-fuse.
			wantFile := c.hostID != 0 && c.cli == CLIOpenZFS
			for i := range c.steps {
				c.steps[i].check = func(t *testing.T) {
					b, err := os.ReadFile(hostid)
					switch {
					case wantFile && (err != nil || binary.NativeEndian.Uint32(b) != c.hostID):
						t.Fatalf("hostid file at %q: %x, %v", c.steps[i].argv, b, err)
					case !wantFile && err == nil:
						t.Fatalf("hostid written on %s without multihost fencing", c.cli)
					}
				}
			}
			// The vdev (the "cloud PV") lives in the test's directory,
			// where a create makes its file.
			for i := range c.steps {
				c.steps[i].argv = strings.ReplaceAll(c.steps[i].argv, "/pv", dir)
			}
			r := &scriptRunner{t: t, steps: c.steps}
			p := &Pool{name: "tank", runner: r, flavor: flavors[c.cli]}
			cfg := Config{Pool: "tank", Vdevs: []string{filepath.Join(dir, "pool.img")}, Mountpoint: "/mnt", Create: true,
				FileSize: 1 << 30, Runner: r, CLI: c.cli, HostID: c.hostID, HostIDFile: hostid, ForceImport: c.force}
			err := p.attach(context.Background(), cfg)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("attach = %v, want %v", err, c.want)
			}
			r.done()
		})
	}
}

func TestHostIDs(t *testing.T) {
	for in, want := range map[string]uint32{"0x1234abcd": 0x1234abcd, "00c0ffee": 0xc0ffee, "ABCDEF01": 0xabcdef01, " 7f0100\n": 0x7f0100} {
		if got, err := ParseHostID(in); err != nil || got != want {
			t.Errorf("ParseHostID(%q) = %x, %v; want %x", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0x", "00000000", "123456789", "node-a", "-1", "0x1g"} {
		if _, err := ParseHostID(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseHostID(%q) = %v, want ErrInvalid", in, err)
		}
	}
	// Stable per name, different between names, never 0.
	a, b := HostIDFromName("node-a"), HostIDFromName("node-b")
	if a == b || a == 0 || b == 0 || a != HostIDFromName("node-a") {
		t.Errorf("HostIDFromName: node-a %08x, node-b %08x", a, b)
	}

	// Written as zgenhostid does: 4 bytes, native order; rewriting the
	// same id leaves the file alone.
	path := filepath.Join(t.TempDir(), "hostid")
	if err := writeHostID(path, 0x1234abcd); err != nil {
		t.Fatal(err)
	}
	b1, err := os.ReadFile(path)
	if err != nil || len(b1) != 4 || binary.NativeEndian.Uint32(b1) != 0x1234abcd {
		t.Fatalf("hostid file %x, %v", b1, err)
	}
	fi1, _ := os.Stat(path)
	if err := writeHostID(path, 0x1234abcd); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(path); !os.SameFile(fi1, fi2) {
		t.Error("the same hostid was written again")
	}
	if err := writeHostID(path, 0x55); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); binary.NativeEndian.Uint32(b) != 0x55 {
		t.Errorf("changed hostid not written: %x", b)
	}
}

// A second holder of the same-host lock is refused while the first holds
// it, and admitted once it is released.
func TestSameHostLock(t *testing.T) {
	dir := t.TempDir()
	a, b := &Pool{name: "tank"}, &Pool{name: "tank"}
	if err := a.lockHost(dir); err != nil {
		t.Fatal(err)
	}
	err := b.lockHost(dir)
	if !errors.Is(err, ErrPoolInUse) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second lock: %v, want ErrPoolInUse naming the holder", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.lockHost(dir); err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	_ = b.Close()
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
