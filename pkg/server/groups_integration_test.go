//go:build integration

package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/pkg/api"
)

// groupRounds is how many group snapshots race with the writer.
const groupRounds = 6

// seqWriter writes an increasing sequence across volumes in order: record
// i goes to the first volume, then the second, then the third, before
// record i+1. Each record is one 8-byte pwrite at offset 0 of one file, so
// any instant of the volumes is a prefix of that order.
type seqWriter struct {
	stop  func() // stops writing and closes the files
	files []*os.File
	last  atomic.Int64 // the last record written to every volume
	err   atomic.Value
}

const seqFile = "seq"

func startSeqWriter(t *testing.T, ctx context.Context, dirs []string) *seqWriter {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w := &seqWriter{}
	for _, d := range dirs {
		f, err := os.OpenFile(filepath.Join(d, seqFile), os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(seqRecord(0), 0); err != nil {
			t.Fatal(err)
		}
		w.files = append(w.files, f)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := int64(1); ctx.Err() == nil; i++ {
			for _, f := range w.files {
				if _, err := f.WriteAt(seqRecord(i), 0); err != nil {
					w.err.Store(err)
					return
				}
			}
			w.last.Store(i)
		}
	}()
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				// Say so rather than hang the package until its timeout.
				t.Errorf("the writer is stuck in a write for 2 minutes: the pool no longer answers")
				return
			}
			for _, f := range w.files {
				f.Close()
			}
		})
	}
	t.Cleanup(w.stop)
	return w
}

func seqRecord(i int64) []byte { return fmt.Appendf(nil, "%08d", i) }

func readSeq(t *testing.T, dir string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, seqFile))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s/%s holds %q: %v", dir, seqFile, b, err)
	}
	return n
}

// consistentCut reports whether the records read from the volumes (in
// writing order) are a prefix of the writer's order: no volume holds a
// record whose predecessors in the order are missing.
func consistentCut(vals []int64) bool {
	for i := 1; i < len(vals); i++ {
		if vals[i] > vals[i-1] {
			return false
		}
	}
	return vals[0]-vals[len(vals)-1] <= 1
}

