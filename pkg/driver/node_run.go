package driver

import (
	"context"
	"flag"
	"fmt"
	"net"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/daemon"
	"github.com/dots-csi/dots/pkg/mounter"
)

// NodeConfig is the configuration of `dots node`.
type NodeConfig struct {
	Endpoint    string
	HTTPAddress string
	NodeOptions
}

// AddFlags registers the node plugin's flags.
func (c *NodeConfig) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint to serve (kubelet's plugin socket)")
	fs.StringVar(&c.HTTPAddress, "http-address", ":8082", "address of /healthz, /readyz and /metrics")
	c.NodeOptions.AddFlags(fs)
}

// Validate checks the configuration.
func (c *NodeConfig) Validate() error {
	if _, _, err := csirpc.ParseEndpoint(c.Endpoint); err != nil {
		return err
	}
	return c.NodeOptions.Validate()
}

// RunNode serves the node plugin (Identity and Node) until ctx is done.
func RunNode(ctx context.Context, cfg NodeConfig, ready func(daemon.Addrs) error) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if len(cfg.AddressCIDRs) > 0 {
		ifaces, err := net.InterfaceAddrs()
		if err != nil {
			return fmt.Errorf("this host's addresses: %w", err)
		}
		addrs, leftOut, err := cfg.InterfaceAddresses(ifaces)
		if err != nil {
			return err
		}
		if len(leftOut) > 0 {
			klog.InfoS("More interface addresses than a node ID holds: exports never admit these", "leftOut", leftOut, "max", api.MaxNodeAddresses)
		}
		klog.InfoS("Node addresses", "given", cfg.Addresses, "cidrs", cfg.AddressCIDRs, "addresses", addrs)
		cfg.Addresses = addrs
	}
	m, err := mounter.New(cfg.MounterConfig())
	if err != nil {
		return err
	}
	ns, err := NewNodeServer(cfg.NodeOptions, m)
	if err != nil {
		return err
	}
	if cfg.MountMode == mounter.ModeLocalBind {
		klog.InfoS("DEVELOPMENT MODE: volumes are bind-mounted from a storage server on this machine, not over NFS", "mountMode", cfg.MountMode, "localBindRoots", cfg.LocalBindRoots)
	}
	return daemon.Run(ctx, daemon.Spec{
		Name:     "node plugin " + cfg.NodeID,
		Endpoint: cfg.Endpoint,
		Register: func(g *grpc.Server) {
			csi.RegisterIdentityServer(g, NewIdentityServer(false, nil))
			csi.RegisterNodeServer(g, ns)
		},
		Codes:       NodeCodes,
		HTTPAddress: cfg.HTTPAddress,
		Metrics:     daemon.NewRegistry(),
	}, ready)
}
