package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// errNoReplication: a replicated volume on a controller whose registry has
// no replication clients (a configuration error, not the caller's).
var errNoReplication = errors.New("this controller has no replication client for the server")

// placeReplicas picks n servers for a volume's replicas: healthy, distinct,
// none in exclude (the primary, and replicas kept), each with room for
// size bytes, in other zones than exclude's where it can (see placeAway).
func (c *ControllerServer) placeReplicas(n int, size int64, exclude ...string) ([]*registry.Member, error) {
	return c.placeAway(n, size, exclude, exclude)
}

// placeAway picks n servers: healthy, distinct, none in exclude, each with
// room for size bytes. Each pick is the one with the most free space
// among those in a zone no server of away (the copies that stay) nor an
// earlier pick is in; when none is (servers without zones, or no room in
// another zone), the most free of all, logged when zones are known.
// Fewer than n: ResourceExhausted naming the counts (a replica never
// shares a server with another copy, so more copies than servers cannot
// be placed).
func (c *ControllerServer) placeAway(n int, size int64, exclude, away []string) ([]*registry.Member, error) {
	type cand struct {
		m    *registry.Member
		free int64
		zone string
	}
	var cands []cand
	healthy := 0
	used := map[string]bool{} // zones holding a copy
	for _, m := range c.servers.List() {
		st := m.Status()
		if slices.Contains(away, m.Name) && st.Zone != "" {
			used[st.Zone] = true
		}
		if !st.Healthy || slices.Contains(exclude, m.Name) {
			continue
		}
		healthy++
		if st.Available >= size {
			cands = append(cands, cand{m, st.Available, st.Zone})
		}
	}
	if len(cands) < n {
		return nil, fmt.Errorf("%w: %d replicas need %d more healthy servers with %d bytes free besides %s; %d such (of %d healthy others)",
			errNoRoom, n, n, size, strings.Join(exclude, ", "), len(cands), healthy)
	}
	// Most free first; ties keep the registry's (name) order.
	slices.SortStableFunc(cands, func(a, b cand) int {
		switch {
		case a.free > b.free:
			return -1
		case a.free < b.free:
			return 1
		}
		return 0
	})
	out := make([]*registry.Member, 0, n)
	for range n {
		pick := 0
		for i, cd := range cands {
			if cd.zone != "" && !used[cd.zone] {
				pick = i
				break
			}
		}
		p := cands[pick]
		if p.zone == "" || used[p.zone] {
			if len(used) > 0 || p.zone != "" {
				klog.InfoS("Replica placed in a zone holding a copy already: no server in another zone has room", "server", p.m.Name,
					"zone", p.zone, "zonesHolding", slices.Sorted(maps.Keys(used)), "bytes", size)
			}
		}
		if p.zone != "" {
			used[p.zone] = true
		}
		out = append(out, p.m)
		cands = slices.Delete(cands, pick, pick+1)
	}
	return out, nil
}

