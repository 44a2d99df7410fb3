//go:build integration

package zfs_test

import (
	"slices"
	"testing"

	"github.com/dots-csi/dots/pkg/zfs"
)

func TestVolumeLifecycle(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	v := mustCreate(t, p, zfs.VolumeSpec{Name: "vol-a", Capacity: 10*mib + 1})
	// Exactly the bytes asked for.
	if v.Capacity != 10*mib+1 {
		t.Errorf("capacity = %d, want %d", v.Capacity, 10*mib+1)
	}
	if got := zfsGet(t, "refquota", v.Dataset); got != "10485761" {
		t.Errorf("refquota = %s", got)
	}
	if v.Dataset != p.Name()+"/dots/volumes/vol-a" || v.Mountpoint == "" || v.ExportID == 0 || v.CreatedAt.IsZero() {
		t.Errorf("volume = %+v", v)
	}
	if v.Thick || zfsGet(t, "refreservation", v.Dataset) != "0" {
		t.Errorf("thin volume has a reservation")
	}
	writeFile(t, v, "hello", "world")

	// Used is as of the last usage pass (the pool monitor's): run one.
	if _, err := p.Usage(c); err != nil {
		t.Fatal(err)
	}
	got, err := p.GetVolume(c, "vol-a")
	if err != nil || got.ExportID != v.ExportID || got.Capacity != v.Capacity || got.Used == 0 {
		t.Fatalf("GetVolume = %+v, %v", got, err)
	}
	mustCreate(t, p, zfs.VolumeSpec{Name: "vol-b", Capacity: 5 * mib, Thick: true,
		Properties: map[string]string{"compression": "gzip-3", "atime": "off", "recordsize": "16K"}})
	b, err := p.GetVolume(c, "vol-b")
	if err != nil {
		t.Fatal(err)
	}
	if !b.Thick || zfsGet(t, "refreservation", b.Dataset) != "5242880" {
		t.Errorf("thick volume: %+v, refreservation %s", b, zfsGet(t, "refreservation", b.Dataset))
	}
	wantProps := map[string]string{"compression": "gzip-3", "atime": "off", "recordsize": "16384"}
	for k, want := range wantProps {
		if b.Properties[k] != want || zfsGet(t, k, b.Dataset) != want {
			t.Errorf("property %s = %q (zfs: %q), want %q", k, b.Properties[k], zfsGet(t, k, b.Dataset), want)
		}
	}
	if names := volumeNames(t, p); !slices.Equal(names, []string{"vol-a", "vol-b"}) {
		t.Errorf("ListVolumes = %v", names)
	}

	// Expand: grows refquota (and refreservation when thick), never shrinks.
	e, err := p.ExpandVolume(c, "vol-b", 20*mib)
	if err != nil || e.Capacity != 20*mib || zfsGet(t, "refreservation", b.Dataset) != "20971520" {
		t.Fatalf("ExpandVolume = %+v, %v", e, err)
	}
	e, err = p.ExpandVolume(c, "vol-b", 1*mib)
	if err != nil || e.Capacity != 20*mib {
		t.Fatalf("shrink request = %+v, %v; want unchanged 20 MiB", e, err)
	}
	_, err = p.ExpandVolume(c, "vol-b", 100*gib)
	wantErr(t, err, zfs.ErrNoSpace)
	_, err = p.ExpandVolume(c, "nope", 100*mib)
	wantErr(t, err, zfs.ErrNotFound)

	if err := p.DeleteVolume(c, "vol-a"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, p.DeleteVolume(c, "vol-a"), zfs.ErrNotFound)
	_, err = p.GetVolume(c, "vol-a")
	wantErr(t, err, zfs.ErrNotFound)
	if names := volumeNames(t, p); !slices.Equal(names, []string{"vol-b"}) {
		t.Errorf("ListVolumes after delete = %v", names)
	}
}
