package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/registry"
)

// fakeAdmin serves the controller's admin paths on a unix socket.
func fakeAdmin(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	c, err := Dial("unix://"+filepath.Join(t.TempDir(), "csi.sock"), "unix://"+sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPromote(t *testing.T) {
	var got api.PromoteVolumeRequest
	c := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != api.AdminPathPromote {
			http.NotFound(w, r)
			return
		}
		_ = json.NewDecoder(r.Body).Decode(&got)
		if got.To == "s9" {
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(api.AdminError{Error: "s9 holds no replica of s0/v: not a replica"})
			return
		}
		_ = json.NewEncoder(w).Encode(api.PromoteVolumeResult{Volume: got.Volume, From: "s0", To: "s1", Generation: 3, Replicas: []string{"s0"}})
	})
	res, err := c.Promote(context.Background(), "s0/v", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if got != (api.PromoteVolumeRequest{Volume: "s0/v", To: "s1"}) || res.To != "s1" || res.Generation != 3 {
		t.Fatalf("sent %+v, got %+v", got, res)
	}
	_, err = c.Promote(context.Background(), "s0/v", "s9")
	var ae *AdminError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Message != "s9 holds no replica of s0/v: not a replica" {
		t.Fatalf("refused promotion: %v", err)
	}
	text := Explain(err, Context{Kind: "volume", ID: "s0/v"})
	for _, want := range []string{"Conflict: s9 holds no replica", "hint: ", "dots volume get s0/v"} {
		if !strings.Contains(text, want) {
			t.Errorf("explained %q lacks %q", text, want)
		}
	}
}

// TestDrainStreams: each progress line reaches the caller as the
// controller sends it, before the stream ends (the controller here sends
// the rest only once the client saw the first).
func TestDrainStreams(t *testing.T) {
	seen := make(chan api.MoveEvent, 10)
	var req api.DrainRequest
	c := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.AdminPathDrain {
			http.NotFound(w, r)
			return
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		enc := json.NewEncoder(w)
		_ = enc.Encode(api.MoveEvent{Kind: api.MovePlan, Total: 2})
		w.(http.Flusher).Flush()
		select {
		case <-seen:
		case <-r.Context().Done():
			return
		}
		_ = enc.Encode(api.MoveEvent{Kind: api.MovePrimary, Volume: "s0/a", From: "s0", To: "s1", Generation: 2, Done: 1, Total: 2})
		_ = enc.Encode(api.MoveEvent{Kind: api.MoveFailed, Volume: "s0/b", Error: "no room", Done: 1, Failed: 1, Total: 2})
		_ = enc.Encode(api.MoveEvent{Kind: api.MoveDone, Done: 1, Failed: 1, Total: 2})
	})
	var kinds []api.MoveKind
	last, err := c.Drain(context.Background(), "s0", func(e api.MoveEvent) error {
		kinds = append(kinds, e.Kind)
		seen <- e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if req.Server != "s0" || last.Kind != api.MoveDone || last.Failed != 1 || len(kinds) != 4 {
		t.Fatalf("request %+v, lines %v, last %+v", req, kinds, last)
	}
}

func TestMovesCut(t *testing.T) {
	c := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(api.MoveEvent{Kind: api.MovePlan, Total: 5})
	})
	if _, err := c.Rebalance(context.Background(), func(api.MoveEvent) error { return nil }); !errors.Is(err, ErrMovesCut) {
		t.Fatalf("a stream without its final line: %v", err)
	}
}

func TestOrphanedPools(t *testing.T) {
	orphans := []api.OrphanedPool{{Server: "s2", Namespace: "dots", Claim: "pool-s-2", StatefulSet: "s", Ordinal: 2, Replicas: 2, Volumes: 4}}
	c := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/servers":
			_ = json.NewEncoder(w).Encode([]registry.ServerView{{Server: discovery.Server{Name: "s1"}, Status: registry.Status{Healthy: true, Replicas: 3}}})
		case api.AdminPathOrphans:
			_ = json.NewEncoder(w).Encode(orphans)
		default:
			http.NotFound(w, r)
		}
	})
	ctx := context.Background()
	servers, err := c.Servers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.OrphanedPools(ctx)
	if err != nil || len(got) != 1 || got[0] != orphans[0] {
		t.Fatalf("orphans %+v, %v", got, err)
	}
	rows := WithOrphans(servers, got)
	if len(rows) != 2 || rows[0].Orphaned != nil || rows[1].Name != "s2" || rows[1].Orphaned == nil || rows[1].Healthy {
		t.Fatalf("rows %+v", rows)
	}
	var buf bytes.Buffer
	if err := (Printer{W: &buf, Format: Table}).Servers(rows); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"REPLICAS", "ORPHANED pool dots/pool-s-2 (statefulset s: replicas=2; volumes: 4)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	// A controller without the path: no orphans, no error.
	old := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	if got, err := old.OrphanedPools(ctx); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("orphans of an older controller: %v, %v", got, err)
	}
}

func TestVolumeReplicas(t *testing.T) {
	now := time.Now()
	reps := []api.ReplicaStatus{{Peer: api.Peer{Server: "s1"}, LastSync: now.Add(-3 * time.Second), LagSeconds: 3.04, BytesSent: 2 << 20},
		{Peer: api.Peer{Server: "s2"}, LagSeconds: 0, LastError: "connection refused"}}
	b, _ := json.Marshal(reps)
	f := &fakeController{created: map[string]int64{}}
	csiVol := f.volume("s0/v", 1<<30)
	csiVol.VolumeContext[api.ContextGeneration] = "4"
	csiVol.VolumeContext[api.ContextReplicas] = string(b)
	v := volumeOf(csiVol)
	if v.Generation != 4 || len(v.Replicas) != 2 || v.Replicas[0].Server != "s1" || v.Replicas[1].LastError != "connection refused" {
		t.Fatalf("volume %+v", v)
	}
	var buf bytes.Buffer
	if err := (Printer{W: &buf, Format: Table}).Volume(v); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Generation", "4", "Replica s1", "lag 3s, last sync ", "sent 2.0MiB", "Replica s2", "never synced, error: connection refused"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if err := (Printer{W: &buf, Format: Table}).Volumes([]Volume{v, volumeOf(f.volume("s0/w", 1))}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "s1,s2") {
		t.Errorf("list lacks the replicas:\n%s", buf.String())
	}
	// Unreplicated: no replica keys in JSON, as before.
	buf.Reset()
	_ = (Printer{W: &buf, Format: JSON}).Volume(volumeOf(f.volume("s0/w", 1)))
	if strings.Contains(buf.String(), "replicas") || strings.Contains(buf.String(), "generation") {
		t.Errorf("an unreplicated volume's JSON has replica keys:\n%s", buf.String())
	}
}
