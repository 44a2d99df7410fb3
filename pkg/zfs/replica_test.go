package zfs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/pkg/api"
)

func TestReplicationSnapshotNames(t *testing.T) {
	at := time.Date(2026, 12, 2, 5, 0, 0, 123456789, time.UTC)
	name := ReplSnapshotName(at)
	if name != "dots-repl-1796187600123456789" {
		t.Errorf("name = %q", name)
	}
	if got, ok := ReplSnapshotTime(name); !ok || !got.Equal(at) {
		t.Errorf("time of %q = %v, %v", name, got, ok)
	}
	for _, bad := range []string{"", "dots-repl-", "dots-repl-x", "dots-repl--5", "user", "dots-diverged-g1-5"} {
		if _, ok := ReplSnapshotTime(bad); ok {
			t.Errorf("ReplSnapshotTime(%q) accepted", bad)
		}
	}
	for name, want := range map[string]bool{"dots-repl-1": true, "dots-diverged-g1-2": true, "dots-replx": false, "snap": false, "_vc-00": false} {
		if got := isReplicationSnapshot(name); got != want {
			t.Errorf("isReplicationSnapshot(%q) = %v", name, got)
		}
	}
	// api names allow the prefixes: a user snapshot may not have them.
	for _, name := range []string{"dots-repl-1", "dots-diverged-x"} {
		if api.ValidateID(name) != nil {
			t.Fatalf("api refuses %q: the check below would test nothing", name)
		}
		if err := validateUserSnapshotName(name); !errors.Is(err, ErrInvalid) {
			t.Errorf("user snapshot %q: %v", name, err)
		}
	}
	if err := validateUserSnapshotName("dots-replica"); err != nil {
		t.Errorf("dots-replica: %v", err)
	}
}

func local(kv ...string) dsProps {
	d := dsProps{}
	for i := 0; i+1 < len(kv); i += 2 {
		d[kv[i]] = propValue{value: kv[i+1], source: "local"}
	}
	return d
}

func TestReadReplication(t *testing.T) {
	var v Volume
	if err := readReplication(&v, dsProps{propGeneration: {value: "7", source: "inherited from tank"}}); err != nil {
		t.Fatal(err)
	}
	if v.Generation != 1 || v.Replicas != nil || v.ReplInterval != 0 {
		t.Errorf("absent properties (an inherited one is absent) = %+v", v)
	}
	err := readReplication(&v, local(propGeneration, "3", propReplicas, `[{"server":"b","address":"b:9"}]`, propReplInterval, "10s"))
	if err != nil || v.Generation != 3 || !slices.Equal(v.Replicas, []api.Peer{{Server: "b", Address: "b:9"}}) || v.ReplInterval != 10*time.Second {
		t.Errorf("read = %+v, %v", v, err)
	}
	for _, bad := range []dsProps{local(propGeneration, "0"), local(propGeneration, "x"), local(propReplicas, "{"), local(propReplInterval, "often")} {
		if err := readReplication(&v, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: %v", bad, err)
		}
	}
	props, err := replicationProps(nil, 0)
	if err != nil || props[propReplicas] != nil || props[propReplInterval] != nil || len(props) != 2 {
		t.Errorf("no replicas: %v, %v", props, err)
	}
	if _, err := replicationProps([]api.Peer{{Address: "x:1"}}, time.Second); !errors.Is(err, ErrInvalid) {
		t.Errorf("a peer without a name: %v", err)
	}
}

