//go:build integration

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/api"
)

const mib = 1 << 20

// volume is a dots volume made through the controller, with the path of
// its dataset on this machine (asked of its server).
type volume struct {
	id, export, path string
}

func (s *stack) newVolume(ctx context.Context, t testing.TB, name string, size int64, src *csi.VolumeContentSource) volume {
	t.Helper()
	req := createReq(name, size)
	req.VolumeContentSource = src
	r, err := s.ctl.CreateVolume(ctx, req)
	if err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	v := volume{id: r.GetVolume().GetVolumeId(), export: r.GetVolume().GetVolumeContext()[api.ContextExport]}
	_, local, err := api.ParseID(v.id)
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.srv.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: local})
	if err != nil {
		t.Fatal(err)
	}
	v.path = g.GetVolume().GetVolumeContext()[api.ContextLocalPath]
	return v
}

// randomData is n bytes no filesystem can compress or share.
func randomData(n int, seed uint64) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

// writeFile writes data into dir and syncs it.
func writeFile(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// run runs a command (argv, with the context's deadline) and fails on
// error with its output.
func run(ctx context.Context, argv ...string) error {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %v: %s", argv, err, out)
	}
	return nil
}

func timeIt(f func() error) (float64, error) {
	t0 := time.Now()
	err := f()
	return ms(time.Since(t0)), err
}

// dataSizes are the small and large sizes of the snapshot figures, and
// the size of the NFS transfers, in MiB.
func dataSizes(md mode) (small, large, transfer int) {
	if md.short {
		return 1, 64, 16
	}
	return 1, 512, 128
}

// TestData: snapshot and restore of a volume holding 1 MiB against one
// holding 512 MiB (64 in -short), each against tar of the same data on the
// same pool; and sequential writes and reads through the volume's export
// (libnfs, NFSv3) against the same into its mountpoint.
func TestData(t *testing.T) {
	md := runMode()
	small, large, transfer := dataSizes(md)
	s := startStack(t, "4Gi")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rawDS, rawMnt := rawParent(ctx, t, s.pool.Name)
	t.Run("snapshot", func(t *testing.T) { s.snapshotFigures(ctx, t, md, small, large, rawDS, rawMnt) })
	t.Run("nfs", func(t *testing.T) { s.nfsFigures(ctx, t, md, transfer) })
}

// snapTimes are one size's per-repetition durations, in ms.
type snapTimes struct{ snap, restore, tar, untar []float64 }

func (s *stack) snapshotFigures(ctx context.Context, t *testing.T, md mode, small, large int, rawDS, rawMnt string) {
	times := map[int]*snapTimes{}
	srcs := map[int]volume{}
	var errs error
	for _, size := range []int{small, large} {
		srcs[size] = s.newVolume(ctx, t, fmt.Sprintf("data-%d", size), int64(size+64)*mib, nil)
		if err := writeFile(filepath.Join(srcs[size].path, "data"), randomData(size*mib, uint64(size))); err != nil {
			t.Fatal(err)
		}
		times[size] = &snapTimes{}
	}
	// Both sizes in every repetition, so each pair of figures saw the same
	// machine; five at least (they are cheap, and the ratio is noisy on a
	// busy machine).
	for rep := range max(md.reps, 5) {
		for _, size := range []int{small, large} {
			errs = first(errs, s.snapshotRound(ctx, t, fmt.Sprintf("snap-%d-%d", size, rep), srcs[size], int64(size+64)*mib, rawDS, rawMnt, times[size]))
		}
	}
	lg, sm := times[large], times[small]
	o1 := &Target{Of: "ratio", Op: "<=", Value: 1.2, Source: "issue: snapshot and restore at 512 MiB ≤ 1.2× at 1 MiB"}
	if md.short {
		o1.Source = "issue's 512 MiB vs 1 MiB target, at 64 MiB in -short"
	}
	for _, f := range []Figure{
		newFigure(fmt.Sprintf("snapshot_%dMiB_vs_%dMiB", large, small), "ms", fmt.Sprintf("CreateSnapshot through the controller of a volume holding %d MiB (dots column) vs %d MiB (baseline)", large, small), lg.snap, sm.snap, o1),
		newFigure(fmt.Sprintf("restore_%dMiB_vs_%dMiB", large, small), "ms", fmt.Sprintf("CreateVolume from that snapshot, %d MiB (dots column) vs %d MiB (baseline)", large, small), lg.restore, sm.restore, o1),
	} {
		f.Fatal = md.short
		failed(&f, errs)
		report.add(t, f)
	}
	vsTar := &Target{Of: "ratio", Op: "<=", Value: 0.01, Source: "issue: snapshot and restore ≥ 100× faster than tar at 512 MiB"}
	if md.short {
		vsTar = nil // the target is about 512 MiB; -short's 64 MiB only reports
	}
	for _, f := range []Figure{
		newFigure(fmt.Sprintf("snapshot_vs_tar_%dMiB", large), "ms", fmt.Sprintf("CreateSnapshot at %d MiB vs `tar cf` of the same data into a file on the same pool + sync (page cache warm)", large), lg.snap, lg.tar, vsTar),
		newFigure(fmt.Sprintf("restore_vs_untar_%dMiB", large), "ms", fmt.Sprintf("CreateVolume from the snapshot at %d MiB vs `tar xf` of that file into an empty dataset on the same pool + sync", large), lg.restore, lg.untar, vsTar),
	} {
		failed(&f, errs)
		report.add(t, f)
	}
}

