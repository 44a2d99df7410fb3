package client

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/dots-csi/dots/pkg/capacity"
	"github.com/dots-csi/dots/pkg/registry"
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
		rows = append(rows, []string{v.ID, capacity.Human(v.Capacity), v.Server, nfsExport(v), portOrDefault(v.NFSPort), orDash(v.Source)})
	}
	return p.table([]string{"ID", "SIZE", "SERVER", "NFS EXPORT", "PORT", "SOURCE"}, rows)
}

// Volume prints one volume in detail.
func (p Printer) Volume(v Volume) error {
	if p.Format == JSON {
		return p.json(v)
	}
	rows := [][]string{{"ID", v.ID}, {"Size", capacity.Human(v.Capacity) + " (" + strconv.FormatInt(v.Capacity, 10) + " bytes)"},
		{"Server", v.Server}, {"NFS address", v.NFSAddress}, {"NFS port", portOrDefault(v.NFSPort)}, {"Export", v.Export},
		{"Mount with", "mount -t nfs4 -o vers=4.1,port=" + portOrDefault(v.NFSPort) + " " + v.NFSAddress + ":" + v.Export + " DIR"},
		{"Source", orDash(v.Source)}}
	if v.LocalPath != "" {
		rows = append(rows, []string{"Local path", v.LocalPath})
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
		rows = append(rows, []string{s.ID, s.SourceVolume, capacity.Human(s.Size), s.Created, strconv.FormatBool(s.Ready)})
	}
	return p.table([]string{"ID", "SOURCE VOLUME", "RESTORE SIZE", "CREATED", "READY"}, rows)
}

// Servers prints storage servers.
func (p Printer) Servers(ss []registry.ServerView) error {
	if p.Format == JSON {
		if ss == nil {
			ss = []registry.ServerView{}
		}
		return p.json(ss)
	}
	rows := make([][]string, 0, len(ss))
	for _, s := range ss {
		state := "up"
		if !s.Healthy {
			state = "down: " + s.Error
		}
		rows = append(rows, []string{s.Name, state, capacity.Human(s.Available), capacity.Human(s.Provisioned),
			strconv.Itoa(s.Volumes), s.NFSAddress + ":" + portOrDefault(s.NFSPort), s.APIAddress})
	}
	return p.table([]string{"SERVER", "STATE", "FREE", "PROVISIONED", "VOLUMES", "NFS", "API"}, rows)
}

// Stats prints a mounted volume's usage.
func (p Printer) Stats(s Stats) error {
	if p.Format == JSON {
		return p.json(s)
	}
	cond := "normal"
	if s.Abnormal {
		cond = "ABNORMAL: " + s.Message
	}
	return p.table([]string{"USED", "AVAILABLE", "TOTAL", "INODES USED", "INODES FREE", "CONDITION"},
		[][]string{{capacity.Human(s.UsedBytes), capacity.Human(s.AvailableBytes), capacity.Human(s.TotalBytes),
			strconv.FormatInt(s.UsedInodes, 10), strconv.FormatInt(s.AvailableInodes, 10), cond}})
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
