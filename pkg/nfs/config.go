package nfs

import (
	"cmp"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// Squash modes accepted in GaneshaConfig.Squash.
const (
	SquashRoot   = "root_squash"    // root becomes the anonymous user
	SquashRootID = "root_id_squash" // root's uid and gid are squashed, other gids kept
	SquashAll    = "all_squash"     // every user becomes the anonymous user
	SquashNone   = "no_root_squash" // ids are trusted as sent
)

// GaneshaConfig configures one NFS-Ganesha server.
type GaneshaConfig struct {
	// Binary is the ganesha daemon; default "ganesha.nfsd" from PATH.
	Binary string
	// RunDir holds the generated config, the exports file, the pid file
	// and the log. Required, absolute.
	RunDir string
	// NFSPort is the NFS port; default 2049.
	NFSPort int
	// MountPort is the MOUNT protocol port, needed (and required) only
	// when Protocols includes 3. It is fixed so that several servers can
	// share one machine and clients can skip rpcbind.
	MountPort int
	// BindAddr is the address to listen on; default 0.0.0.0.
	BindAddr string
	// Protocols are the NFS versions served; default [4]. NFSv4 needs no
	// rpcbind; 3 needs rpcbind running before Start.
	Protocols []int
	// MinorVersions are the NFSv4 minor versions; default [1, 2]. The
	// libnfs client speaks only 4.0, so tests add 0.
	MinorVersions []int
	// Clients are the CIDRs that may ever mount: every export's clients
	// must lie inside them. Required: with none the server refuses to
	// start, so nothing is ever exported to the world by accident.
	Clients []string
	// Squash is the uid mapping; default root_squash. One of the Squash*
	// constants.
	Squash string
	// RecoveryDir keeps NFSv4 client recovery state. Put it on the pool's
	// disk: when the server moves to another node, clients find their
	// state there and reclaim it during the grace period. Required,
	// absolute.
	RecoveryDir string
	// GracePeriod and LeaseLifetime are NFSv4's; zero keeps ganesha's
	// defaults (90 s and 60 s). Whole seconds, at most 180 s and 120 s,
	// and the grace period never shorter than the lease: a client may
	// only notice a restart at its next renewal, a lease after its last,
	// and must still be in time to reclaim.
	GracePeriod   time.Duration
	LeaseLifetime time.Duration

	// StartTimeout bounds a start until the NFS port answers; default 30 s.
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL;
	// default 10 s.
	StopTimeout time.Duration
	// ReloadTimeout bounds one export reload; a reload that takes longer
	// gets the server restarted. Default 2 min (a reload re-reads every
	// export: measured with ganesha 4.3, 0.5 s for 800 exports, about 2
	// minutes for 10,000, as long as a start with them).
	ReloadTimeout time.Duration
	// RestartDelay is the first delay before restarting a crashed server;
	// it doubles on each failure up to MaxRestartDelay. Defaults 200 ms
	// and 30 s.
	RestartDelay    time.Duration
	MaxRestartDelay time.Duration

	// DBus selects how export changes reach ganesha: DBusOff (the
	// default) rewrites the exports file and reloads it all with SIGHUP;
	// DBusAuto and DBusOn run a private dbus-daemon beside ganesha and
	// add, update and remove single exports through its export manager,
	// falling back to SIGHUP when a call fails. DBusAuto also serves
	// (with SIGHUP only) when the bus cannot start; DBusOn then fails.
	DBus string
	// DBusDaemon is the bus binary; default "dbus-daemon" from PATH.
	DBusDaemon string
	// DBusTimeout bounds one export manager call; default 10 s. A call
	// that takes longer falls back to SIGHUP.
	DBusTimeout time.Duration
}

// DBus modes for GaneshaConfig.DBus.
const (
	DBusOff  = "off"
	DBusAuto = "auto"
	DBusOn   = "on"
)

// Ganesha's own NFSv4 timing, used when the config leaves them zero.
const (
	ganeshaGrace = 90 * time.Second
	ganeshaLease = 60 * time.Second
)

// The anonymous ids squashed users become: "nobody" on Debian and most
// distributions (ganesha's own default, -2, shows up as 4294967294).
const anonID = 65534

func (c GaneshaConfig) withDefaults() GaneshaConfig {
	if c.Binary == "" {
		c.Binary = "ganesha.nfsd"
	}
	if c.NFSPort == 0 {
		c.NFSPort = 2049
	}
	if c.BindAddr == "" {
		c.BindAddr = "0.0.0.0"
	}
	if len(c.Protocols) == 0 {
		c.Protocols = []int{4}
	}
	if len(c.MinorVersions) == 0 {
		c.MinorVersions = []int{1, 2}
	}
	if c.Squash == "" {
		c.Squash = SquashRoot
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.ReloadTimeout == 0 {
		c.ReloadTimeout = 2 * time.Minute
	}
	if c.RestartDelay == 0 {
		c.RestartDelay = 200 * time.Millisecond
	}
	if c.MaxRestartDelay == 0 {
		c.MaxRestartDelay = 30 * time.Second
	}
	if c.DBus == "" {
		c.DBus = DBusOff
	}
	if c.DBusDaemon == "" {
		c.DBusDaemon = "dbus-daemon"
	}
	if c.DBusTimeout == 0 {
		c.DBusTimeout = 10 * time.Second
	}
	// Copies, so that normalising below never writes to the caller's slices.
	c.Protocols = slices.Clone(c.Protocols)
	c.MinorVersions = slices.Clone(c.MinorVersions)
	c.Clients = slices.Clone(c.Clients)
	return c
}

// Validate reports whether the configuration, with defaults applied, can
// run a server.
func (c GaneshaConfig) Validate() error {
	_, err := c.normalized()
	return err
}

// normalized applies defaults, validates and canonicalises (sorted protocol
// lists, masked CIDRs).
func (c GaneshaConfig) normalized() (GaneshaConfig, error) {
	c = c.withDefaults()
	bad := func(format string, args ...any) (GaneshaConfig, error) {
		return GaneshaConfig{}, fmt.Errorf("%w: ganesha config: "+format, append([]any{ErrInvalid}, args...)...)
	}
	for _, bin := range []string{c.Binary, c.DBusDaemon} {
		if !filepath.IsAbs(bin) && filepath.Base(bin) != bin {
			return bad("binary %q must be a bare name or an absolute path", bin)
		}
	}
	switch c.DBus {
	case DBusOff, DBusAuto, DBusOn:
	default:
		return bad("DBus mode %q not one of %s, %s, %s", c.DBus, DBusAuto, DBusOn, DBusOff)
	}
	if err := checkPath("run dir", c.RunDir); err != nil {
		return bad("%v", err)
	}
	if err := checkPath("recovery dir", c.RecoveryDir); err != nil {
		return bad("%v", err)
	}
	if c.DBus != DBusOff && len(c.busSocket()) > maxSocketPath {
		return bad("run dir %s too long for the DBus socket %s (at most %d bytes)", c.RunDir, c.busSocket(), maxSocketPath)
	}
	if c.NFSPort < 1 || c.NFSPort > 65535 {
		return bad("NFS port %d out of range", c.NFSPort)
	}
	addr, err := netip.ParseAddr(c.BindAddr)
	if err != nil || addr.Zone() != "" {
		return bad("bind address %q is not an IP address", c.BindAddr)
	}
	c.BindAddr = addr.String()

	slices.Sort(c.Protocols)
	c.Protocols = slices.Compact(c.Protocols)
	for _, p := range c.Protocols {
		if p != 3 && p != 4 {
			return bad("protocol %d not supported (3 or 4)", p)
		}
	}
	if slices.Contains(c.Protocols, 3) {
		if c.MountPort < 1 || c.MountPort > 65535 {
			return bad("NFSv3 needs a mount port, got %d", c.MountPort)
		}
		if c.MountPort == c.NFSPort {
			return bad("mount port and NFS port are both %d", c.NFSPort)
		}
	} else if c.MountPort != 0 {
		return bad("mount port %d set but NFSv3 is not enabled", c.MountPort)
	}
	slices.Sort(c.MinorVersions)
	c.MinorVersions = slices.Compact(c.MinorVersions)
	for _, v := range c.MinorVersions {
		if v < 0 || v > 2 {
			return bad("NFSv4 minor version %d not supported (0, 1 or 2)", v)
		}
	}

	if len(c.Clients) == 0 {
		return bad("no client networks: refusing to export to nobody or everybody")
	}
	for i, s := range c.Clients {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return bad("client network %q is not a CIDR", s)
		}
		c.Clients[i] = p.Masked().String()
	}
	slices.Sort(c.Clients)
	c.Clients = slices.Compact(c.Clients)

	switch c.Squash {
	case SquashRoot, SquashRootID, SquashAll, SquashNone:
	default:
		return bad("squash %q not one of %s, %s, %s, %s", c.Squash, SquashRoot, SquashRootID, SquashAll, SquashNone)
	}
	if err := checkSeconds("grace period", c.GracePeriod, 180); err != nil {
		return bad("%v", err)
	}
	if err := checkSeconds("lease lifetime", c.LeaseLifetime, 120); err != nil {
		return bad("%v", err)
	}
	if grace, lease := cmp.Or(c.GracePeriod, ganeshaGrace), cmp.Or(c.LeaseLifetime, ganeshaLease); grace < lease {
		return bad("grace period %v shorter than the lease lifetime %v: clients could miss it", grace, lease)
	}
	for _, d := range []time.Duration{c.StartTimeout, c.StopTimeout, c.ReloadTimeout, c.RestartDelay, c.MaxRestartDelay, c.DBusTimeout} {
		if d < 0 {
			return bad("negative timeout %v", d)
		}
	}
	if c.MaxRestartDelay < c.RestartDelay {
		return bad("max restart delay %v below restart delay %v", c.MaxRestartDelay, c.RestartDelay)
	}
	return c, nil
}

// GraceTiming is how ganesha 4.x (MainNFSD/nfs_reaper_thread.c,
// SAL/nfs4_recovery.c) applies the configured grace period: it checks
// whether grace can end only when its reaper runs, every tick (half the
// lease, at most 10 s). Grace ends at the first run after every recorded
// client reclaimed (RECLAIM_COMPLETE, NFSv4.1+), else at the first run
// after the grace period: full is how long that lasts. cfg must be valid.
func (c GaneshaConfig) GraceTiming() (tick, full time.Duration) {
	grace, lease := cmp.Or(c.GracePeriod, ganeshaGrace), cmp.Or(c.LeaseLifetime, ganeshaLease)
	tick = min(10*time.Second, (lease/time.Second/2)*time.Second)
	if tick <= 0 {
		return 0, grace
	}
	return tick, (grace + tick - 1) / tick * tick
}

func checkSeconds(what string, d time.Duration, maxSeconds int) error {
	if d == 0 {
		return nil
	}
	if d < time.Second || d%time.Second != 0 || d > time.Duration(maxSeconds)*time.Second {
		return fmt.Errorf("%s %v must be whole seconds between 1 and %d", what, d, maxSeconds)
	}
	return nil
}

// Files in RunDir.
func (c GaneshaConfig) configPath() string  { return filepath.Join(c.RunDir, "ganesha.conf") }
func (c GaneshaConfig) exportsPath() string { return filepath.Join(c.RunDir, "exports.conf") }
func (c GaneshaConfig) logPath() string     { return filepath.Join(c.RunDir, "ganesha.log") }
func (c GaneshaConfig) pidPath() string     { return filepath.Join(c.RunDir, "ganesha.pid") }
func (c GaneshaConfig) outPath() string     { return filepath.Join(c.RunDir, "ganesha.out") }

// The private bus: its own directory (root only, as is the socket, since
// whoever can call the export manager can export any directory) and, for
// the export manager, one file per export.
func (c GaneshaConfig) busDir() string     { return filepath.Join(c.RunDir, "dbus") }
func (c GaneshaConfig) busSocket() string  { return filepath.Join(c.busDir(), "bus.sock") }
func (c GaneshaConfig) busConfig() string  { return filepath.Join(c.busDir(), "bus.conf") }
func (c GaneshaConfig) busOutPath() string { return filepath.Join(c.RunDir, "dbus.out") }
func (c GaneshaConfig) exportsDir() string { return filepath.Join(c.RunDir, "exports.d") }
func (c GaneshaConfig) exportFile(id uint32) string {
	return c.RunDir + "/exports.d/" + strconv.FormatUint(uint64(id), 10) + ".conf"
}
func (c GaneshaConfig) listFile(n int) string {
	return fmt.Sprintf("%s/exports.d/list-%03d.conf", c.RunDir, n)
}

// maxSocketPath: a unix socket path must fit sun_path (108 bytes with
// its NUL).
const maxSocketPath = 107

// probeAddr is where to check that the server accepts connections.
func (c GaneshaConfig) probeAddr() string {
	addr := netip.MustParseAddr(c.BindAddr)
	if addr.IsUnspecified() {
		if addr.Is4() {
			addr = netip.MustParseAddr("127.0.0.1")
		} else {
			addr = netip.IPv6Loopback()
		}
	}
	return netip.AddrPortFrom(addr, uint16(c.NFSPort)).String()
}

// listenAddr is the address ganesha binds, for the port-in-use check.
func (c GaneshaConfig) listenAddr() string {
	return netip.AddrPortFrom(netip.MustParseAddr(c.BindAddr), uint16(c.NFSPort)).String()
}

// within checks that every client of e lies inside the server's client
// networks: the outer bound no export may pass, whoever asks for it.
func (c GaneshaConfig) within(e Export) error {
	nets := make([]netip.Prefix, len(c.Clients))
	for i, s := range c.Clients {
		nets[i] = netip.MustParsePrefix(s)
	}
	for _, s := range slices.Concat(e.Clients, e.ReadOnlyClients) {
		p, err := parseClient(s)
		if err != nil {
			return fmt.Errorf("export %d: %w", e.ID, err)
		}
		if !slices.ContainsFunc(nets, func(n netip.Prefix) bool { return n.Bits() <= p.Bits() && n.Contains(p.Addr()) }) {
			return fmt.Errorf("%w: export %d: client %s is outside the client networks %v", ErrInvalid, e.ID, s, c.Clients)
		}
	}
	return nil
}
