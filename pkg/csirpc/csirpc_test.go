package csirpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/capability"
	"github.com/dots-csi/dots/pkg/capacity"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/params"
	"github.com/dots-csi/dots/pkg/zfs"
)

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string][2]string{
		"unix:///run/csi.sock": {"unix", "/run/csi.sock"},
		"unix://rel/csi.sock":  {"unix", "rel/csi.sock"},
		"tcp://127.0.0.1:7070": {"tcp", "127.0.0.1:7070"},
		"TCP://0.0.0.0:7070":   {"tcp", "0.0.0.0:7070"},
		"tcp://[::1]:7070":     {"tcp", "[::1]:7070"},
	} {
		n, a, err := ParseEndpoint(in)
		if err != nil || n != want[0] || a != want[1] {
			t.Errorf("ParseEndpoint(%q) = %q, %q, %v; want %v", in, n, a, err, want)
		}
	}
	for _, in := range []string{"", "/run/csi.sock", "http://x:1", "tcp://nohost", "unix://", "tcp://%zz"} {
		if _, _, err := ParseEndpoint(in); !errors.Is(err, ErrBadEndpoint) {
			t.Errorf("ParseEndpoint(%q) err = %v, want ErrBadEndpoint", in, err)
		}
	}
}

func TestListenRemovesOnlyStaleSockets(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "csi.sock")
	l, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://" + sock); err == nil {
		t.Fatal("a socket in use was taken over")
	}
	// A socket whose listener died (no unlink) is stale and is replaced.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	l2.Close()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	if _, err := Listen("unix://" + file); err == nil {
		t.Fatal("a regular file was removed to make a socket")
	}
}

func TestPage(t *testing.T) {
	keys := []string{"a", "b", "c", "d"}
	for max := int32(0); max <= 5; max++ {
		var got []string
		token := ""
		for {
			first, end, next, err := Page(keys, token, max)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, keys[first:end]...)
			if token = next; token == "" {
				break
			}
		}
		if !slices.Equal(got, keys) {
			t.Fatalf("max %d: %v", max, got)
		}
	}
	// A token whose key was deleted meanwhile still resumes after it.
	first, _, _, err := Page([]string{"a", "c"}, tokenPrefix+"b", 0)
	if err != nil || first != 1 {
		t.Fatalf("resume after a deleted key: first %d, %v", first, err)
	}
	for _, bad := range []string{"invalid-token", "after:", "b"} {
		if _, _, _, err := Page(keys, bad, 0); status.Code(err) != codes.Aborted {
			t.Errorf("token %q: %v, want Aborted", bad, err)
		}
	}
	if _, _, _, err := Page(keys, "", -1); status.Code(err) != codes.InvalidArgument {
		t.Errorf("negative max: %v", err)
	}
}

func TestToStatus(t *testing.T) {
	cases := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("creating: %w", zfs.ErrNotFound), codes.NotFound},
		{fmt.Errorf("x: %w", zfs.ErrExists), codes.AlreadyExists},
		{zfs.ErrInvalid, codes.InvalidArgument},
		{fmt.Errorf("x: %w", zfs.ErrNoSpace), codes.ResourceExhausted},
		{zfs.ErrBusy, codes.Unavailable},
		{nfs.ErrUnavailable, codes.Unavailable},
		{nfs.ErrInvalid, codes.InvalidArgument},
		{capability.ErrUnsupported, codes.InvalidArgument},
		{capacity.ErrOutOfRange, codes.OutOfRange},
		{params.ErrInvalid, codes.InvalidArgument},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{errors.New("boom"), codes.Internal},
		{status.Error(codes.Aborted, "relayed"), codes.Aborted},
	}
	for _, c := range cases {
		if got := status.Code(ToStatus(c.err)); got != c.want {
			t.Errorf("ToStatus(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if ToStatus(nil) != nil {
		t.Error("ToStatus(nil) != nil")
	}
}
