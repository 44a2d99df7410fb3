package client

import (
	"context"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// HealthEntry is one thing wrong with a volume.
type HealthEntry struct {
	Status  string `json:"status"` // DEGRADED, INACCESSIBLE, DATA_LOSS
	Reason  string `json:"reason"` // e.g. PoolDegraded, NotMounted, ServerUnreachable
	Message string `json:"message,omitempty"`
}

func healthOf(h *csi.VolumeHealth) []HealthEntry {
	out := []HealthEntry{}
	for _, e := range h.GetHealthStatuses() {
		out = append(out, HealthEntry{Status: e.GetStatus().String(), Reason: e.GetReason(), Message: e.GetMessage()})
	}
	return out
}

// healthText is a one-line health for tables: "ok", "?" when unknown, or
// the entries.
func healthText(entries []HealthEntry, known bool) string {
	if !known {
		return "?"
	}
	if len(entries) == 0 {
		return "ok"
	}
	var parts []string
	for _, e := range entries {
		parts = append(parts, e.Status+" "+e.Reason)
	}
	return strings.Join(parts, ", ")
}

// addHealth asks the controller for one volume's health; a controller
// that cannot say leaves it unknown (the volume itself was read).
func (c *Client) addHealth(ctx context.Context, v *Volume) {
	r, err := c.controller.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: v.ID})
	if err != nil {
		return
	}
	v.Health, v.HealthKnown = healthOf(r.GetVolumeHealth()), true
}

// addHealths asks for every volume's health in one listing.
func (c *Client) addHealths(ctx context.Context, vols []Volume) {
	byID := map[string]*Volume{}
	for i := range vols {
		byID[vols[i].ID] = &vols[i]
	}
	token := ""
	for {
		r, err := c.controller.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{StartingToken: token, MaxEntries: 500})
		if err != nil {
			return
		}
		for _, h := range r.GetEntries() {
			if v := byID[h.GetVolumeId()]; v != nil {
				v.Health, v.HealthKnown = healthOf(h), true
			}
		}
		if token = r.GetNextToken(); token == "" {
			return
		}
	}
}
