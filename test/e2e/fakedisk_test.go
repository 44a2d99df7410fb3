package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeDisk is the CSI controller of a cloud's block disks, as the real
// csi-attacher talks to it: it attaches a disk to one node at a time and
// refuses to attach it to a second one until it is detached from the first,
// as a cloud refuses a disk attached to another instance. It stands in for
// the disk a storage server's pool lives on (the chart's
// server.storage.storageClassName); a cloud detaches a disk from a dead
// instance, and so does it.
type fakeDisk struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	name string

	mu       sync.Mutex
	attached map[string]string // volume ID -> node ID
	calls    []diskCall
}

// diskCall is one publish or unpublish the attacher made.
type diskCall struct {
	at            time.Time
	op, vol, node string
	err           error
}

func (c diskCall) String() string {
	return fmt.Sprintf("%s %s %s %s (%v)", c.at.Format("15:04:05.000"), c.op, c.vol, c.node, c.err)
}

// startFakeDisk serves the driver on a unix socket in dir until the test ends.
func startFakeDisk(t *testing.T, dir, name string) (*fakeDisk, string) {
	t.Helper()
	sock := dir + "/fakedisk.sock"
	_ = os.Remove(sock)
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDisk{name: name, attached: map[string]string{}}
	g := grpc.NewServer()
	csi.RegisterIdentityServer(g, d)
	csi.RegisterControllerServer(g, d)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return d, sock
}

func (d *fakeDisk) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.name, VendorVersion: "e2e"}, nil
}

func (d *fakeDisk) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{Type: &csi.PluginCapability_Service_{
		Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}}}}}, nil
}

func (d *fakeDisk) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

func (d *fakeDisk) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: []*csi.ControllerServiceCapability{{Type: &csi.ControllerServiceCapability_Rpc{
		Rpc: &csi.ControllerServiceCapability_RPC{Type: csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME}}}}}, nil
}

func (d *fakeDisk) ControllerPublishVolume(_ context.Context, r *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	if on, ok := d.attached[r.VolumeId]; ok && on != r.NodeId {
		err = status.Errorf(codes.FailedPrecondition, "disk %s is attached to %s", r.VolumeId, on)
	} else {
		d.attached[r.VolumeId] = r.NodeId
	}
	d.calls = append(d.calls, diskCall{at: time.Now(), op: "attach", vol: r.VolumeId, node: r.NodeId, err: err})
	if err != nil {
		return nil, err
	}
	return &csi.ControllerPublishVolumeResponse{PublishContext: map[string]string{"devicePath": "/dev/disk/by-id/" + r.VolumeId}}, nil
}

func (d *fakeDisk) ControllerUnpublishVolume(_ context.Context, r *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.attached[r.VolumeId] == r.NodeId {
		delete(d.attached, r.VolumeId)
	}
	d.calls = append(d.calls, diskCall{at: time.Now(), op: "detach", vol: r.VolumeId, node: r.NodeId})
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

// state returns where the disk is attached and the calls so far.
func (d *fakeDisk) state(vol string) (string, []diskCall) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attached[vol], append([]diskCall(nil), d.calls...)
}
