// Package local runs the whole of dots on one machine, for development and
// the demo: storage servers on file-backed zfs-fuse pools, each with its own
// NFS-Ganesha, the controller over them, and the node plugin in local-bind
// mode, all behind one CSI endpoint.
package local

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/dots-csi/dots/pkg/capacity"
)

// Config configures the local stack.
type Config struct {
	StateDir    string
	Servers     int
	PoolSize    string
	Keep        bool
	HTTPAddress string
	// PromoteAfter: the controller promotes a replica of each replicated
	// volume whose primary's server has been unhealthy this long (0: off).
	PromoteAfter time.Duration
}

// DefaultStateDir is where the stack and the client meet when neither is told.
const DefaultStateDir = "/var/tmp/dots-local"

// AddFlags registers the local stack's flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.StateDir, "state-dir", DefaultStateDir, "directory for pool files, mounts, sockets and logs")
	fs.IntVar(&c.Servers, "servers", 2, "number of storage servers")
	fs.StringVar(&c.PoolSize, "pool-size", "4Gi", "size of each server's pool file (sparse)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the pools on exit and re-open them on the next start")
	fs.StringVar(&c.HTTPAddress, "http-address", "127.0.0.1:0", "address of the controller's /healthz, /readyz and /metrics (/servers is on STATE-DIR/admin.sock)")
	fs.DurationVar(&c.PromoteAfter, "promote-after", 0, "promote a replica of each replicated volume whose primary's server has been unhealthy this long (the controller's --promote-after); 0: only by hand (`dots volume promote`)")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.StateDir == "" {
		return errors.New("--state-dir is required")
	}
	abs, err := filepath.Abs(c.StateDir)
	if err != nil {
		return err
	}
	c.StateDir = abs
	if c.Servers < 1 || c.Servers > 8 {
		return fmt.Errorf("--servers %d: want 1..8", c.Servers)
	}
	size, err := capacity.ParseSize(c.PoolSize)
	if err != nil {
		return fmt.Errorf("--pool-size: %w", err)
	}
	if size < 256<<20 {
		return fmt.Errorf("--pool-size %s: want at least 256Mi", c.PoolSize)
	}
	if c.PromoteAfter < 0 {
		return fmt.Errorf("--promote-after %s: must not be negative", c.PromoteAfter)
	}
	return nil
}

// poolName is unique per state directory (pool names are machine-wide) and
// the same on every start, so --keep finds its pools again.
func (c *Config) poolName(i int) string {
	h := sha256.Sum256([]byte(c.StateDir))
	return fmt.Sprintf("dotslocal-%s-%d", hex.EncodeToString(h[:4]), i)
}

func serverName(i int) string { return fmt.Sprintf("dots-server-%d", i) }

func (c *Config) path(parts ...string) string {
	return filepath.Join(append([]string{c.StateDir}, parts...)...)
}

// PodsDir is the stack's kubelet directory: every staging and target path
// of its node plugin lies below it (the client's `volume mount` paths too),
// so nothing can be mounted over the stack's own pools, mounts or records.
func (c *Config) PodsDir() string { return c.path("pods") }

// Endpoint is the CSI endpoint the stack serves.
func (c *Config) Endpoint() string { return "unix://" + c.path("csi.sock") }
