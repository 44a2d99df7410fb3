package driver

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/mounter"
)

// NodeOptions configure the node plugin.
type NodeOptions struct {
	// NodeID is the Kubernetes node name; no topology is reported, since
	// every node reaches every storage server.
	NodeID string
	// Addresses are the node's IP addresses, where its NFS traffic comes
	// from. They become part of the CSI node ID (NAME@ADDR,...), so the
	// exports of volumes published to the node admit exactly them.
	Addresses []string
	// AddressCIDRs: the addresses of this host's interfaces inside them are
	// node addresses too (see InterfaceAddresses).
	AddressCIDRs []string
	// MountMode is mounter.ModeNFS (every real node) or
	// mounter.ModeLocalBind (single-machine development stack only).
	MountMode string
	// KubeletDir is kubelet's root directory: every staging and target
	// path of a request must lie below it.
	KubeletDir string
	// LocalBindRoots are the volumes directories the local-bind mode may
	// bind from, one per storage server on this machine
	// (mounter.VolumesDir of its mount root); only their direct children,
	// the volumes, are bound.
	LocalBindRoots []string
	// StatsTimeout bounds each stat/statfs of a mount (stats, health, stale
	// checks), so a dead server cannot hang kubelet.
	StatsTimeout time.Duration
	// UnmountTimeout bounds each unmount attempt (plain, force, lazy).
	UnmountTimeout time.Duration
	// MountTryTimeout bounds each server's mount try when a volume lists
	// several servers (api.ContextServers), so a dead one costs at most
	// this before the next is tried.
	MountTryTimeout time.Duration
	// Servers, ServersFile and DiscoverDNS are the controller's server
	// discovery (at most one; optional): in nfs mode, a volume that no
	// server of its volume context serves is looked for on the other
	// servers discovery lists (moved to a server its PV never named).
	Servers     []discovery.Server
	ServersFile string
	DiscoverDNS string
}

// AddFlags registers the options as flags, with their defaults.
func (o *NodeOptions) AddFlags(fs *flag.FlagSet) {
	if o.MountMode == "" {
		o.MountMode = mounter.ModeNFS
	}
	if o.StatsTimeout == 0 {
		o.StatsTimeout = mounter.DefaultStatTimeout
	}
	if o.UnmountTimeout == 0 {
		o.UnmountTimeout = mounter.DefaultUnmountTimeout
	}
	if o.KubeletDir == "" {
		o.KubeletDir = mounter.DefaultKubeletDir
	}
	if o.MountTryTimeout == 0 {
		o.MountTryTimeout = mounter.DefaultMountTryTimeout
	}
	fs.StringVar(&o.NodeID, "node-id", o.NodeID, "this node's name, reported as the CSI node ID (required)")
	fs.Func("node-address", "this node's IP address, where its NFS traffic comes from (repeatable or comma separated; in Kubernetes status.hostIP); needed when exports admit only the nodes a volume is published to", func(v string) error {
		for _, a := range strings.Split(v, ",") {
			o.Addresses = append(o.Addresses, strings.TrimSpace(a))
		}
		return nil
	})
	fs.Func("node-address-cidrs", "CIDRs, comma separated: this host's interface addresses inside them are node addresses too (in Kubernetes the NFS clients' CIDRs: node-to-Service traffic that kube-proxy masquerades leaves from a tunnel or bridge address, in the pod CIDR on overlay networks)", func(v string) error {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" {
				o.AddressCIDRs = append(o.AddressCIDRs, c)
			}
		}
		return nil
	})
	fs.StringVar(&o.MountMode, "mount-mode", o.MountMode,
		"how volumes are mounted: nfs (NFSv4 mounts, for every real node) or local-bind (DEVELOPMENT ONLY: bind mounts of dataset mountpoints of a storage server on this same machine, for hosts without a kernel NFS client)")
	fs.StringVar(&o.KubeletDir, "kubelet-dir", o.KubeletDir,
		"kubelet's root directory (its --root-dir): staging and target paths outside it are refused")
	fs.Var((*pathList)(&o.LocalBindRoots), "local-bind-root",
		"local-bind mode only: a storage server's volumes directory (MOUNT-ROOT/dots/volumes), whose entries may be bound; repeat it for each server on this machine (required with --mount-mode=local-bind)")
	fs.DurationVar(&o.StatsTimeout, "stats-timeout", o.StatsTimeout, "bound on each stat/statfs of a mounted volume")
	fs.DurationVar(&o.UnmountTimeout, "unmount-timeout", o.UnmountTimeout, "bound on each unmount attempt before escalating to a forced, then lazy, unmount")
	o.discovery().AddFlags(fs)
	fs.DurationVar(&o.MountTryTimeout, "mount-try-timeout", o.MountTryTimeout, "bound on each server's mount try when a volume lists several servers (replicas): a dead server costs at most this before the next is tried")
}

