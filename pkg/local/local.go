package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/internal/devzfs"
	"github.com/dots-csi/dots/pkg/daemon"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/driver"
	"github.com/dots-csi/dots/pkg/health"
	"github.com/dots-csi/dots/pkg/mounter"
	"github.com/dots-csi/dots/pkg/mtls"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
	"github.com/dots-csi/dots/pkg/server"
	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// ServerInfo describes one local storage server.
type ServerInfo struct {
	Name      string `json:"name"`
	Pool      string `json:"pool"`
	API       string `json:"api"`
	HTTP      string `json:"http"`
	NFSPort   int    `json:"nfsPort"`
	MountPort int    `json:"mountPort"`
}

// Info is what a running stack tells its clients (STATE/local.json, 0600).
// It holds addresses and paths, never a key.
type Info struct {
	PID      int          `json:"pid"`
	Endpoint string       `json:"endpoint"`
	HTTP     string       `json:"http"`  // /metrics, /healthz, /readyz
	Admin    string       `json:"admin"` // unix:// socket serving /servers
	Servers  []ServerInfo `json:"servers"`
}

const infoFile = "local.json"

// ReadInfo reads the Info of the stack running on stateDir.
func ReadInfo(stateDir string) (Info, error) {
	var info Info
	data, err := os.ReadFile(filepath.Join(stateDir, infoFile))
	if errors.Is(err, os.ErrNotExist) {
		return info, fmt.Errorf("no dots local stack runs on %s (start one with `dots local --state-dir %s`)", stateDir, stateDir)
	}
	if err != nil {
		return info, err
	}
	return info, json.Unmarshal(data, &info)
}

// Run starts the stack, calls ready once everything answers, and serves
// until ctx is done; then it tears down in order, leaving no mounts or
// processes and, without Keep, no pools.
func Run(ctx context.Context, cfg Config, ready func(Info)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	for _, d := range []string{cfg.StateDir, cfg.path("pools"), cfg.path("mnt"), cfg.path("run"), cfg.PodsDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	unlock, err := lockStateDir(cfg.path("lock"))
	if err != nil {
		return err
	}
	defer unlock()
	// The stack's own CA (kept across runs) and certificates: its servers
	// serve mutual TLS like any other, its controller dials with one.
	pki, err := mtls.EnsureBundle(cfg.path("tls"))
	if err != nil {
		return err
	}
	creds, err := mtls.ClientCredentials(pki.ClientOptions())
	if err != nil {
		return err
	}
	// The stack's own zfs commands (starting the daemon, discarding
	// pools); each server runs its own, with its own metrics.
	zfsCmds, err := command.NewHost(command.HostConfig{Timeouts: command.DefaultTimeouts})
	if err != nil {
		return err
	}
	if err := devzfs.EnsureDaemon(ctx, zfsCmds); err != nil {
		return err
	}
	if !cfg.Keep {
		discardPools(ctx, zfsCmds, cfg)
	}

	// Teardown runs in reverse, also after a failed start: mounts, then
	// servers (and their pools).
	var servers []*localServer
	stopServers := func() {}
	defer func() {
		unmountAll(cfg, servers)
		stopServers()
		if !cfg.Keep {
			discardPools(context.Background(), zfsCmds, cfg)
		}
	}()
	servers, stopServers, err = startServers(ctx, cfg, pki.ServerOptions())
	if err != nil {
		return err
	}

	metrics := daemon.NewRegistry()
	var list discovery.Static
	for _, s := range servers {
		list = append(list, discovery.Server{Name: s.info.Name, APIAddress: s.info.API, NFSAddress: "127.0.0.1",
			NFSPort: s.info.NFSPort, LocalPaths: true})
	}
	members := registry.New(list, creds, registry.Options{Interval: 5 * time.Second, Replication: driver.ReplicationClient}, metrics)
	members.Refresh(ctx)
	store, err := placements.NewDir(cfg.path("placements"))
	if err != nil {
		return err
	}
	cs, err := driver.NewControllerServer(members, store, driver.ControllerOptions{DefaultCapacity: 1 << 30, Publish: true}, metrics)
	if err != nil {
		return err
	}
	admin := cs.AdminHandlers() // promote, drain, rebalance
	admin["/servers"] = members
	ids := driver.NewIdentityServer(true, driver.ServersReady(members))
	host, _ := os.Hostname()
	// The node binds only volumes, and mounts only below the state dir
	// (the client's mount targets stand in for kubelet's paths).
	var volumeDirs []string
	for i := range cfg.Servers {
		volumeDirs = append(volumeDirs, mounter.VolumesDir(cfg.path("mnt", serverName(i))))
	}
	// The node's NFS traffic (the client's put and cat) comes from
	// loopback: exports admit it once a volume is published to the node.
	nodeOpts := driver.NodeOptions{NodeID: host, Addresses: []string{nodeAddress}, MountMode: mounter.ModeLocalBind, LocalBindRoots: volumeDirs, KubeletDir: cfg.PodsDir(),
		StatsTimeout: mounter.DefaultStatTimeout, UnmountTimeout: mounter.DefaultUnmountTimeout}
	m, err := mounter.New(nodeOpts.MounterConfig())
	if err != nil {
		return err
	}
	ns, err := driver.NewNodeServer(nodeOpts, m)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.path(infoFile))
	return daemon.Run(ctx, daemon.Spec{
		Name:     "local stack",
		Endpoint: cfg.Endpoint(),
		Register: func(g *grpc.Server) {
			csi.RegisterIdentityServer(g, ids)
			csi.RegisterControllerServer(g, cs)
			csi.RegisterGroupControllerServer(g, cs)
			csi.RegisterNodeServer(g, ns)
		},
		Codes:       driver.LocalCodes,
		HTTPAddress: cfg.HTTPAddress,
		Metrics:     metrics,
		Ready:       []health.Check{driver.ServersReady(members)},

		AdminSocket:   cfg.path("admin.sock"),
		AdminHandlers: admin,
		Background:    background(cfg, members, cs),
		Grace:         5 * time.Second,
	}, func(a daemon.Addrs) error {
		info := Info{PID: os.Getpid(), Endpoint: cfg.Endpoint(), HTTP: "http://" + a.HTTP, Admin: "unix://" + a.Admin}
		for _, s := range servers {
			info.Servers = append(info.Servers, s.info)
		}
		if err := writeInfo(cfg.path(infoFile), info); err != nil {
			return fmt.Errorf("writing the stack's description for clients: %w", err)
		}
		klog.InfoS("Local stack ready", "endpoint", info.Endpoint, "http", info.HTTP, "servers", len(servers), "mountMode", mounter.ModeLocalBind)
		if ready != nil {
			ready(info)
		}
		return nil
	})
}