// TestGroupSnapshotCrashConsistent races group snapshots of three volumes
// with a writer, restores every member into a clone and checks each group
// is a consistent cut of the writes; then idempotency, members as ordinary
// snapshots, deletes, and the groups surviving a restart (the index reloads
// them from the pool). Shown on zfs-fuse, which takes a group through one
// recursive snapshot (OpenZFS names the members in one command instead).
func TestGroupSnapshotCrashConsistent(t *testing.T) {
	s := startTestServerPrefix(t, "dotsgrp16")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	group := csi.NewGroupControllerClient(s.conn)

	var ids, dirs []string
	for _, n := range []string{"ga", "gb", "gc"} {
		v := s.mustCreate(ctx, createReq(n, 64*mib, nil, nil))
		ids = append(ids, v.GetVolumeId())
		dirs = append(dirs, v.GetVolumeContext()[api.ContextLocalPath])
	}
	w := startSeqWriter(t, ctx, dirs)

	var groupTime, singleTime time.Duration
	// Each group and the record written to every volume before it was
	// asked for.
	type taken struct {
		group *csi.VolumeGroupSnapshot
		after int64
	}
	var groups []taken
	prev := int64(-1)
	for r := range groupRounds {
		// Each round sees new writes: the writer must be running.
		poll.Until(t, time.Minute, "the writer to progress", func() error {
			if err, _ := w.err.Load().(error); err != nil {
				t.Fatalf("writer: %v", err)
			}
			if w.last.Load() <= prev {
				return fmt.Errorf("writer at %d", w.last.Load())
			}
			return nil
		})
		prev = w.last.Load()
		t0 := time.Now()
		resp, err := group.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: fmt.Sprintf("grp-%d", r), SourceVolumeIds: ids})
		groupTime += time.Since(t0)
		if err != nil {
			t.Fatal(err)
		}
		g := resp.GetGroupSnapshot()
		if !g.GetReadyToUse() || len(g.GetSnapshots()) != len(ids) {
			t.Fatalf("group %+v: want ready with %d members", g, len(ids))
		}
		groups = append(groups, taken{group: g, after: prev})
		t0 = time.Now()
		single, err := s.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: fmt.Sprintf("single-%d", r), SourceVolumeId: ids[0]})
		singleTime += time.Since(t0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: single.GetSnapshot().GetSnapshotId()}); err != nil {
			t.Fatal(err)
		}
	}
	// Closed: open files would keep the volumes busy at the restart.
	// The restores come after it: what races with the writes is the
	// snapshot, and a clone mounted while its origin takes a stream of
	// writes once hung zfs-fuse's pool (CI: the clone and the writer both
	// stuck until the test's deadline).
	w.stop()

	// Restore every member, in the writer's volume order.
	consistent, mid := 0, 0
	for r, tk := range groups {
		g := tk.group
		vals := make([]int64, len(ids))
		for _, m := range g.GetSnapshots() {
			if m.GetGroupSnapshotId() != g.GetGroupSnapshotId() {
				t.Fatalf("member %+v: group %q, want %q", m, m.GetGroupSnapshotId(), g.GetGroupSnapshotId())
			}
			i := slices.Index(ids, m.GetSourceVolumeId())
			src := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: m.GetSnapshotId()}}}
			clone := s.mustCreate(ctx, createReq(fmt.Sprintf("restore-%d-%d", r, i), 64*mib, nil, src))
			vals[i] = readSeq(t, clone.GetVolumeContext()[api.ContextLocalPath])
			if _, err := s.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: clone.GetVolumeId()}); err != nil {
				t.Fatal(err)
			}
		}
		if !consistentCut(vals) {
			t.Errorf("group %s restored %v: a later write without an earlier one", g.GetGroupSnapshotId(), vals)
			continue
		}
		if vals[0] < tk.after {
			t.Errorf("group %s restored %v, taken after record %d was written everywhere", g.GetGroupSnapshotId(), vals, tk.after)
			continue
		}
		consistent++
		if vals[0] != vals[len(vals)-1] {
			mid++ // taken between two volumes' writes of one record
		}
	}

	// Idempotent: the same request answers the same group; other volumes
	// under the name are refused.
	first, err := group.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "grp-0", SourceVolumeIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	again, err := group.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "grp-0", SourceVolumeIds: []string{ids[2], ids[0], ids[1]}})
	if err != nil || !proto.Equal(first.GetGroupSnapshot(), again.GetGroupSnapshot()) {
		t.Fatalf("repeated create: %v %v, want %v", again, err, first)
	}
	if _, err := group.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "grp-0", SourceVolumeIds: ids[:2]}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("grp-0 of other volumes: %v, want AlreadyExists", err)
	}

	// Members are ordinary snapshots, listed with their group.
	list, err := s.ctrl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetEntries()); n != groupRounds*len(ids) {
		t.Fatalf("%d snapshots listed, want %d", n, groupRounds*len(ids))
	}
	member := first.GetGroupSnapshot().GetSnapshots()[1]
	got, err := s.ctrl.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: member.GetSnapshotId()})
	if err != nil || got.GetSnapshot().GetGroupSnapshotId() != "grp-0" {
		t.Fatalf("GetSnapshot of a member: %v %v, want one of grp-0", got, err)
	}

	// The groups survive a restart: the index reloads them from the pool.
	s.stop()
	s.start()
	group = csi.NewGroupControllerClient(s.conn)
	reloaded, err := group.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: "grp-0"})
	if err != nil || !proto.Equal(reloaded.GetGroupSnapshot(), first.GetGroupSnapshot()) {
		t.Fatalf("grp-0 after a restart: %v %v, want %v", reloaded, err, first)
	}

	// A member deleted on its own; the group's delete removes the rest.
	if _, err := s.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: member.GetSnapshotId()}); err != nil {
		t.Fatal(err)
	}
	var memberIDs []string
	for _, m := range first.GetGroupSnapshot().GetSnapshots() {
		memberIDs = append(memberIDs, m.GetSnapshotId())
	}
	for range 2 { // the second delete finds nothing: success
		if _, err := group.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: "grp-0", SnapshotIds: memberIDs}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := group.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: "grp-0"}); status.Code(err) != codes.NotFound {
		t.Fatalf("a deleted group: %v, want NotFound", err)
	}
	for _, sid := range memberIDs {
		if _, err := s.ctrl.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: sid}); status.Code(err) != codes.NotFound {
			t.Fatalf("member %s of a deleted group: %v, want NotFound", sid, err)
		}
	}
	// Only the members stay in the pool: zfs-fuse's transient snapshots
	// of every volume are gone.
	var snaps []string
	for _, d := range s.datasets(ctx, s.cfg.Pool) {
		if _, snap, ok := strings.Cut(d, "@"); ok {
			if strings.HasPrefix(snap, "_g-") {
				t.Errorf("transient group snapshot left: %s", d)
			}
			snaps = append(snaps, d)
		}
	}
	if want := (groupRounds - 1) * len(ids); len(snaps) != want {
		t.Errorf("%d snapshots in the pool, want %d: %v", len(snaps), want, snaps)
	}
	if consistent != groupRounds {
		t.Fatalf("%d of %d groups consistent", consistent, groupRounds)
	}
	groupMS := float64(groupTime.Microseconds()) / 1000 / groupRounds
	singleMS := float64(singleTime.Microseconds()) / 1000 / groupRounds
	fmt.Printf("group-snapshot: ok members=%d rounds=%d consistent=%d mid_write=%d snapshot_ms=%.1f single_snapshot_ms=%.1f ratio=%.2f\n",
		len(ids), groupRounds, consistent, mid, groupMS, singleMS, groupMS/singleMS)
}

