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

func TestListenUnixIsOwnerOnly(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "new", "dir", "csi.sock")
	l, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for path, want := range map[string]os.FileMode{sock: 0o600, filepath.Dir(sock): 0o700, filepath.Dir(filepath.Dir(sock)): 0o700} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
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
		if _, _, _, err := Page(keys, bad, 0); !errors.Is(err, ErrBadToken) {
			t.Errorf("token %q: %v, want Aborted", bad, err)
		}
	}
	if _, _, _, err := Page(keys, "", -1); !errors.Is(err, ErrBadMaxEntries) {
		t.Errorf("negative max: %v", err)
	}
}

func TestCodes(t *testing.T) {
	errA, errB := errors.New("a"), errors.New("b")
	both := errors.Join(errA, errB)
	c := NewCodes([]ErrorCode{{Err: errA, Code: codes.NotFound}}, []ErrorCode{{Err: errB, Code: codes.AlreadyExists}})
	cases := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("creating: %w", errA), codes.NotFound},
		{fmt.Errorf("x: %w", errB), codes.AlreadyExists},
		{both, codes.NotFound}, // the first table wins
		{fmt.Errorf("%w: x", ErrBadToken), codes.Aborted},
		{ErrBadMaxEntries, codes.InvalidArgument},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{fmt.Errorf("zfs get: %w", context.Canceled), codes.Canceled},
		{errors.New("boom"), codes.Internal},
		{status.Error(codes.Aborted, "relayed"), codes.Aborted},
	}
	for _, tc := range cases {
		if got := status.Code(c.Status(tc.err)); got != tc.want {
			t.Errorf("Status(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if c.Status(nil) != nil {
		t.Error("Status(nil) != nil")
	}
}