// background is what the stack runs beside its endpoint: the registry's
// probes, the placements' reconcile, and (--promote-after) automatic
// promotion: the stack's one controller is its own leader.
func background(cfg Config, members *registry.Registry, cs *driver.ControllerServer) []func(context.Context) error {
	out := []func(context.Context) error{
		func(ctx context.Context) error { members.Run(ctx); return nil },
		func(ctx context.Context) error { cs.ReconcilePlacements(ctx, time.Minute); return nil },
	}
	if cfg.PromoteAfter > 0 {
		out = append(out, func(ctx context.Context) error { cs.AutoPromote(ctx, cfg.PromoteAfter); return nil })
	}
	return out
}

// nodeAddress is the local node's address: where its NFS traffic comes
// from, and all the servers' exports may ever admit.
const nodeAddress = "127.0.0.1"

type localServer struct {
	info ServerInfo
	pool *zfs.Pool
}

// startServers runs each storage server in this process, one after the
// other (NFS servers register with the one rpcbind in turn), and returns
// once all serve; stop cancels them and waits for their clean shutdown. On
// error, the servers already started are stopped.
func startServers(ctx context.Context, cfg Config, tls mtls.ServerOptions) ([]*localServer, func(), error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	stop := func() { cancel(); wg.Wait() }
	var out []*localServer
	for i := range cfg.Servers {
		ls, err := startServer(sctx, cfg, tls, i, &wg)
		if err == nil {
			out = append(out, ls)
			continue
		}
		stop()
		return nil, func() {}, err
	}
	return out, stop, nil
}

func startServer(ctx context.Context, cfg Config, tls mtls.ServerOptions, i int, wg *sync.WaitGroup) (*localServer, error) {
	nfsPort, mountPort, err := freePorts()
	if err != nil {
		return nil, err
	}
	name := serverName(i)
	scfg := server.Config{
		Name: name, Endpoint: "tcp://127.0.0.1:0", HTTPAddress: "127.0.0.1:0",
		RunDir: cfg.path("run", name), DefaultVolumeSize: "1Gi",
		Pool: cfg.poolName(i), Vdevs: []string{cfg.path("pools", name+".img")}, CreatePool: true,
		PoolFileSize: cfg.PoolSize, MountRoot: cfg.path("mnt", name), ZFSCLI: string(zfs.CLIAuto),
		ZFSBinary: command.ZFS, ZpoolBinary: command.Zpool, ZFSTimeouts: command.DefaultTimeouts,
		ExportOnExit: cfg.Keep, TLS: tls,
		// Each export admits only the node a volume is published to.
		ExportAccess: string(server.AccessPerNode),
		// Metrics a few seconds old on one machine; scrubs as in production.
		Ops: server.OpsConfig{StatsInterval: 5 * time.Second, ScrubInterval: server.DefaultScrubInterval},
		NFS: nfs.GaneshaConfig{
			NFSPort: nfsPort, MountPort: mountPort, BindAddr: "127.0.0.1",
			// NFSv3 and v4.0 too, so the libnfs client of the demo and
			// the tests can read and write (see ENVIRONMENT.md).
			Protocols: []int{3, 4}, MinorVersions: []int{0, 1, 2},
			Clients: []string{nodeAddress + "/32"}, Squash: nfs.SquashRoot,
			// Nothing to reclaim on one machine; a short grace keeps a
			// --keep restart from answering JUKEBOX for 90 s.
			GracePeriod: 2 * time.Second,
		},
	}
	ls := &localServer{info: ServerInfo{Name: name, Pool: scfg.Pool, NFSPort: nfsPort, MountPort: mountPort}}
	ready, errc := make(chan struct{}), make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- server.Run(ctx, scfg, func(r server.Running) {
			ls.info.API, ls.info.HTTP, ls.pool = r.Endpoint, r.HTTP, r.Pool
			close(ready)
		})
	}()
	select {
	case <-ready:
		// A server that fails later is seen by the registry's probes.
		go func() {
			if err := <-errc; err != nil {
				klog.ErrorS(err, "Storage server stopped", "server", name)
			}
		}()
		return ls, nil
	case err := <-errc:
		return nil, fmt.Errorf("storage server %s: %w", name, err)
	}
}

// freePorts picks two free loopback ports for an NFS server.
func freePorts() (int, int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		ls = append(ls, l)
		_, p, _ := net.SplitHostPort(l.Addr().String())
		n, _ := strconv.Atoi(p)
		ports = append(ports, n)
	}
	return ports[0], ports[1], nil
}

func writeInfo(path string, info Info) error {
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp) // a crashed run's, maybe of another mode
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
