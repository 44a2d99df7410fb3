package client

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dots-csi/dots/internal/libnfs"
)

// MountPorts maps a server name to its NFSv3 MOUNT port, known for the local
// stack. With it the client speaks NFSv3, where the libnfs tools can create
// files on zfs-fuse; without it NFSv4 (see ENVIRONMENT.md of the project).
type MountPorts map[string]int

// nfsClient returns a userspace NFS client for a volume's export.
func (c *Client) nfsClient(ctx context.Context, id string, ports MountPorts) (libnfs.Client, string, error) {
	v, err := c.GetVolume(ctx, id)
	if err != nil {
		return libnfs.Client{}, "", err
	}
	nc := libnfs.Client{Host: v.NFSAddress, Port: v.NFSPort, Version: 4}
	if p := ports[v.Server]; p != 0 {
		nc.Version, nc.MountPort = 3, p
	}
	if nc.Port == 0 {
		nc.Port = 2049
	}
	return nc, v.Export, nil
}

func cleanPath(p string) (string, error) {
	if p == "" || strings.Contains(p, "..") {
		return "", fmt.Errorf("path %q: want a relative path inside the volume without ..", p)
	}
	return strings.TrimPrefix(p, "/"), nil
}

// Put writes data to path inside the volume, through its NFS export.
func (c *Client) Put(ctx context.Context, id, path string, data []byte, ports MountPorts) error {
	p, err := cleanPath(path)
	if err != nil {
		return err
	}
	nc, export, err := c.nfsClient(ctx, id, ports)
	if err != nil {
		return err
	}
	return explainAccess(id, nc.WriteFile(ctx, export, p, data))
}

// explainAccess names the volume in an export's refusal; Explain adds
// what to do (exports admit only the nodes a volume is published to).
func explainAccess(id string, err error) error {
	if errors.Is(err, libnfs.ErrAccess) {
		return fmt.Errorf("access denied: the NFS export of %s refused this node: %w", id, err)
	}
	return err
}

// Cat reads path inside the volume, through its NFS export.
func (c *Client) Cat(ctx context.Context, id, path string, ports MountPorts) ([]byte, error) {
	p, err := cleanPath(path)
	if err != nil {
		return nil, err
	}
	nc, export, err := c.nfsClient(ctx, id, ports)
	if err != nil {
		return nil, err
	}
	data, err := nc.ReadFile(ctx, export, p)
	return data, explainAccess(id, err)
}
