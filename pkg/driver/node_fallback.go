package driver

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/mounter"
)

// discoveryTimeout bounds the lookup of the servers when the listed ones
// failed (a DNS SRV query, a file read).
const discoveryTimeout = 5 * time.Second

// stage mounts the volume from the servers its context lists, in order;
// when none serves it and server discovery is configured (nfs mode), from
// the other servers discovery lists: a volume drained or promoted onto a
// server its PV never named. Each of those tries is bounded like a listed
// one.
func (s *NodeServer) stage(ctx context.Context, vols []mounter.Volume, staging string, flags []string, readOnly bool) (mounter.Volume, error) {
	used, err := s.m.StageFrom(ctx, vols, staging, flags, readOnly)
	if err == nil || s.discover == nil || s.m.Mode() != mounter.ModeNFS || !mounter.NotServed(err) || ctx.Err() != nil {
		return used, err
	}
	more, derr := s.unlisted(ctx, vols)
	if derr != nil {
		return mounter.Volume{}, fmt.Errorf("%w; and listing the other servers failed: %v", err, derr)
	}
	if len(more) == 0 {
		return mounter.Volume{}, err
	}
	names := make([]string, 0, len(more))
	for _, v := range more {
		names = append(names, v.Server)
	}
	klog.InfoS("No listed server serves the volume; trying the other discovered servers", "volumeID", vols[0].ID, "servers", names, "err", err)
	used, err2 := s.m.StageFrom(ctx, more, staging, flags, readOnly, mounter.BoundEachTry())
	if err2 != nil {
		return mounter.Volume{}, fmt.Errorf("%w; then the servers discovery lists beyond the volume context (%s): %v", err, strings.Join(names, ", "), err2)
	}
	klog.InfoS("Volume found on a server its volume context does not list (it moved)", "volumeID", used.ID, "server", used.Server, "from", used.String())
	return used, nil
}

// unlisted turns the discovered servers the volume context does not name
// (by name or by NFS address) into locations of the volume.
func (s *NodeServer) unlisted(ctx context.Context, vols []mounter.Volume) ([]mounter.Volume, error) {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	servers, err := s.discover.Servers(ctx)
	if err != nil {
		return nil, err
	}
	listed := map[string]bool{}
	for _, v := range vols {
		listed[v.Server] = true
		listed[endpointOf(v.Address, v.Port)] = true
	}
	var out []mounter.Volume
	for _, srv := range servers {
		if listed[srv.Name] || listed[endpointOf(srv.NFSAddress, srv.NFSPort)] {
			continue
		}
		out = append(out, mounter.Volume{ID: vols[0].ID, Server: srv.Name, Address: srv.NFSAddress, Port: srv.NFSPort, Export: vols[0].Export})
	}
	return out, nil
}

// endpointOf is an NFS server's host:port key (port 0 is 2049).
func endpointOf(addr string, port int) string {
	return nfsEndpoint(mounter.Volume{Address: addr, Port: port})
}
