package zfs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dots-csi/dots/pkg/api"
)

// modifyPool is a pool of flavour cli holding one thin 64 MiB volume "v",
// with space free as given, over a scripted runner.
func modifyPool(t *testing.T, cli CLI, free int64, steps ...step) (*Pool, *scriptRunner) {
	r := &scriptRunner{t: t, steps: steps}
	p := &Pool{name: "tank", runner: r, flavor: flavors[cli], index: newIndex(), volProps: []string{propRefquota}}
	p.setCapacity(0, free, time.Now())
	p.index.putVolume(&Volume{Name: "v", Dataset: "tank/dots/volumes/v", Capacity: 64 << 20, Properties: map[string]string{"atime": "on"},
		AnonUID: api.DefaultAnonID, AnonGID: api.DefaultAnonID})
	return p, r
}

// TestModifyVolumeCommands: which commands a modify runs on each flavour,
// what a repeat runs (nothing), and what a failure half way on zfs-fuse
// sets back.
func TestModifyVolumeCommands(t *testing.T) {
	yes := true
	m := Modification{Thick: &yes, Properties: map[string]string{"compression": "gzip", "atime": "on", "recordsize": "16K"}}
	const ds = " tank/dots/volumes/v"

	t.Run("openzfs: one command", func(t *testing.T) {
		p, r := modifyPool(t, CLIOpenZFS, 1<<30,
			step{argv: "zfs set compression=gzip dots:thick=true recordsize=16384 refreservation=67108864" + ds})
		v, err := p.ModifyVolume(context.Background(), "v", m)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Thick || v.Reserved != 64<<20 || v.Properties["compression"] != "gzip" || v.Properties["recordsize"] != "16384" {
			t.Errorf("volume after modify: %+v", v)
		}
		if _, err := p.ModifyVolume(context.Background(), "v", m); err != nil {
			t.Errorf("repeat: %v", err) // the runner fails on any command
		}
		if iv, _ := p.index.volume("v"); !iv.Thick || iv.Properties["compression"] != "gzip" {
			t.Errorf("index after modify: %+v", iv)
		}
		r.done()
	})

	t.Run("zfs-fuse: one by one, reservation first", func(t *testing.T) {
		p, r := modifyPool(t, CLIZFSFuse, 1<<30,
			step{argv: "zfs set refreservation=67108864" + ds},
			step{argv: "zfs set dots:thick=true" + ds},
			step{argv: "zfs set compression=gzip" + ds},
			step{argv: "zfs set recordsize=16384" + ds})
		if _, err := p.ModifyVolume(context.Background(), "v", m); err != nil {
			t.Fatal(err)
		}
		r.done()
	})

	t.Run("zfs-fuse: a failure sets back what was applied", func(t *testing.T) {
		p, r := modifyPool(t, CLIZFSFuse, 1<<30,
			step{argv: "zfs set refreservation=67108864" + ds},
			step{argv: "zfs set dots:thick=true" + ds},
			step{argv: "zfs set compression=gzip" + ds},
			step{argv: "zfs set recordsize=16384" + ds, stderr: "cannot set property for 'tank/dots/volumes/v': 'recordsize' must be power of 2 from 512B to 128KB"},
			step{argv: "zfs inherit compression" + ds},
			step{argv: "zfs set dots:thick=false" + ds},
			step{argv: "zfs set refreservation=none" + ds},
			// The read-back after a failure; nothing answers it here.
			step{argv: "zfs get -Hp -o name,property,value,source refquota" + ds})
		_, err := p.ModifyVolume(context.Background(), "v", m)
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v, want ErrInvalid", err)
		}
		if iv, _ := p.index.volume("v"); iv.Thick || iv.Properties["compression"] != "" {
			t.Errorf("index after a failed modify: %+v", iv)
		}
		r.done()
	})

	t.Run("no space for thick: nothing runs", func(t *testing.T) {
		p, r := modifyPool(t, CLIOpenZFS, 32<<20)
		_, err := p.ModifyVolume(context.Background(), "v", m)
		if !errors.Is(err, ErrNoSpace) {
			t.Fatalf("error %v, want ErrNoSpace", err)
		}
		r.done()
	})

	t.Run("squashing: dots:squash and dots:anon, then no-op", func(t *testing.T) {
		all, uid := api.SquashAll, uint32(1000)
		p, r := modifyPool(t, CLIOpenZFS, 1<<30,
			step{argv: "zfs set dots:anon=1000:65534 dots:squash=all" + ds})
		sq := Modification{Squash: &all, AnonUID: &uid}
		v, err := p.ModifyVolume(context.Background(), "v", sq)
		if err != nil {
			t.Fatal(err)
		}
		if v.Squash != api.SquashAll || v.AnonUID != 1000 || v.AnonGID != api.DefaultAnonID {
			t.Errorf("volume after modify: squash %q anon %d:%d", v.Squash, v.AnonUID, v.AnonGID)
		}
		if _, err := p.ModifyVolume(context.Background(), "v", sq); err != nil {
			t.Errorf("repeat: %v", err)
		}
		r.done()
	})

	t.Run("bad value: nothing runs", func(t *testing.T) {
		p, r := modifyPool(t, CLIOpenZFS, 1<<30)
		_, err := p.ModifyVolume(context.Background(), "v", Modification{Properties: map[string]string{"atime": "sometimes"}})
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v, want ErrInvalid", err)
		}
		r.done()
	})
}
