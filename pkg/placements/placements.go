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
	"strings"
)

// Kind says what a record places.
type Kind string

const (
	Volume   Kind = "volume"
	Snapshot Kind = "snapshot"
)

// ErrConflict: a record of the name exists on another server.
var ErrConflict = errors.New("placed on another server")

// Record places a volume or snapshot ID (api.IDFor of its name) on a
// server.
type Record struct {
	Kind   Kind
	ID     string
	Server string
}

// Store keeps records and forgotten servers durably: a call returns once
// what it changed survives a crash of the controller.
type Store interface {
	// Get returns the server of a record, or ok false.
	Get(ctx context.Context, kind Kind, id string) (server string, ok bool, err error)
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
