//go:build integration

package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
)

// TestVolumeLifecycleThroughNFS drives a real storage server through its
// CSI API and proves every step on the data path with a real NFS client:
// write and read, quota, expansion, snapshot and clones, deleting a volume
// that has a snapshot, a crashed ganesha, and a restart of the server on
// the same pool.
func TestVolumeLifecycleThroughNFS(t *testing.T) {
	s := startTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// 1. Create, write, read back, list.
	vol := s.mustCreate(ctx, createReq("data", 64*mib, nil, nil))
	if vol.GetCapacityBytes() != 64*mib {
		t.Fatalf("capacity %d, want %d", vol.GetCapacityBytes(), 64*mib)
	}
	exp := exportOf(vol)
	hello := []byte("hello from dots\n")
	s.mustWrite(ctx, exp, "hello.txt", hello)
	s.mustRead(ctx, exp, "hello.txt", hello)
	names, err := s.nfs.List(ctx, exp, "")
	if err != nil || !slices.Contains(names, "hello.txt") {
		t.Fatalf("listing %s: %v %v, want hello.txt in it", exp, names, err)
	}

	// 2. The quota is the volume's size: 32 MiB fit, 48 MiB more do not.
	fill := randomBytes(t, 32*mib)
	s.mustWrite(ctx, exp, "fill", fill)
	big := randomBytes(t, 48*mib)
	if err := s.nfs.WriteFile(ctx, exp, "big-1", big); !errors.Is(err, libnfs.ErrQuota) {
		t.Fatalf("writing 48 MiB into a 64 MiB volume holding 32 MiB: %v, want a quota error", err)
	}

	// 3. Expanded to 128 MiB, the same write fits (beside what the failed
	// one left: libnfs can neither overwrite nor delete).
	exp2, err := s.ctrl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: vol.GetVolumeId(), CapacityRange: &csi.CapacityRange{RequiredBytes: 128 * mib}})
	if err != nil {
		t.Fatal(err)
	}
	if exp2.GetCapacityBytes() != 128*mib || exp2.GetNodeExpansionRequired() {
		t.Fatalf("expand: %+v, want 128 MiB and no node expansion", exp2)
	}
	s.mustWrite(ctx, exp, "big-2", big)
	s.mustRead(ctx, exp, "big-2", big)

	// 4. Snapshot; a later write; the snapshot's clone holds what was there
	// before, a clone of the volume holds what is there now.
	snapResp, err := s.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: vol.GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}
	snap := snapResp.GetSnapshot()
	if !snap.GetReadyToUse() || snap.GetSourceVolumeId() != vol.GetVolumeId() || snap.GetSizeBytes() < 80*mib {
		t.Fatalf("snapshot %+v: want ready, of %s, at least 80 MiB", snap, vol.GetVolumeId())
	}
	later := []byte("written after the snapshot\n")
	s.mustWrite(ctx, exp, "later.txt", later)

	restored := s.mustCreate(ctx, createReq("restored", 128*mib, nil, fromSnapshot(snap.GetSnapshotId())))
	if restored.GetContentSource().GetSnapshot().GetSnapshotId() != snap.GetSnapshotId() {
		t.Errorf("restored volume's content source = %v", restored.GetContentSource())
	}
	s.mustRead(ctx, exportOf(restored), "hello.txt", hello)
	s.mustRead(ctx, exportOf(restored), "big-2", big)
	if _, err := s.nfs.ReadFile(ctx, exportOf(restored), "later.txt"); !errors.Is(err, libnfs.ErrNotFound) {
		t.Errorf("later.txt in the snapshot's clone: %v, want not found", err)
	}
	clone := s.mustCreate(ctx, createReq("copy", 128*mib, nil, fromVolume(vol.GetVolumeId())))
	s.mustRead(ctx, exportOf(clone), "hello.txt", hello)
	s.mustRead(ctx, exportOf(clone), "later.txt", later)
	// Clones are volumes of their own: writable, independent of the source.
	s.mustWrite(ctx, exportOf(clone), "clone-only.txt", []byte("clone"))
	if _, err := s.nfs.ReadFile(ctx, exp, "clone-only.txt"); !errors.Is(err, libnfs.ErrNotFound) {
		t.Errorf("a file written into the clone shows in the source: %v", err)
	}

	// 5. Deleting the source keeps its snapshot usable.
	if _, err := s.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.listVolumes(ctx)[vol.GetVolumeId()]; ok {
		t.Errorf("deleted volume %s still listed", vol.GetVolumeId())
	}
	_, err = s.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: vol.GetVolumeId()})
	wantCode(t, "ControllerGetVolume of the deleted volume", err, codes.NotFound)
	if _, err := s.nfs.ReadFile(ctx, exp, "hello.txt"); err == nil {
		t.Errorf("the deleted volume's export %s still serves its files", exp)
	}
	snaps, err := s.ctrl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: vol.GetVolumeId()})
	if err != nil || len(snaps.GetEntries()) != 1 || snaps.GetEntries()[0].GetSnapshot().GetSnapshotId() != snap.GetSnapshotId() {
		t.Fatalf("snapshots of the deleted volume: %v %v, want %s", snaps.GetEntries(), err, snap.GetSnapshotId())
	}
	restored2 := s.mustCreate(ctx, createReq("restored-2", 128*mib, nil, fromSnapshot(snap.GetSnapshotId())))
	s.mustRead(ctx, exportOf(restored2), "hello.txt", hello)
	s.mustRead(ctx, exportOf(restored2), "fill", fill)

	// Deleting the snapshot keeps its clones working. (On failure the flow
	// goes on, so the steps below still run; the snapshot is then deleted
	// once its clones are gone.)
	_, err = s.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshotId()})
	snapDeleted := err == nil
	if !snapDeleted {
		t.Errorf("DeleteSnapshot of a snapshot whose clones are exported: %v", err)
	} else {
		snaps, err = s.ctrl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{})
		if err != nil || len(snaps.GetEntries()) != 0 {
			t.Fatalf("snapshots after deleting the only one: %v %v", snaps.GetEntries(), err)
		}
	}
	s.mustRead(ctx, exportOf(restored2), "hello.txt", hello)
	s.mustWrite(ctx, exportOf(restored2), "after-snapshot-delete.txt", []byte("still writable"))

	// 6a. A crashed ganesha is restarted by the supervisor and serves the
	// same exports.
	live := map[string]*csi.Volume{"restored": restored, "copy": clone, "restored-2": restored2}
	checkFiles := func(when string) {
		t.Helper()
		for name, v := range live {
			got, err := s.readNFS(ctx, exportOf(v), "hello.txt")
			if err != nil || string(got) != string(hello) {
				t.Fatalf("%s: %s (%s) hello.txt: %q %v", when, name, exportOf(v), got, err)
			}
		}
		s.mustRead(ctx, exportOf(clone), "clone-only.txt", []byte("clone"))
	}
	pids := s.ganeshaPids()
	if len(pids) != 1 {
		t.Fatalf("ganesha processes of this server: %v, want one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	s.waitGaneshaRestarted(ctx, pids[0])
	t.Logf("ganesha killed; serving again after %v", time.Since(t0).Round(time.Millisecond))
	checkFiles("after ganesha was killed")

	// 6b. Stop the server (the pool is exported) and start it again: it
	// serves exactly the same exports, with the same ids (which are in
	// every NFS file handle).
	exportsBefore := testenv.ExportsText(t, s.cfg.RunDir)
	if !strings.Contains(exportsBefore, exportOf(restored2)) {
		t.Fatalf("ganesha exports file does not name %s:\n%s", exportOf(restored2), exportsBefore)
	}
	s.stop()
	if slices.Contains(strings.Fields(testenv.Zpool(t, "list", "-H", "-o", "name")), s.cfg.Pool) {
		t.Errorf("pool %s is still imported after the server stopped", s.cfg.Pool)
	}
	t0 = time.Now()
	s.start()
	t.Logf("server restarted on the imported pool in %v", time.Since(t0).Round(time.Millisecond))
	after := s.listVolumes(ctx)
	if len(after) != len(live) {
		t.Errorf("after the restart %d volumes listed, want %d: %v", len(after), len(live), keys(after))
	}
	for _, v := range live {
		got, ok := after[v.GetVolumeId()]
		switch {
		case !ok:
			t.Errorf("volume %s missing after the restart", v.GetVolumeId())
		case got.GetCapacityBytes() != v.GetCapacityBytes() || exportOf(got) != exportOf(v):
			t.Errorf("volume %s after the restart: %d bytes at %s, before %d bytes at %s",
				v.GetVolumeId(), got.GetCapacityBytes(), exportOf(got), v.GetCapacityBytes(), exportOf(v))
		}
	}
	if got := testenv.ExportsText(t, s.cfg.RunDir); got != exportsBefore {
		t.Errorf("exports after the restart differ:\n%s\nbefore:\n%s", got, exportsBefore)
	}
	checkFiles("after the server restart")
	s.mustWrite(ctx, exportOf(restored), "after-restart.txt", []byte("ok"))

	// 5 (end). Delete everything: nothing stays in the pool, not even the
	// trashed source or the hidden snapshot.
	for _, v := range live {
		if _, err := s.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
			t.Fatalf("DeleteVolume %s: %v", v.GetVolumeId(), err)
		}
	}
	if !snapDeleted {
		if _, err := s.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshotId()}); err != nil {
			t.Fatalf("DeleteSnapshot once its clones are gone: %v", err)
		}
	}
	if left := s.listVolumes(ctx); len(left) != 0 {
		t.Errorf("volumes left: %v", keys(left))
	}
	// The trash is reaped in the background, soon after the last delete.
	poll.Until(t, 30*time.Second, "the pool empty after deleting everything", func() error {
		for _, d := range s.datasets(ctx, s.cfg.Pool+"/dots") {
			if strings.HasPrefix(d, s.cfg.Pool+"/dots/volumes/") || strings.HasPrefix(d, s.cfg.Pool+"/dots/trash/") ||
				strings.Contains(d, "@") {
				return fmt.Errorf("left: %s", d)
			}
		}
		return nil
	})
}

// waitGaneshaRestarted waits until a new ganesha of this server runs and
// the server reports ready again.
func (s *testServer) waitGaneshaRestarted(ctx context.Context, old int) {
	s.t.Helper()
	poll.Until(s.t, time.Minute, "ganesha restarted", func() error {
		if pids := s.ganeshaPids(); len(pids) != 1 || pids[0] == old {
			return fmt.Errorf("ganesha processes %v (killed %d)", pids, old)
		}
		_, err := s.ident.Probe(ctx, &csi.ProbeRequest{})
		return err
	})
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
