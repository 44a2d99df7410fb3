package client

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dots-csi/dots/pkg/capacity"
)

// Format is "table" (for people) or "json" (for scripts).
type Format string

// Formats the client writes.
const (
	Table Format = "table"
	JSON  Format = "json"
)

// ParseFormat checks -o.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case Table, JSON:
		return Format(s), nil
	}
	return "", fmt.Errorf("-o %q: want table or json", s)
}

// Printer writes results in one format.
type Printer struct {
	W      io.Writer
	Format Format
}

func (p Printer) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(p.W, 0, 4, 2, ' ', 0)
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func (p Printer) json(v any) error {
	enc := json.NewEncoder(p.W)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func nfsExport(v Volume) string {
	return v.NFSAddress + ":" + v.Export
}

// Volumes prints volumes.
func (p Printer) Volumes(vs []Volume) error {
	if p.Format == JSON {
		if vs == nil {
			vs = []Volume{}
		}
		return p.json(vs)
	}
	rows := make([][]string, 0, len(vs))
	for _, v := range vs {
		rows = append(rows, []string{v.ID, capacity.Human(v.Capacity), capacity.Human(v.Used), healthText(v.Health, v.HealthKnown),
			v.Server, replicaServers(v), nfsExport(v), portOrDefault(v.NFSPort), orDash(v.Source)})
	}
	return p.table([]string{"ID", "SIZE", "USED", "HEALTH", "SERVER", "REPLICAS", "NFS EXPORT", "PORT", "SOURCE"}, rows)
}

// Volume prints one volume in detail.
func (p Printer) Volume(v Volume) error {
	if p.Format == JSON {
		return p.json(v)
	}
	rows := [][]string{{"ID", v.ID}, {"Size", capacity.Human(v.Capacity) + " (" + strconv.FormatInt(v.Capacity, 10) + " bytes)"},
		{"Used", capacity.Human(v.Used) + " (" + strconv.FormatInt(v.Used, 10) + " bytes)"},
		{"Health", healthText(v.Health, v.HealthKnown)},
		{"Server", v.Server}, {"NFS address", v.NFSAddress}, {"NFS port", portOrDefault(v.NFSPort)}, {"Export", v.Export},
		{"Mount with", "mount -t nfs4 -o vers=4.1,port=" + portOrDefault(v.NFSPort) + " " + v.NFSAddress + ":" + v.Export + " DIR"},
		{"Source", orDash(v.Source)}}
	rows = append(rows, replicaRows(v, time.Now())...)
	if v.LocalPath != "" {
		rows = append(rows, []string{"Local path", v.LocalPath})
	}
	for _, e := range v.Health {
		rows = append(rows, []string{"Health: " + e.Reason, e.Status + ": " + e.Message})
	}
	return p.table([]string{"FIELD", "VALUE"}, rows)
}

// Snapshots prints snapshots.
func (p Printer) Snapshots(ss []Snapshot) error {
	if p.Format == JSON {
		if ss == nil {
			ss = []Snapshot{}
		}
		return p.json(ss)
	}
	rows := make([][]string, 0, len(ss))
	for _, s := range ss {
		rows = append(rows, []string{s.ID, s.SourceVolume, capacity.Human(s.Size), s.Created.Format(time.RFC3339), strconv.FormatBool(s.Ready)})
	}
	return p.table([]string{"ID", "SOURCE VOLUME", "RESTORE SIZE", "CREATED", "READY"}, rows)
}

// Snapshot prints one snapshot, as an object in JSON like every create.
func (p Printer) Snapshot(s Snapshot) error {
	if p.Format == JSON {
		return p.json(s)
	}
	return p.Snapshots([]Snapshot{s})
}

// Servers prints storage servers. Size, used and free are the pool's
// root dataset's (what volumes can use), as read when the controller
// answered; CHECKED says how long ago that was. REPLICAS counts the
// replicas of volumes it holds; an orphaned pool (its pod gone after a
// scale-down, README "Replicas") shows in STATE.
func (p Printer) Servers(ss []ServerRow) error {
	if p.Format == JSON {
		if ss == nil {
			ss = []ServerRow{}
		}
		return p.json(ss)
	}
	now := time.Now()
	rows := make([][]string, 0, len(ss))
	for _, s := range ss {
		state := "up"
		if !s.Healthy {
			state = "down: " + s.Error
		}
		free, provisioned := capacity.Human(s.Available), capacity.Human(s.Provisioned)
		volumes, replicas := strconv.Itoa(s.Volumes), strconv.Itoa(s.Replicas)
		if o := s.Orphaned; o != nil {
			state = fmt.Sprintf("ORPHANED pool %s/%s (statefulset %s: replicas=%d; %s)", o.Namespace, o.Claim, o.StatefulSet, o.Replicas, heldVolumes(o.Volumes))
			if s.Checked.IsZero() {
				free, provisioned, volumes, replicas = "-", "-", "-", "-" // never probed: nothing known
			}
		}
		size, used := "-", "-"
		if s.Size > 0 {
			size, used = capacity.Human(s.Size), capacity.Human(s.Used)
		}
		checked := "never"
		if !s.Checked.IsZero() {
			checked = now.Sub(s.Checked).Round(100*time.Millisecond).String() + " ago"
		}
		rows = append(rows, []string{s.Name, state, orDash(s.PoolHealth), size, used, free,
			provisioned, volumes, replicas, checked, nfsOf(s), orDash(s.APIAddress)})
	}
	return p.table([]string{"SERVER", "STATE", "POOL", "SIZE", "USED", "FREE", "PROVISIONED", "VOLUMES", "REPLICAS", "CHECKED", "NFS", "API"}, rows)
}

// Stats prints a mounted volume's usage.
func (p Printer) Stats(s Stats) error {
	if p.Format == JSON {
		return p.json(s)
	}
	cond := "normal"
	if len(s.Health) > 0 {
		var parts []string
		for _, e := range s.Health {
			parts = append(parts, e.Status+" "+e.Reason+": "+e.Message)
		}
		cond = "ABNORMAL: " + strings.Join(parts, "; ")
	}
	return p.table([]string{"USED", "AVAILABLE", "TOTAL", "INODES USED", "INODES FREE", "CONDITION"},
		[][]string{{capacity.Human(s.UsedBytes), capacity.Human(s.AvailableBytes), capacity.Human(s.TotalBytes),
			strconv.FormatInt(s.UsedInodes, 10), strconv.FormatInt(s.AvailableInodes, 10), cond}})
}

func nfsOf(s ServerRow) string {
	if s.NFSAddress == "" {
		return "-"
	}
	return s.NFSAddress + ":" + portOrDefault(s.NFSPort)
}

func heldVolumes(n int) string {
	if n < 0 {
		return "may hold volumes"
	}
	return "volumes: " + strconv.Itoa(n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func portOrDefault(p int) string {
	if p == 0 {
		return "2049"
	}
	return strconv.Itoa(p)
}

// Action is what a command that changes something (other than a create)
// did: in JSON an object like every other answer, in a table its sentence.
type Action struct {
	ID     string `json:"id"`
	Action string `json:"action"`           // deleted, published, unpublished, mounted, unmounted, written
	Target string `json:"target,omitempty"` // the mount target, or the file inside the volume
	Bytes  int    `json:"bytes,omitempty"`  // bytes written
	Text   string `json:"-"`                // the sentence a table shows
}

// Done prints an action.
func (p Printer) Done(a Action) error {
	if p.Format == JSON {
		return p.json(a)
	}
	_, err := fmt.Fprintln(p.W, a.Text)
	return err
}
