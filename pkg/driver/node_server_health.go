package driver

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/mounter"
)

// ReasonServerUnreachable (node): the storage server's NFS port does not
// accept connections from this node. A hard NFS mount of it hangs on its
// next uncached access; stat may still answer from the attribute cache
// for a while, so the mount check alone can say "healthy" meanwhile.
const reasonNodeServerUnreachable = "ServerUnreachable"

// serverDialTimeout bounds the connection attempt to a volume's NFS server
// (also bounded by the stats timeout).
const serverDialTimeout = 3 * time.Second

// nfsEndpoint is host:port of a volume's NFS server, "" when the volume
// context names none.
func nfsEndpoint(vol mounter.Volume) string {
	if vol.Address == "" {
		return ""
	}
	port := vol.Port
	if port == 0 {
		port = 2049
	}
	host := vol.Address
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// dialTCP connects and closes: the server's NFS port answers.
func dialTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// serverHealth checks that the NFS server of a volume this plugin staged
// accepts connections: nil when it does, or when the plugin does not know
// the server (staged before the plugin's last start, or without an address).
func (s *NodeServer) serverHealth(ctx context.Context, id string) *csi.VolumeHealth_VolumeHealthEntry {
	addr := s.paths.server(id)
	if addr == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, min(serverDialTimeout, s.statsTimeout))
	defer cancel()
	if err := s.dial(ctx, addr); err != nil {
		return &csi.VolumeHealth_VolumeHealthEntry{Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: reasonNodeServerUnreachable,
			Message: fmt.Sprintf("the volume's NFS server %s does not accept connections from this node: %v", addr, err)}
	}
	return nil
}
