package server

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/capacity"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/mtls"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// Config is the configuration of `dots server`.
type Config struct {
	Name              string
	Endpoint          string
	HTTPAddress       string
	RunDir            string
	DefaultVolumeSize string

	Pool         string
	Vdevs        []string
	CreatePool   bool
	PoolFileSize string
	MountRoot    string
	ZFSCLI       string
	ZFSBinary    string
	ZpoolBinary  string
	ZFSTimeouts  command.Timeouts
	ExportOnExit bool
	// Fencing (see pkg/zfs fence.go): this node's hostid, given or derived
	// from a name (the node's), written to HostIDFile before the import;
	// ForceImport is the operator's word that the host that last used an
	// unexported pool is gone.
	HostID      string
	HostIDFrom  string
	HostIDFile  string
	ForceImport bool
	// SkipZFSModuleCheck starts without checking the OpenZFS kernel module
	// (--zfs-module-check=false; see startcheck.go).
	SkipZFSModuleCheck bool
	// ReconcileInterval is how often the pool and the exports are compared
	// and repaired, and the trash reaped.
	ReconcileInterval time.Duration

	// ExportAccess: who each export admits (per-node or clients).
	ExportAccess string

	NFS nfs.GaneshaConfig
	// Ops: the pool's metrics and scheduled scrubs (ops_config.go).
	Ops OpsConfig
	// TLS secures a tcp:// Endpoint (mutual TLS; see pkg/mtls).
	TLS mtls.ServerOptions
	// Replication: calls to other servers for replicas (repl_config.go).
	Replication ReplicationConfig
	// Zone: the server's failure zone (zone.go).
	Zone ZoneConfig
}

