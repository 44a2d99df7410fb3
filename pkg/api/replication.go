package api

import (
	"context"
	"time"
)

// Replication is the contract of per-volume replicas (README "Replicas").
//
// A replicated volume has one primary (the server that exports it, under
// POOL/dots/volumes/NAME) and replicas on other servers (POOL/dots/replicas/NAME,
// never exported). Every interval the primary takes a replication snapshot
// (@dots-repl-UNIXNANO; never a user's snapshot, never listed as one) and
// streams the increment from the newest one the replica holds (held on both
// sides, so a base always exists) to each replica's server over the
// server-to-server gRPC service (mTLS). Each promotion raises the volume's
// generation; a copy holding an older generation is never exported.

// StorageClass parameters of replication.
const (
	// ParamReplicas is how many copies a volume has, the primary included
	// (1: no replicas, the default).
	ParamReplicas = "replicas"
	// ParamReplicationInterval is how often the primary sends increments
	// (a Go duration, at least MinReplicationInterval).
	ParamReplicationInterval = "replicationInterval"
)

// Replication defaults and bounds.
const (
	DefaultReplicationInterval = 10 * time.Second
	MinReplicationInterval     = time.Second
	MaxReplicas                = 5
	// ReplicaAbnormalIntervals: a replica further behind than this many
	// intervals makes the volume's condition abnormal.
	ReplicaAbnormalIntervals = 3
)

// ContextServers is the volume context key listing every server that may
// hold the volume, primary first, as JSON ([]Candidate). The node mounts
// from the first that serves it: only a primary exports a volume.
const ContextServers = "dots.csi.dev/servers"

// Candidate is one server a node may mount a volume from.
type Candidate struct {
	Server    string `json:"server"`
	Address   string `json:"address"`             // NFS address
	Port      int    `json:"port,omitempty"`      // NFS port; 0: 2049
	LocalPath string `json:"localPath,omitempty"` // local-bind mode only
}

// Volume context keys of a replicated volume in ControllerGetVolume and
// ListVolumes answers (reported, never recorded in a PV).
const (
	ContextGeneration = "dots.csi.dev/generation"
	// ContextReplicas is JSON ([]ReplicaStatus).
	ContextReplicas = "dots.csi.dev/replicas"
)

// Role is what a server's copy of a volume is.
type Role string

const (
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
)

// Peer is a server as another server dials it.
type Peer struct {
	Server  string `json:"server"`
	Address string `json:"address"` // host:port of its gRPC API
}

// ReplicaStatus is what a primary knows of one replica.
type ReplicaStatus struct {
	Peer
	// LastSync is the creation time of the newest replication snapshot the
	// replica is known to hold (zero: none yet).
	LastSync   time.Time `json:"lastSync,omitzero"`
	LagSeconds float64   `json:"lagSeconds"`
	BytesSent  int64     `json:"bytesSent"`
	LastError  string    `json:"lastError,omitempty"`
}

// VolumeState is one server's copy of a volume.
type VolumeState struct {
	Volume     string `json:"volume"`
	Exists     bool   `json:"exists"`
	Role       Role   `json:"role,omitempty"`
	Generation uint64 `json:"generation"`
	// Latest is the newest replication snapshot this copy holds, and its
	// creation time.
	Latest     string          `json:"latest,omitempty"`
	LatestTime time.Time       `json:"latestTime,omitzero"`
	Interval   time.Duration   `json:"interval,omitempty"`
	Replicas   []ReplicaStatus `json:"replicas,omitempty"` // on a primary
	// Diverged names what was kept of writes this copy took as a stale
	// primary (datasets holding a dots-diverged-* snapshot).
	Diverged []string `json:"diverged,omitempty"`
}

// SetReplicasRequest tells a primary where its replicas are (an empty list
// stops replication; replicas no longer listed are not destroyed).
type SetReplicasRequest struct {
	Volume   string        `json:"volume"`
	Interval time.Duration `json:"interval"`
	Replicas []Peer        `json:"replicas"`
}

// SyncRequest asks a primary to replicate now and answer when every
// replica holds the new snapshot (or failed).
type SyncRequest struct {
	Volume string `json:"volume"`
}

// HandoverRequest asks a primary to stop serving a volume so another copy
// can take over without losing a write: unexport, take a final snapshot,
// send it to every replica, become a replica (same generation).
type HandoverRequest struct {
	Volume string `json:"volume"`
}

// HandoverResult names the final snapshot every replica now holds.
type HandoverResult struct {
	Final string `json:"final"`
}

// PromoteRequest makes a server's copy the primary: at its newest
// replication snapshot (or Expect, which it must hold), with Generation
// (above every generation seen), exported, replicating to Replicas.
type PromoteRequest struct {
	Volume     string        `json:"volume"`
	Generation uint64        `json:"generation"`
	Expect     string        `json:"expect,omitempty"`
	Interval   time.Duration `json:"interval"`
	Replicas   []Peer        `json:"replicas"`
}

// DropReplicaRequest destroys a server's replica of a volume (never a
// primary: refused with ErrNotReplica).
type DropReplicaRequest struct {
	Volume string `json:"volume"`
}

// CopyRequest asks the server holding Snapshot to send it whole to To,
// which creates the new volume Spec.Name from it (a clone or restore across
// servers: O(data)). Parameters are the create's, as CreateVolume takes
// them.
type CopyRequest struct {
	Snapshot   string            `json:"snapshot"`
	To         Peer              `json:"to"`
	Name       string            `json:"name"`
	Capacity   int64             `json:"capacity"`
	Parameters map[string]string `json:"parameters,omitempty"`
}

// ReplicationServer is the server-to-server and controller-to-server
// service every storage server offers next to CSI (package replication
// carries it over gRPC). Errors are the contract's sentinels or the
// server's own, mapped to codes by the server's table.
type ReplicationServer interface {
	State(ctx context.Context, volume string) (VolumeState, error)
	SetReplicas(ctx context.Context, req SetReplicasRequest) (VolumeState, error)
	Sync(ctx context.Context, req SyncRequest) (VolumeState, error)
	Handover(ctx context.Context, req HandoverRequest) (HandoverResult, error)
	Promote(ctx context.Context, req PromoteRequest) (VolumeState, error)
	DropReplica(ctx context.Context, req DropReplicaRequest) error
	Copy(ctx context.Context, req CopyRequest) error
}