func TestUserViewsSkipReplicationSnapshots(t *testing.T) {
	for _, name := range []string{"dots-repl-5", "dots-diverged-g1-5"} {
		if _, ok := snapshotFromProps("tank/dots/volumes/v@"+name, dsProps{}); ok {
			t.Errorf("%s listed as a user snapshot", name)
		}
	}
	if _, ok := snapshotFromProps("tank/dots/volumes/v@mine", dsProps{}); !ok {
		t.Error("a user snapshot was skipped")
	}
	p := &Pool{name: "tank"}
	l := p.listingFromProps(parsePropTable(strings.Join([]string{
		"tank/dots/volumes\tmountpoint\t/m\tlocal",
		"tank/dots/volumes/v\tdots:name\tv\tlocal",
		"tank/dots/volumes/v@dots-repl-5\ttype\tsnapshot\t-",
		"tank/dots/volumes/v@dots-repl-9\ttype\tsnapshot\t-",
		"tank/dots/volumes/v@mine\ttype\tsnapshot\t-",
	}, "\n")))
	if len(l.vols) != 1 || l.vols[0].ReplLatest != "dots-repl-9" || l.vols[0].ReplLatestTime.UnixNano() != 9 || l.vols[0].Generation != 1 {
		t.Errorf("volumes = %+v", l.vols)
	}
	if len(l.snaps) != 1 || l.snaps[0].Name != "mine" {
		t.Errorf("snapshots = %+v", l.snaps)
	}
}

const (
	replDS   = "tank/dots/replicas/v"
	replGet  = "zfs get -Hp -o name,property,value,source -d 1 type,dots:generation,dots:primary,userrefs,origin,dots:name,dots:capacity,dots:thick,dots:created,refquota,refreservation,dots:squash,dots:anon,dots:published,dots:exportid,dots:replicas,dots:repl-interval,compression " + replDS
	notThere = "cannot open 'tank/dots/replicas/v': dataset does not exist"
)

// replTestPool is a zfs-fuse pool "tank" over a scripted runner.
func replTestPool(t *testing.T, steps ...step) (*Pool, *scriptRunner) {
	r := &scriptRunner{t: t, steps: steps}
	p := &Pool{name: "tank", runner: r, flavor: flavors[CLIZFSFuse], index: newIndex(), tunables: []string{PropCompression},
		clock: func() time.Time { return time.Unix(1000, 0) }}
	p.ids = newIDAllocator(&memMarks{mark: 50}, exportIDBlock)
	if err := p.ids.load(context.Background(), map[uint32]bool{}); err != nil {
		t.Fatal(err)
	}
	return p, r
}

func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

