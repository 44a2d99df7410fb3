package client

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/internal/libnfs"
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
	st, ok := status.FromError(unwrapStatus(err))
	if !ok {
		return err.Error()
	}
	msg := st.Message()
	text := st.Code().String() + ": " + msg
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
