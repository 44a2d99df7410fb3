//go:build integration

package replicas

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/replenv"
	"github.com/dots-csi/dots/pkg/api"
)

// ack is a write the client saw acknowledged.
type ack struct {
	name string
	sum  string
	size int
	at   time.Time
}

// TestPromoteAfterLoss: the primary's server is killed under a client's
// writes and its pool destroyed (its PV is lost). The replica is promoted
// as soon as the kill is seen; it serves every write acknowledged before
// its last completed sync, byte for byte, and takes new writes. RPO is
// the age, at the kill, of the newest write the replica holds; RTO the
// time from the kill to the first write acknowledged by the new primary
// (a manual promotion issued at once; the controller's --promote-after
// adds its delay to it).
func TestPromoteAfterLoss(t *testing.T) {
	srv := cluster(t, 2)
	a, b := srv[0], srv[1]
	every := interval()
	v := newVolume(t, a, "promoted", 256<<20, every, b)
	v.mustWrite(t, a, "before", replenv.RandomData(t, 1<<20))
	replenv.WaitSynced(t, b, v.id, time.Now(), 30*every)

	// A client writes small files back to back until the server dies.
	var mu sync.Mutex
	var acks []ack
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data := replenv.RandomData(t, 16<<10)
			name := fmt.Sprintf("w-%05d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := a.NFS().WriteFile(ctx, v.export, name, data)
			cancel()
			if err != nil {
				return // the server is gone
			}
			mu.Lock()
			acks = append(acks, ack{name: name, sum: replenv.Sum(data), size: len(data), at: time.Now()})
			mu.Unlock()
		}
	})
	// Writes over a few intervals, so syncs happen under them.
	poll.Until(t, 60*every, "writes over three intervals", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acks) == 0 || acks[len(acks)-1].at.Sub(acks[0].at) < 3*every {
			return fmt.Errorf("%d writes", len(acks))
		}
		return nil
	})
	killed := time.Now()
	a.Kill()

	// The kill is seen: promote the replica at its newest snapshot.
	ctx := context.Background()
	st, err := b.Replication().State(ctx, v.id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Replication().Promote(ctx, api.PromoteRequest{Volume: v.id, Generation: st.Generation + 1, Expect: st.Latest, Interval: every}); err != nil {
		t.Fatalf("promoting %s on %s: %v", v.id, b.Name, err)
	}
	promoted := time.Since(killed)
	probe := replenv.RandomData(t, 4<<10)
	poll.Until(t, time.Minute, "a write on the new primary", func() error {
		return v.write(t, b, "after-promotion", probe)
	})
	rto := time.Since(killed)
	// The client's last write, to the dead server, ends at its deadline.
	close(stop)
	wg.Wait()
	a.DestroyPool() // the PV is lost: everything below comes from b alone

	// Every write acknowledged before the last sync is there, whole.
	var lost int64
	var newest time.Time
	for _, w := range acks {
		data, err := readNFS(t, b, v.export, w.name)
		switch {
		case err == nil && replenv.Sum(data) == w.sum:
			newest = w.at
		case w.at.Before(st.LatestTime):
			t.Errorf("%s, acknowledged at %s before the last sync %s, is missing or different on the new primary: %v",
				w.name, w.at.Format(time.RFC3339Nano), st.LatestTime.Format(time.RFC3339Nano), err)
		default:
			lost += int64(w.size)
		}
	}
	for name, sum := range map[string]string{"before": v.files["before"], "after-promotion": v.files["after-promotion"]} {
		if data, err := readNFS(t, b, v.export, name); err != nil || replenv.Sum(data) != sum {
			t.Errorf("%s on the new primary: %v", name, err)
		}
	}
	if newest.IsZero() {
		t.Fatalf("none of %d writes under way reached the replica", len(acks))
	}
	got, err := b.CSI().ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.id})
	if err != nil || got.GetVolume().GetVolumeId() != v.id {
		t.Fatalf("the new primary's ControllerGetVolume: %v", err)
	}
	fmt.Printf("promotion: rpo_s=%.2f rto_s=%.2f lost_after_last_sync_bytes=%d interval_s=%.0f writes=%d promote=manual_at_kill promoted_s=%.2f\n",
		killed.Sub(newest).Seconds(), rto.Seconds(), lost, every.Seconds(), len(acks), promoted.Seconds())
}
