package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dots-csi/dots/pkg/client"
)

func cmdVolume(ctx context.Context, args []string) error {
	return subcommand(ctx, "volume", args, map[string]func(context.Context, []string) error{
		"create": volumeCreate, "list": volumeList, "get": volumeGet, "expand": volumeExpand,
		"delete": volumeDelete, "clone": volumeClone, "mount": volumeMount, "unmount": volumeUnmount, "stats": volumeStats,
		"put": volumePut, "cat": volumeCat, "publish": volumePublish, "unpublish": volumeUnpublish, "promote": volumePromote,
	})
}

func volumeCreate(ctx context.Context, args []string) error {
	s := newSession("volume create", "NAME [--size 1Gi] [--server S] [--param key=value]...")
	sz := s.fs.String("size", "", "capacity, e.g. 1Gi (default: the controller's default)")
	server := s.fs.String("server", "", "pin the volume to this storage server")
	params := map[string]string{}
	s.fs.Func("param", "StorageClass parameter key=value (repeatable): compression, recordsize, atime, sync, thick", func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("--param %q: want key=value", v)
		}
		params[k] = val
		return nil
	})
	if err := s.parse(args, 1); err != nil {
		return err
	}
	if *server != "" {
		params["server"] = *server
	}
	return createAndPrint(ctx, s, s.args[0], *sz, client.CreateOptions{Parameters: params})
}

func createAndPrint(ctx context.Context, s *session, name, sz string, o client.CreateOptions) error {
	n, err := size(sz)
	if err != nil {
		return err
	}
	o.Size = n
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	v, err := s.client.CreateVolume(ctx, name, o)
	if err != nil {
		return err
	}
	return s.print.Volume(v)
}

func volumeClone(ctx context.Context, args []string) error {
	s := newSession("volume clone", "SOURCE-VOLUME-ID NAME [--size]")
	sz := s.fs.String("size", "", "capacity of the clone (default: the source volume's)")
	if err := s.parse(args, 2); err != nil {
		return err
	}
	return createAndPrint(ctx, s, s.args[1], *sz, client.CreateOptions{Volume: s.args[0]})
}

func volumeList(ctx context.Context, args []string) error {
	s := newSession("volume list", "")
	if err := s.parse(args, 0); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	vs, err := s.client.ListVolumes(ctx)
	if err != nil {
		return err
	}
	return s.print.Volumes(vs)
}

func volumeGet(ctx context.Context, args []string) error {
	s := newSession("volume get", "ID")
	if err := s.parse(args, 1); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	v, err := s.client.GetVolume(ctx, s.args[0])
	if err != nil {
		return err
	}
	return s.print.Volume(v)
}

func volumeExpand(ctx context.Context, args []string) error {
	s := newSession("volume expand", "ID --size 2Gi")
	sz := s.fs.String("size", "", "new capacity (volumes never shrink)")
	if err := s.parse(args, 1); err != nil {
		return err
	}
	n, err := size(*sz)
	if err != nil || n == 0 {
		return fmt.Errorf("--size is required: %v", err)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	got, err := s.client.ExpandVolume(ctx, s.args[0], n)
	if err != nil {
		return err
	}
	v, err := s.client.GetVolume(ctx, s.args[0])
	if err != nil {
		return err
	}
	v.Capacity = got
	return s.print.Volume(v)
}

func volumeDelete(ctx context.Context, args []string) error {
	s := newSession("volume delete", "ID")
	if err := s.parse(args, 1); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if _, err := s.client.GetVolume(ctx, s.args[0]); err != nil {
		return err // say "not found" rather than succeed silently on a typo
	}
	if err := s.client.DeleteVolume(ctx, s.args[0]); err != nil {
		return err
	}
	return s.print.Done(client.Action{ID: s.args[0], Action: "deleted", Text: "deleted volume " + s.args[0]})
}

func volumeMount(ctx context.Context, args []string) error {
	s := newSession("volume mount", "ID TARGET-DIR [--read-only]")
	ro := s.fs.Bool("read-only", false, "mount read-only")
	if err := s.parse(args, 2); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.client.Mount(ctx, s.args[0], s.args[1], *ro); err != nil {
		return err
	}
	return s.print.Done(client.Action{ID: s.args[0], Action: "mounted", Target: s.args[1], Text: fmt.Sprintf("mounted %s at %s", s.args[0], s.args[1])})
}

func volumeUnmount(ctx context.Context, args []string) error {
	s := newSession("volume unmount", "ID TARGET-DIR")
	if err := s.parse(args, 2); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.client.Unmount(ctx, s.args[0], s.args[1]); err != nil {
		return err
	}
	return s.print.Done(client.Action{ID: s.args[0], Action: "unmounted", Target: s.args[1], Text: fmt.Sprintf("unmounted %s from %s", s.args[0], s.args[1])})
}

func volumePublish(ctx context.Context, args []string) error {
	s := newSession("volume publish", "ID [--read-only]: admit this node to the volume's export (mount does it too)")
	ro := s.fs.Bool("read-only", false, "admit this node read-only")
	if err := s.parse(args, 1); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.client.Publish(ctx, s.args[0], *ro); err != nil {
		return err
	}
	return s.print.Done(client.Action{ID: s.args[0], Action: "published", Text: fmt.Sprintf("published %s to this node", s.args[0])})
}

func volumeUnpublish(ctx context.Context, args []string) error {
	s := newSession("volume unpublish", "ID: remove this node from the volume's export")
	if err := s.parse(args, 1); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.client.Unpublish(ctx, s.args[0]); err != nil {
		return err
	}
	return s.print.Done(client.Action{ID: s.args[0], Action: "unpublished", Text: fmt.Sprintf("unpublished %s from this node", s.args[0])})
}

func volumeStats(ctx context.Context, args []string) error {
	s := newSession("volume stats", "ID TARGET-DIR")
	if err := s.parse(args, 2); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	st, err := s.client.Stats(ctx, s.args[0], s.args[1])
	if err != nil {
		return err
	}
	return s.print.Stats(st)
}

func volumePut(ctx context.Context, args []string) error {
	s := newSession("volume put", "ID PATH [--from FILE] (default: standard input)")
	from := s.fs.String("from", "", "local file to copy (default: standard input)")
	if err := s.parse(args, 2); err != nil {
		return err
	}
	var data []byte
	var err error
	if *from != "" {
		data, err = os.ReadFile(*from)
	} else {
		data, err = io.ReadAll(os.Stdin)
	}
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.client.Put(ctx, s.args[0], s.args[1], data, s.mountPorts()); err != nil {
		return err
	}
	return s.print.Done(client.Action{ID: s.args[0], Action: "written", Target: s.args[1], Bytes: len(data),
		Text: fmt.Sprintf("wrote %d bytes to %s:%s through NFS", len(data), s.args[0], s.args[1])})
}

func volumeCat(ctx context.Context, args []string) error {
	s := newSession("volume cat", "ID PATH")
	if err := s.parse(args, 2); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	data, err := s.client.Cat(ctx, s.args[0], s.args[1], s.mountPorts())
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(data)
	return err
}
