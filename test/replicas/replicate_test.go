//go:build integration

package replicas

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/replenv"
	"github.com/dots-csi/dots/pkg/api"
)

// TestReplicate: a volume written through NFS on its primary is on both
// its replicas' servers, byte for byte, once each holds a snapshot newer
// than the writes; the primary reports its replicas and their lag; the
// lag (of the first replica) is measured at idle and under a steady write
// load.
func TestReplicate(t *testing.T) {
	srv := cluster(t, 3)
	a, b, c := srv[0], srv[1], srv[2]
	every := interval()
	v := newVolume(t, a, "replicated", 256<<20, every, b, c)
	for i := range 8 {
		v.mustWrite(t, a, fmt.Sprintf("f-%d", i), replenv.RandomData(t, (i+1)*128<<10))
	}
	wrote := time.Now()
	for _, r := range []*replenv.Server{b, c} {
		st := replenv.WaitSynced(t, r, v.id, wrote, 30*every)
		if st.Role != api.RoleReplica || st.Generation != 1 {
			t.Fatalf("the replica's state on %s: %+v", r.Name, st)
		}
		sums, snap := replicaSums(t, r, v.id)
		sameFiles(t, r.Name+"'s replica at "+snap, v.files, sums)
	}

	// The primary reports its replica: context, health, metrics.
	ctx := context.Background()
	got, err := a.CSI().ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.id})
	if err != nil {
		t.Fatal(err)
	}
	vc := got.GetVolume().GetVolumeContext()
	var reps []api.ReplicaStatus
	if err := json.Unmarshal([]byte(vc[api.ContextReplicas]), &reps); err != nil || len(reps) != 2 || reps[0].Server != b.Name ||
		reps[1].Server != c.Name || reps[0].LastSync.IsZero() || reps[1].LastSync.IsZero() {
		t.Fatalf("context %s=%q (%v), want replicas %s and %s with a sync", api.ContextReplicas, vc[api.ContextReplicas], err, b.Name, c.Name)
	}
	if vc[api.ContextGeneration] != "1" {
		t.Fatalf("context %s=%q, want 1", api.ContextGeneration, vc[api.ContextGeneration])
	}
	if m := a.Metrics(t); !strings.Contains(m, fmt.Sprintf(`dots_replica_lag_seconds{server=%q,volume=%q}`, b.Name, v.id)) ||
		!strings.Contains(m, fmt.Sprintf(`dots_replication_bytes_sent_total{server=%q}`, b.Name)) {
		t.Fatalf("the primary's metrics lack the replica's lag or bytes sent")
	}
	info, err := b.Identity().GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil || info.GetManifest()[api.ManifestReplicas] != "1" || info.GetManifest()[api.ManifestVolumesPath] == "" {
		t.Fatalf("the replica server's manifest: %v, %v", info.GetManifest(), err)
	}
	// Nothing of a replica is served by its server.
	if _, err := readNFS(t, b, v.export, "f-0"); err == nil {
		t.Fatalf("%s serves %s, of which it holds only a replica", b.Name, v.export)
	}

	window := 10 * time.Second
	if !testing.Short() {
		window = 30 * time.Second
	}
	// What an idle volume's replication costs: steps (one per replica and
	// interval: its State, a stream and pruning, the interval's snapshot
	// shared) and the zfs commands the three servers ran for them.
	commands := func() float64 {
		return a.MetricSum(t, "dots_zfs_commands_total") + b.MetricSum(t, "dots_zfs_commands_total") + c.MetricSum(t, "dots_zfs_commands_total")
	}
	steps0, secs0, cmds0 := a.MetricSum(t, "dots_replication_seconds_count"), a.MetricSum(t, "dots_replication_seconds_sum"), commands()
	idle := sampleLag(t, a, v.id, b.Name, window, nil)
	report(t, "idle", idle, every, 0)
	steps := a.MetricSum(t, "dots_replication_seconds_count") - steps0
	if steps == 0 {
		t.Fatal("no replication step while idle")
	}
	cmds := commands() - cmds0
	fmt.Printf("replication-idle-step: replicas=2 steps=%.0f step_s_mean=%.3f zfs_commands_per_step=%.1f interval_s=%.0f\n",
		steps, (a.MetricSum(t, "dots_replication_seconds_sum")-secs0)/steps, cmds/steps, every.Seconds())
	// A steady load: a 128 KiB file every 100 ms (about 1.3 MB/s, what
	// the volume holds over the longest window).
	var written int64
	load := sampleLag(t, a, v.id, b.Name, window, func(stop <-chan struct{}) {
		pace := time.NewTicker(100 * time.Millisecond)
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-pace.C:
			}
			data := replenv.RandomData(t, 128<<10)
			if err := v.write(t, a, fmt.Sprintf("load-%d", i), data); err != nil {
				t.Errorf("write under load: %v", err)
				return
			}
			written += int64(len(data))
		}
	})
	report(t, "writes", load, every, float64(written)/window.Seconds())
	// Everything written under load reaches both replicas too.
	done := time.Now()
	for _, r := range []*replenv.Server{b, c} {
		replenv.WaitSynced(t, r, v.id, done, 30*every)
		sums, snap := replicaSums(t, r, v.id)
		sameFiles(t, r.Name+"'s replica after the load, at "+snap, v.files, sums)
	}
}

// sampleLag samples the primary's reported lag of one replica for window
// (a sample every 100 ms), while load (if any) runs.
func sampleLag(t *testing.T, primary *replenv.Server, id, replica string, window time.Duration, load func(stop <-chan struct{})) []float64 {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if load != nil {
		wg.Go(func() { load(stop) })
	}
	var lags []float64
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	end := time.After(window)
	for done := false; !done; {
		select {
		case <-end:
			done = true
		case <-tick.C:
			st := primary.ReplicaStatus(t, id, replica)
			if st.LastError != "" {
				t.Logf("replica %s: %s", replica, st.LastError)
			}
			lags = append(lags, st.LagSeconds)
		}
	}
	close(stop)
	wg.Wait()
	slices.Sort(lags)
	return lags
}

func report(t *testing.T, load string, lags []float64, every time.Duration, writeRate float64) {
	t.Helper()
	line := fmt.Sprintf("replication: load=%s lag_p50_s=%.2f lag_p99_s=%.2f interval_s=%.0f samples=%d", load,
		percentile(lags, 0.5), percentile(lags, 0.99), every.Seconds(), len(lags))
	if writeRate > 0 {
		line += fmt.Sprintf(" write_bytes_per_s=%.0f", writeRate)
	}
	fmt.Println(line)
	// An idle replica lags at most an interval plus a small send: the
	// abnormal bound means replication stalled. (Under load, on a shared
	// machine, the figure is reported, not judged.)
	if p99 := percentile(lags, 0.99); writeRate == 0 && p99 > float64(api.ReplicaAbnormalIntervals)*every.Seconds() {
		t.Errorf("lag p99 %.2fs over %d intervals (%s): replication does not keep up", p99, api.ReplicaAbnormalIntervals, every)
	}
}
