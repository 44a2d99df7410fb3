package zfs

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// The pool's ZFS commands. Each runs through the pool's command.Runner
// (argv, the caller's context, a deadline, a kill on expiry), uses only
// flags both OpenZFS and zfs-fuse accept unless the flavour says otherwise,
// and turns a failure into a classified error (see wrapErr).

// run runs one zfs or zpool command.
func (p *Pool) run(ctx context.Context, c command.Cmd) ([]byte, error) {
	return p.runner.Run(ctx, c)
}

// propArgs renders properties as "-o k=v" pairs in a stable order.
func propArgs(props map[string]string) []string {
	var args []string
	for _, k := range slices.Sorted(maps.Keys(props)) {
		args = append(args, "-o", k+"="+props[k])
	}
	return args
}

func (p *Pool) zfsCreate(ctx context.Context, name string, props map[string]string) error {
	klog.V(4).InfoS("zfs create", "dataset", name, "properties", props)
	args := append(append([]string{"create"}, propArgs(props)...), name)
	_, err := p.run(ctx, command.Z(args...))
	return wrapErr("create "+name, err)
}

func (p *Pool) zfsClone(ctx context.Context, snapshot, dest string, props map[string]string) error {
	klog.V(4).InfoS("zfs clone", "snapshot", snapshot, "dataset", dest, "properties", props)
	args := append(append([]string{"clone"}, propArgs(props)...), snapshot, dest)
	_, err := p.run(ctx, command.Z(args...))
	return wrapErr(fmt.Sprintf("clone %s to %s", snapshot, dest), err)
}

func (p *Pool) zfsSnapshot(ctx context.Context, dataset, snap string) error {
	full := dataset + snapshotSeparator + snap
	klog.V(4).InfoS("zfs snapshot", "snapshot", full)
	_, err := p.run(ctx, command.Z("snapshot", full))
	return wrapErr("snapshot "+full, err)
}

// destroyMode says how zfsDestroy destroys.
type destroyMode int

const (
	destroyNow destroyMode = iota
	// destroyDeferred marks a snapshot for deferred destruction (zfs
	// destroy -d): ZFS removes it once its last clone and hold are gone.
	destroyDeferred
)

// zfsDestroy destroys one dataset or snapshot, never recursively, retrying
// while busy.
func (p *Pool) zfsDestroy(ctx context.Context, name string, mode destroyMode) error {
	args := []string{"destroy"}
	if mode == destroyDeferred {
		args = append(args, "-d")
	}
	args = append(args, name)
	op := "destroy " + name
	return retryBusy(ctx, op, func() error {
		klog.V(4).InfoS("zfs destroy", "name", name, "deferred", mode == destroyDeferred)
		_, err := p.run(ctx, command.Z(args...))
		return wrapErr(op, err)
	})
}

// zfsRename renames with a given number of attempts while busy.
func (p *Pool) zfsRename(ctx context.Context, from, to string, attempts int) error {
	op := fmt.Sprintf("rename %s to %s", from, to)
	return retryBusyN(ctx, op, attempts, func() error {
		klog.V(4).InfoS("zfs rename", "from", from, "to", to)
		_, err := p.run(ctx, command.Z("rename", from, to))
		return wrapErr(op, err)
	})
}

func (p *Pool) zfsUnmount(ctx context.Context, name string) error {
	op := "unmount " + name
	return retryBusy(ctx, op, func() error {
		_, err := p.run(ctx, command.Z("umount", name))
		return wrapErr(op, err)
	})
}

func (p *Pool) zfsMount(ctx context.Context, name string) error {
	_, err := p.run(ctx, command.Z("mount", name))
	return wrapErr("mount "+name, err)
}

// zfsInherit removes a property set on a dataset (a user property then
// reads as unset).
func (p *Pool) zfsInherit(ctx context.Context, name, prop string) error {
	_, err := p.run(ctx, command.Z("inherit", prop, name))
	return wrapErr(fmt.Sprintf("inherit %s on %s", prop, name), err)
}

// zfsSet sets properties of one dataset. Where the flavour sets several in
// one command, they change together; zfs-fuse sets them one by one, in
// key order, and callers make a repeated call converge.
func (p *Pool) zfsSet(ctx context.Context, name string, props map[string]string) error {
	klog.V(4).InfoS("zfs set", "dataset", name, "properties", props)
	keys := slices.Sorted(maps.Keys(props))
	if p.flavor.AtomicMultiSet {
		args := []string{"set"}
		for _, k := range keys {
			args = append(args, k+"="+props[k])
		}
		_, err := p.run(ctx, command.Z(append(args, name)...))
		return wrapErr(fmt.Sprintf("set %v on %s", props, name), err)
	}
	for _, k := range keys {
		if _, err := p.run(ctx, command.Z("set", k+"="+props[k], name)); err != nil {
			return wrapErr(fmt.Sprintf("set %s=%s on %s", k, props[k], name), err)
		}
	}
	return nil
}
