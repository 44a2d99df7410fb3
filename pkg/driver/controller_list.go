package driver

import (
	"context"
	"fmt"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/registry"
)

// A cluster page token is "SERVER/SERVERTOKEN": the server to continue with
// and that server's own token ("" to start at its beginning). Servers are
// walked in name order, so a listing is stable while servers answer.

func (c *ControllerServer) pageStart(token string) ([]*registry.Member, string, error) {
	members := c.servers.List()
	if token == "" {
		return members, "", nil
	}
	srv, inner, ok := strings.Cut(token, "/")
	if ok {
		for i, m := range members {
			if m.Name == srv {
				return members[i:], inner, nil
			}
		}
	}
	return nil, "", fmt.Errorf("%w %q", csirpc.ErrBadToken, token)
}

// walk pages through servers: fetch(m, token, max) returns how many entries
// it added and the server's next token.
func (c *ControllerServer) walk(token string, max int32, fetch func(m *registry.Member, token string, max int32) (int, string, error)) (string, error) {
	if max < 0 {
		return "", fmt.Errorf("%w: %d is negative", csirpc.ErrBadMaxEntries, max)
	}
	members, inner, err := c.pageStart(token)
	if err != nil {
		return "", err
	}
	remaining := max
	for _, m := range members {
		if max > 0 && remaining == 0 {
			return m.Name + "/", nil
		}
		n, next, err := fetch(m, inner, remaining)
		if err != nil {
			return "", err
		}
		inner = ""
		if next != "" {
			return m.Name + "/" + next, nil
		}
		if max > 0 {
			remaining -= int32(n)
		}
	}
	return "", nil
}

// ListVolumes lists every server's volumes with cluster IDs. A server that
// does not answer fails the call (Unavailable): a partial list would look
// like lost volumes.
func (c *ControllerServer) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	resp := &csi.ListVolumesResponse{}
	next, err := c.walk(req.GetStartingToken(), req.GetMaxEntries(), func(m *registry.Member, token string, max int32) (int, string, error) {
		r, err := m.Controller.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token, MaxEntries: max})
		if err != nil {
			return 0, "", err
		}
		for _, e := range r.GetEntries() {
			resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: c.clusterVolume(m, e.GetVolume()), Status: e.GetStatus()})
		}
		return len(r.GetEntries()), r.GetNextToken(), nil
	})
	if err != nil {
		return nil, err
	}
	resp.NextToken = next
	return resp, nil
}
