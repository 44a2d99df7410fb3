//go:build integration

package libnfs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
)

// TestAgainstGanesha runs the client against a real ganesha.
func TestAgainstGanesha(t *testing.T) {
	env := testenv.StartGanesha(t, nil)
	dir := filepath.Join(env.Dir, "data", "vol")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := nfs.Export{ID: 1, Path: dir, Pseudo: "/dots/vol", Clients: testenv.LoopbackClients}
	if err := env.Export(ctx, e); err != nil {
		t.Fatal(err)
	}

	for _, version := range []int{3, 4} {
		c := env.Client
		c.Version = version
		name := "v" + string(rune('0'+version)) + ".bin"
		size := 1<<20 + 7
		if version == 4 {
			size = 3000 // libnfs's NFSv4 write limit
		}
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		if err := c.WriteFile(ctx, e.Pseudo, "sub/"+name, data); err != nil {
			t.Fatalf("v%d write: %v", version, err)
		}
		got, err := c.ReadFile(ctx, e.Pseudo, "sub/"+name)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("v%d read: %d bytes, %v", version, len(got), err)
		}
		if _, err := c.ReadFile(ctx, e.Pseudo, "sub/missing"); !errors.Is(err, libnfs.ErrNotFound) {
			t.Errorf("v%d read of a missing file = %v, want ErrNotFound", version, err)
		}
		if _, err := c.List(ctx, "/dots/nothing-here", ""); err == nil {
			t.Errorf("v%d listing an unknown export succeeded", version)
		}
	}
	c := env.Client
	if err := c.WriteFile(ctx, e.Pseudo, "sub/v3.bin", []byte("again")); !errors.Is(err, libnfs.ErrExists) {
		t.Errorf("v3 overwrite = %v, want ErrExists", err)
	}
	// NFSv4 reads large files fine.
	v4 := c
	v4.Version = 4
	if got, err := v4.ReadFile(ctx, e.Pseudo, "sub/v3.bin"); err != nil || len(got) != 1<<20+7 {
		t.Errorf("v4 read of 1 MiB: %d bytes, %v", len(got), err)
	}
	names, err := c.List(ctx, e.Pseudo, "sub")
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"v3.bin", "v4.bin"}) {
		t.Errorf("List(sub) = %v, %v", names, err)
	}
	names, err = c.List(ctx, e.Pseudo, "/")
	if err != nil || !slices.Equal(names, []string{"sub"}) {
		t.Errorf("List(/) = %v, %v", names, err)
	}
	// A context deadline stops the tool.
	dead, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()
	if _, err := c.ReadFile(dead, e.Pseudo, "sub/v3.bin"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read with an expired context = %v", err)
	}
}
