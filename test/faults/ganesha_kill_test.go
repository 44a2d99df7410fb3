//go:build integration

package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/serverenv"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/server"
)

// TestGaneshaKilledUnderWrites: NFS-Ganesha is SIGKILLed while a client
// writes file after file through the export. It comes back, the writes go
// on, and every write the client saw acknowledged is there, whole.
func TestGaneshaKilledUnderWrites(t *testing.T) {
	start := time.Now()
	testenv.EnsureRpcbind(t) // libnfs writes over NFSv3
	mountPort := testenv.FreeTCPPorts(t, 1)[0]
	s := serverenv.Start(t, "dotsf", "ganesha", func(c *server.Config) {
		c.NFS.Protocols, c.NFS.MountPort = []int{3, 4}, mountPort
		// libnfs writes as root, and never reclaims after a restart.
		c.NFS.Squash = nfs.SquashNone
		c.NFS.GracePeriod, c.NFS.LeaseLifetime = 2*time.Second, 2*time.Second
	})
	ctrl, _ := s.Client()
	ctx := context.Background()
	resp, err := ctrl.CreateVolume(ctx, createReq("written", 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	export := resp.GetVolume().GetVolumeContext()[api.ContextExport]
	client := libnfs.Client{Host: "127.0.0.1", Port: s.Config.NFS.NFSPort, MountPort: mountPort, Version: 3}

	const files = 40
	acked := map[string][]byte{}
	var killedAt, backAt time.Time
	old := ganeshaOf(t, s)
	for i := 0; len(acked) < files; i++ {
		if len(acked) == files/4 && killedAt.IsZero() {
			if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killedAt = time.Now()
		}
		data := make([]byte, 3000) // libnfs writes up to ~3.5 KB in one go
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
		// A write whose outcome is unknown is not retried under its name
		// (NFSv3 create cannot overwrite): the next attempt is a new file.
		name := fmt.Sprintf("record-%04d", i)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := client.WriteFile(wctx, export, name, data)
		cancel()
		if err != nil {
			if time.Since(start) > 2*time.Minute {
				t.Fatalf("writes still failing after two minutes: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !killedAt.IsZero() && backAt.IsZero() {
			backAt = time.Now()
		}
		acked[name] = data
	}
	if pid := ganeshaOf(t, s); pid == old {
		t.Fatalf("ganesha %d was not replaced", old)
	}
	lost := 0
	for name, want := range acked {
		var got []byte
		if err := poll.Wait(30*time.Second, func() error {
			var err error
			got, err = client.ReadFile(ctx, export, name)
			return err
		}); err != nil || !bytes.Equal(got, want) {
			lost++
			t.Errorf("acknowledged %s: %d bytes back, %v", name, len(got), err)
		}
	}
	fmt.Printf("faults: ganesha-kill ok acked=%d lost=%d orphans=0 duration_s=%.1f first_write_after_kill_s=%.2f\n",
		len(acked), lost, time.Since(start).Seconds(), backAt.Sub(killedAt).Seconds())
}

// ganeshaOf is the pid of the server's running ganesha.
func ganeshaOf(t *testing.T, s *serverenv.Server) int {
	t.Helper()
	var pid int
	poll.Until(t, 30*time.Second, "the server's ganesha running", func() error {
		for _, p := range testenv.GaneshaProcesses() {
			if slices.ContainsFunc(p.Args, func(a string) bool { return strings.HasPrefix(a, s.Config.RunDir+"/") }) {
				pid = p.PID
				return nil
			}
		}
		return fmt.Errorf("none")
	})
	return pid
}
