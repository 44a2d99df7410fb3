package api

import (
	"context"
	"time"
)

// The controller's admin socket (owner-only, never on the network) serves
// the operations that move volumes between servers. Requests and answers
// are JSON; a request refused before anything moved answers a 4xx or 5xx
// status with AdminError. Drain and rebalance stream their progress as
// JSON lines (MoveEvent, one per line, flushed as they happen), the last
// one of kind MoveDone.
const (
	AdminPathPromote   = "/volumes/promote"   // POST PromoteVolumeRequest → PromoteVolumeResult
	AdminPathDrain     = "/servers/drain"     // POST DrainRequest → MoveEvent lines
	AdminPathRebalance = "/servers/rebalance" // POST RebalanceRequest → MoveEvent lines
)

// AdminError is the body of an admin request refused as a whole.
type AdminError struct {
	Error string `json:"error"`
}

// PromoteVolumeRequest asks the controller to make another copy of a
// replicated volume its primary (`dots volume promote ID [--to SERVER]`).
type PromoteVolumeRequest struct {
	// Volume is the cluster ID (SERVER/NAME; the server part is only a
	// hint: the placement record says where the volume is now).
	Volume string `json:"volume"`
	// To names the server to promote; "" takes the replica holding the
	// newest state.
	To string `json:"to,omitempty"`
}

// PromoteVolumeResult is what a promotion did.
type PromoteVolumeResult struct {
	Volume string `json:"volume"`
	// From is the primary before, To the primary now.
	From       string `json:"from"`
	To         string `json:"to"`
	Generation uint64 `json:"generation"`
	// HandedOver is true when the old primary answered and sent its last
	// writes to every replica first (no write lost); false when it did not
	// answer, so writes since Snapshot's time may be lost (at most one
	// replication interval plus the stream).
	HandedOver bool `json:"handedOver"`
	// Snapshot is the replication snapshot the new primary serves from.
	Snapshot     string    `json:"snapshot,omitempty"`
	SnapshotTime time.Time `json:"snapshotTime,omitzero"`
	// Replicas are the volume's replica servers now.
	Replicas []string `json:"replicas"`
	// Reason is why it happened: "manual", "unhealthy", "drain",
	// "rebalance".
	Reason string `json:"reason"`
	// HookError is what the VolumeMoved hook (pods) answered, if it failed:
	// the promotion stands.
	HookError string `json:"hookError,omitempty"`
}

// DrainRequest asks the controller to move every volume off a server
// (`dots server drain NAME`): its primaries move to other servers, its
// replicas are replaced by new ones elsewhere.
type DrainRequest struct {
	Server string `json:"server"`
}

// RebalanceRequest asks the controller to move volumes from the fullest
// servers to the emptiest until used space is within RebalanceTolerance of
// the mean (or nothing fits).
type RebalanceRequest struct{}

// RebalanceTolerance: servers whose used fraction is within this of the
// cluster's mean are balanced.
const RebalanceTolerance = 0.10

// MoveKind is what one progress line of a drain or rebalance says.
type MoveKind string

const (
	// MovePlan: what will move (Total volumes).
	MovePlan MoveKind = "plan"
	// MovePrimary: a volume's primary moved From → To (Generation).
	MovePrimary MoveKind = "primary"
	// MoveReplica: a replica held on From was replaced by one on To.
	MoveReplica MoveKind = "replica"
	// MoveFailed: moving Volume failed (Error); the rest go on.
	MoveFailed MoveKind = "failed"
	// MoveDone: the end (Done moved, Failed failed; Error set when the
	// whole operation stopped early).
	MoveDone MoveKind = "done"
)

// MoveEvent is one progress line of a drain or rebalance.
type MoveEvent struct {
	Time       time.Time `json:"time"`
	Kind       MoveKind  `json:"kind"`
	Volume     string    `json:"volume,omitempty"` // cluster ID
	From       string    `json:"from,omitempty"`
	To         string    `json:"to,omitempty"`
	Generation uint64    `json:"generation,omitempty"`
	// Bytes is the moved volume's used bytes, when known; a failed line
	// carries none (nothing moved).
	Bytes int64  `json:"bytes,omitempty"`
	Error string `json:"error,omitempty"`
	// Counters so far.
	Done   int `json:"done"`
	Failed int `json:"failed"`
	Total  int `json:"total"`
}

// VolumeMoved is told when a volume's primary moved from one server to
// another (a promotion, drain or rebalance), so what uses the volume can
// follow it: in Kubernetes, the pods mounting it are restarted or an Event
// says they must be (`--restart-pods-on-promotion`). Its error is reported
// and logged; the move stands.
type VolumeMoved interface {
	VolumeMoved(ctx context.Context, volumeID, from, to string) error
}
