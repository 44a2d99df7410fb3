//go:build integration

package faults

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
)

// stormVolumes is the number of volumes of the storm; each gets a mix of
// further calls: with 40, 94 calls that change something (and their
// retries), and as many reads.
const stormVolumes = 40

// want is what the storm was told happened: the truth the pools must show.
type want struct {
	mu        sync.Mutex
	volumes   map[string]wantVolume // cluster ID -> what it must be
	snapshots map[string]string     // cluster snapshot ID -> its source's cluster ID
	deleted   map[string]bool       // cluster IDs of acknowledged deletes
	acked     atomic.Int64
}

type wantVolume struct {
	capacity int64
	thick    bool
	sum      [32]byte // of the file "data" in it
}

func (w *want) volume(id string, v wantVolume) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.volumes[id] = v
	w.acked.Add(1)
}

// TestStorm: a storm of concurrent creates, snapshots, clones, restores,
// expansions and deletes through the controller, with storage servers
// SIGKILLed at three points in the middle of it and started again; every
// call is retried until it succeeds, as the CSI sidecars would. Then every
// acknowledged volume must exist with its data, size, reservation and
// export, every acknowledged delete must be gone, nothing may exist that
// nobody asked for, and no zfs command of a killed server may be running.
func TestStorm(t *testing.T) {
	start, sent := time.Now(), attempts.Load()
	a := startProcServer(t, "dotsf", "storm-a")
	b := startProcServer(t, "dotsf", "storm-b")
	c := newCluster(t, a, b)
	ctx := context.Background()
	w := &want{volumes: map[string]wantVolume{}, snapshots: map[string]string{}, deleted: map[string]bool{}}

	// The kills: after this many acknowledged calls, SIGKILL a server and
	// start it again a moment later.
	kills := []struct {
		after int64
		srv   *procServer
	}{{stormVolumes / 2, a}, {stormVolumes + 15, b}, {stormVolumes + 40, a}}
	killed := make(chan struct{})
	var strays []process
	go func() {
		defer close(killed)
		for _, k := range kills {
			if err := waitAcked(&w.acked, k.after, 3*time.Minute); err != nil {
				t.Errorf("kill after %d calls: %v", k.after, err)
				return
			}
			k.srv.kill()
			strays = append(strays, k.srv.strayCommands()...)
			k.srv.start()
		}
	}()

	// Creates, each with data written into it once acknowledged.
	ids := make([]string, stormVolumes)
	var wg sync.WaitGroup
	for i := range stormVolumes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Exact, unaligned sizes; every fourth volume thick.
			size, thick := int64(24<<20)+int64(i)*4097, i%4 == 0
			params := map[string]string{}
			if thick {
				params["thick"] = "true"
			}
			var v *csi.Volume
			retry(t, "create", func() error {
				resp, err := c.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("storm-%d", i),
					VolumeCapabilities: mountCaps(), Parameters: params, CapacityRange: &csi.CapacityRange{RequiredBytes: size}})
				v = resp.GetVolume()
				return err
			})
			if v == nil {
				return
			}
			ids[i] = v.GetVolumeId()
			sum := writeData(t, v)
			w.volume(v.GetVolumeId(), wantVolume{capacity: size, thick: thick, sum: sum})
		}()
	}
	wg.Wait()

	// The mix, per volume in its own goroutine: snapshot, clone, restore,
	// expand, delete, in that order where a volume gets several.
	for i, id := range ids {
		if id == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stormOps(t, c, w, i, id)
		}()
	}
	wg.Wait()
	<-killed
	if t.Failed() {
		return
	}
	lost, orphans := verifyStorm(t, c, w)
	// A SIGKILL lands a moment after the parent's death: by now (seconds
	// later), none of the commands running at a kill may be left.
	for _, p := range strays {
		if alive(p.pid) && len(processes(p.argv[len(p.argv)-1])) > 0 {
			t.Errorf("a zfs command of a killed server outlived it: %+v", p)
		}
	}

	// Delete everything: no pool, export or placement may keep anything.
	deleteAll(t, c, w)
	for _, s := range c.servers {
		s.waitEmpty(t)
		if ex := s.exportedPseudos(t); len(ex) != 0 {
			t.Errorf("server %s still exports %v", s.name, ex)
		}
	}
	if left, err := c.store.List(ctx); err != nil || len(left) != 0 {
		t.Errorf("placements left after deleting everything: %v %v", left, err)
	}
	fmt.Printf("faults: storm ok acked=%d lost=%d orphans=%d kills=%d calls=%d duration_s=%.1f\n",
		w.acked.Load(), lost, orphans, len(kills), attempts.Load()-sent, time.Since(start).Seconds())
}

