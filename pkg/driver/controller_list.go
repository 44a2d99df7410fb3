package driver

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
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

// ListVolumes pages through every server's volumes.
func (c *ControllerServer) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	resp := &csi.ListVolumesResponse{}
	next, err := c.walk(ctx, "ListVolumes", req.GetStartingToken(), req.GetMaxEntries(), func(ctx context.Context, m *registry.Member, token string, max int32) (int, string, error) {
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

// GetCapacity reports one server's free bytes (parameter server) or the
// sum over the servers that answer, asked in parallel with ReadTimeout each,
// with the largest single volume possible.
func (c *ControllerServer) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	p, err := api.ParseParams(req.GetParameters())
	if err != nil {
		return nil, err
	}
	fwd := &csi.GetCapacityRequest{VolumeCapabilities: req.GetVolumeCapabilities()}
	if p.Server != "" {
		m, ok := c.servers.Get(p.Server)
		if !ok {
			return nil, fmt.Errorf("%w: parameter server=%q: no such storage server", api.ErrInvalid, p.Server)
		}
		sctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
		defer cancel()
		return m.Controller.GetCapacity(sctx, fwd)
	}
	members := c.servers.List()
	answers := make([]*csi.GetCapacityResponse, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
			defer cancel()
			resp, err := m.Controller.GetCapacity(sctx, fwd)
			if err != nil {
				c.skipped("GetCapacity", m, err)
				return
			}
			answers[i] = resp
		}()
	}
	wg.Wait()
	out := &csi.GetCapacityResponse{}
	var largest int64
	for _, resp := range answers {
		if resp == nil {
			continue
		}
		out.AvailableCapacity += resp.GetAvailableCapacity()
		largest = max(largest, resp.GetMaximumVolumeSize().GetValue())
		out.MinimumVolumeSize = resp.GetMinimumVolumeSize()
	}
	out.MaximumVolumeSize = wrapperspb.Int64(largest)
	return out, nil
}
