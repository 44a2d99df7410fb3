package main

import (
	"context"

	"github.com/dots-csi/dots/pkg/client"
)

func cmdSnapshot(ctx context.Context, args []string) error {
	return subcommand(ctx, "snapshot", args, map[string]func(context.Context, []string) error{
		"create": snapshotCreate, "list": snapshotList, "delete": snapshotDelete, "restore": snapshotRestore,
	})
}

func snapshotCreate(ctx context.Context, args []string) error {
	s := newSession("snapshot create", "VOLUME-ID NAME")
	if err := s.parse(args, 2); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	snap, err := s.client.CreateSnapshot(ctx, s.args[0], s.args[1])
	if err != nil {
		return err
	}
	return s.print.Snapshot(snap)
}

func snapshotList(ctx context.Context, args []string) error {
	s := newSession("snapshot list", "[--volume ID]")
	vol := s.fs.String("volume", "", "only the snapshots of this volume")
	if err := s.parse(args, 0); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	list, err := s.client.ListSnapshots(ctx, *vol)
	if err != nil {
		return err
	}
	return s.print.Snapshots(list)
}

func snapshotDelete(ctx context.Context, args []string) error {
	s := newSession("snapshot delete", "SNAPSHOT-ID")
	if err := s.parse(args, 1); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.client.DeleteSnapshot(ctx, s.args[0]); err != nil {
		return err
	}
	return s.print.Done(client.Action{ID: s.args[0], Action: "deleted", Text: "deleted snapshot " + s.args[0]})
}

func snapshotRestore(ctx context.Context, args []string) error {
	s := newSession("snapshot restore", "SNAPSHOT-ID NEW-VOLUME-NAME [--size]")
	sz := s.fs.String("size", "", "capacity of the new volume (default: the snapshot's size, its restoreSize; give more for room to grow)")
	if err := s.parse(args, 2); err != nil {
		return err
	}
	return createAndPrint(ctx, s, s.args[1], *sz, client.CreateOptions{Snapshot: s.args[0]})
}
