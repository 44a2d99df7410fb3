package driver

import (
	"context"
	"fmt"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/placements"
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

// walk pages through servers: fetch(ctx, m, token, max) returns how many
// entries it added and the server's next token. Each server gets
// ReadTimeout for its page; one that does not answer is skipped (logged and
// counted under call), so a hung server never holds a listing up.
func (c *ControllerServer) walk(ctx context.Context, call, token string, max int32,
	fetch func(ctx context.Context, m *registry.Member, token string, max int32) (int, string, error)) (string, error) {
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
		sctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
		n, next, err := fetch(sctx, m, inner, remaining)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			if !unreachable(err) {
				return "", err // the server answered: its answer stands
			}
			c.skipped(call, m, err)
			inner = ""
			continue
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

// unreachable reports an error that says a server did not answer, as
// opposed to one it answered with.
func unreachable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// skipped logs and counts a server left out of a call that asks them all.
func (c *ControllerServer) skipped(call string, m *registry.Member, err error) {
	c.metrics.skipped.WithLabelValues(call, m.Name).Inc()
	klog.InfoS("Storage server left out", "call", call, "server", m.Name, "err", err)
}

// ListVolumes pages through every server's volumes, reading the next page
// ahead while the caller reads this one (controller_prefetch.go).
func (c *ControllerServer) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	key := pageKey{token: req.GetStartingToken(), max: req.GetMaxEntries()}
	resp := c.prefetch.take(ctx, key)
	if resp == nil {
		var err error
		if resp, err = c.listVolumesPage(ctx, key.token, key.max); err != nil {
			return nil, err
		}
	}
	if next := resp.GetNextToken(); next != "" {
		c.prefetch.start(pageKey{token: next, max: key.max}, func(ctx context.Context) (*csi.ListVolumesResponse, error) {
			return c.listVolumesPage(ctx, next, key.max)
		})
	}
	return resp, nil
}

// listVolumesPage reads one page of the cluster's volumes.
func (c *ControllerServer) listVolumesPage(ctx context.Context, token string, max int32) (*csi.ListVolumesResponse, error) {
	resp := &csi.ListVolumesResponse{}
	next, err := c.walk(ctx, "ListVolumes", token, max, func(ctx context.Context, m *registry.Member, token string, max int32) (int, string, error) {
		r, err := m.Controller.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token, MaxEntries: max})
		if err != nil {
			return 0, "", err
		}
		for _, e := range r.GetEntries() {
			v := c.clusterVolume(m, e.GetVolume())
			c.originalID(ctx, m, v)
			resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: v, Status: e.GetStatus()})
		}
		return len(r.GetEntries()), r.GetNextToken(), nil
	})
	if err != nil {
		return nil, err
	}
	resp.NextToken = next
	return resp, nil
}

// originalID gives a listed replicated volume the ID it was created with
// (its record's), which names the server it was created on, not the one
// serving it now. Only replicated primaries (their context carries a
// generation) are looked up: a listing of plain volumes reads no record.
func (c *ControllerServer) originalID(ctx context.Context, m *registry.Member, v *csi.Volume) {
	if _, ok := v.GetVolumeContext()[api.ContextGeneration]; !ok {
		return
	}
	_, id, err := api.ParseID(v.GetVolumeId())
	if err != nil {
		return
	}
	if rec, ok, err := c.placements.Lookup(ctx, placements.Volume, id); err == nil && ok && rec.Server == m.Name {
		v.VolumeId = rec.ClusterID()
	}
}

// GetCapacity reports one server's free bytes (parameter server: asked of
// that server, within ReadTimeout), or the sum over the healthy servers
// with the largest single volume possible, answered from the registry's
// figures without asking any server: each server's free bytes as its last
// probe read them (every probe interval, and at once after it refused a
// create for space), less what this controller's thick creates reserved
// since. Those are the figures placement uses, so the capacity the CO sees
// is the capacity the controller places by.
func (c *ControllerServer) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	p, err := api.ParseParams(req.GetParameters())
	if err != nil {
		return nil, err
	}
	if p.Server != "" {
		m, ok := c.servers.Get(p.Server)
		if !ok {
			return nil, fmt.Errorf("%w: parameter server=%q: no such storage server", api.ErrInvalid, p.Server)
		}
		sctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
		defer cancel()
		return m.Controller.GetCapacity(sctx, &csi.GetCapacityRequest{VolumeCapabilities: req.GetVolumeCapabilities()})
	}
	if len(req.GetVolumeCapabilities()) > 0 && api.ValidateCapabilities(req.GetVolumeCapabilities()) != nil {
		return &csi.GetCapacityResponse{}, nil // as each server answers: no capacity for what none can serve
	}
	out := &csi.GetCapacityResponse{MinimumVolumeSize: wrapperspb.Int64(api.MinCapacity)}
	var largest int64
	for _, m := range c.servers.List() {
		if st := m.Status(); st.Healthy {
			out.AvailableCapacity += st.Available
			largest = max(largest, st.Available)
		}
	}
	out.MaximumVolumeSize = wrapperspb.Int64(largest)
	return out, nil
}
