package zfs

import (
	"context"
	"fmt"

	gozfs "github.com/mistifyio/go-zfs/v4"
	"k8s.io/klog/v2"
)

// The write path goes through go-zfs. go-zfs takes no context: every call
// checks ctx first, and one already running is bounded by go-zfs's own
// Runner timeout when the process sets one. go-zfs reads each dataset back
// after creating or renaming it (`zfs list -Hp`), which is why zfs-fuse
// needs the fusecompat shim.

func filesystem(name string) *gozfs.Dataset {
	return &gozfs.Dataset{Name: name, Type: gozfs.DatasetFilesystem}
}

func zfsCreate(ctx context.Context, name string, props map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	klog.V(4).InfoS("zfs create", "dataset", name, "properties", props)
	_, err := gozfs.CreateFilesystem(name, props)
	return wrapErr("create "+name, err)
}

func zfsClone(ctx context.Context, snapshot, dest string, props map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	klog.V(4).InfoS("zfs clone", "snapshot", snapshot, "dataset", dest, "properties", props)
	snap := &gozfs.Dataset{Name: snapshot, Type: gozfs.DatasetSnapshot}
	_, err := snap.Clone(dest, props)
	return wrapErr(fmt.Sprintf("clone %s to %s", snapshot, dest), err)
}

func zfsSnapshot(ctx context.Context, dataset, snap string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	klog.V(4).InfoS("zfs snapshot", "dataset", dataset, "snapshot", snap)
	_, err := filesystem(dataset).Snapshot(snap, false)
	return wrapErr("snapshot "+dataset+snapshotSeparator+snap, err)
}

// zfsDestroy destroys one dataset or snapshot, retrying while busy.
func zfsDestroy(ctx context.Context, name string, flags gozfs.DestroyFlag) error {
	op := "destroy " + name
	return retryBusy(ctx, op, func() error {
		klog.V(4).InfoS("zfs destroy", "name", name, "flags", flags)
		return wrapErr(op, (&gozfs.Dataset{Name: name}).Destroy(flags))
	})
}

func zfsRename(ctx context.Context, from, to string) error {
	return zfsRenameN(ctx, from, to, busyAttempts)
}

// zfsRenameN renames with a given number of attempts while busy.
func zfsRenameN(ctx context.Context, from, to string, attempts int) error {
	op := fmt.Sprintf("rename %s to %s", from, to)
	return retryBusyN(ctx, op, attempts, func() error {
		klog.V(4).InfoS("zfs rename", "from", from, "to", to)
		_, err := (&gozfs.Dataset{Name: from}).Rename(to, false, false)
		return wrapErr(op, err)
	})
}

func zfsUnmount(ctx context.Context, name string) error {
	op := "unmount " + name
	return retryBusy(ctx, op, func() error {
		_, err := filesystem(name).Unmount(false)
		return wrapErr(op, err)
	})
}

func zfsMount(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := filesystem(name).Mount(false, nil)
	return wrapErr("mount "+name, err)
}

func zfsSet(ctx context.Context, name, key, value string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	klog.V(4).InfoS("zfs set", "dataset", name, "property", key, "value", value)
	return wrapErr(fmt.Sprintf("set %s=%s on %s", key, value, name), filesystem(name).SetProperty(key, value))
}
