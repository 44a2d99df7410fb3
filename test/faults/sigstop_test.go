//go:build integration

package faults

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/pkg/driver"
)

// TestSIGSTOP: one of two servers hangs (SIGSTOP). Creates pinned to the
// other succeed within seconds; a retry of a name the hung server holds,
// or was sent, is not created elsewhere; listings and capacity answer
// within their deadline, leaving the hung server out; the controller stays
// ready. After SIGCONT everything converges.
func TestSIGSTOP(t *testing.T) {
	start := time.Now()
	a := startProcServer(t, "dotsf", "stop-a")
	b := startProcServer(t, "dotsf", "stop-b")
	c := newCluster(t, a, b)
	ctx := context.Background()
	create := func(name, pin string) (*csi.Volume, error) {
		params := map[string]string{}
		if pin != "" {
			params["server"] = pin
		}
		resp, err := c.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountCaps(),
			Parameters: params, CapacityRange: &csi.CapacityRange{RequiredBytes: 16 << 20}})
		return resp.GetVolume(), err
	}
	if _, err := create("held", "stop-b"); err != nil {
		t.Fatal(err)
	}

	b.signal(syscall.SIGSTOP)
	defer b.signal(syscall.SIGCONT)
	ready := driver.ServersReady(c.reg)
	// A create sent to the hung server before anyone knows it hangs: it
	// times out (its outcome unknown) and its record stays.
	_, err := create("inflight", "stop-b")
	if code(err) != codes.DeadlineExceeded && code(err) != codes.Unavailable {
		t.Errorf("create on the hung server: %v", err)
	}
	poll.Until(t, 10*time.Second, "the registry sees stop-b down", func() error {
		if st, _ := c.reg.Get("stop-b"); st.Status().Healthy {
			return errors.New("still healthy")
		}
		return nil
	})
	if err := ready(); err != nil {
		t.Errorf("controller not ready with one server hung: %v", err)
	}
	var slowest time.Duration
	for i := range 3 {
		t0 := time.Now()
		if _, err := create(fmt.Sprintf("pinned-%d", i), "stop-a"); err != nil {
			t.Errorf("create pinned to the healthy server: %v", err)
		}
		slowest = max(slowest, time.Since(t0))
	}
	if slowest > 5*time.Second {
		t.Errorf("creates pinned to the healthy server took up to %s", slowest)
	}
	// Placed anywhere: it goes to the healthy one.
	if v, err := create("anywhere", ""); err != nil || !strings.HasPrefix(v.GetVolumeId(), "stop-a/") {
		t.Errorf("placed create with one server hung: %v %v", v, err)
	}
	for _, name := range []string{"held", "inflight"} {
		_, err := create(name, "")
		if code(err) != codes.Unavailable {
			t.Errorf("retry of %s, whose server hangs: %v, want Unavailable", name, err)
		}
	}
	vols, _, _, _ := a.datasets(t)
	if vols["held"] || vols["inflight"] {
		t.Errorf("a name of the hung server was created elsewhere: %v", vols)
	}
	t0 := time.Now()
	list, err := c.ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{})
	listTook := time.Since(t0)
	if err != nil || len(list.GetEntries()) != 4 || listTook > 5*time.Second {
		t.Errorf("ListVolumes with one server hung: %d entries, %v, in %s", len(list.GetEntries()), err, listTook)
	}
	t0 = time.Now()
	if capResp, err := c.ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{}); err != nil || capResp.GetAvailableCapacity() <= 0 || time.Since(t0) > 5*time.Second {
		t.Errorf("GetCapacity with one server hung: %v %v in %s", capResp, err, time.Since(t0))
	}

	// SIGCONT: it answers again, and the retries converge on it.
	b.signal(syscall.SIGCONT)
	poll.Until(t, 30*time.Second, "stop-b healthy again", func() error {
		if m, _ := c.reg.Get("stop-b"); !m.Status().Healthy {
			return errors.New(m.Status().Error)
		}
		return nil
	})
	for _, name := range []string{"held", "inflight"} {
		retry(t, "retry of "+name, func() error {
			v, err := create(name, "")
			if err == nil && v.GetVolumeId() != "stop-b/"+name {
				t.Errorf("%s converged on %s", name, v.GetVolumeId())
			}
			return err
		})
	}
	list, err = c.ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil || len(list.GetEntries()) != 6 {
		t.Errorf("after SIGCONT: %d volumes, %v; want 6", len(list.GetEntries()), err)
	}
	fmt.Printf("faults: sigstop ok acked=%d lost=0 orphans=0 duration_s=%.1f pinned_create_max_s=%.2f list_s=%.2f\n",
		len(list.GetEntries()), time.Since(start).Seconds(), slowest.Seconds(), listTook.Seconds())
}