// Validate checks the options.
func (o NodeOptions) Validate() error {
	var errs []error
	if o.NodeID == "" {
		errs = append(errs, errors.New("--node-id is required"))
	} else if _, err := o.csiNodeID(); err != nil {
		errs = append(errs, fmt.Errorf("--node-id, --node-address: %w", err))
	}
	if _, err := parseCIDRs(o.AddressCIDRs); err != nil {
		errs = append(errs, fmt.Errorf("--node-address-cidrs: %w", err))
	}
	if err := mounter.CheckKubeletDir(o.KubeletDir); err != nil {
		errs = append(errs, fmt.Errorf("--kubelet-dir: %w", err))
	}
	switch o.MountMode {
	case mounter.ModeNFS:
		if len(o.LocalBindRoots) != 0 {
			errs = append(errs, fmt.Errorf("--local-bind-root is only valid with --mount-mode=%s", mounter.ModeLocalBind))
		}
	case mounter.ModeLocalBind:
		if len(o.LocalBindRoots) == 0 {
			errs = append(errs, fmt.Errorf("--mount-mode=%s needs --local-bind-root", mounter.ModeLocalBind))
		}
		for _, r := range o.LocalBindRoots {
			if !filepath.IsAbs(r) || filepath.Clean(r) != r || r == "/" {
				errs = append(errs, fmt.Errorf("--local-bind-root must be a clean absolute path other than /, not %q", r))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("--mount-mode must be %s or %s, not %q", mounter.ModeNFS, mounter.ModeLocalBind, o.MountMode))
	}
	if o.StatsTimeout <= 0 {
		errs = append(errs, errors.New("--stats-timeout must be positive"))
	}
	if o.UnmountTimeout <= 0 {
		errs = append(errs, errors.New("--unmount-timeout must be positive"))
	}
	if o.MountTryTimeout < 0 {
		errs = append(errs, errors.New("--mount-try-timeout must not be negative"))
	}
	if err := o.discovery().Validate(); err != nil {
		errs = append(errs, err)
	} else if _, err := o.discovery().Source(); err != nil {
		errs = append(errs, fmt.Errorf("--discover-dns: %w", err))
	}
	return errors.Join(errs...)
}

// MounterConfig is the configuration of the real host mounter for these
// options: mounter.New(o.MounterConfig()).
func (o NodeOptions) MounterConfig() mounter.Config {
	return mounter.Config{
		Mode:            o.MountMode,
		LocalBindRoots:  o.LocalBindRoots,
		KubeletDir:      o.KubeletDir,
		StatTimeout:     o.StatsTimeout,
		UnmountTimeout:  o.UnmountTimeout,
		MountTryTimeout: o.MountTryTimeout,
	}
}

// discovery binds the server discovery flags to the options (a pointer
// receiver: the flags write into o).
func (o *NodeOptions) discovery() discovery.Flags {
	return discovery.Flags{Servers: &o.Servers, File: &o.ServersFile, DNS: &o.DiscoverDNS}
}

// pathList is a flag that may be repeated, one path each time.
type pathList []string

func (l *pathList) String() string { return strings.Join(*l, ",") }

func (l *pathList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// csiNodeID is the node ID NodeGetInfo reports: NAME@ADDR,... with
// addresses, the bare name without (a node no export can be published to).
func (o NodeOptions) csiNodeID() (string, error) {
	if len(o.Addresses) == 0 {
		if len(o.NodeID) > api.MaxNodeIDLen {
			return "", fmt.Errorf("node name is longer than %d bytes", api.MaxNodeIDLen)
		}
		return o.NodeID, nil
	}
	id, err := api.NewNodeID(o.NodeID, o.Addresses)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

func parseCIDRs(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// InterfaceAddresses returns the node's addresses: the given ones, then
// each address of this host's interfaces (ifaces, from net.InterfaceAddrs)
// that lies inside o.AddressCIDRs, is not loopback or link-local, and is
// not given already; at most api.MaxNodeAddresses in all (the rest are
// returned as left out). The address a storage server sees on a node's
// NFS connection is the node's own when the node reaches the server's pod
// directly, and the address of the interface the packets leave by when
// kube-proxy masquerades node-to-Service traffic: a tunnel's or a bridge's
// on overlay networks (flannel.1, cni0, tunl0, vxlan.calico, cilium_host).
func (o NodeOptions) InterfaceAddresses(ifaces []net.Addr) (addrs, leftOut []string, err error) {
	cidrs, err := parseCIDRs(o.AddressCIDRs)
	if err != nil {
		return nil, nil, err
	}
	addrs = slices.Clone(o.Addresses)
	seen := map[netip.Addr]bool{}
	for _, a := range o.Addresses {
		if ip, err := netip.ParseAddr(strings.TrimSpace(a)); err == nil {
			seen[ip.Unmap()] = true
		}
	}
	var found []netip.Addr
	for _, ia := range ifaces {
		var ip netip.Addr
		if p, err := netip.ParsePrefix(ia.String()); err == nil { // *net.IPNet
			ip = p.Addr().Unmap()
		} else if a, err := netip.ParseAddr(ia.String()); err == nil { // *net.IPAddr
			ip = a.Unmap()
		} else {
			continue
		}
		if seen[ip] || ip.IsLoopback() || ip.IsLinkLocalUnicast() || !slices.ContainsFunc(cidrs, func(c netip.Prefix) bool { return c.Contains(ip) }) {
			continue
		}
		seen[ip] = true
		found = append(found, ip)
	}
	slices.SortFunc(found, func(a, b netip.Addr) int { return a.Compare(b) })
	for _, ip := range found {
		if len(addrs) < api.MaxNodeAddresses {
			addrs = append(addrs, ip.String())
		} else {
			leftOut = append(leftOut, ip.String())
		}
	}
	return addrs, leftOut, nil
}