func TestReceiveCommands(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	spec := ReceiveSpec{Volume: "v", Snapshot: "dots-repl-2", Generation: 1, Primary: "a", Capacity: 64 << 20,
		Properties: map[string]string{PropCompression: "gzip"}, Created: created}

	// A first, full stream: received, described, held.
	after := lines(replDS+"\ttype\tfilesystem\t-", replDS+"\trefreservation\t0\tdefault", replDS+"@dots-repl-2\tuserrefs\t0\t-")
	p, r := replTestPool(t,
		step{argv: replGet, stderr: notThere},
		step{argv: "zfs recv -F " + replDS},
		step{argv: replGet, out: after},
		step{argv: "zfs set compression=gzip " + replDS},
		step{argv: "zfs set dots:capacity=67108864 " + replDS},
		step{argv: "zfs set dots:created=2026-01-02T03:04:05Z " + replDS},
		step{argv: "zfs set dots:generation=1 " + replDS},
		step{argv: "zfs set dots:name=v " + replDS},
		step{argv: "zfs set dots:primary=a " + replDS},
		step{argv: "zfs set dots:thick=false " + replDS},
		step{argv: "zfs set refquota=67108864 " + replDS},
		step{argv: "zfs hold dots-repl " + replDS + "@dots-repl-2"},
	)
	st, err := p.Receive(context.Background(), spec, strings.NewReader("stream"))
	if err != nil || st.Latest != "dots-repl-2" || st.Role != api.RoleReplica || st.Generation != 1 {
		t.Errorf("Receive = %+v, %v", st, err)
	}
	r.done()

	// An increment: not listed again, the settings are unchanged, the
	// older replication snapshots go (a held one is released first), a
	// user's the primary lists stays and gets its group, one it does not
	// list goes.
	described := []string{replDS + "\ttype\tfilesystem\t-", replDS + "\tdots:generation\t1\tlocal", replDS + "\tdots:name\tv\tlocal",
		replDS + "\tdots:primary\ta\tlocal", replDS + "\tdots:capacity\t67108864\tlocal", replDS + "\tdots:thick\tfalse\tlocal",
		replDS + "\tdots:created\t2026-01-02T03:04:05Z\tlocal", replDS + "\trefquota\t67108864\tlocal", replDS + "\tcompression\tgzip\tlocal",
		replDS + "\trefreservation\t0\tdefault"}
	before := lines(append(slices.Clone(described), replDS+"@dots-repl-1\tuserrefs\t0\t-", replDS+"@user\tuserrefs\t0\t-", replDS+"@dots-repl-2\tuserrefs\t1\t-")...)
	p, r = replTestPool(t,
		step{argv: replGet, out: before},
		step{argv: "zfs recv -F " + replDS},
		step{argv: "zfs hold dots-repl " + replDS + "@dots-repl-3"},
		step{argv: "zfs get -Hp -o name,property,value,source -d 1 type,defer_destroy,dots:group,userrefs " + replDS, out: lines(
			replDS+"\ttype\tfilesystem\t-", replDS+"@user\ttype\tsnapshot\t-", replDS+"@gone\ttype\tsnapshot\t-",
			replDS+"@dots-repl-3\ttype\tsnapshot\t-")},
		step{argv: "zfs set dots:group=g " + replDS + "@user"},
		step{argv: "zfs destroy " + replDS + "@gone"},
		step{argv: "zfs destroy " + replDS + "@dots-repl-1"},
		step{argv: "zfs release dots-repl " + replDS + "@dots-repl-2"},
		step{argv: "zfs destroy " + replDS + "@dots-repl-2"},
	)
	spec.Snapshot, spec.Base = "dots-repl-3", "dots-repl-2"
	spec.UserSnapshots = []UserSnapshot{{Name: "user", Group: "g"}}
	if st, err := p.Receive(context.Background(), spec, strings.NewReader("stream")); err != nil || st.Latest != "dots-repl-3" {
		t.Errorf("Receive = %+v, %v", st, err)
	}
	r.done()
	spec.UserSnapshots = nil

	// A sender that did not learn the replica got 3 sends from 2: 3 goes
	// first, or zfs would refuse the increment.
	ahead := lines(append(slices.Clone(described), replDS+"@dots-repl-2\tuserrefs\t1\t-", replDS+"@dots-repl-3\tuserrefs\t1\t-")...)
	p, r = replTestPool(t,
		step{argv: replGet, out: ahead},
		step{argv: "zfs release dots-repl " + replDS + "@dots-repl-3"},
		step{argv: "zfs destroy " + replDS + "@dots-repl-3"},
		step{argv: "zfs recv -F " + replDS},
		step{argv: "zfs hold dots-repl " + replDS + "@dots-repl-4"},
		step{argv: "zfs release dots-repl " + replDS + "@dots-repl-2"},
		step{argv: "zfs destroy " + replDS + "@dots-repl-2"},
	)
	spec.Snapshot, spec.Base = "dots-repl-4", "dots-repl-2"
	if st, err := p.Receive(context.Background(), spec, strings.NewReader("stream")); err != nil || st.Latest != "dots-repl-4" {
		t.Errorf("Receive = %+v, %v", st, err)
	}
	r.done()

	// Refused before any stream is read: an older generation, a missing
	// base, a primary here.
	stale := lines(replDS+"\ttype\tfilesystem\t-", replDS+"\tdots:generation\t3\tlocal", replDS+"@dots-repl-2\tuserrefs\t1\t-")
	p, r = replTestPool(t, step{argv: replGet, out: stale})
	spec.Generation = 2
	if _, err := p.Receive(context.Background(), spec, strings.NewReader("stream")); !errors.Is(err, api.ErrStaleGeneration) {
		t.Errorf("older generation: %v", err)
	}
	r.done()
	p, r = replTestPool(t, step{argv: replGet, stderr: notThere})
	if _, err := p.Receive(context.Background(), spec, strings.NewReader("stream")); !errors.Is(err, ErrNotFound) {
		t.Errorf("increment without a replica: %v", err)
	}
	r.done()
	p, r = replTestPool(t)
	p.index.putVolume(&Volume{Name: "v", Dataset: "tank/dots/volumes/v"})
	if _, err := p.Receive(context.Background(), spec, strings.NewReader("stream")); !errors.Is(err, api.ErrNotReplica) {
		t.Errorf("stream for a primary: %v", err)
	}
	if err := p.DropReplica(context.Background(), "v"); !errors.Is(err, api.ErrNotReplica) {
		t.Errorf("DropReplica of a primary: %v", err)
	}
	r.done()
	bad := spec
	bad.Snapshot = "user"
	if _, err := p.Receive(context.Background(), bad, strings.NewReader("")); !errors.Is(err, ErrInvalid) {
		t.Errorf("a user snapshot's stream: %v", err)
	}
}

