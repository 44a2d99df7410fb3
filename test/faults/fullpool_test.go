//go:build integration

package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/serverenv"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/server"
)

// TestFullPool fills a server's pool to the last byte. Creates, clones,
// restores and expansions then answer ResourceExhausted and leave nothing
// behind; deleting a volume that has snapshots still works (or fails with
// the volume mounted, exported and intact); once space is freed,
// everything works again.
func TestFullPool(t *testing.T) {
	start := time.Now()
	s := serverenv.Start(t, "dotsf", "full", func(c *server.Config) { c.PoolFileSize = "320Mi" })
	ctrl, _ := s.Client()
	ctx := context.Background()
	mk := func(name string, size int64, src *csi.VolumeContentSource) (*csi.Volume, error) {
		resp, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountCaps(),
			CapacityRange: &csi.CapacityRange{RequiredBytes: size}, VolumeContentSource: src})
		return resp.GetVolume(), err
	}
	const bigSize = 240 << 20 // thin, most of the pool
	big, err := mk("big", bigSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "big-snap", SourceVolumeId: "big"}); err != nil {
		t.Fatal(err)
	}
	kept, err := mk("kept", 16<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	keptData := []byte("a volume with a snapshot, deleted on a full pool\n")
	if err := os.WriteFile(filepath.Join(kept.GetVolumeContext()[api.ContextLocalPath], "data"), keptData, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "kept-snap", SourceVolumeId: "kept"}); err != nil {
		t.Fatal(err)
	}

	// What the pool had free before the fill, the emergency reserve held:
	// freeing the fill gives back about this much (the reserve is taken
	// back as soon as ZFS frees the blocks, so a read may come before or
	// after that).
	capBefore, err := ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if capBefore.GetAvailableCapacity() < bigSize+8<<20 {
		t.Fatalf("the pool has %d bytes free before the fill: too small for this test", capBefore.GetAvailableCapacity())
	}
	// Fill big to its quota, then volumes made of what is left, until no
	// space is left in the pool.
	fills := []string{filepath.Join(big.GetVolumeContext()[api.ContextLocalPath], "fill")}
	fillUp(t, fills[0])
	for i := 0; ; i++ {
		resp, err := ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetAvailableCapacity() < api.MinCapacity {
			break
		}
		v, err := mk(fmt.Sprintf("filler-%d", i), resp.GetAvailableCapacity(), nil)
		if err != nil {
			t.Fatalf("filler: %v", err)
		}
		fills = append(fills, filepath.Join(v.GetVolumeContext()[api.ContextLocalPath], "fill"))
		fillUp(t, fills[len(fills)-1])
	}
	before := testenv.Zfs(t, "list", "-H", "-r", "-t", "all", "-o", "name", s.Pool.Name)

	refused := 0
	for what, call := range map[string]func() error{
		"create":  func() error { _, err := mk("new", 16<<20, nil); return err },
		"clone":   func() error { _, err := mk("clone", bigSize, fromVolume("big")); return err },
		"restore": func() error { _, err := mk("restore", bigSize, fromSnapshot("big-snap")); return err },
		"expand": func() error {
			_, err := ctrl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: "kept",
				CapacityRange: &csi.CapacityRange{RequiredBytes: 200 << 20}})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("%s on a full pool: %v, want ResourceExhausted", what, err)
			continue
		}
		refused++
		if after := testenv.Zfs(t, "list", "-H", "-r", "-t", "all", "-o", "name", s.Pool.Name); after != before {
			t.Errorf("%s on a full pool left something behind:\nbefore:\n%s\nafter:\n%s", what, before, after)
		}
	}

	// Deleting a volume with a snapshot on the full pool.
	deleteResult := "ok"
	if _, err := ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "kept"}); err != nil {
		deleteResult = "refused"
		// Refused: then it is still served whole.
		got, rerr := os.ReadFile(filepath.Join(kept.GetVolumeContext()[api.ContextLocalPath], "data"))
		h, herr := ctrl.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: "kept"})
		if rerr != nil || string(got) != string(keptData) || herr != nil || len(h.GetVolumeHealth().GetHealthStatuses()) != 0 {
			t.Errorf("a delete refused on a full pool left the volume damaged: %v / %q %v / %v %v", err, got, rerr, h, herr)
		}
	} else if _, err := ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "kept"}); status.Code(err) != codes.NotFound {
		t.Errorf("deleted volume still found: %v", err)
	}

	// Free the space: everything works again.
	for _, f := range fills {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 2*time.Minute, "space back", func() error {
		resp, err := ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{})
		// Slack for metadata the deleted volume's snapshot and the trash keep.
		if err == nil && resp.GetAvailableCapacity() < capBefore.GetAvailableCapacity()-4<<20 {
			err = fmt.Errorf("%d bytes free, %d before the fill", resp.GetAvailableCapacity(), capBefore.GetAvailableCapacity())
		}
		return err
	})
	// ZFS counts freed blocks as available once a transaction group
	// frees them, but allocates from them only a couple of groups later
	// (deferred frees; zfs-fuse syncs a group every few seconds): until
	// then a create is refused, ResourceExhausted, as the pool says. The
	// first create waits for that; any other answer ends the wait.
	poll.Until(t, 2*time.Minute, "a create on the freed pool", func() error {
		_, err := mk("new", bigSize, nil)
		if err != nil && status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("new after freeing space: %v", err)
		}
		return err
	})
	for _, name := range []string{"clone", "restore"} {
		var src *csi.VolumeContentSource
		switch name {
		case "clone":
			src = fromVolume("big")
		case "restore":
			src = fromSnapshot("big-snap")
		}
		if _, err := mk(name, bigSize, src); err != nil {
			t.Errorf("%s after freeing space: %v", name, err)
		}
	}
	if deleteResult == "refused" {
		if _, err := ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "kept"}); err != nil {
			t.Errorf("delete after freeing space: %v", err)
		}
	}
	// The snapshot of the deleted volume still restores, whole.
	restored, err := mk("kept-restored", 16<<20, fromSnapshot("kept-snap"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(restored.GetVolumeContext()[api.ContextLocalPath], "data")); err != nil || string(got) != string(keptData) {
		t.Errorf("restore of the deleted volume's snapshot: %q %v", got, err)
	}
	fmt.Printf("faults: full-pool ok acked=%d lost=0 orphans=0 duration_s=%.1f refused=%d delete_on_full=%s\n",
		refused+4, time.Since(start).Seconds(), refused, deleteResult)
}

// fillUp writes into path until the pool is full and returns how much it
// wrote.
func fillUp(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i*7 + 3) // not all zeros: compression may be on
	}
	var n int64
	for {
		w, err := f.Write(chunk)
		n += int64(w)
		if err == nil {
			continue
		}
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			_ = f.Sync()
			return n
		}
		t.Fatalf("filling the pool: %v", err)
	}
}

func fromVolume(id string) *csi.VolumeContentSource {
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}
}

func fromSnapshot(id string) *csi.VolumeContentSource {
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}
}
