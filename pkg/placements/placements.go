// Package placements is the cluster controller's durable record of which
// storage server holds each volume and snapshot name. The controller writes
// a record before it sends a create, so every retry of that create goes to
// the same server, and a name is never created on two servers (a volume
// forked between a server that was slow or down and another). It is also
// where an operator declares a server permanently gone.
//
// Stores: Dir (files in a directory: the local stack, or any controller
// with a persistent volume), Kubernetes (Lease objects in the controller's
// namespace), Memory (tests).
package placements

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dots-csi/dots/pkg/api"
)

// Kind says what a record places.
type Kind string

const (
	Volume   Kind = "volume"
	Snapshot Kind = "snapshot"
)

// ErrConflict: a record of the name exists on another server.
var ErrConflict = errors.New("placed on another server")

// ErrChanged: an Update's record is not what it expected (another
// controller, or a concurrent call, changed or removed it).
var ErrChanged = errors.New("placement changed meanwhile")

// Record places a volume or snapshot ID (api.IDFor of its name) on a
// server. A replicated volume's record also names its replica servers, its
// generation and its replication interval; records written before
// replicas existed read as a volume with none.
type Record struct {
	Kind Kind
	ID   string
	// Server holds the volume (its primary, for a replicated one) or the
	// snapshot.
	Server string
	// Replicas are the servers holding replicas of the volume, in order.
	Replicas []string
	// Generation is the primary's generation (0: never promoted, read
	// as 1); Interval the replication interval.
	Generation uint64
	Interval   time.Duration
	// Origin is the server the volume was created on, the one its cluster
	// ID names, once its primary moved ("": Server, it never did).
	Origin string
}

// ClusterID is the volume's ID as Kubernetes knows it (SERVER/ID, the
// server it was created on).
func (r Record) ClusterID() string {
	if r.Origin != "" {
		return api.FormatID(r.Origin, r.ID)
	}
	return api.FormatID(r.Server, r.ID)
}

// Moved returns the record with its primary on server, its replicas and
// generation: what an Update after a promotion writes (Origin kept).
func (r Record) Moved(server string, replicas []string, generation uint64) Record {
	next := r
	if next.Origin == "" {
		next.Origin = r.Server
	}
	next.Server, next.Replicas, next.Generation = server, slices.Clone(replicas), generation
	return next
}

// Replicated says whether the record names replicas.
func (r Record) Replicated() bool { return len(r.Replicas) > 0 }

// Servers is the primary, then the replicas.
func (r Record) Servers() []string { return append([]string{r.Server}, r.Replicas...) }

// Equal compares every field.
func (r Record) Equal(o Record) bool {
	return r.Kind == o.Kind && r.ID == o.ID && r.Server == o.Server && slices.Equal(r.Replicas, o.Replicas) &&
		r.Generation == o.Generation && r.Interval == o.Interval && r.Origin == o.Origin
}

// Gen is the generation, 1 when none was recorded.
func (r Record) Gen() uint64 { return max(r.Generation, 1) }

// Store keeps records and forgotten servers durably: a call returns once
// what it changed survives a crash of the controller.
type Store interface {
	// Get returns the server of a record, or ok false.
	Get(ctx context.Context, kind Kind, id string) (server string, ok bool, err error)
	// Lookup returns the whole record, or ok false.
	Lookup(ctx context.Context, kind Kind, id string) (r Record, ok bool, err error)
	// Update replaces the record old with r (same kind and ID), only if
	// the stored record still equals old: a compare-and-swap, so a move of
	// a primary or a change of its replicas never overwrites another's.
	// Anything else fails with ErrChanged.
	Update(ctx context.Context, old, r Record) error
	// Put records the placement. Putting the same record again succeeds; a
	// record of the ID on another server fails with ErrConflict.
	Put(ctx context.Context, r Record) error
	// Delete removes the record if it places the ID on server; a missing
	// record is success.
	Delete(ctx context.Context, r Record) error
	// List returns every record.
	List(ctx context.Context) ([]Record, error)
	// Forget records that a server is gone for good: its volumes are gone
	// with it, and deleting them succeeds.
	Forget(ctx context.Context, server string) error
	// Forgotten reports whether a server was declared gone.
	Forgotten(ctx context.Context, server string) (bool, error)
}

// ParseKind reads a kind.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case Volume, Snapshot:
		return k, nil
	}
	return "", fmt.Errorf("unknown record kind %q", s)
}

// Open returns the store a flag names: "dir:PATH", "kubernetes" (in the
// namespace of the running pod, or $POD_NAMESPACE) or
// "kubernetes:NAMESPACE", or "memory" (nothing survives the process:
// tests only).
func Open(spec string) (Store, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "dir":
		if arg == "" {
			return nil, errors.New("placements store dir: needs a path (dir:/var/lib/dots/placements)")
		}
		return NewDir(arg)
	case "kubernetes":
		return NewKubernetes(arg)
	case "memory":
		return NewMemory(), nil
	}
	return nil, fmt.Errorf("placements store %q: want dir:PATH, kubernetes[:NAMESPACE] or memory", spec)
}