func TestSendAndSentCommands(t *testing.T) {
	vds := "tank/dots/volumes/v"
	p, r := replTestPool(t,
		step{argv: "zfs send -I " + vds + "@dots-repl-1 " + vds + "@dots-repl-2"},
		step{argv: "zfs get -Hp -o name,property,value,source origin tank/dots/replicas/x", out: "tank/dots/replicas/x\torigin\t-\t-\n"},
		step{argv: "zfs send -R tank/dots/replicas/x@dots-repl-2"},
		step{argv: "zfs get -Hp -o name,property,value,source origin " + vds, out: vds + "\torigin\ttank/dots/volumes/o@s\t-\n"},
		step{argv: "zfs send " + vds + "@dots-repl-2"},
		step{argv: "zfs hold dots-repl " + vds + "@dots-repl-4"},
		step{argv: "zfs get -Hp -o name,property,value,source -d 1 type,userrefs " + vds, out: lines(
			vds+"\ttype\tfilesystem\t-", vds+"@dots-repl-1\tuserrefs\t1\t-", vds+"@dots-repl-2\tuserrefs\t1\t-",
			vds+"@mine\tuserrefs\t0\t-", vds+"@dots-repl-4\tuserrefs\t1\t-", vds+"@dots-repl-5\tuserrefs\t0\t-")},
		step{argv: "zfs release dots-repl " + vds + "@dots-repl-1"},
		step{argv: "zfs destroy " + vds + "@dots-repl-1"},
	)
	p.index.putVolume(&Volume{Name: "v", Dataset: vds})
	c := context.Background()
	var out strings.Builder
	if err := p.Send(c, "v", "dots-repl-1", "dots-repl-2", &out); err != nil {
		t.Fatal(err)
	}
	// A volume this pool does not serve is sent from its replica.
	if err := p.Send(c, "x", "", "dots-repl-2", &out); err != nil {
		t.Fatal(err)
	}
	// A clone's full stream has no -R: the receiver lacks its origin.
	if err := p.Send(c, "v", "", "dots-repl-2", &out); err != nil {
		t.Fatal(err)
	}
	// Kept: what a replica still needs (2), the new one (4), a newer one
	// (5) and the user's snapshot.
	if err := p.ReplicationSent(c, "v", "dots-repl-4", []string{"dots-repl-2"}); err != nil {
		t.Fatal(err)
	}
	if err := p.ReplicationSent(c, "x", "dots-repl-4", nil); !errors.Is(err, api.ErrNotPrimary) {
		t.Errorf("ReplicationSent on a replica: %v", err)
	}
	r.done()
}

