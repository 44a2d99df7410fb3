package zfs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// Fencing: a pool must never be imported by two servers at once, or both
// write it and it is lost. Three layers, from the widest to the closest:
//
//   - Across nodes (OpenZFS): the pool has multihost=on and every node its
//     own hostid, which the server writes before it imports (Config.HostID;
//     never baked into the image, or every node would share it). A pool
//     another host still writes is refused by OpenZFS's activity check,
//     even with -f; so -f is taken, and only then, when a plain import says
//     the pool was last used by another host and not exported: the check
//     that -f runs is what proves the other side gone.
//   - Without multihost (zfs-fuse, or OpenZFS without a hostid): an import
//     of a pool another host did not export is refused unless the operator
//     says the other side is gone (Config.ForceImport).
//   - On one host: zfs-fuse serves the whole machine and OpenZFS one
//     kernel, so a second server finds the pool already imported and would
//     use it. Each server holds an exclusive lock on a file in the pool's
//     state dataset while it runs (Config.Exclusive); a second one is
//     refused with ErrPoolInUse. The kernel drops the lock when the holder
//     dies, so a crashed server's successor is not locked out.
//
// cachefile=none keeps a node from importing the pool by itself at boot
// (from zpool.cache) behind the back of the server that took it over.

// DefaultHostIDFile is where OpenZFS reads the hostid: libzfs through
// gethostid(3), the kernel module when its spl_hostid parameter is 0.
const DefaultHostIDFile = "/etc/hostid"

// lockFile is the same-host lock, in the state dataset.
const lockFile = ".server.lock"

// ParseHostID reads a hostid as hostid(1) prints it: 8 hex digits,
// optionally prefixed 0x. Zero is refused: OpenZFS reads it as "none".
func ParseHostID(s string) (uint32, error) {
	h := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x")
	n, err := strconv.ParseUint(h, 16, 32)
	if err != nil || h == "" || len(h) > 8 {
		return 0, fmt.Errorf("%w: hostid %q: want up to 8 hex digits", ErrInvalid, s)
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: hostid 0 means none to OpenZFS", ErrInvalid)
	}
	return uint32(n), nil
}

// HostIDFromName derives a node's hostid from its name (in Kubernetes the
// node name, which is unique in the cluster), so every node has its own
// and a server rescheduled to the same node gets the same one back.
// FNV-1a; 0 (which OpenZFS reads as "none") is mapped away.
func HostIDFromName(name string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	if id := h.Sum32(); id != 0 {
		return id
	}
	return 1
}

