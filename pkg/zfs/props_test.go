package zfs

import (
	"errors"
	"maps"
	"testing"
	"time"
)

func TestValidateProperties(t *testing.T) {
	got, err := ValidateProperties(map[string]string{
		"compression": "gzip-9", "atime": "on", "recordsize": "128K", "sync": "disabled",
	})
	want := map[string]string{"compression": "gzip-9", "atime": "on", "recordsize": "131072", "sync": "disabled"}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("ValidateProperties = %v, %v; want %v", got, err, want)
	}
	for _, rs := range [][2]string{{"512", "512"}, {"4k", "4096"}, {"1M", "1048576"}, {"1048576", "1048576"}} {
		got, err := ValidateProperties(map[string]string{"recordsize": rs[0]})
		if err != nil || got["recordsize"] != rs[1] {
			t.Errorf("recordsize %s = %v, %v", rs[0], got, err)
		}
	}
	if got, err := ValidateProperties(nil); err != nil || len(got) != 0 {
		t.Errorf("nil = %v, %v", got, err)
	}
	bad := []map[string]string{
		{"quota": "1G"}, {"refquota": "1"}, {"mountpoint": "/"}, {"dots:name": "x"}, {"": ""},
		{"compression": "lz5"}, {"compression": ""}, {"compression": "gzip-10"}, {"compression": "ON"},
		{"atime": "true"}, {"sync": "never"},
		{"recordsize": "256"}, {"recordsize": "3000"}, {"recordsize": "2M"}, {"recordsize": "0"},
		{"recordsize": "-512"}, {"recordsize": "1G"}, {"recordsize": "abc"}, {"recordsize": "4KB"},
		{"recordsize": "9223372036854775807K"},
	}
	for _, in := range bad {
		if _, err := ValidateProperties(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateProperties(%v) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestParseSource(t *testing.T) {
	cases := map[string]Source{
		"":               {},
		"-":              {},
		"snapshot:s-1":   {Kind: SourceSnapshot, Name: "s-1"},
		"volume:pvc-abc": {Kind: SourceVolume, Name: "pvc-abc"},
		"volume:a:b":     {Kind: SourceVolume, Name: "a:b"},
	}
	for in, want := range cases {
		got, err := ParseSource(in)
		if err != nil || got != want {
			t.Errorf("ParseSource(%q) = %+v, %v", in, got, err)
		}
		if in != "-" && got.String() != in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), in)
		}
	}
	for _, in := range []string{"snapshot", "disk:x", "snapshot:", "volume:a/b", "volume:_x", "volume:a@b"} {
		if _, err := ParseSource(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSource(%q) = %v, want ErrInvalid", in, err)
		}
	}
	if err := validateSource(Source{Name: "x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("source name without kind: %v", err)
	}
}

const sampleGet = "p/dots/volumes/v1\ttype\tfilesystem\t-\n" +
	"p/dots/volumes/v1\tmountpoint\t/mnt/dots/volumes/v1\tinherited from p\n" +
	"p/dots/volumes/v1\trefquota\t10485760\tlocal\n" +
	"p/dots/volumes/v1\treferenced\t114688\t-\n" +
	"p/dots/volumes/v1\tavailable\t10371072\t-\n" +
	"p/dots/volumes/v1\tcreation\t1700000000\t-\n" +
	"p/dots/volumes/v1\tdots:name\tv1\tlocal\n" +
	"p/dots/volumes/v1\tdots:capacity\t10485760\tlocal\n" +
	"p/dots/volumes/v1\tdots:source\tsnapshot:s1\tlocal\n" +
	"p/dots/volumes/v1\tdots:thick\ttrue\tlocal\n" +
	"p/dots/volumes/v1\tdots:exportid\t42\tlocal\n" +
	"p/dots/volumes/v1\tdots:created\t2025-01-02T03:04:05.5Z\tlocal\n" +
	"p/dots/volumes/v1\tcompression\tgzip\tlocal\n" +
	"p/dots/volumes/v1\tatime\ton\tdefault\n" +
	"p/dots/volumes/v1\trecordsize\t16384\tinherited from p/dots\n" +
	"p/dots/volumes/v1@s2\ttype\tsnapshot\t-\n" +
	"p/dots/volumes/v1@s2\treferenced\t2048\t-\n" +
	"p/dots/volumes/v1@s2\tcreation\t1700000100\t-\n" +
	"p/dots/volumes/v1@s2\tdefer_destroy\toff\t-\n" +
	"p/dots/volumes/v1@s2\tdots:name\tv1\tinherited from p/dots/volumes/v1\n" +
	"p/dots/volumes/v1@s2\tdots:exportid\t42\tinherited from p/dots/volumes/v1\n" +
	"p/dots/volumes/v1@_vc-00\tdefer_destroy\ton\t-\n" +
	"p/dots/volumes/v1@gone\tdefer_destroy\ton\t-\n" +
	"p/dots/volumes/foreign\tdots:name\tv1\tinherited from p/dots\n"