func TestDemoteKeepingDivergenceCommands(t *testing.T) {
	vds := "tank/dots/volumes/v"
	aside := "tank/dots/diverged/v-g1-1000"
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p, r := replTestPool(t,
		step{argv: "zfs get -Hp -o name,property,value,source -d 1 type,userrefs " + vds, out: lines(
			vds+"\ttype\tfilesystem\t-", vds+"@dots-repl-5\tuserrefs\t1\t-", vds+"@dots-repl-7\tuserrefs\t0\t-")},
		step{argv: "zfs umount " + vds},
		step{argv: "zfs snapshot " + vds + "@dots-diverged-g1-1000"},
		step{argv: "zfs rename " + vds + " " + aside},
		step{argv: "zfs clone -o compression=gzip -o dots:capacity=1048576 -o dots:created=2026-01-02T03:04:05Z -o dots:generation=1 -o dots:name=v " +
			"-o dots:thick=false -o refquota=1048576 " + aside + "@dots-repl-5 " + replDS},
		step{argv: "zfs promote " + replDS},
		step{argv: "zfs inherit dots:exportid " + replDS},
		step{argv: "zfs inherit dots:published " + replDS},
		step{argv: "zfs inherit dots:repl-interval " + replDS},
		step{argv: "zfs inherit dots:replicas " + replDS},
		step{argv: "zfs set dots:generation=2 " + replDS},
		step{argv: "zfs set dots:primary=b " + replDS},
	)
	p.index.putVolume(&Volume{Name: "v", Dataset: vds, Generation: 1, Capacity: 1 << 20, CreatedAt: created,
		Properties: map[string]string{PropCompression: "gzip"}, ExportID: 7})
	p.index.putSnapshot(&Snapshot{Name: "mine", SourceVolume: "v", Dataset: vds + "@mine"})
	c := context.Background()
	if _, err := p.DemoteToReplica(c, "v", "b", 0, true, "dots-repl-5"); !errors.Is(err, api.ErrStaleGeneration) {
		t.Errorf("demotion to an older generation: %v", err)
	}
	got, err := p.DemoteToReplica(c, "v", "b", 2, true, "dots-repl-5")
	if err != nil || got != aside {
		t.Fatalf("DemoteToReplica = %q, %v", got, err)
	}
	if _, ok := p.index.volume("v"); ok || p.Counts().Snapshots != 0 {
		t.Errorf("the demoted volume is still indexed: %+v", p.Counts())
	}
	r.done()
}

func TestSetReplicasCommands(t *testing.T) {
	vds := "tank/dots/volumes/v"
	p, r := replTestPool(t,
		step{argv: "zfs set dots:repl-interval=5s " + vds},
		step{argv: `zfs set dots:replicas=[{"server":"b","address":"b:1"}] ` + vds},
		step{argv: "zfs get -Hp -o name,property,value,source dots:name,dots:generation,dots:replicas,dots:repl-interval " + vds, out: lines(
			vds+"\tdots:name\tv\tlocal", vds+`	dots:replicas	[{"server":"b","address":"b:1"}]	local`, vds+"\tdots:repl-interval\t5s\tlocal")},
		step{argv: "zfs inherit dots:repl-interval " + vds},
		step{argv: "zfs inherit dots:replicas " + vds},
		step{argv: "zfs get -Hp -o name,property,value,source dots:name,dots:generation,dots:replicas,dots:repl-interval " + vds, out: lines(
			vds + "\tdots:name\tv\tlocal")},
	)
	p.volProps = []string{propName, propGeneration, propReplicas, propReplInterval}
	p.index.putVolume(&Volume{Name: "v", Dataset: vds, Generation: 1})
	c := context.Background()
	peers := []api.Peer{{Server: "b", Address: "b:1"}}
	v, err := p.SetReplicas(c, "v", peers, 5*time.Second)
	if err != nil || !slices.Equal(v.Replicas, peers) || v.ReplInterval != 5*time.Second {
		t.Fatalf("SetReplicas = %+v, %v", v, err)
	}
	// None: both properties go.
	if v, err := p.SetReplicas(c, "v", nil, 0); err != nil || v.Replicas != nil || v.ReplInterval != 0 {
		t.Errorf("SetReplicas(none) = %+v, %v", v, err)
	}
	if _, err := p.SetReplicas(c, "w", nil, 0); !errors.Is(err, api.ErrNotPrimary) {
		t.Errorf("SetReplicas of no primary: %v", err)
	}
	r.done()
}