// TestGroupSnapshotRefusals: what the server refuses, with the code;
// and the longest name, whose IDs are hashed.
func TestGroupSnapshotRefusals(t *testing.T) {
	s := startTestServerPrefix(t, "dotsgrp16")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	group := csi.NewGroupControllerClient(s.conn)
	v := s.mustCreate(ctx, createReq("one", 64*mib, nil, nil))
	if _, err := s.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: api.GroupMemberID("taken", v.GetVolumeId()), SourceVolumeId: v.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		req  *csi.CreateVolumeGroupSnapshotRequest
		want codes.Code
	}{
		{"missing volume", &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{v.GetVolumeId(), "nope"}}, codes.NotFound},
		{"member name taken by a plain snapshot", &csi.CreateVolumeGroupSnapshotRequest{Name: "taken", SourceVolumeIds: []string{v.GetVolumeId()}}, codes.AlreadyExists},
		{"volume twice", &csi.CreateVolumeGroupSnapshotRequest{Name: "g2", SourceVolumeIds: []string{v.GetVolumeId(), v.GetVolumeId()}}, codes.InvalidArgument},
	} {
		if _, err := group.CreateVolumeGroupSnapshot(ctx, c.req); status.Code(err) != c.want {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}
	// Nothing was left of the refused groups.
	for _, g := range []string{"g1", "taken", "g2"} {
		if _, err := group.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: g}); status.Code(err) != codes.NotFound {
			t.Errorf("refused group %s: %v, want NotFound", g, err)
		}
	}
	if _, err := group.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: "x", SnapshotIds: []string{api.GroupMemberID("taken", v.GetVolumeId())}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Get naming a snapshot outside the group: %v, want InvalidArgument", err)
	}

	// The spec's longest name: a hashed group ID, and hashed member IDs.
	long := strings.Repeat("g", 127) + "1"
	first, err := group.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: long, SourceVolumeIds: []string{v.GetVolumeId()}})
	if err != nil {
		t.Fatalf("a group of a 128-character name: %v", err)
	}
	g := first.GetGroupSnapshot()
	if !strings.HasPrefix(g.GetGroupSnapshotId(), "_h") || !strings.HasPrefix(g.GetSnapshots()[0].GetSnapshotId(), "_h") {
		t.Errorf("group of a 128-character name: %+v, want hashed IDs", g)
	}
	again, err := group.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: long, SourceVolumeIds: []string{v.GetVolumeId()}})
	if err != nil || !proto.Equal(again.GetGroupSnapshot(), g) {
		t.Errorf("repeated group of a 128-character name: %v %v, want %v", again, err, g)
	}
	if _, err := group.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: g.GetGroupSnapshotId()}); err != nil {
		t.Fatal(err)
	}
}