func TestVolumeFromProps(t *testing.T) {
	tab := parsePropTable(sampleGet)
	if len(tab.order) != 5 || tab.order[0] != "p/dots/volumes/v1" {
		t.Fatalf("order = %v", tab.order)
	}
	v, err := volumeFromProps("p/dots/volumes/v1", tab.props["p/dots/volumes/v1"], Tunables)
	if err != nil {
		t.Fatal(err)
	}
	want := Volume{Name: "v1", Dataset: "p/dots/volumes/v1", Mountpoint: "/mnt/dots/volumes/v1",
		Capacity: 10485760, Used: 114688, Available: 10371072, Thick: true,
		Source: Source{Kind: SourceSnapshot, Name: "s1"}, ExportID: 42,
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 5e8, time.UTC)}
	if v.Name != want.Name || v.Dataset != want.Dataset || v.Mountpoint != want.Mountpoint ||
		v.Capacity != want.Capacity || v.Used != want.Used || v.Available != want.Available ||
		v.Thick != want.Thick || v.Source != want.Source || v.ExportID != want.ExportID || !v.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("volume = %+v\nwant %+v", v, want)
	}
	// Only locally set tunables are the volume's own.
	if !maps.Equal(v.Properties, map[string]string{"compression": "gzip"}) {
		t.Errorf("properties = %v", v.Properties)
	}
	// An inherited dots:name does not make a dataset a dots volume.
	if _, err := volumeFromProps("p/dots/volumes/foreign", tab.props["p/dots/volumes/foreign"], Tunables); err == nil {
		t.Error("foreign dataset accepted")
	}
	// Without dots:created, ZFS's creation time is used.
	p := tab.props["p/dots/volumes/v1"]
	delete(p, propCreated)
	if v, _ := volumeFromProps("p/dots/volumes/v1", p, Tunables); !v.CreatedAt.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("CreatedAt fallback = %v", v.CreatedAt)
	}
}

func TestSnapshotFromProps(t *testing.T) {
	tab := parsePropTable(sampleGet)
	s, ok := snapshotFromProps("p/dots/volumes/v1@s2", tab.props["p/dots/volumes/v1@s2"])
	if !ok || s.Name != "s2" || s.SourceVolume != "v1" || s.Size != 2048 || !s.CreatedAt.Equal(time.Unix(1700000100, 0)) {
		t.Errorf("snapshot = %+v, %v", s, ok)
	}
	for _, hidden := range []string{"p/dots/volumes/v1@_vc-00", "p/dots/volumes/v1@gone", "p/dots/volumes/v1"} {
		if _, ok := snapshotFromProps(hidden, tab.props[hidden]); ok {
			t.Errorf("%s listed as a user snapshot", hidden)
		}
	}
	// A snapshot of a trashed volume keeps the volume's name.
	s, ok = snapshotFromProps("p/dots/trash/v1_42@s", dsProps{propName: {value: "v1", source: "inherited from p/dots/trash/v1_42"}})
	if !ok || s.SourceVolume != "v1" {
		t.Errorf("trashed snapshot = %+v", s)
	}
}

func TestExportIDs(t *testing.T) {
	used := map[uint32]bool{1: true, 2: true, 5: true, MaxExportID: true}
	cases := []struct{ start, want uint32 }{
		{1, 3}, {0, 3}, {3, 3}, {5, 6}, {MaxExportID, 3}, {MaxExportID + 7, 3},
	}
	for _, c := range cases {
		if got, ok := pickExportID(c.start, used); !ok || got != c.want {
			t.Errorf("pickExportID(%d) = %d, %v; want %d", c.start, got, ok, c.want)
		}
	}
	full := map[uint32]bool{}
	for i := uint32(1); i <= MaxExportID; i++ {
		full[i] = true
	}
	if _, ok := pickExportID(1, full); ok {
		t.Error("picked an id when all are used")
	}
	delete(full, 40000)
	if got, ok := pickExportID(50000, full); !ok || got != 40000 {
		t.Errorf("wrap-around pick = %d, %v", got, ok)
	}
	if nextExportID(MaxExportID) != 1 || nextExportID(1) != 2 {
		t.Error("nextExportID")
	}
	tab := parsePropTable("p/dots\tdots:exportid\t-\t-\n" +
		"p/dots/volumes/a\tdots:exportid\t7\tlocal\n" +
		"p/dots/volumes/a@s\tdots:exportid\t7\tinherited from p/dots/volumes/a\n" +
		"p/dots/trash/b_9\tdots:exportid\t9\tlocal\n" +
		"p/dots/volumes/c\tdots:exportid\t70000\tlocal\n")
	if got := exportIDsInUse(tab); !maps.Equal(got, map[uint32]bool{7: true, 9: true}) {
		t.Errorf("exportIDsInUse = %v", got)
	}
}

func TestTrashWithoutSnapshots(t *testing.T) {
	names := []string{"p/dots/trash", "p/dots/trash/a_1", "p/dots/trash/a_1@s", "p/dots/trash/b_2",
		"p/dots/trash/c_3", "p/dots/trash/c_3@_del-00", "p/dots/trash@odd"}
	got := datasetsWithoutSnapshots("p/dots/trash", names)
	if len(got) != 1 || got[0] != "p/dots/trash/b_2" {
		t.Errorf("datasetsWithoutSnapshots = %v", got)
	}
}
