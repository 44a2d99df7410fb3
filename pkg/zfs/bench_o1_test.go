//go:build integration

package zfs_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dots-csi/dots/pkg/zfs"
)

// BenchmarkCloneVsCopy measures the claim dots rests on: a snapshot, a
// clone (restore) and an expansion cost the same whatever the volume holds,
// while copying the data, the way a volume would be duplicated without ZFS,
// grows with it. Baseline and measurement run in the same benchmark, on the
// same pool, and the ratios are reported (copy/clone > 1 means dots wins).
func BenchmarkCloneVsCopy(b *testing.B) {
	for _, size := range []int{16, 128} {
		b.Run(strconv.Itoa(size)+"MiB", func(b *testing.B) { benchCloneVsCopy(b, size) })
	}
}

func benchCloneVsCopy(b *testing.B, sizeMiB int) {
	p := newPool(b)
	c := ctx(b)
	src, err := p.CreateVolume(c, zfs.VolumeSpec{Name: "src", Capacity: int64(sizeMiB+64) * mib})
	if err != nil {
		b.Fatal(err)
	}
	// Incompressible-looking data, written once.
	chunk := bytes.Repeat([]byte("dots-bench-0123456789abcdef"), 1<<20/27+1)[:1<<20]
	f, err := os.Create(filepath.Join(src.Mountpoint, "data"))
	if err != nil {
		b.Fatal(err)
	}
	for i := range sizeMiB {
		chunk[0] = byte(i)
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	dst, err := p.CreateVolume(c, zfs.VolumeSpec{Name: "copy-target", Capacity: int64(sizeMiB+64) * mib})
	if err != nil {
		b.Fatal(err)
	}

	var copyDur, cloneDur, snapDur, expandDur time.Duration
	i := 0
	for b.Loop() {
		i++
		t0 := time.Now()
		out := filepath.Join(dst.Mountpoint, "copy-"+strconv.Itoa(i))
		if msg, err := exec.Command("cp", "-a", src.Mountpoint, out).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v: %s", err, msg)
		}
		if msg, err := exec.Command("sync").CombinedOutput(); err != nil {
			b.Fatalf("sync: %v: %s", err, msg)
		}
		copyDur += time.Since(t0)
		os.RemoveAll(out)

		t0 = time.Now()
		if _, err := p.CreateSnapshot(c, "src", "s"+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
		snapDur += time.Since(t0)

		t0 = time.Now()
		if _, err := p.CreateVolume(c, zfs.VolumeSpec{Name: "clone" + strconv.Itoa(i), Capacity: int64(sizeMiB+64) * mib,
			Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "s" + strconv.Itoa(i)}}); err != nil {
			b.Fatal(err)
		}
		cloneDur += time.Since(t0)

		t0 = time.Now()
		if _, err := p.ExpandVolume(c, "src", int64(sizeMiB+64+i)*mib); err != nil {
			b.Fatal(err)
		}
		expandDur += time.Since(t0)
	}
	n := float64(i)
	b.ReportMetric(copyDur.Seconds()/n*1e3, "copy-ms")
	b.ReportMetric(cloneDur.Seconds()/n*1e3, "restore-ms")
	b.ReportMetric(copyDur.Seconds()/cloneDur.Seconds(), "copy/restore")
	b.ReportMetric(copyDur.Seconds()/snapDur.Seconds(), "copy/snapshot")
	b.ReportMetric(copyDur.Seconds()/expandDur.Seconds(), "copy/expand")
}