// AddFlags registers the server's flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "name", "", "name of this storage server, a DNS label (in Kubernetes: the pod name)")
	fs.StringVar(&c.Endpoint, "endpoint", "tcp://0.0.0.0:7070", "gRPC endpoint the controller calls (tcp:// serves mutual TLS: --tls-*)")
	c.TLS.AddFlags(fs)
	c.Zone.AddFlags(fs)
	fs.StringVar(&c.HTTPAddress, "http-address", ":8080", "address of /healthz, /readyz and /metrics")
	fs.StringVar(&c.RunDir, "run-dir", "/run/dots", "directory for runtime files (NFS server config and logs)")
	fs.StringVar(&c.DefaultVolumeSize, "default-volume-size", "1Gi", "size of a volume whose request names none")
	fs.StringVar(&c.Pool, "pool", "dots", "ZFS pool name")
	fs.Func("vdev", "device or file the pool lives on (repeatable; absolute path)", func(v string) error {
		c.Vdevs = append(c.Vdevs, v)
		return nil
	})
	fs.BoolVar(&c.CreatePool, "create-pool", false, "create the pool when it can be neither found nor imported")
	fs.StringVar(&c.PoolFileSize, "pool-file-size", "0", "size of a file vdev to create when it does not exist (e.g. 20Gi)")
	fs.StringVar(&c.MountRoot, "mount-root", "/var/lib/dots/mnt", "where the pool's datasets are mounted")
	fs.StringVar(&c.ZFSCLI, "zfs-cli", string(zfs.CLIAuto), "ZFS command-line flavour: auto, openzfs or zfs-fuse")
	fs.StringVar(&c.ZFSBinary, "zfs-binary", command.ZFS, "the zfs program (a path, or a name looked up in PATH)")
	fs.StringVar(&c.ZpoolBinary, "zpool-binary", command.Zpool, "the zpool program (a path, or a name looked up in PATH)")
	c.ZFSTimeouts.AddFlags(fs)
	fs.BoolVar(&c.ExportOnExit, "export-pool-on-exit", true, "export the pool on shutdown so another node can import it")
	fs.StringVar(&c.HostID, "hostid", "", "this node's hostid (8 hex digits), written to --hostid-file before the pool is imported; with OpenZFS the pool is fenced with multihost=on. Unique per node")
	fs.StringVar(&c.HostIDFrom, "hostid-from", "", "derive this node's hostid from this name (in Kubernetes: the node name), instead of --hostid")
	fs.StringVar(&c.HostIDFile, "hostid-file", zfs.DefaultHostIDFile, "where OpenZFS reads the hostid")
	fs.BoolVar(&c.ForceImport, "force-import", false, "import a pool another host used last and did not export, without multihost to prove that host gone: only when it is (detached, powered off)")
	fs.BoolFunc("zfs-module-check", "refuse to start when the OpenZFS kernel module is not loaded or not of the zfs userland's release series (default true; false skips the check; never checked with --zfs-cli=zfs-fuse)", func(v string) error {
		b, err := strconv.ParseBool(v)
		c.SkipZFSModuleCheck = !b
		return err
	})
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", time.Minute, "how often the pool and the exports are compared and repaired (volumes not mounted or not exported, exports of nothing, trash)")

	fs.IntVar(&c.NFS.NFSPort, "nfs-port", 2049, "NFS port")
	fs.IntVar(&c.NFS.MountPort, "nfs-mount-port", 0, "MOUNT protocol port (NFSv3 only)")
	fs.StringVar(&c.NFS.BindAddr, "nfs-bind-address", "0.0.0.0", "address the NFS server listens on")
	fs.Func("nfs-protocols", "NFS protocol versions, comma separated (default 4; 3 needs rpcbind)", intList(&c.NFS.Protocols))
	fs.Func("nfs-minor-versions", "NFSv4 minor versions, comma separated (default 1,2)", intList(&c.NFS.MinorVersions))
	fs.StringVar(&c.ExportAccess, "export-access", string(AccessPerNode),
		"who a volume's export admits: per-node (only the nodes it is published to by ControllerPublishVolume; needs the controller's --controller-publish) or clients (every address in --nfs-clients: weaker, any node can mount any volume)")
	fs.Func("nfs-clients", "CIDRs of the nodes, comma separated (required): no export ever admits an address outside them", func(v string) error {
		c.NFS.Clients = append(c.NFS.Clients, strings.Split(v, ",")...)
		return nil
	})
	fs.StringVar(&c.NFS.Squash, "nfs-squash", nfs.SquashRoot, "squashing of volumes created without the squash parameter: root_squash, root_id_squash, all_squash or no_root_squash")
	fs.StringVar(&c.NFS.Binary, "ganesha", "ganesha.nfsd", "NFS-Ganesha binary")
	fs.StringVar(&c.NFS.DBus, "nfs-dbus", nfs.DBusAuto,
		"how export changes reach NFS-Ganesha: auto (a private dbus-daemon beside ganesha; each change is one call to ganesha's export manager, falling back to a reload of every export with SIGHUP when the bus cannot start or a call fails), on (the same, but the server does not start without its bus) or off (SIGHUP only)")
	fs.StringVar(&c.NFS.DBusDaemon, "dbus-daemon", "dbus-daemon", "the dbus-daemon binary for --nfs-dbus")
	fs.DurationVar(&c.NFS.GracePeriod, "nfs-grace-period", DefaultGracePeriod,
		"NFSv4 grace period after a start, for clients to reclaim their state; new opens wait for its end (ganesha ends it early once every client it knew has reclaimed). At least --nfs-lease-lifetime")
	fs.DurationVar(&c.NFS.LeaseLifetime, "nfs-lease-lifetime", 0,
		"NFSv4 lease: a client silent this long loses its opens and locks; clients reconnect to a restarted server within half of it (default 16s, or the grace period if that is shorter)")
	c.Ops.AddFlags(fs)
	c.Replication.AddFlags(fs)
}

// NFSv4 timing defaults, from test/failover's measurements (README
// "Failover"). Ganesha checks whether grace can end only when its reaper
// runs, every half lease (at most 10 s): with every client it recorded
// reclaimed, grace ends at the first run, 8 s after a start with a 16 s
// lease (measured 7.0 s with 15 s, 10.0 s with 20 s); without (a client
// died with the node), at the first run after the full grace period, so
// the period is a multiple of the run interval (30 s with 7 s runs lasted
// 35 s). A grace period must be at least a lease, so that an idle client
// notices the restart at its next renewal and can still reclaim; twice
// gives Linux clients, which reconnect within half a lease, room to spare.
// A 16 s lease keeps a client's opens and locks through 16 s of silence.
const (
	DefaultLeaseLifetime = 16 * time.Second
	DefaultGracePeriod   = 32 * time.Second
)

func intList(dst *[]int) func(string) error {
	return func(v string) error {
		*dst = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return fmt.Errorf("%q is not a number", f)
			}
			*dst = append(*dst, n)
		}
		return nil
	}
}