// snapshotRound times one snapshot of src and its restore, then tar of
// the same data and its extraction, and removes what it made (untimed).
func (s *stack) snapshotRound(ctx context.Context, t *testing.T, name string, src volume, size int64, rawDS, rawMnt string, st *snapTimes) error {
	var errs error
	var snapID string
	d, err := timeIt(func() error {
		r, err := s.ctl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: src.id, Name: name})
		snapID = r.GetSnapshot().GetSnapshotId()
		return err
	})
	errs = first(errs, err)
	st.snap = append(st.snap, d)
	var restored string
	d, err = timeIt(func() error {
		r, err := s.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "restore-" + name, VolumeCapabilities: mountCaps(),
			CapacityRange:       &csi.CapacityRange{RequiredBytes: size},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapID}}}})
		restored = r.GetVolume().GetVolumeId()
		return err
	})
	errs = first(errs, err)
	st.restore = append(st.restore, d)

	// The baseline: the same data into a tar file on the same pool, and
	// out of it into an empty dataset, each synced.
	archive := filepath.Join(rawMnt, name+".tar")
	d, err = timeIt(func() error {
		if err := run(ctx, "tar", "cf", archive, "-C", src.path, "."); err != nil {
			return err
		}
		return run(ctx, "sync", archive)
	})
	errs = first(errs, err)
	st.tar = append(st.tar, d)
	if _, err := zfsRun(ctx, t, "create", rawDS+"/"+name); err != nil {
		t.Fatal(err)
	}
	into := filepath.Join(rawMnt, name)
	d, err = timeIt(func() error {
		if err := run(ctx, "tar", "xf", archive, "-C", into); err != nil {
			return err
		}
		return run(ctx, "sync", "-f", into)
	})
	errs = first(errs, err)
	st.untar = append(st.untar, d)

	_ = os.Remove(archive)
	if err := destroyDataset(ctx, t, rawDS+"/"+name); err != nil {
		t.Errorf("destroying %s: %v", name, err)
	}
	if _, err := s.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: restored}); err != nil {
		t.Errorf("deleting %s: %v", restored, err)
	}
	if _, err := s.ctl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snapID}); err != nil {
		t.Errorf("deleting %s: %v", snapID, err)
	}
	return errs
}

func (s *stack) nfsFigures(ctx context.Context, t *testing.T, md mode, size int) {
	// Room for every repetition's two files: a removed file's space comes
	// back when zfs-fuse gets to it, which may be after the next
	// repetition (measured: the fourth direct write of 128 MiB hit the
	// quota of a volume sized for two repetitions).
	v := s.newVolume(ctx, t, "nfs-data", int64(2*md.reps*size+64)*mib, nil)
	var nfsW, nfsR, dirW, dirR []float64
	var errs error
	rate := func(d float64) float64 { return float64(size) / (d / 1000) }
	for rep := range md.reps {
		data := randomData(size*mib, uint64(100+rep))
		name := fmt.Sprintf("f-%d", rep)
		d, err := timeIt(func() error { return s.nfs.WriteFile(ctx, v.export, name, data) })
		errs = first(errs, err)
		nfsW = append(nfsW, rate(d))
		d, err = timeIt(func() error {
			b, err := s.nfs.ReadFile(ctx, v.export, name)
			if err == nil && len(b) != len(data) {
				err = fmt.Errorf("read %d bytes of %d through NFS", len(b), len(data))
			}
			return err
		})
		errs = first(errs, err)
		nfsR = append(nfsR, rate(d))

		direct := filepath.Join(v.path, "direct-"+name)
		d, err = timeIt(func() error { return writeFile(direct, data) })
		errs = first(errs, err)
		dirW = append(dirW, rate(d))
		d, err = timeIt(func() error {
			b, err := os.ReadFile(direct)
			if err == nil && len(b) != len(data) {
				err = fmt.Errorf("read %d bytes of %d", len(b), len(data))
			}
			return err
		})
		errs = first(errs, err)
		dirR = append(dirR, rate(d))
		_ = os.Remove(direct)
		_ = os.Remove(filepath.Join(v.path, name))
	}
	what := "%d MiB, one file, sequential %s through the volume's export (libnfs nfs-cp/nfs-cat over NFSv3, from/to a local temporary file) vs %s in its mountpoint on the server (page cache warm)"
	for _, f := range []Figure{
		newFigure("nfs_write", "MiB/s", fmt.Sprintf(what, size, "write", "write + fsync"), nfsW, dirW, nil),
		newFigure("nfs_read", "MiB/s", fmt.Sprintf(what, size, "read", "read"), nfsR, dirR, nil),
	} {
		failed(&f, errs)
		report.add(t, f)
	}
}
