//go:build integration

package replicas

import (
	"context"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/replenv"
	"github.com/dots-csi/dots/pkg/api"
)

// TestInterruptedStream: the replica's server is SIGKILLed while it
// receives a large increment. The replica is left as it was (its previous
// snapshot, intact), and once the server is back the next interval sends
// the increment again, whole: zfs-fuse has no resumable receive, so the
// stream restarts from the held base.
func TestInterruptedStream(t *testing.T) {
	srv := cluster(t, 2)
	a, b := srv[0], srv[1]
	every := interval()
	v := newVolume(t, a, "interrupted", 256<<20, every, b)
	v.mustWrite(t, a, "small", replenv.RandomData(t, 64<<10))
	replenv.WaitSynced(t, b, v.id, time.Now(), 30*every)
	// One large increment, sent by a Sync (no sends of their own from
	// now: a Sync waits for one under way).
	setReplicas(t, a, v.id, time.Hour, b)
	if _, err := a.Replication().Sync(context.Background(), api.SyncRequest{Volume: v.id}); err != nil {
		t.Fatal(err)
	}
	before, base := replicaSums(t, b, v.id)
	v.mustWrite(t, a, "large", replenv.RandomData(t, 96<<20))
	wrote := time.Now()
	synced := make(chan api.VolumeState, 1)
	go func() {
		st, err := a.Replication().Sync(context.Background(), api.SyncRequest{Volume: v.id})
		if err != nil {
			t.Errorf("Sync: %v", err)
		}
		synced <- st
	}()
	poll.Until(t, time.Minute, b.Name+" receiving the increment", func() error {
		if !b.RecvRunning() {
			return errNotYet
		}
		return nil
	})
	b.Kill()
	st := <-synced
	if i := indexOf(st.Replicas, b.Name); i < 0 || st.Replicas[i].LastError == "" {
		t.Fatalf("the interrupted sync reports no error for %s: %+v", b.Name, st.Replicas)
	}

	b.Start()
	after, snap := replicaSums(t, b, v.id)
	if snap != base {
		t.Fatalf("after the interrupted stream %s's replica is at %s, want its previous snapshot %s", b.Name, snap, base)
	}
	sameFiles(t, "the replica after the interrupted stream", before, after)
	if _, ok := after["large"]; ok {
		t.Fatal("the replica holds part of the interrupted increment")
	}

	setReplicas(t, a, v.id, every, b) // sends on their own again: the next one restarts the stream
	replenv.WaitSynced(t, b, v.id, wrote, 60*every)
	sums, snap := replicaSums(t, b, v.id)
	sameFiles(t, "the replica after the restarted stream, at "+snap, v.files, sums)
	t.Logf("interrupted stream: the replica stayed at %s, then received %s whole", base, snap)
}

type notYet struct{}

func (notYet) Error() string { return "not yet" }

var errNotYet error = notYet{}

func indexOf(rs []api.ReplicaStatus, server string) int {
	for i, r := range rs {
		if r.Server == server {
			return i
		}
	}
	return -1
}
