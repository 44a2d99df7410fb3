package replicator

import (
	"context"
	"io"
	"time"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs"
)

// Pool is what the manager needs of the server's pool (*zfs.Pool; see
// pkg/zfs replica*.go).
type Pool interface {
	GetVolume(ctx context.Context, name string) (*zfs.Volume, error)
	ListVolumes(ctx context.Context) ([]*zfs.Volume, error)
	GetSnapshot(ctx context.Context, name string) (*zfs.Snapshot, error)
	ReplicaState(ctx context.Context, volume string) (api.VolumeState, error)
	ReplicaNames(ctx context.Context) ([]string, error)
	DivergedCopies(ctx context.Context, volume string) ([]string, error)
	UserSnapshotsOf(ctx context.Context, volume string) ([]zfs.UserSnapshot, error)
	HasReplSnapshot(ctx context.Context, volume, snap string) (bool, error)
	ReplSnapshot(ctx context.Context, volume string) (string, time.Time, error)
	Send(ctx context.Context, volume, base, snap string, w io.Writer) error
	SendSnapshot(ctx context.Context, snapshot string, w io.Writer) error
	Receive(ctx context.Context, spec zfs.ReceiveSpec, r io.Reader) (api.VolumeState, error)
	ReplicationSent(ctx context.Context, volume, snap string, keep []string) error
	ReceiveNewVolume(ctx context.Context, spec zfs.VolumeSpec, r io.Reader) (*zfs.Volume, error)
	PromoteReplica(ctx context.Context, volume string, generation uint64, expect string, replicas []api.Peer, interval time.Duration) (*zfs.Volume, error)
	SetReplicas(ctx context.Context, volume string, replicas []api.Peer, interval time.Duration) (*zfs.Volume, error)
	DemoteToReplica(ctx context.Context, volume, primary string, generation uint64, keepDivergence bool, commonSnap string) (string, error)
	DropReplica(ctx context.Context, volume string) error
}

var _ Pool = (*zfs.Pool)(nil)
