package driver

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/registry"
)

// ReasonServerUnreachable: the storage server holding a volume does not
// answer; nobody can reach the volume's data through it.
const ReasonServerUnreachable = "ServerUnreachable"

// ControllerGetVolumeHealth relays to the holding server. A server that
// does not answer (Unavailable, or not within the read timeout) makes the
// volume INACCESSIBLE, which is what it is for every node, rather than an
// error: the answer is about the volume's health, and that is known.
func (c *ControllerServer) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	m, id, err := c.member(ctx, "volume", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
	defer cancel()
	resp, err := m.Controller.ControllerGetVolumeHealth(cctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: id, Secrets: req.GetSecrets()})
	if code := status.Code(err); (code == codes.Unavailable || code == codes.DeadlineExceeded) && ctx.Err() == nil {
		return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: &csi.VolumeHealth{VolumeId: req.GetVolumeId(),
			HealthStatuses: []*csi.VolumeHealth_VolumeHealthEntry{{Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: ReasonServerUnreachable,
				Message: fmt.Sprintf("storage server %s does not answer (%s): its volumes cannot be reached", m.Name, status.Convert(err).Message())}}}}, nil
	}
	if err != nil {
		return nil, err
	}
	h := resp.GetVolumeHealth()
	h.VolumeId = req.GetVolumeId() // kept when the primary moved
	return resp, nil
}

// ControllerListVolumeHealth pages through every server's volume health;
// servers that do not answer are skipped, as in ListVolumes.
func (c *ControllerServer) ControllerListVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	resp := &csi.ControllerListVolumeHealthResponse{}
	next, err := c.walk(ctx, "ListVolumeHealth", req.GetStartingToken(), req.GetMaxEntries(), func(ctx context.Context, m *registry.Member, token string, max int32) (int, string, error) {
		r, err := m.Controller.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{StartingToken: token, MaxEntries: max})
		if err != nil {
			return 0, "", err
		}
		for _, h := range r.GetEntries() {
			h.VolumeId = api.FormatID(m.Name, h.GetVolumeId())
			resp.Entries = append(resp.Entries, h)
		}
		return len(r.GetEntries()), r.GetNextToken(), nil
	})
	if err != nil {
		return nil, err
	}
	resp.NextToken = next
	return resp, nil
}
