package api

import (
	"testing"
	"time"
)

func TestPoolInfoManifest(t *testing.T) {
	at := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	in := PoolInfo{Pool: "p", Health: "ONLINE", Size: 100, Used: 40, Available: 60, ReadAt: at,
		HasCounts: true, Volumes: 3, Snapshots: 2, Provisioned: 30}
	m := map[string]string{}
	in.Manifest(m)
	out, ok := ParsePoolInfo(m)
	if !ok || out != in {
		t.Errorf("round trip: %+v, %v; want %+v", out, ok, in)
	}
	// Without counts (an older server): the space still parses.
	in.HasCounts, in.Volumes, in.Snapshots, in.Provisioned = false, 0, 0, 0
	m = map[string]string{}
	in.Manifest(m)
	if out, ok := ParsePoolInfo(m); !ok || out != in {
		t.Errorf("without counts: %+v, %v; want %+v", out, ok, in)
	}
	if _, ok := ParsePoolInfo(map[string]string{ManifestPool: "p"}); ok {
		t.Error("a manifest without figures parsed as complete")
	}
}