func waitAcked(n *atomic.Int64, target int64, timeout time.Duration) error {
	return poll.Wait(timeout, func() error {
		if got := n.Load(); got < target {
			return fmt.Errorf("only %d calls acknowledged", got)
		}
		return nil
	})
}

// writeData writes 64 KiB of random bytes into a volume's file "data"
// (through its mountpoint on the server's machine), synced, and returns
// their checksum.
func writeData(t *testing.T, v *csi.Volume) [32]byte {
	t.Helper()
	b := make([]byte, 64<<10)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(v.GetVolumeContext()[api.ContextLocalPath], "data"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// stormOps runs one volume's share of the mix.
func stormOps(t *testing.T, c *cluster, w *want, i int, id string) {
	ctx := context.Background()
	w.mu.Lock()
	base := w.volumes[id]
	w.mu.Unlock()
	var snapID string
	if i%2 == 0 {
		retry(t, "snapshot", func() error {
			resp, err := c.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: fmt.Sprintf("storm-snap-%d", i), SourceVolumeId: id})
			snapID = resp.GetSnapshot().GetSnapshotId()
			return err
		})
		w.mu.Lock()
		w.snapshots[snapID] = id
		w.mu.Unlock()
		w.acked.Add(1)
	}
	clone := func(name string, src *csi.VolumeContentSource) {
		retry(t, "clone "+name, func() error {
			resp, err := c.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountCaps(),
				CapacityRange: &csi.CapacityRange{RequiredBytes: base.capacity}, VolumeContentSource: src})
			if err == nil {
				w.volume(resp.GetVolume().GetVolumeId(), wantVolume{capacity: base.capacity, sum: base.sum})
			}
			return err
		})
	}
	if i%5 == 0 {
		clone(fmt.Sprintf("storm-clone-%d", i), &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}})
	}
	if snapID != "" && i%3 == 0 {
		clone(fmt.Sprintf("storm-restore-%d", i), &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapID}}})
	}
	if i%3 == 1 {
		grown := base.capacity + 8<<20 + 1
		retry(t, "expand", func() error {
			_, err := c.ctrl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id,
				CapacityRange: &csi.CapacityRange{RequiredBytes: grown}})
			return err
		})
		base.capacity = grown
		w.volume(id, base)
	}
	if i%7 == 0 {
		retry(t, "delete", func() error {
			_, err := c.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			return err
		})
		w.mu.Lock()
		delete(w.volumes, id)
		w.deleted[id] = true
		w.mu.Unlock()
		w.acked.Add(1)
	}
}

