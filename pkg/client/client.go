// Package client is the dots client for people: everyday operations on
// volumes and snapshots, spoken over CSI to any dots endpoint (by default
// the local stack's), with tables for reading and JSON for scripts.
package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
)

// Client talks to one dots endpoint.
type Client struct {
	conn       *grpc.ClientConn
	controller csi.ControllerClient
	node       csi.NodeClient
	adminAddr  string
}

// Dial connects to a CSI endpoint, a unix socket (plaintext, owner-only);
// admin (the controller's admin socket, unix:///PATH, or an http:// URL
// that forwards to it) is needed only for servers and for moving volumes.
func Dial(endpoint, admin string) (*Client, error) {
	network, _, err := csirpc.ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if network != "unix" {
		// Over the network dots speaks only mutual TLS, between its own
		// components; people talk to the controller's socket.
		return nil, fmt.Errorf("%s: the client talks to a unix socket (the controller's or the local stack's CSI endpoint)", endpoint)
	}
	target, err := csirpc.DialTarget(endpoint)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, controller: csi.NewControllerClient(conn), node: csi.NewNodeClient(conn), adminAddr: admin}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Volume is a volume as the client shows it.
type Volume struct {
	ID         string `json:"id"`
	Server     string `json:"server"`
	Capacity   int64  `json:"capacityBytes"`
	Used       int64  `json:"usedBytes"` // what its file system holds, when the server said so
	NFSAddress string `json:"nfsAddress"`
	NFSPort    int    `json:"nfsPort,omitempty"`
	Export     string `json:"export"`
	LocalPath  string `json:"localPath,omitempty"`
	Source     string `json:"source,omitempty"`
	// Generation and Replicas: a replicated volume's (Server is its
	// primary); zero and empty for a volume without replicas.
	Generation uint64              `json:"generation,omitempty"`
	Replicas   []api.ReplicaStatus `json:"replicas,omitempty"`
	// Health lists what is wrong with the volume (empty when nothing is);
	// HealthKnown is false when the controller could not say.
	Health      []HealthEntry `json:"health"`
	HealthKnown bool          `json:"-"`
}

func volumeOf(v *csi.Volume) Volume {
	ctx := v.GetVolumeContext()
	out := Volume{ID: v.GetVolumeId(), Capacity: v.GetCapacityBytes(), Server: ctx[api.ContextServer],
		NFSAddress: ctx[api.ContextNFSAddress], Export: ctx[api.ContextExport], LocalPath: ctx[api.ContextLocalPath],
		Health: []HealthEntry{}}
	out.NFSPort, _ = strconv.Atoi(ctx[api.ContextNFSPort])
	out.Used, _ = strconv.ParseInt(ctx[api.ContextUsedBytes], 10, 64)
	out.Generation, _ = strconv.ParseUint(ctx[api.ContextGeneration], 10, 64)
	if r := ctx[api.ContextReplicas]; r != "" {
		// A malformed list shows as none rather than failing the read.
		_ = json.Unmarshal([]byte(r), &out.Replicas)
	}
	switch {
	case v.GetContentSource().GetSnapshot() != nil:
		out.Source = "snapshot " + v.GetContentSource().GetSnapshot().GetSnapshotId()
	case v.GetContentSource().GetVolume() != nil:
		out.Source = "volume " + v.GetContentSource().GetVolume().GetVolumeId()
	}
	return out
}

// Snapshot is a snapshot as the client shows it.
type Snapshot struct {
	ID           string    `json:"id"`
	SourceVolume string    `json:"sourceVolume"`
	Size         int64     `json:"sizeBytes"`
	Created      time.Time `json:"created"` // RFC 3339 in JSON
	Ready        bool      `json:"readyToUse"`
}

func snapshotOf(s *csi.Snapshot) Snapshot {
	return Snapshot{ID: s.GetSnapshotId(), SourceVolume: s.GetSourceVolumeId(), Size: s.GetSizeBytes(),
		Created: s.GetCreationTime().AsTime().Local(), Ready: s.GetReadyToUse()}
}

// mountCapability is what the client asks for: a shared filesystem.
func mountCapability() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}}
}

// CreateOptions are the optional parts of a create.
type CreateOptions struct {
	Size       int64
	Parameters map[string]string
	Snapshot   string // restore this snapshot
	Volume     string // clone this volume
}

// CreateVolume creates a volume named name. Without a size, a restore is
// as large as its snapshot and a clone as its source volume (the
// controller's default may be too small for either); a new volume gets the
// controller's default.
func (c *Client) CreateVolume(ctx context.Context, name string, o CreateOptions) (Volume, error) {
	req := &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountCapability(), Parameters: o.Parameters}
	if o.Size == 0 {
		n, err := c.sourceSize(ctx, o)
		if err != nil {
			return Volume{}, err
		}
		o.Size = n
	}
	if o.Size > 0 {
		req.CapacityRange = &csi.CapacityRange{RequiredBytes: o.Size}
	}
	switch {
	case o.Snapshot != "":
		req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: o.Snapshot}}}
	case o.Volume != "":
		req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: o.Volume}}}
	}
	resp, err := c.controller.CreateVolume(ctx, req)
	if err != nil {
		return Volume{}, err
	}
	// Read back, for what it holds (a clone's data) and its health.
	if v, err := c.GetVolume(ctx, resp.GetVolume().GetVolumeId()); err == nil {
		return v, nil
	}
	return volumeOf(resp.GetVolume()), nil
}

