//go:build integration

package zfs_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dots-csi/dots/pkg/zfs"
)

// TestCreateVolumeRejects: bad input fails with the right sentinel and
// leaves nothing behind.
func TestCreateVolumeRejects(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	mustCreate(t, p, zfs.VolumeSpec{Name: "src", Capacity: 10 * mib})
	before := zfsNames(t, p.Name())
	ok := func(name string) zfs.VolumeSpec { return zfs.VolumeSpec{Name: name, Capacity: 10 * mib} }
	withProp := func(k, v string) zfs.VolumeSpec {
		s := ok("props")
		s.Properties = map[string]string{k: v}
		return s
	}
	cases := []struct {
		name string
		spec zfs.VolumeSpec
		want error
	}{
		{"slash", ok("a/b"), zfs.ErrInvalid},
		{"at", ok("a@b"), zfs.ErrInvalid},
		{"dotdot", ok("a..b"), zfs.ErrInvalid},
		{"space", ok("a b"), zfs.ErrInvalid},
		{"semicolon", ok("a;rm"), zfs.ErrInvalid},
		{"subshell", ok("$(x)"), zfs.ErrInvalid},
		{"leading underscore", ok("_vc-x"), zfs.ErrInvalid},
		{"leading dash", ok("-o"), zfs.ErrInvalid},
		{"empty", ok(""), zfs.ErrInvalid},
		{"300 chars", ok(strings.Repeat("a", 300)), zfs.ErrInvalid},
		{"size 0", zfs.VolumeSpec{Name: "z", Capacity: 0}, zfs.ErrInvalid},
		{"size -1", zfs.VolumeSpec{Name: "z", Capacity: -1}, zfs.ErrInvalid},
		{"bigger than pool", zfs.VolumeSpec{Name: "z", Capacity: 2 * gib}, zfs.ErrNoSpace},
		{"huge", zfs.VolumeSpec{Name: "z", Capacity: 1<<63 - 1}, zfs.ErrNoSpace},
		{"thick bigger than pool", zfs.VolumeSpec{Name: "z", Capacity: 2 * gib, Thick: true}, zfs.ErrNoSpace},
		{"unknown property", withProp("quota", "1G"), zfs.ErrInvalid},
		{"mountpoint property", withProp("mountpoint", "/etc"), zfs.ErrInvalid},
		{"bad compression", withProp("compression", "brotli"), zfs.ErrInvalid},
		{"bad atime", withProp("atime", "yes"), zfs.ErrInvalid},
		{"bad recordsize", withProp("recordsize", "1000"), zfs.ErrInvalid},
		{"recordsize too big", withProp("recordsize", "2M"), zfs.ErrInvalid},
		{"bad sync", withProp("sync", "sometimes"), zfs.ErrInvalid},
		{"bad source kind", zfs.VolumeSpec{Name: "z", Capacity: mib, Source: zfs.Source{Kind: "disk", Name: "x"}}, zfs.ErrInvalid},
		{"bad source name", zfs.VolumeSpec{Name: "z", Capacity: mib, Source: zfs.Source{Kind: zfs.SourceVolume, Name: "../x"}}, zfs.ErrInvalid},
		{"clone smaller than source", zfs.VolumeSpec{Name: "z", Capacity: mib, Source: zfs.Source{Kind: zfs.SourceVolume, Name: "src"}}, zfs.ErrTooSmall},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := p.CreateVolume(c, tc.spec)
			if !errors.Is(err, tc.want) || v != nil {
				t.Errorf("CreateVolume = %v, %v; want nil, %v", v, err, tc.want)
			}
			t.Logf("%v", err)
		})
	}
	if after := zfsNames(t, p.Name()); !slices.Equal(before, after) {
		t.Errorf("datasets changed:\nbefore %v\nafter  %v", before, after)
	}
	for _, bad := range []string{"a/b", "x@y", "..", "a b", "$(x)"} {
		if _, err := p.GetVolume(c, bad); !errors.Is(err, zfs.ErrInvalid) {
			t.Errorf("GetVolume(%q) = %v, want ErrInvalid", bad, err)
		}
		if err := p.DeleteVolume(c, bad); !errors.Is(err, zfs.ErrInvalid) {
			t.Errorf("DeleteVolume(%q) = %v, want ErrInvalid", bad, err)
		}
		if _, err := p.CreateSnapshot(c, "src", bad); !errors.Is(err, zfs.ErrInvalid) {
			t.Errorf("CreateSnapshot(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	for _, size := range []int64{0, -5} {
		if _, err := p.ExpandVolume(c, "src", size); !errors.Is(err, zfs.ErrInvalid) {
			t.Errorf("ExpandVolume(%d) = %v, want ErrInvalid", size, err)
		}
	}
}

// TestBackendRejectsValue: zfs-fuse lacks lz4 and sync. The allow-list
// passes them, ZFS refuses them: ErrInvalid with ZFS's message, and no
// dataset or internal snapshot stays behind, for a plain create and for
// clones.
func TestBackendRejectsValue(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	mustCreate(t, p, zfs.VolumeSpec{Name: "src", Capacity: 10 * mib})
	mustSnapshot(t, p, "src", "s")
	before := zfsNames(t, p.Name())
	for _, props := range []map[string]string{{"compression": "lz4"}, {"sync": "always"}} {
		for _, src := range []zfs.Source{{}, {Kind: zfs.SourceSnapshot, Name: "s"}, {Kind: zfs.SourceVolume, Name: "src"}} {
			_, err := p.CreateVolume(c, zfs.VolumeSpec{Name: "n", Capacity: 10 * mib, Properties: props, Source: src})
			if !errors.Is(err, zfs.ErrInvalid) {
				t.Errorf("props %v source %v: %v, want ErrInvalid", props, src, err)
			}
			t.Logf("props %v source %v: %v", props, src, err)
		}
	}
	if after := zfsNames(t, p.Name()); !slices.Equal(before, after) {
		t.Errorf("datasets changed:\nbefore %v\nafter  %v", before, after)
	}
}

// TestIdempotentCreate: the same name returns the existing volume with
// ErrExists, for the caller to compare.
func TestIdempotentCreate(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	v := mustCreate(t, p, zfs.VolumeSpec{Name: "v", Capacity: 10 * mib})
	for _, spec := range []zfs.VolumeSpec{
		{Name: "v", Capacity: 10 * mib},
		{Name: "v", Capacity: 50 * mib},
	} {
		got, err := p.CreateVolume(c, spec)
		wantErr(t, err, zfs.ErrExists)
		if got == nil || got.Capacity != 10*mib || got.ExportID != v.ExportID {
			t.Errorf("existing = %+v", got)
		}
	}
}

func TestExportIDsUnique(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	seen := map[uint32]string{}
	for i := range 12 {
		name := "v" + string(rune('a'+i))
		v := mustCreate(t, p, zfs.VolumeSpec{Name: name, Capacity: mib})
		if prev, dup := seen[v.ExportID]; dup || v.ExportID < 1 || v.ExportID > zfs.MaxExportID {
			t.Fatalf("export id %d of %s (already %s)", v.ExportID, name, prev)
		}
		seen[v.ExportID] = name
		if i%3 == 0 {
			if err := p.DeleteVolume(c, name); err != nil {
				t.Fatal(err)
			}
		}
	}
}
