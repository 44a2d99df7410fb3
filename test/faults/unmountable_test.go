//go:build integration

package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/serverenv"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/server"
)

// TestUnmountableAtStart: one volume's dataset cannot mount when a server
// starts (its mountpoint directory is not empty). The server starts, serves
// the other volumes, reports that one INACCESSIBLE and does not export it;
// once the obstacle is gone, it mounts and serves it without a restart.
func TestUnmountableAtStart(t *testing.T) {
	start := time.Now()
	s := serverenv.Start(t, "dotsf", "unmountable", func(c *server.Config) {
		c.ExportOnExit, c.ReconcileInterval = true, time.Second
	})
	ctrl, _ := s.Client()
	ctx := context.Background()
	data := map[string]string{}
	for _, name := range []string{"fine", "blocked"} {
		resp, err := ctrl.CreateVolume(ctx, createReq(name, 16<<20))
		if err != nil {
			t.Fatal(err)
		}
		data[name] = resp.GetVolume().GetVolumeContext()[api.ContextLocalPath]
		if err := os.WriteFile(filepath.Join(data[name], "data"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Stop (the pool is exported), put a file where "blocked" mounts, start.
	s.Stop()
	testenv.Zpool(t, "import", "-d", s.Pool.Dir, s.Pool.Name)
	testenv.Zfs(t, "umount", s.Pool.Name+"/dots/volumes/blocked")
	blocker := filepath.Join(data["blocked"], "blocker")
	if err := os.WriteFile(blocker, []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Zpool(t, "export", s.Pool.Name)
	s.Start()
	ctrl, _ = s.Client()

	if got, err := os.ReadFile(filepath.Join(data["fine"], "data")); err != nil || string(got) != "fine" {
		t.Errorf("the mountable volume after the start: %q %v", got, err)
	}
	if ex := s.ExportedPseudos(t); !ex["/dots/fine"] || ex["/dots/blocked"] {
		t.Errorf("exports after the start: %v (want fine, not blocked)", ex)
	}
	h, err := ctrl.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: "blocked"})
	if err != nil || len(h.GetVolumeHealth().GetHealthStatuses()) != 1 ||
		h.GetVolumeHealth().GetHealthStatuses()[0].GetStatus() != csi.VolumeHealthErrorType_INACCESSIBLE {
		t.Errorf("health of the unmounted volume: %v %v", h, err)
	}
	// A create of it again fails Unavailable rather than export it.
	if _, err := ctrl.CreateVolume(ctx, createReq("blocked", 16<<20)); status.Code(err) != codes.Unavailable {
		t.Errorf("create of the unmountable volume: %v, want Unavailable", err)
	}
	// The reconciler's first pass runs beside the server's start.
	metric := fmt.Sprintf("dots_server_orphans{kind=%q} 1", "unmounted_volume")
	if err := poll.Wait(10*time.Second, func() error {
		if !containsLine(s.Metrics(t), metric) {
			return errors.New("not counted yet")
		}
		return nil
	}); err != nil {
		t.Errorf("metrics lack %s", metric)
	}

	// The obstacle goes: the reconciler mounts and exports it.
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the volume served again", func() error {
		if !s.ExportedPseudos(t)["/dots/blocked"] {
			return errors.New("not exported yet")
		}
		return nil
	})
	if got, err := os.ReadFile(filepath.Join(data["blocked"], "data")); err != nil || string(got) != "blocked" {
		t.Errorf("the recovered volume's data: %q %v", got, err)
	}
	h, _ = ctrl.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: "blocked"})
	if len(h.GetVolumeHealth().GetHealthStatuses()) != 0 {
		t.Errorf("recovered volume still unhealthy: %v", h)
	}
	fmt.Printf("faults: unmountable-at-start ok acked=2 lost=0 orphans=0 duration_s=%.1f served=1 unmounted=1 recovered=1\n", time.Since(start).Seconds())
}
