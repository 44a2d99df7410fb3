//go:build integration

package local

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/pkg/local"
)

// assertServers: `dots servers` shows each server's pool, its size, used
// and free bytes and its volumes, read when asked (not a probe round ago).
func assertServers(t *testing.T, s *stack) {
	t.Helper()
	asked := time.Now()
	var list []struct {
		Name       string    `json:"name"`
		Healthy    bool      `json:"healthy"`
		Pool       string    `json:"pool"`
		PoolHealth string    `json:"poolHealth"`
		Size       int64     `json:"sizeBytes"`
		Used       int64     `json:"usedBytes"`
		Available  int64     `json:"availableBytes"`
		Volumes    *int      `json:"volumes"`
		Checked    time.Time `json:"checked"`
	}
	out := s.must("servers", "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("servers -o json: %v\n%s", err, out)
	}
	for _, v := range list {
		if !v.Healthy || v.PoolHealth != "ONLINE" || !strings.HasPrefix(v.Pool, "dotslocal-") || v.Size <= 0 || v.Used <= 0 ||
			v.Available <= 0 || v.Size != v.Used+v.Available || v.Volumes == nil {
			t.Errorf("server %+v", v)
		}
		// Probed for this question: the stack's own round is every 5 s.
		if v.Checked.Before(asked.Add(-time.Second)) {
			t.Errorf("server %s was last checked %s before it was asked", v.Name, asked.Sub(v.Checked))
		}
	}
	table := s.must("servers")
	for _, col := range []string{"POOL", "SIZE", "USED", "FREE", "VOLUMES", "CHECKED", "ONLINE"} {
		if !strings.Contains(table, col) {
			t.Errorf("servers table lacks %s:\n%s", col, table)
		}
	}
}

type volumeJSON struct {
	ID       string            `json:"id"`
	Capacity int64             `json:"capacityBytes"`
	Used     int64             `json:"usedBytes"`
	Health   []json.RawMessage `json:"health"`
}

// assertVolumeList: listings and gets say what each volume holds and that
// it is healthy, in one shape.
func assertVolumeList(t *testing.T, s *stack, id string) {
	t.Helper()
	var list []volumeJSON
	out := s.must("volume", "list", "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("volume list -o json: %v\n%s", err, out)
	}
	var one volumeJSON
	if err := json.Unmarshal([]byte(s.must("volume", "get", id, "-o", "json")), &one); err != nil {
		t.Fatal(err)
	}
	for _, v := range append(list, one) {
		if v.ID == id && (v.Used <= 0 || v.Used > v.Capacity || v.Health == nil || len(v.Health) != 0) {
			t.Errorf("volume %s: %+v", id, v)
		}
	}
}

// assertRestoreSize: a restore without --size is as large as the snapshot
// (at least 1 MiB), not the controller's default of 1 GiB; a snapshot
// create answers an object with an RFC 3339 time.
func assertRestoreSize(t *testing.T, s *stack, id string) {
	t.Helper()
	var snap struct {
		ID      string `json:"id"`
		Size    int64  `json:"sizeBytes"`
		Created string `json:"created"`
	}
	out := s.must("snapshot", "create", id, "snap-sized", "-o", "json")
	if err := json.Unmarshal([]byte(out), &snap); err != nil || snap.Size <= 0 {
		t.Fatalf("snapshot create -o json is not one snapshot: %v\n%s", err, out)
	}
	if _, err := time.Parse(time.RFC3339, snap.Created); err != nil {
		t.Errorf("created %q: %v", snap.Created, err)
	}
	var v volumeJSON
	if err := json.Unmarshal([]byte(s.must("snapshot", "restore", snap.ID, "restored-sized", "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if want := max(snap.Size, 1<<20); v.Capacity != want {
		t.Errorf("restore without --size: %d bytes, want the snapshot's %d", v.Capacity, want)
	}
	s.must("volume", "delete", v.ID)
	s.must("snapshot", "delete", snap.ID)
}

// assertServerMetrics reads each storage server's /metrics: the pool's
// state and space, the NFS server and the build, and on the server holding
// it, the volume's series; all from the background refresh (every 5 s in
// the stack), so polled.
func assertServerMetrics(t *testing.T, state, holder, volume string) {
	t.Helper()
	info, err := local.ReadInfo(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range info.Servers {
		wants := []string{
			fmt.Sprintf(`dots_pool_health{pool=%q,state="ONLINE"} 1`, srv.Pool),
			fmt.Sprintf(`dots_pool_info{pool=%q,sizes="rounded",zfs_cli="zfs-fuse"} 1`, srv.Pool),
			fmt.Sprintf(`dots_pool_stats_up{pool=%q} 1`, srv.Pool),
			fmt.Sprintf(`dots_pool_size_bytes{pool=%q}`, srv.Pool),
			fmt.Sprintf(`dots_pool_available_bytes{pool=%q}`, srv.Pool),
			fmt.Sprintf(`dots_pool_stats_age_seconds{pool=%q}`, srv.Pool),
			`dots_ganesha_up 1`, `dots_ganesha_restarts_total 0`, `dots_build_info{`,
		}
		if srv.Name == holder {
			wants = append(wants, fmt.Sprintf(`dots_volume_used_bytes{volume=%q}`, volume), `dots_nfs_exports `)
		}
		poll.Until(t, 30*time.Second, "server "+srv.Name+" metrics", func() error {
			resp, err := http.Get("http://" + srv.HTTP + "/metrics")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			for _, w := range wants {
				if !strings.Contains(string(b), w) {
					return fmt.Errorf("no %s", w)
				}
			}
			return nil
		})
	}
}