// sourceSize is the size of a restore's snapshot (at least the smallest
// volume) or of a clone's source volume; 0 for a new volume.
func (c *Client) sourceSize(ctx context.Context, o CreateOptions) (int64, error) {
	switch {
	case o.Snapshot != "":
		r, err := c.controller.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: o.Snapshot})
		if err != nil {
			return 0, err
		}
		return max(r.GetSnapshot().GetSizeBytes(), api.MinCapacity), nil
	case o.Volume != "":
		r, err := c.controller.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: o.Volume})
		if err != nil {
			return 0, err
		}
		return r.GetVolume().GetCapacityBytes(), nil
	}
	return 0, nil
}

// GetVolume reports one volume, with its health.
func (c *Client) GetVolume(ctx context.Context, id string) (Volume, error) {
	resp, err := c.controller.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		return Volume{}, err
	}
	v := volumeOf(resp.GetVolume())
	c.addHealth(ctx, &v)
	return v, nil
}

// ListVolumes lists every volume, following page tokens, with its health.
func (c *Client) ListVolumes(ctx context.Context) ([]Volume, error) {
	var out []Volume
	token := ""
	for {
		resp, err := c.controller.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token, MaxEntries: 500})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetEntries() {
			out = append(out, volumeOf(e.GetVolume()))
		}
		if token = resp.GetNextToken(); token == "" {
			break
		}
	}
	c.addHealths(ctx, out)
	return out, nil
}

// ExpandVolume grows a volume to size bytes and returns its new capacity.
func (c *Client) ExpandVolume(ctx context.Context, id string, size int64) (int64, error) {
	resp, err := c.controller.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id,
		CapacityRange: &csi.CapacityRange{RequiredBytes: size}, VolumeCapability: mountCapability()[0]})
	if err != nil {
		return 0, err
	}
	return resp.GetCapacityBytes(), nil
}

// DeleteVolume deletes a volume; its snapshots stay usable.
func (c *Client) DeleteVolume(ctx context.Context, id string) error {
	_, err := c.controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
	return err
}

// CreateSnapshot snapshots a volume.
func (c *Client) CreateSnapshot(ctx context.Context, volume, name string) (Snapshot, error) {
	resp, err := c.controller.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: volume, Name: name})
	if err != nil {
		return Snapshot{}, err
	}
	return snapshotOf(resp.GetSnapshot()), nil
}

// ListSnapshots lists snapshots, of one volume when volume is not "".
func (c *Client) ListSnapshots(ctx context.Context, volume string) ([]Snapshot, error) {
	var out []Snapshot
	token := ""
	for {
		resp, err := c.controller.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: volume, StartingToken: token, MaxEntries: 500})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetEntries() {
			out = append(out, snapshotOf(e.GetSnapshot()))
		}
		if token = resp.GetNextToken(); token == "" {
			return out, nil
		}
	}
}

// DeleteSnapshot deletes a snapshot; volumes restored from it keep working.
func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	_, err := c.controller.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: id})
	return err
}

// stagingPath keeps the per-node staging mount beside the target, so the
// client needs no state of its own.
func stagingPath(target string) string {
	return filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".staging")
}

// Mount stages and publishes a volume at target, as kubelet would.
func (c *Client) Mount(ctx context.Context, id, target string, readOnly bool) error {
	if _, _, err := api.ParseID(id); err != nil {
		return err
	}
	v, err := c.controller.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		return err
	}
	// As the external-attacher does before kubelet mounts.
	if err := c.Publish(ctx, id, readOnly); err != nil {
		return err
	}
	vc := v.GetVolume().GetVolumeContext()
	capab := mountCapability()[0]
	staging := stagingPath(target)
	if _, err := c.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging,
		VolumeCapability: capab, VolumeContext: vc}); err != nil {
		return err
	}
	_, err = c.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging,
		TargetPath: target, VolumeCapability: capab, VolumeContext: vc, Readonly: readOnly})
	return err
}

// Unmount unpublishes and unstages a volume mounted by Mount.
func (c *Client) Unmount(ctx context.Context, id, target string) error {
	if _, err := c.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		return err
	}
	_, err := c.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: stagingPath(target)})
	return err
}

// Stats is a mounted volume's usage and health on this node.
type Stats struct {
	UsedBytes       int64         `json:"usedBytes"`
	AvailableBytes  int64         `json:"availableBytes"`
	TotalBytes      int64         `json:"totalBytes"`
	UsedInodes      int64         `json:"usedInodes"`
	AvailableInodes int64         `json:"availableInodes"`
	TotalInodes     int64         `json:"totalInodes"`
	Health          []HealthEntry `json:"health"`
}

// Stats reads the usage of a volume mounted at target.
func (c *Client) Stats(ctx context.Context, id, target string) (Stats, error) {
	resp, err := c.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
	if err != nil {
		return Stats{}, err
	}
	s := Stats{Health: []HealthEntry{}}
	for _, u := range resp.GetUsage() {
		switch u.GetUnit() {
		case csi.VolumeUsage_BYTES:
			s.UsedBytes, s.AvailableBytes, s.TotalBytes = u.GetUsed(), u.GetAvailable(), u.GetTotal()
		case csi.VolumeUsage_INODES:
			s.UsedInodes, s.AvailableInodes, s.TotalInodes = u.GetUsed(), u.GetAvailable(), u.GetTotal()
		}
	}
	health, err := c.node.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id, VolumePublishPath: target})
	if err != nil {
		return s, err
	}
	s.Health = healthOf(health.GetVolumeHealth())
	return s, nil
}

// adminHTTP returns the base URL and the HTTP client of the admin address:
// a unix:///PATH socket, or an http(s):// URL.
func adminHTTP(admin string) (string, *http.Client) {
	path, ok := strings.CutPrefix(admin, "unix://")
	if !ok {
		return strings.TrimSuffix(admin, "/"), http.DefaultClient
	}
	return "http://admin", &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}
