package replicator

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/dots-csi/dots/pkg/replication"
	"github.com/dots-csi/dots/pkg/zfs"
)

// A stream header keeps "no list" (an older sender: the replica destroys
// no user snapshot) apart from "no user snapshots" (the replica keeps
// none) across the wire.
func TestHeaderUserSnapshots(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []zfs.UserSnapshot
	}{
		{"absent", nil},
		{"empty", []zfs.UserSnapshot{}},
		{"two", []zfs.UserSnapshot{{Name: "s1"}, {Name: "s2", Group: "g"}}},
	} {
		spec := zfs.ReceiveSpec{Volume: "v", Snapshot: zfs.ReplSnapshotName(timeAt(1)), Generation: 1, UserSnapshots: tc.in}
		b, err := json.Marshal(headerOf(spec))
		if err != nil {
			t.Fatal(err)
		}
		var h replication.StreamHeader
		if err := json.Unmarshal(b, &h); err != nil {
			t.Fatal(err)
		}
		got := specOf(h).UserSnapshots
		if (got == nil) != (tc.in == nil) || !slices.Equal(got, tc.in) {
			t.Errorf("%s: %s carried %#v, want %#v", tc.name, b, got, tc.in)
		}
	}
	// A header of an older sender has no such key.
	var h replication.StreamHeader
	if err := json.Unmarshal([]byte(`{"volume":"v","snapshot":"dots-repl-1","generation":1,"kind":"replica"}`), &h); err != nil {
		t.Fatal(err)
	}
	if specOf(h).UserSnapshots != nil {
		t.Error("a header without userSnapshots lists some")
	}
}
