package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/replication"
	"github.com/dots-csi/dots/pkg/zfs"
)

// Replication is what the server asks of its replication manager
// (*replicator.Manager): which primaries it must not serve yet, how a
// primary's replicas are doing, how many replicas the pool holds.
type Replication interface {
	// Held: a replicated primary not yet confirmed at start-up.
	Held(name string) bool
	// Status is a primary's replicas and, when one lags too far (or the
	// volume is held), why its health is not normal ("" otherwise).
	Status(v *zfs.Volume) ([]api.ReplicaStatus, string)
	ReplicaCount(ctx context.Context) (int, error)
}

// SetReplication wires the replication manager in. Call it before
// RestoreExports: held primaries are left out of every export.
func (s *Server) SetReplication(r Replication) { s.repl = r }

// held says whether a volume must not be exported now.
func (s *Server) held(name string) bool { return s.repl != nil && s.repl.Held(name) }

// ReplicationHost is what the server lends its replication manager:
// exports and its per-volume lock (replicator.Host).
func (s *Server) ReplicationHost() *ReplicationHost { return &ReplicationHost{s: s} }

// ReplicationHost exports and unexports volumes for the replication
// manager, under the same lock CSI calls take.
type ReplicationHost struct{ s *Server }

// Export serves a volume (a promoted replica, a confirmed primary, a copy).
func (h *ReplicationHost) Export(ctx context.Context, v *zfs.Volume) error { return h.s.export(ctx, v) }

// Unexport stops serving a volume (a handover, a demotion).
func (h *ReplicationHost) Unexport(ctx context.Context, v *zfs.Volume) error {
	return h.s.exporter.Unexport(ctx, v.ExportID)
}

// Lock takes the volume's lock (lockset.ErrBusy while a call holds it).
func (h *ReplicationHost) Lock(volume string) (func(), error) {
	return h.s.locks.Acquire(volumeKey(volume))
}

// replicationContext adds a replicated primary's generation and replicas
// to its ControllerGetVolume and ListVolumes context.
func (s *Server) replicationContext(v *zfs.Volume, ctx map[string]string) {
	if len(v.Replicas) == 0 {
		return
	}
	ctx[api.ContextGeneration] = strconv.FormatUint(v.Generation, 10)
	var statuses []api.ReplicaStatus
	if s.repl != nil {
		statuses, _ = s.repl.Status(v)
	}
	if statuses == nil {
		for _, p := range v.Replicas {
			statuses = append(statuses, api.ReplicaStatus{Peer: p})
		}
	}
	if b, err := json.Marshal(statuses); err == nil {
		ctx[api.ContextReplicas] = string(b)
	}
}

// Reasons of replication's health entries.
const (
	reasonReplicaLagging = "ReplicaLagging"
	reasonNotConfirmed   = "NotConfirmed"
)

// replicationHealth is a replicated primary's health entry: INACCESSIBLE
// while the start-up rule holds it, DEGRADED while a replica lags more
// than api.ReplicaAbnormalIntervals intervals; nil otherwise.
func (s *Server) replicationHealth(v *zfs.Volume) *csi.VolumeHealth_VolumeHealthEntry {
	if s.repl == nil || len(v.Replicas) == 0 {
		return nil
	}
	if s.repl.Held(v.Name) {
		return &csi.VolumeHealth_VolumeHealthEntry{Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: reasonNotConfirmed,
			Message: fmt.Sprintf("not served: %v", replication.ErrNotConfirmed)}
	}
	if _, why := s.repl.Status(v); why != "" {
		return &csi.VolumeHealth_VolumeHealthEntry{Status: csi.VolumeHealthErrorType_DEGRADED, Reason: reasonReplicaLagging, Message: why}
	}
	return nil
}

// withoutReplicationParams drops the StorageClass parameters of
// replication from a create: the controller acts on them (placement of
// replicas, SetReplicas), a server only creates the primary.
func withoutReplicationParams(in map[string]string) map[string]string {
	if _, ok := in[api.ParamReplicas]; !ok {
		if _, ok := in[api.ParamReplicationInterval]; !ok {
			return in
		}
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		if k != api.ParamReplicas && k != api.ParamReplicationInterval {
			out[k] = v
		}
	}
	return out
}
