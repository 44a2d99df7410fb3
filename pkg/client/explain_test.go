package client

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/internal/libnfs"
)

func TestExplain(t *testing.T) {
	ctx := Context{Endpoint: "unix:///run/csi.sock", Kind: "volume", ID: "s0/data"}
	for _, tc := range []struct {
		name string
		err  error
		kind string
		want []string // in the text, in order
	}{
		{"not found", status.Error(codes.NotFound, `volume "s0/x" not found`), "", []string{`NotFound: volume "s0/x" not found`, "hint: `dots volume list`"}},
		{"snapshot not found", status.Error(codes.NotFound, "no such snapshot"), "snapshot", []string{"NotFound: no such snapshot", "`dots snapshot list`"}},
		{"wrapped", fmt.Errorf("creating: %w", status.Error(codes.ResourceExhausted, "pool full")), "", []string{"ResourceExhausted: pool full", "hint: ", "dots servers"}},
		{"access denied", fmt.Errorf("the NFS export of s0/data refused this node: %w", libnfs.ErrAccess), "", []string{"access denied", "`dots volume publish s0/data`"}},
		{"permission denied", status.Error(codes.PermissionDenied, "not published"), "", []string{"PermissionDenied: not published", "`dots volume publish s0/data`"}},
		{"server down", status.Error(codes.Unavailable, `storage server "s0" is not answering`), "", []string{"Unavailable: storage server", "down or unreachable", "`dots servers`"}},
		{"nothing at the socket", status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial unix /run/csi.sock: connect: no such file or directory"`), "",
			[]string{"Unavailable: ", "nothing answers at unix:///run/csi.sock", "dots local"}},
		{"deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), "", []string{"DeadlineExceeded: ", "--timeout"}},
		{"no node service", status.Error(codes.Unimplemented, "unknown service csi.v1.Node"), "", []string{"Unimplemented: ", "node service"}},
		{"invalid", status.Error(codes.InvalidArgument, "bad name"), "", []string{"InvalidArgument: bad name"}},
		{"plain", errors.New("no dots local stack runs on /x"), "", []string{"no dots local stack runs on /x"}},
		{"stale generation", status.Error(codes.FailedPrecondition, "volume v on s0: generation 2 < 3: stale generation"), "", []string{"FailedPrecondition: ", "never serves again", "dots-diverged-"}},
		{"not primary", status.Error(codes.FailedPrecondition, "s0 holds v as a replica: not the primary"), "", []string{"FailedPrecondition: ", "`dots volume get s0/data`"}},
		{"fewer servers", status.Error(codes.ResourceExhausted, "replicas 3 need 3 healthy servers, 2 answer"), "", []string{"ResourceExhausted: replicas 3", "lower the StorageClass's replicas"}},
		{"admin not replica", &AdminError{Path: "/volumes/promote", Status: 409, Message: "s9: not a replica"}, "", []string{"Conflict: s9: not a replica", "promote --to one of them"}},
		{"admin no replica there", &AdminError{Path: "/volumes/promote", Status: 400, Message: `invalid argument: server "s9" holds no replica of volume "s0/v"`}, "", []string{"Bad Request: ", "promote --to one of them"}},
		{"admin unreplicated", &AdminError{Path: "/volumes/promote", Status: 409, Message: `volume "plain" on dots-server-1: the volume has no replicas`}, "", []string{"Conflict: ", "only a volume with replicas"}},
		{"admin unknown server", &AdminError{Path: "/servers/drain", Status: 400, Message: `invalid argument: no storage server "s7"`}, "", []string{"Bad Request: ", "`dots servers` lists"}},
		{"admin too few servers", &AdminError{Path: "/servers/drain", Status: 507, Message: "3 replicas need 3 more healthy servers"}, "", []string{"Insufficient Storage: ", "lower the StorageClass's replicas"}},
		{"admin old controller", &AdminError{Path: "/servers/drain", Status: 404, Message: "404 page not found"}, "", []string{"Not Found: ", "predates replicas"}},
		{"moves cut", fmt.Errorf("%w: unexpected EOF", ErrMovesCut), "", []string{"before its final line", "run the command again"}},
	} {
		c := ctx
		if tc.kind != "" {
			c.Kind = tc.kind
		}
		got := Explain(tc.err, c)
		if strings.Contains(got, "rpc error") || strings.Contains(got, "desc = ") && !strings.Contains(tc.err.Error(), "connection error") {
			t.Errorf("%s: grpc's wording left in %q", tc.name, got)
		}
		rest := got
		for _, w := range tc.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("%s: %q lacks %q (in order)", tc.name, got, w)
				break
			}
			rest = rest[i+len(w):]
		}
	}
	if Explain(nil, ctx) != "" {
		t.Error("Explain(nil) is not empty")
	}
}
