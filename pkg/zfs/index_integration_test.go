//go:build integration

package zfs_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// indexPrefix names this file's test pools.
const indexPrefix = "dotsidx14"

// countingRunner runs commands through the test runner and records them,
// with the most that ran at once per subcommand.
type countingRunner struct {
	inner command.Runner

	mu       sync.Mutex
	ran      []string
	inFlight map[string]int
	peak     map[string]int
}

func newCountingRunner(t testing.TB) *countingRunner {
	return &countingRunner{inner: testenv.Runner(t), inFlight: map[string]int{}, peak: map[string]int{}}
}

func (r *countingRunner) Run(ctx context.Context, c command.Cmd) ([]byte, error) {
	sub := c.Tool + " " + c.Subcommand()
	r.mu.Lock()
	r.ran = append(r.ran, c.String())
	r.inFlight[sub]++
	r.peak[sub] = max(r.peak[sub], r.inFlight[sub])
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight[sub]--
		r.mu.Unlock()
	}()
	return r.inner.Run(ctx, c)
}

// take returns the commands run since the last take.
func (r *countingRunner) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.ran
	r.ran = nil
	return out
}

// TakesMountTurns: its inner runner (testenv's) takes zfs-fuse's mount
// turns, so the pool does not wrap it again and the counts are of what
// the pool asked for at once.
func (r *countingRunner) TakesMountTurns() {}

func (r *countingRunner) peakOf(sub string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peak[sub]
}