// Validate checks the configuration and fills derived fields.
func (c *Config) Validate() error {
	if err := api.ValidateServerName(c.Name); err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	if err := c.Zone.Validate(); err != nil {
		return err
	}
	network, _, err := csirpc.ParseEndpoint(c.Endpoint)
	if err != nil {
		return fmt.Errorf("--endpoint: %w", err)
	}
	if network == "tcp" {
		if err := c.TLS.Validate(); err != nil {
			return err
		}
	}
	if !filepath.IsAbs(c.RunDir) || !filepath.IsAbs(c.MountRoot) {
		return errors.New("--run-dir and --mount-root must be absolute paths")
	}
	if _, err := c.defaultSize(); err != nil {
		return fmt.Errorf("--default-volume-size: %w", err)
	}
	if _, err := capacity.ParseSize(c.PoolFileSize); err != nil {
		return fmt.Errorf("--pool-file-size: %w", err)
	}
	if _, err := zfs.ParseCLI(c.ZFSCLI); err != nil {
		return fmt.Errorf("--zfs-cli: %w", err)
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = time.Minute
	}
	if c.ZFSTimeouts == (command.Timeouts{}) {
		c.ZFSTimeouts = command.DefaultTimeouts
	}
	if err := c.ZFSTimeouts.Validate(); err != nil {
		return err
	}
	switch ExportAccess(c.ExportAccess) {
	case "":
		c.ExportAccess = string(AccessPerNode)
	case AccessPerNode, AccessClients:
	default:
		return fmt.Errorf("--export-access %q: want %s or %s", c.ExportAccess, AccessPerNode, AccessClients)
	}
	if _, err := c.hostID(); err != nil {
		return err
	}
	if err := c.poolConfig(nil).Validate(); err != nil {
		return err
	}
	if err := c.Ops.Validate(); err != nil {
		return err
	}
	if err := c.Replication.Validate(); err != nil {
		return err
	}
	if c.NFS.LeaseLifetime == 0 && c.NFS.GracePeriod > 0 {
		// A shorter grace period asks for a lease that fits in it.
		c.NFS.LeaseLifetime = min(DefaultLeaseLifetime, c.NFS.GracePeriod)
	}
	g := c.nfsConfig()
	g.RecoveryDir = "/on-the-pool" // set by Run once the pool is open
	return g.Validate()
}

func (c *Config) defaultSize() (int64, error) {
	n, err := capacity.ParseSize(c.DefaultVolumeSize)
	if err == nil && n <= 0 {
		err = errors.New("must be positive")
	}
	return n, err
}

// hostID is the node's hostid from --hostid or --hostid-from; 0 when
// neither is given (the pool is then not fenced by multihost).
func (c *Config) hostID() (uint32, error) {
	switch {
	case c.HostID != "" && c.HostIDFrom != "":
		return 0, errors.New("--hostid and --hostid-from: give one")
	case c.HostID != "":
		id, err := zfs.ParseHostID(c.HostID)
		if err != nil {
			return 0, fmt.Errorf("--hostid: %w", err)
		}
		return id, nil
	case c.HostIDFrom != "":
		return zfs.HostIDFromName(c.HostIDFrom), nil
	}
	return 0, nil
}

func (c *Config) poolConfig(r command.Runner) zfs.Config {
	size, _ := capacity.ParseSize(c.PoolFileSize)
	id, _ := c.hostID()
	return zfs.Config{Pool: c.Pool, Vdevs: c.Vdevs, Mountpoint: c.MountRoot, Create: c.CreatePool, FileSize: size,
		Runner: r, CLI: zfs.CLI(c.ZFSCLI), HostID: id, HostIDFile: c.HostIDFile, ForceImport: c.ForceImport,
		Exclusive: true}
}

func (c *Config) binaries() map[string]string {
	return map[string]string{command.ZFS: c.ZFSBinary, command.Zpool: c.ZpoolBinary}
}

// credentials secure the API: mutual TLS on tcp://, nothing on a unix
// socket (plaintext, owner-only).
func (c *Config) credentials(reg prometheus.Registerer) (credentials.TransportCredentials, error) {
	if network, _, _ := csirpc.ParseEndpoint(c.Endpoint); network != "tcp" {
		return nil, nil
	}
	return mtls.ServerCredentials(c.TLS, reg)
}

// nfsConfig completes the NFS server's settings with paths under RunDir.
func (c *Config) nfsConfig() nfs.GaneshaConfig {
	g := c.NFS
	g.RunDir = filepath.Join(c.RunDir, "ganesha")
	return g
}

// options are the server's options from its configuration (validated).
func (c *Config) options() Options {
	size, _ := c.defaultSize()
	o := Options{Name: c.Name, DefaultCapacity: size, Access: ExportAccess(c.ExportAccess)}
	for _, s := range c.NFS.Clients {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
			o.Clients = append(o.Clients, p.Masked())
		}
	}
	switch c.NFS.Squash {
	case nfs.SquashNone:
		o.DefaultSquash = api.SquashNone
	case nfs.SquashRoot, "":
		o.DefaultSquash = api.SquashRoot
	case nfs.SquashAll:
		o.DefaultSquash = api.SquashAll
	}
	return o
}
