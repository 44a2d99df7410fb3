//go:build integration

package replicas

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/replenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/driver"
)

// cloneOf clones a volume through the controller, timed.
func cloneOf(t *testing.T, c *driver.ControllerServer, name, source string, size int64) (*csi.Volume, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	resp, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: source}}},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}})
	if err != nil {
		t.Fatalf("cloning %s as %s: %v", source, name, err)
	}
	return resp.GetVolume(), time.Since(start)
}

// TestControllerCloneElsewhere: real servers in two zones (--zone, read by
// the registry from their manifests). A clone of a volume whose server has
// no room for it is made on the other server, from a temporary snapshot
// that is gone after, with the source's bytes; one with room is a local
// clone. Prints the copy's time against the local clone's.
func TestControllerCloneElsewhere(t *testing.T) {
	servers, c, reg := ctlClusterOf(t, "dotsfc", 2, time.Second, func(i int) []string { return []string{"--zone", fmt.Sprintf("zone-%d", i)} })
	for i, s := range servers {
		m, _ := reg.Get(s.Name)
		if z := m.Status().Zone; z != fmt.Sprintf("zone-%d", i) {
			t.Fatalf("%s: zone %q in the registry", s.Name, z)
		}
	}
	full, other := servers[0], servers[1]
	id, export, _ := ctlVolumeOf(t, c, "clone-src", 64<<20, map[string]string{api.ParamServer: full.Name})
	data := replenv.RandomData(t, 40<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := full.NFS().WriteFile(ctx, export, "data", data); err != nil {
		t.Fatalf("writing %s: %v", id, err)
	}
	local, localTook := cloneOf(t, c, "clone-local", id, 64<<20)
	if srv, _, _ := api.ParseID(local.GetVolumeId()); srv != full.Name {
		t.Fatalf("a clone with room went to %s", srv)
	}
	// A size the other server has room for and the source's has not (its
	// pool holds the data): the registry's figures follow ZFS's commits.
	var size int64
	poll.Until(t, time.Minute, "the source's server fuller than the other by the data", func() error {
		f, _ := reg.Get(full.Name)
		o, _ := reg.Get(other.Name)
		fa, oa := f.Status().Available, o.Status().Available
		size = (oa - 8<<20) &^ (1<<20 - 1)
		if fa >= size {
			return fmt.Errorf("available: %s %d, %s %d", full.Name, fa, other.Name, oa)
		}
		return nil
	})
	v, took := cloneOf(t, c, "clone-far", id, size)
	if srv, _, _ := api.ParseID(v.GetVolumeId()); srv != other.Name || v.GetContentSource().GetVolume().GetVolumeId() != id {
		t.Fatalf("clone %s (source %v), want it on %s", v.GetVolumeId(), v.GetContentSource(), other.Name)
	}
	if got := readSum(t, other, v.GetVolumeContext()[api.ContextExport], "data"); got != replenv.Sum(data) {
		t.Errorf("the clone's data: checksum %s, wrote %s", got, replenv.Sum(data))
	}
	snaps, err := c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range snaps.GetEntries() {
		if strings.Contains(e.GetSnapshot().GetSnapshotId(), "dots-clone-") {
			t.Errorf("temporary snapshot left: %s", e.GetSnapshot().GetSnapshotId())
		}
	}
	fmt.Printf("clone_across_servers: bytes=%d copy_s=%.3f local_clone_s=%.3f ratio=%.1f\n", len(data), took.Seconds(), localTook.Seconds(),
		took.Seconds()/localTook.Seconds())
}