// openCounted opens a fresh test pool whose commands r records.
func openCounted(t testing.TB) (*zfs.Pool, *countingRunner, zfs.Config) {
	t.Helper()
	tp := testenv.NewTestPool(t, indexPrefix)
	r := newCountingRunner(t)
	cfg := tp.Config(r, gib)
	p, err := zfs.Open(ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, r, cfg
}

// recorded strips what changes by itself (space) from volumes, for
// comparing two views of one pool.
func recorded(vs []*zfs.Volume) []zfs.Volume {
	out := make([]zfs.Volume, len(vs))
	for i, v := range vs {
		out[i] = *v
		out[i].Used, out[i].Available = 0, 0
		if len(out[i].Properties) == 0 {
			out[i].Properties = nil
		}
	}
	return out
}

// assertIndexTrue: the index equals a fresh listing of the pool (a reload
// finds nothing to correct) and what a fresh Open of the pool reads.
func assertIndexTrue(t *testing.T, p *zfs.Pool, cfg zfs.Config, when string) {
	t.Helper()
	c := ctx(t)
	vols, _ := p.ListVolumes(c)
	snaps, _ := p.ListSnapshots(c)
	d, err := p.Reindex(c)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Empty() {
		t.Errorf("%s: the index differed from the pool: %+v", when, d)
	}
	cfg.Create = false
	fresh, err := zfs.Open(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fv, _ := fresh.ListVolumes(c)
	fs, _ := fresh.ListSnapshots(c)
	if got, want := recorded(vols), recorded(fv); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: volumes in the index:\n%+v\nread by a fresh open:\n%+v", when, got, want)
	}
	if !reflect.DeepEqual(snaps, fs) {
		t.Errorf("%s: snapshots in the index %+v, read by a fresh open %+v", when, snaps, fs)
	}
	if got, want := p.Counts(), fresh.Counts(); got != want {
		t.Errorf("%s: counts %+v, fresh %+v", when, got, want)
	}
}

// TestIndexStaysTrue runs the pool's operations and checks after each kind
// that the index says what the pool says.
func TestIndexStaysTrue(t *testing.T) {
	p, _, cfg := openCounted(t)
	c := ctx(t)
	mustCreate(t, p, zfs.VolumeSpec{Name: "thin", Capacity: 20 * mib})
	mustCreate(t, p, zfs.VolumeSpec{Name: "thick", Capacity: 10 * mib, Thick: true,
		Properties: map[string]string{"compression": "gzip-3", "recordsize": "16K"},
		Access:     &api.Access{Squash: api.SquashAll, AnonUID: 1000, AnonGID: 2000}})
	assertIndexTrue(t, p, cfg, "after creates")

	mustSnapshot(t, p, "thin", "s1")
	mustSnapshot(t, p, "thin", "s2")
	mustCreate(t, p, zfs.VolumeSpec{Name: "from-snap", Capacity: 20 * mib, Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "s1"}})
	mustCreate(t, p, zfs.VolumeSpec{Name: "from-vol", Capacity: 30 * mib, Source: zfs.Source{Kind: zfs.SourceVolume, Name: "thick"}})
	assertIndexTrue(t, p, cfg, "after snapshots and clones")

	if _, err := p.ExpandVolume(c, "thick", 15*mib); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SetPublished(c, "thin", []zfs.Publication{{Node: "n2@10.0.0.2", ReadOnly: true}, {Node: "n1@10.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	assertIndexTrue(t, p, cfg, "after expand and publish")

	// thin has snapshots: it goes to the trash, its snapshots stay.
	// s1 has a clone: it is hidden. thick has a clone: trash too.
	for _, v := range []string{"thin", "thick"} {
		if err := p.DeleteVolume(c, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.DeleteSnapshot(c, "s1"); err != nil {
		t.Fatal(err)
	}
	if got := snapshotNames(t, p); !slices.Equal(got, []string{"s2"}) {
		t.Errorf("snapshots after deletes = %v", got)
	}
	if err := p.Reap(c); err != nil {
		t.Fatal(err)
	}
	assertIndexTrue(t, p, cfg, "after deletes")
	if err := p.DeleteSnapshot(c, "s2"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"from-snap", "from-vol"} {
		if err := p.DeleteVolume(c, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Reap(c); err != nil {
		t.Fatal(err)
	}
	assertIndexTrue(t, p, cfg, "after deleting everything")
	if n := p.Counts(); n != (zfs.Counts{}) {
		t.Errorf("counts of an empty pool = %+v", n)
	}
}

// TestReindexAdoptsChangesBehindTheServersBack: what someone does to the
// pool by hand is reported and served as the pool has it after a reindex.
func TestReindexAdoptsChangesBehindTheServersBack(t *testing.T) {
	p, _, cfg := openCounted(t)
	c := ctx(t)
	a := mustCreate(t, p, zfs.VolumeSpec{Name: "a", Capacity: 10 * mib})
	b := mustCreate(t, p, zfs.VolumeSpec{Name: "b", Capacity: 10 * mib})
	mustSnapshot(t, p, "a", "gone-snap")

	testenv.Zfs(t, "set", "refquota=12582912", a.Dataset)
	testenv.Zfs(t, "set", "dots:capacity=12582912", a.Dataset)
	testenv.Zfs(t, "snapshot", a.Dataset+"@by-hand")
	rawDestroy(t, a.Dataset+"@gone-snap")
	rawDestroy(t, b.Dataset)
	testenv.Zfs(t, "create", "-o", "dots:name=made-by-hand", "-o", "dots:exportid=999", "-o", "refquota=1048576",
		p.Name()+"/dots/volumes/made-by-hand")

	d, err := p.Reindex(c)
	if err != nil {
		t.Fatal(err)
	}
	want := zfs.IndexDiff{VolumesAdded: []string{"made-by-hand"}, VolumesRemoved: []string{"b"}, VolumesChanged: []string{"a"},
		SnapshotsAdded: []string{"by-hand"}, SnapshotsRemoved: []string{"gone-snap"}}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("reindex found %+v\nwant %+v", d, want)
	}
	if v, err := p.GetVolume(c, "a"); err != nil || v.Capacity != 12*mib {
		t.Errorf("a after reindex = %+v, %v", v, err)
	}
	if _, err := p.GetSnapshot(c, "by-hand"); err != nil {
		t.Errorf("snapshot made by hand: %v", err)
	}
	wantErr(t, func() error { _, err := p.GetVolume(c, "b"); return err }(), zfs.ErrNotFound)
	// The id a dataset made by hand carries is never handed out.
	for i := range 3 {
		if v := mustCreate(t, p, zfs.VolumeSpec{Name: fmt.Sprintf("n%d", i), Capacity: mib}); v.ExportID == 999 {
			t.Errorf("export id 999 handed out while made-by-hand carries it")
		}
	}
	assertIndexTrue(t, p, cfg, "after the reindex")
}

// TestExportIDsNeverReusedAcrossRestarts: ids of volumes deleted before a
// restart are not handed out after it, although no dataset carries them.
func TestExportIDsNeverReusedAcrossRestarts(t *testing.T) {
	p, _, cfg := openCounted(t)
	c := ctx(t)
	handed := map[uint32]string{}
	for round := range 3 {
		for i := range 4 {
			name := fmt.Sprintf("r%d-%d", round, i)
			v := mustCreate(t, p, zfs.VolumeSpec{Name: name, Capacity: mib})
			if prev, ok := handed[v.ExportID]; ok {
				t.Fatalf("round %d: export id %d of %s was %s's", round, v.ExportID, name, prev)
			}
			handed[v.ExportID] = name
			if err := p.DeleteVolume(c, name); err != nil {
				t.Fatal(err)
			}
		}
		cfg.Create = false
		var err error
		if p, err = zfs.Open(c, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(zfsNames(t, p.Name()+"/dots/volumes")); n != 1 {
		t.Errorf("volumes left: %d datasets", n)
	}
}

// TestCreateAndDeleteCommands: a create runs one zfs command (the create
// carrying every property) and a delete only the destroy; concurrent
// creates run their commands at the same time and get distinct ids.
func TestCreateAndDeleteCommands(t *testing.T) {
	p, r, cfg := openCounted(t)
	c := ctx(t)
	r.take()
	v := mustCreate(t, p, zfs.VolumeSpec{Name: "one", Capacity: 10 * mib, Thick: true,
		Properties: map[string]string{"atime": "off"}, Access: &api.Access{Squash: api.SquashRoot, AnonUID: 7, AnonGID: 8}})
	ran := r.take()
	if len(ran) != 1 || !strings.HasPrefix(ran[0], "zfs create ") || !strings.HasSuffix(ran[0], " "+v.Dataset) {
		t.Errorf("CreateVolume ran %q, want one zfs create", ran)
	}
	for _, prop := range []string{"refquota=10485760", "refreservation=10485760", "atime=off", "dots:squash=root",
		fmt.Sprintf("dots:exportid=%d", v.ExportID)} {
		if len(ran) == 1 && !strings.Contains(ran[0], " -o "+prop+" ") {
			t.Errorf("the create does not carry %s: %s", prop, ran[0])
		}
	}
	if err := p.DeleteVolume(c, "one"); err != nil {
		t.Fatal(err)
	}
	// The destroy alone (again while zfs-fuse says busy, as right after a
	// create): no read, no snapshot count.
	ran = r.take()
	onlyDestroy := len(ran) > 0
	for _, cmd := range ran {
		onlyDestroy = onlyDestroy && cmd == "zfs destroy "+v.Dataset
	}
	if !onlyDestroy {
		t.Errorf("DeleteVolume ran %q, want only zfs destroy", ran)
	}

	const n = 8
	var wg sync.WaitGroup
	ids := make([]uint32, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			v, err := p.CreateVolume(c, zfs.VolumeSpec{Name: fmt.Sprintf("c%d", i), Capacity: mib})
			if err == nil {
				ids[i] = v.ExportID
			}
			errs[i] = err
		})
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent create c%d: %v", i, errs[i])
		}
		if seen[ids[i]] {
			t.Errorf("export id %d handed out twice", ids[i])
		}
		seen[ids[i]] = true
	}
	if peak := r.peakOf("zfs create"); peak < 2 {
		t.Errorf("the pool asked for at most %d zfs create at once of %d concurrent creates: it serialised them (zfs-fuse's mount turns come after it)", peak, n)
	}
	for _, cmd := range r.take() {
		if !strings.HasPrefix(cmd, "zfs create ") && !strings.HasPrefix(cmd, "zfs set dots:next-exportid=") {
			t.Errorf("concurrent creates ran %q", cmd)
		}
	}
	assertIndexTrue(t, p, cfg, "after concurrent creates")
}
