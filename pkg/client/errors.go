package client

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/pkg/api"
)

// Context says what a command was about, for the hints of its errors.
type Context struct {
	Endpoint string // the CSI endpoint the command talked to
	Kind     string // "volume", "snapshot" or "servers"
	ID       string // the volume or snapshot the command named, if any
}

// Explain turns an error of a command into what a person reads: the gRPC
// code's name and the message (never grpc's "rpc error: code = … desc = …"),
// and on a second line what to do, where the code says enough.
func Explain(err error, c Context) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, libnfs.ErrAccess) {
		return withHint(err.Error(), fmt.Sprintf("the export admits only the nodes the volume is published to: `dots volume publish %s`", orID(c.ID)))
	}
	var ae *AdminError
	if errors.As(err, &ae) {
		return explainAdmin(ae, c)
	}
	st, ok := status.FromError(unwrapStatus(err))
	if !ok {
		if errors.Is(err, ErrMovesCut) {
			return withHint(err.Error(), "what was reported moved did move; run the command again to move the rest (`dots servers` shows where volumes are)")
		}
		return err.Error()
	}
	msg := st.Message()
	text := st.Code().String() + ": " + msg
	if hint := replicaHint(msg, c, st.Code() == codes.ResourceExhausted); hint != "" {
		return withHint(text, hint)
	}
	switch st.Code() {
	case codes.NotFound:
		list := "`dots volume list`"
		if c.Kind == "snapshot" {
			list = "`dots snapshot list`"
		}
		return withHint(text, list+" shows what exists (IDs are SERVER/NAME)")
	case codes.PermissionDenied:
		return withHint(text, fmt.Sprintf("publish the volume to this node first: `dots volume publish %s`", orID(c.ID)))
	case codes.Unavailable:
		if isDialFailure(msg) {
			return withHint(text, fmt.Sprintf("nothing answers at %s: start `dots local`, or name the controller's socket with --endpoint (in a cluster: kubectl exec into the controller pod)", c.Endpoint))
		}
		return withHint(text, "the storage server holding it is down or unreachable, or restarting: `dots servers` says which; retry once it is up")
	case codes.DeadlineExceeded:
		return withHint(text, "no answer within --timeout: a server may be hung or very busy (`dots servers`); the call may still complete, so retry it (retries are safe)")
	case codes.ResourceExhausted:
		return withHint(text, "the pool has not enough free space: `dots servers` shows each server's free bytes; pick another with --server, or free space")
	case codes.AlreadyExists:
		return withHint(text, "that name exists with other parameters: `dots "+kindOr(c.Kind)+" list`, or pick another name")
	case codes.Aborted:
		return withHint(text, "another call is working on it right now: retry in a moment")
	case codes.OutOfRange:
		return withHint(text, "a restore or clone must be at least as large as its source, and volumes never shrink")
	case codes.Unimplemented:
		return withHint(text, "this endpoint does not serve that call: the controller's socket has no node service (mount, unmount, stats, publish need `dots local`'s endpoint)")
	}
	return text
}

// unwrapStatus finds a gRPC status anywhere in a chain of wrapped errors.
func unwrapStatus(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if _, ok := e.(interface{ GRPCStatus() *status.Status }); ok {
			return e
		}
	}
	return err
}

func isDialFailure(msg string) bool {
	return strings.Contains(msg, "connection error") || strings.Contains(msg, "dial unix") || strings.Contains(msg, "error while dialing")
}

func withHint(text, hint string) string { return text + "\n  hint: " + hint }

func orID(id string) string {
	if id == "" {
		return "ID"
	}
	return id
}

func kindOr(kind string) string {
	if kind == "snapshot" {
		return "snapshot"
	}
	return "volume"
}

// replicaHint words the failures of replicated volumes, which the
// controller and servers report under several codes (FailedPrecondition,
// ResourceExhausted, an admin request's HTTP status), by their contract
// errors' texts and the controller's wording; exhausted says the code
// means "not enough" (then a message about replicas is a placement short
// of servers).
func replicaHint(msg string, c Context, exhausted bool) string {
	switch {
	case strings.Contains(msg, api.ErrStaleGeneration.Error()):
		return "a copy of this volume is older than one promoted since (a server that was away): it never serves again; it rejoins as a replica, its divergent writes kept in a dots-diverged-* snapshot (README \"Replicas\")"
	case strings.Contains(msg, api.ErrNotPrimary.Error()):
		return fmt.Sprintf("that server no longer holds the volume's primary (it moved): `dots volume get %s` shows the primary now; retry", orID(c.ID))
	case strings.Contains(msg, api.ErrNotReplica.Error()) || strings.Contains(msg, "holds no replica"):
		return fmt.Sprintf("that server holds no replica of the volume: `dots volume get %s` lists its replicas (promote --to one of them)", orID(c.ID))
	case strings.Contains(msg, "has no replicas"):
		return "only a volume with replicas (a StorageClass with replicas: \"2\" or more) can move to another server"
	case strings.Contains(msg, "no storage server \""):
		return "`dots servers` lists the storage servers by name"
	case exhausted && strings.Contains(msg, "replica"):
		return "each replica needs a healthy server of its own besides the primary's: lower the StorageClass's replicas, or add servers (server.replicas); `dots servers` shows which answer"
	}
	return ""
}

// explainAdmin words a refusal of the controller's admin socket.
func explainAdmin(e *AdminError, c Context) string {
	text := http.StatusText(e.Status) + ": " + e.Message
	if hint := replicaHint(e.Message, c, e.Status == http.StatusInsufficientStorage); hint != "" {
		return withHint(text, hint)
	}
	switch e.Status {
	case http.StatusNotFound:
		if strings.HasPrefix(e.Message, "404 page not found") || e.Message == "" {
			return withHint(text, "this controller has no "+e.Path+": it predates replicas; upgrade it")
		}
		return withHint(text, "`dots volume list` and `dots servers` show what exists (IDs are SERVER/NAME)")
	case http.StatusConflict, http.StatusPreconditionFailed:
		return withHint(text, fmt.Sprintf("`dots volume get %s` shows its primary, replicas and their lag; `dots servers` which servers answer", orID(c.ID)))
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return withHint(text, "a storage server it needs does not answer: `dots servers` says which; retry once it is up")
	case http.StatusInsufficientStorage:
		return withHint(text, "no other server has room: `dots servers` shows each one's free bytes; add a server or free space")
	}
	return text
}