// names lists the members' names.
func names(ms []*registry.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// peers turns server names into the addresses servers dial each other at:
// the API addresses this controller knows them by.
func (c *ControllerServer) peers(servers []string) ([]api.Peer, error) {
	out := make([]api.Peer, 0, len(servers))
	for _, s := range servers {
		m, ok := c.servers.Get(s)
		if !ok {
			return nil, fmt.Errorf("%w: storage server %q, a replica's, is not known to this controller now", errUnavailable, s)
		}
		out = append(out, api.Peer{Server: s, Address: m.APIAddress})
	}
	return out, nil
}

// replService returns a member's replication client.
func replService(m *registry.Member) (api.ReplicationServer, error) {
	if m.Replication == nil {
		return nil, fmt.Errorf("%w %q", errNoReplication, m.Name)
	}
	return m.Replication, nil
}

// replicaRecord completes a new volume's record with its replicas: those
// of a record an earlier attempt wrote (a retry replicates where it did),
// else new ones placed now.
func (c *ControllerServer) replicaRecord(ctx context.Context, rec placements.Record, cv api.CreateVolume, retry bool) (placements.Record, error) {
	if cv.Params.Replicas <= 1 {
		return rec, nil
	}
	if retry {
		old, ok, err := c.placements.Lookup(ctx, rec.Kind, rec.ID)
		if err != nil {
			return rec, fmt.Errorf("%w: reading where %q was placed: %v", errUnavailable, rec.ID, err)
		}
		if ok && old.Replicated() {
			return old, nil
		}
	}
	reps, err := c.placeReplicas(cv.Params.Replicas-1, cv.Capacity, rec.Server)
	if err != nil {
		return rec, err
	}
	rec.Replicas = names(reps)
	rec.Interval = cv.Params.ReplicationInterval
	return rec, nil
}

// startReplication tells a new volume's primary where its replicas are;
// the first full send starts at once and the create does not wait for it.
// It is idempotent: a retried create sends it again.
func (c *ControllerServer) startReplication(ctx context.Context, m *registry.Member, rec placements.Record) error {
	if !rec.Replicated() {
		return nil
	}
	if err := c.replicasOnly(ctx, m, rec); err != nil {
		return fmt.Errorf("volume %q created, but its replicas were not set (a retry sets them): %w", rec.ID, err)
	}
	klog.V(2).InfoS("Replication set", "volume", rec.ID, "primary", m.Name, "replicas", rec.Replicas, "interval", rec.Interval)
	return nil
}

// replicasOnly sets a primary's replicas without waiting for a sync.
func (c *ControllerServer) replicasOnly(ctx context.Context, primary *registry.Member, rec placements.Record) error {
	rs, err := replService(primary)
	if err != nil {
		return err
	}
	peers, err := c.peers(rec.Replicas)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	if _, err := rs.SetReplicas(cctx, api.SetReplicasRequest{Volume: rec.ID, Interval: rec.Interval, Replicas: peers}); err != nil {
		return fmt.Errorf("setting the replicas of %q on %s: %w", rec.ID, primary.Name, err)
	}
	return nil
}

// candidates are the servers a node may mount a volume from, primary
// first: each one's NFS address and, for local-bind servers, where the
// volume would be mounted there. A server this controller does not know
// now is left out.
func (c *ControllerServer) candidates(rec placements.Record) []api.Candidate {
	var out []api.Candidate
	for _, s := range rec.Servers() {
		m, ok := c.servers.Get(s)
		if !ok {
			continue
		}
		cand := api.Candidate{Server: s, Address: m.NFSAddress, Port: m.NFSPort}
		if m.LocalPaths {
			if p := m.Status().VolumesPath; p != "" {
				cand.LocalPath = p + "/" + rec.ID
			}
		}
		out = append(out, cand)
	}
	return out
}

// withCandidates adds api.ContextServers to a replicated volume's context.
func (c *ControllerServer) withCandidates(v *csi.Volume, rec placements.Record) {
	if v == nil || !rec.Replicated() {
		return
	}
	b, err := json.Marshal(c.candidates(rec))
	if err != nil {
		return // plain strings and numbers: cannot happen
	}
	if v.VolumeContext == nil {
		v.VolumeContext = map[string]string{}
	}
	v.VolumeContext[api.ContextServers] = string(b)
}

// deleteReplicas drops every replica of a deleted volume. A replica whose
// server does not answer stays in the record (the primary is gone; the
// record now names what is left) and the delete answers Unavailable, so
// the provisioner retries it until that server answers, or is declared
// gone (`dots server forget`): a delete is never reported while a copy of
// the data remains.
func (c *ControllerServer) deleteReplicas(ctx context.Context, rec placements.Record) error {
	var left []string
	var errs []string
	for _, s := range rec.Replicas {
		if err := c.dropReplica(ctx, s, rec.ID); err != nil {
			left = append(left, s)
			errs = append(errs, fmt.Sprintf("%s: %v", s, err))
		}
	}
	if len(left) == 0 {
		if err := c.placements.Delete(ctx, rec); err != nil {
			c.logPlacementLeft(rec.Kind, rec.ID, rec.Server, err)
		}
		return nil
	}
	next := rec
	next.Replicas = left
	if err := c.placements.Update(ctx, rec, next); err != nil {
		klog.ErrorS(err, "Recording the replicas a delete left", "volume", rec.ID, "left", left)
	}
	return fmt.Errorf("%w: volume %q deleted on %s, but replicas remain (retried until their servers answer, or are declared gone): %s",
		errUnavailable, rec.ID, rec.Server, strings.Join(errs, "; "))
}

// dropReplica destroys one server's replica of a volume; none there, or
// its server declared gone, is success.
func (c *ControllerServer) dropReplica(ctx context.Context, server, id string) error {
	m, ok := c.servers.Get(server)
	if !ok {
		if gone, err := c.placements.Forgotten(ctx, server); err == nil && gone {
			return nil
		}
		return fmt.Errorf("%w: storage server %q is not known to this controller now", errUnavailable, server)
	}
	rs, err := replService(m)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	err = rs.DropReplica(cctx, api.DropReplicaRequest{Volume: id})
	switch {
	case err == nil, status.Code(err) == codes.NotFound:
		return nil
	case errors.Is(err, api.ErrNotReplica) || status.Code(err) == codes.FailedPrecondition:
		// Refused: nothing there (fine), or a primary (never dropped).
		st, serr := rs.State(cctx, id)
		if serr == nil && !st.Exists {
			return nil
		}
	}
	if gone, ferr := c.placements.Forgotten(ctx, server); ferr == nil && gone {
		return nil // declared gone since: its copy went with it
	}
	return err
}