// verifyStorm compares every server's pool and exports with what the storm
// acknowledged; it returns the counts of lost and unasked-for things (the
// test has failed when either is not 0).
func verifyStorm(t *testing.T, c *cluster, w *want) (lost, orphans int) {
	t.Helper()
	// The servers' reconcilers and maintenance settle what the kills left
	// (unexported volumes, trash): give them their passes.
	wantVols := map[string]map[string]bool{}
	wantSnaps := map[string]map[string]bool{}
	for id := range w.volumes {
		srv, local, _ := api.ParseID(id)
		if wantVols[srv] == nil {
			wantVols[srv] = map[string]bool{}
		}
		wantVols[srv][local] = true
	}
	for id := range w.snapshots {
		srv, local, _ := api.ParseID(id)
		if wantSnaps[srv] == nil {
			wantSnaps[srv] = map[string]bool{}
		}
		wantSnaps[srv][local] = true
	}
	for name, s := range c.servers {
		var vols, snaps map[string]bool
		var exports map[string]bool
		var undeferred int
		var trash []string
		err := poll.Wait(time.Minute, func() error {
			vols, snaps, trash, undeferred = s.datasets(t)
			exports = s.exportedPseudos(t)
			if !sameSet(vols, wantVols[name]) || !sameSet(snaps, wantSnaps[name]) || undeferred > 0 || !sameSet(exports, pseudos(wantVols[name])) {
				return errNotYet
			}
			return nil
		})
		if err != nil {
			lost += len(missing(wantVols[name], vols)) + len(missing(wantSnaps[name], snaps))
			orphans += len(missing(vols, wantVols[name])) + len(missing(snaps, wantSnaps[name])) + undeferred +
				len(missing(exports, pseudos(wantVols[name])))
			t.Errorf("server %s: volumes missing %v, unasked %v; snapshots missing %v, unasked %v; internal snapshots not deferred %d; exports missing %v, unasked %v; trash %v",
				name, missing(wantVols[name], vols), missing(vols, wantVols[name]), missing(wantSnaps[name], snaps),
				missing(snaps, wantSnaps[name]), undeferred, missing(pseudos(wantVols[name]), exports),
				missing(exports, pseudos(wantVols[name])), trash)
		}
		// Trash may only hold deleted volumes whose snapshots live on.
		for _, tr := range trash {
			if !trashExpected(tr, w) {
				orphans++
				t.Errorf("server %s: trash %s holds nothing anyone asked to keep", name, tr)
			}
		}
	}
	for id, v := range w.volumes {
		srv, local, _ := api.ParseID(id)
		s := c.servers[srv]
		ds := s.pool.Name + "/dots/volumes/" + local
		props := strings.Fields(testenv.Zfs(t, "get", "-Hp", "-o", "value", "refquota,refreservation,mountpoint,mounted", ds))
		if len(props) != 4 {
			t.Errorf("%s: properties %v", id, props)
			lost++
			continue
		}
		if props[0] != strconv.FormatInt(v.capacity, 10) {
			t.Errorf("%s: refquota %s, want %d", id, props[0], v.capacity)
			lost++
		}
		if v.thick && props[1] != props[0] {
			t.Errorf("%s: thick with refreservation %s, refquota %s", id, props[1], props[0])
			lost++
		}
		data, err := os.ReadFile(filepath.Join(props[2], "data"))
		if props[3] != "yes" || err != nil || sha256.Sum256(data) != v.sum {
			t.Errorf("%s: data lost or changed (mounted %s, %v)", id, props[3], err)
			lost++
		}
	}
	return lost, orphans
}

// trashExpected: the trashed dataset of a volume the storm deleted while a
// snapshot of it, or a clone made from it, lives on.
func trashExpected(ds string, w *want) bool {
	vol := ds[strings.LastIndexByte(ds, '/')+1:]
	if strings.Contains(ds, "/dots/trash/") {
		vol = vol[:strings.LastIndexByte(vol, '_')] // NAME_EXPORTID
	}
	i := strings.TrimPrefix(vol, "storm-")
	for deleted := range w.deleted {
		if _, v, _ := api.ParseID(deleted); v != vol {
			continue
		}
		for _, src := range w.snapshots {
			if src == deleted {
				return true
			}
		}
		for id := range w.volumes {
			if _, v, _ := api.ParseID(id); v == "storm-clone-"+i {
				return true
			}
		}
	}
	return false
}

func deleteAll(t *testing.T, c *cluster, w *want) {
	ctx := context.Background()
	var wg sync.WaitGroup
	var ids []string
	for id := range w.volumes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			retry(t, "delete "+id, func() error {
				_, err := c.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
				return err
			})
		}()
	}
	for id := range w.snapshots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			retry(t, "delete "+id, func() error {
				_, err := c.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: id})
				return err
			})
		}()
	}
	wg.Wait()
}

func sameSet(a, b map[string]bool) bool {
	return len(missing(a, b)) == 0 && len(missing(b, a)) == 0
}

// missing lists what is in a and not in b, sorted.
func missing(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func pseudos(vols map[string]bool) map[string]bool {
	out := map[string]bool{}
	for v := range vols {
		out["/dots/"+v] = true
	}
	return out
}