// writeHostID writes id where OpenZFS reads it: 4 bytes in the machine's
// byte order, as zgenhostid(8) and sethostid(3) write them. The file is
// replaced atomically, so a concurrent reader sees the old id or the new.
func writeHostID(path string, id uint32) error {
	b := binary.NativeEndian.AppendUint32(nil, id)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(b) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hostid-*")
	if err != nil {
		return fmt.Errorf("writing hostid: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		return fmt.Errorf("writing hostid %s: %w", path, werr)
	}
	klog.InfoS("Wrote hostid", "file", path, "hostid", fmt.Sprintf("%08x", id))
	return nil
}

// multihost reports whether this pool is fenced by OpenZFS's multihost:
// the flavour has it and the server was given a hostid.
func (p *Pool) multihost(cfg Config) bool {
	return p.flavor.Multihost && cfg.HostID != 0
}

// prepareHost writes the hostid before anything imports or creates the
// pool. On zfs-fuse nothing is written: it has no multihost, and the file
// would change the whole development machine's hostid.
func (p *Pool) prepareHost(cfg Config) error {
	if cfg.HostID == 0 {
		return nil
	}
	if !p.flavor.Multihost {
		klog.InfoS("This ZFS has no multihost: the hostid is not written; fencing relies on refusing pools not exported and on the same-host lock",
			"flavor", p.flavor.CLI, "hostid", fmt.Sprintf("%08x", cfg.HostID))
		return nil
	}
	path := cfg.HostIDFile
	if path == "" {
		path = DefaultHostIDFile
	}
	return writeHostID(path, cfg.HostID)
}

// importArgs is `zpool import` of the pool, searching the vdevs'
// directories, never recording it in a cache file.
func importArgs(cfg Config, force bool) []string {
	args := []string{"import"}
	seen := map[string]bool{}
	for _, v := range cfg.Vdevs {
		if d := filepath.Dir(v); !seen[d] {
			seen[d] = true
			args = append(args, "-d", d)
		}
	}
	args = append(args, "-o", "cachefile=none")
	if force {
		args = append(args, "-f")
	}
	return append(args, cfg.Pool)
}

// importPool imports the pool without -f. A pool another host used last
// and did not export is imported with -f only when something says that
// host is gone: OpenZFS's activity check (multihost), which -f runs and
// which refuses a pool still written, or the operator (ForceImport).
func (p *Pool) importPool(ctx context.Context, cfg Config) error {
	op := "zpool import " + p.name
	_, err := p.run(ctx, command.Pool(importArgs(cfg, false)...))
	err = wrapErr(op, err)
	if !errors.Is(err, ErrPoolForeign) {
		return err
	}
	switch {
	case p.multihost(cfg):
		klog.InfoS("Pool last used by another host and not exported: importing with -f, the multihost activity check refuses it if that host still writes",
			"pool", p.name, "zpool", firstLine(errText(err)))
	case cfg.ForceImport:
		klog.InfoS("Pool last used by another host and not exported: importing with -f, as --force-import says that host is gone (nothing checks it without multihost)",
			"pool", p.name, "zpool", firstLine(errText(err)))
	default:
		return fmt.Errorf("%w; without multihost nothing proves that host gone: if it is (detached, powered off), start with --force-import", err)
	}
	_, ferr := p.run(ctx, command.Pool(importArgs(cfg, true)...))
	return wrapErr(op+" -f", ferr)
}

// fenceImported runs once the pool is imported or created: with multihost
// fencing it turns multihost on (idempotent), so the next importer on
// another node finds this host's activity.
func (p *Pool) fenceImported(ctx context.Context, cfg Config) error {
	if !p.multihost(cfg) {
		return nil
	}
	_, err := p.run(ctx, command.Pool("set", "multihost=on", p.name))
	if err != nil {
		return wrapErr("zpool set multihost=on "+p.name, err)
	}
	klog.InfoS("Pool fenced with multihost", "pool", p.name, "hostid", fmt.Sprintf("%08x", cfg.HostID))
	return nil
}

// createArgs is `zpool create` of the pool; multihost and no cache file
// from its first transaction when fenced.
func (p *Pool) createArgs(cfg Config) []string {
	args := []string{"create", "-o", "cachefile=none"}
	if p.multihost(cfg) {
		args = append(args, "-o", "multihost=on")
	}
	if cfg.Mountpoint != "" {
		args = append(args, "-m", cfg.Mountpoint)
	}
	args = append(args, p.name)
	return append(args, cfg.Vdevs...)
}

// lockHost takes the same-host lock in the state directory, so a second
// server on this host refuses the pool while this one serves it. The lock
// is the kernel's (flock): it goes with the process, however it ends.
func (p *Pool) lockHost(dir string) error {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("pool %s: lock %s: %w", p.name, path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%w: pool %s is served by another server on this host (%s holds %s)",
				ErrPoolInUse, p.name, strings.TrimSpace(string(holder)), path)
		}
		return fmt.Errorf("pool %s: lock %s: %w", p.name, path, err)
	}
	// Who holds it, for the message of the one refused. Best effort.
	host, _ := os.Hostname()
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d on %s\n", os.Getpid(), host)), 0)
	p.lockMu.Lock()
	p.lock = f
	p.lockMu.Unlock()
	return nil
}

// Close releases the same-host lock. The pool stays imported; ExportPool
// closes it too, first, since an open file keeps a dataset from
// unmounting.
func (p *Pool) Close() error {
	p.lockMu.Lock()
	defer p.lockMu.Unlock()
	if p.lock == nil {
		return nil
	}
	err := p.lock.Close()
	p.lock = nil
	return err
}

// errText is what zpool said, for log lines.
func errText(err error) string {
	if s, ok := stderrOf(err); ok {
		return s
	}
	return err.Error()
}
