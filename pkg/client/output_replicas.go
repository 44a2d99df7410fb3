package client

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/capacity"
	"github.com/dots-csi/dots/pkg/registry"
)

// ServerRow is one line of `dots servers`: a server as the controller sees
// it, and its pool claim when that claim is orphaned (its pod gone after a
// scale-down while it holds volumes).
type ServerRow struct {
	registry.ServerView
	Orphaned *api.OrphanedPool `json:"orphanedPool,omitempty"`
}

// WithOrphans joins the orphaned pools to the servers: a server the
// controller lists gets its claim; one it does not (discovery no longer
// names a server without a pod) is added, down.
func WithOrphans(servers []registry.ServerView, orphans []api.OrphanedPool) []ServerRow {
	rows := make([]ServerRow, 0, len(servers)+len(orphans))
	at := map[string]int{}
	for _, s := range servers {
		at[s.Name] = len(rows)
		rows = append(rows, ServerRow{ServerView: s})
	}
	for _, o := range orphans {
		o := o
		if i, ok := at[o.Server]; ok {
			rows[i].Orphaned = &o
			continue
		}
		v := registry.ServerView{}
		v.Name, v.Error = o.Server, "no pod: orphaned pool"
		rows = append(rows, ServerRow{ServerView: v, Orphaned: &o})
	}
	return rows
}

// replicaLine is one replica in `dots volume get`.
func replicaLine(r api.ReplicaStatus, now time.Time) string {
	// A replica never synced has no lag to speak of (its first send is on
	// its way, or failing: see the error).
	parts := []string{"never synced"}
	if !r.LastSync.IsZero() {
		parts = []string{"lag " + seconds(r.LagSeconds), "last sync " + r.LastSync.Local().Format(time.RFC3339) + " (" + now.Sub(r.LastSync).Round(100*time.Millisecond).String() + " ago)"}
	}
	if r.BytesSent > 0 {
		parts = append(parts, "sent "+capacity.Human(r.BytesSent))
	}
	if r.LastError != "" {
		parts = append(parts, "error: "+r.LastError)
	}
	return strings.Join(parts, ", ")
}

func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(100 * time.Millisecond).String()
}

// replicaRows are the rows `dots volume get` adds for a replicated volume.
func replicaRows(v Volume, now time.Time) [][]string {
	if v.Generation == 0 && len(v.Replicas) == 0 {
		return nil
	}
	rows := [][]string{{"Generation", strconv.FormatUint(v.Generation, 10)}}
	for _, r := range v.Replicas {
		rows = append(rows, []string{"Replica " + r.Server, replicaLine(r, now)})
	}
	return rows
}

// replicaServers is the REPLICAS column of `dots volume list`.
func replicaServers(v Volume) string {
	if len(v.Replicas) == 0 {
		return "-"
	}
	names := make([]string, len(v.Replicas))
	for i, r := range v.Replicas {
		names[i] = r.Server
	}
	return strings.Join(names, ",")
}

// Promoted prints what a promotion did.
func (p Printer) Promoted(r api.PromoteVolumeResult) error {
	if p.Format == JSON {
		if r.Replicas == nil {
			r.Replicas = []string{}
		}
		return p.json(r)
	}
	fmt.Fprintf(p.W, "promoted %s: primary %s -> %s (generation %d)\n", r.Volume, orDash(r.From), r.To, r.Generation)
	if r.HandedOver {
		fmt.Fprintf(p.W, "  the old primary handed over its last writes: none lost\n")
	} else {
		at := "its last replication snapshot"
		if !r.SnapshotTime.IsZero() {
			at = r.SnapshotTime.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(p.W, "  the old primary did not answer: writes after %s may be lost (README \"Replicas\")\n", at)
	}
	fmt.Fprintf(p.W, "  replicas: %s\n", orDash(strings.Join(r.Replicas, ", ")))
	if r.HookError != "" {
		fmt.Fprintf(p.W, "  pods using it: %s (restart them by hand)\n", r.HookError)
	}
	return nil
}

// Progress prints one line of a drain or rebalance as it comes: in JSON as
// one compact object per line (JSON lines, like the controller's), in a
// table as a sentence.
func (p Printer) Progress(e api.MoveEvent) error {
	if p.Format == JSON {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.W, "%s\n", b)
		return err
	}
	var line string
	count := fmt.Sprintf("[%d/%d]", e.Done+e.Failed, e.Total)
	switch e.Kind {
	case api.MovePlan:
		line = fmt.Sprintf("%d volume(s) to move", e.Total)
	case api.MovePrimary:
		line = fmt.Sprintf("%s %s: primary %s -> %s (generation %d%s)", count, e.Volume, e.From, e.To, e.Generation, sized(e.Bytes))
	case api.MoveReplica:
		line = fmt.Sprintf("%s %s: replica %s -> %s%s", count, e.Volume, e.From, e.To, sized(e.Bytes))
	case api.MoveFailed:
		line = fmt.Sprintf("%s %s: FAILED: %s", count, e.Volume, e.Error)
	case api.MoveDone:
		line = fmt.Sprintf("done: %d moved, %d failed of %d", e.Done, e.Failed, e.Total)
		if e.Error != "" {
			line += ": stopped early: " + e.Error
		}
	default:
		line = fmt.Sprintf("%s %s %s", e.Kind, e.Volume, e.Error)
	}
	_, err := fmt.Fprintf(p.W, "%s %s\n", e.Time.Local().Format(time.TimeOnly), line)
	return err
}

func sized(n int64) string {
	if n <= 0 {
		return ""
	}
	return ", " + capacity.Human(n)
}
