package driver

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/capacity"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/failover"
	"github.com/dots-csi/dots/pkg/mtls"
	"github.com/dots-csi/dots/pkg/workloads"
)

// ControllerConfig is the configuration of `dots controller`.
type ControllerConfig struct {
	Endpoint          string
	HTTPAddress       string
	Servers           []discovery.Server
	ServersFile       string
	DiscoverDNS       string
	DefaultVolumeSize string
	ProbeInterval     time.Duration
	ForgetAfter       time.Duration
	// Placements names the store of where each name was sent (see
	// pkg/placements.Open).
	Placements        string
	CallTimeout       time.Duration
	ReadTimeout       time.Duration
	ReconcileInterval time.Duration
	// Publish advertises ControllerPublishVolume (see ControllerOptions).
	Publish bool
	// TLS is how the controller calls storage servers (mutual TLS).
	TLS mtls.ClientOptions
	// AdminSocket serves /servers (the servers and their addresses) on a
	// unix socket only the controller's user may open; "" serves nothing.
	AdminSocket string
	// Failover moves storage servers off dead nodes (pkg/failover); off
	// unless it names the servers' pods.
	Failover failover.Config
	// PromoteAfter promotes a replica of every replicated volume whose
	// primary's server has been unhealthy this long (leader only); 0: off.
	PromoteAfter time.Duration
	// RestartPodsOnPromotion is handed to NewVolumeMoved: restart the pods
	// using a moved volume (else only an Event says they must be).
	RestartPodsOnPromotion bool
	// NewVolumeMoved builds the hook told of every volume whose primary
	// moved (promotion, drain, rebalance); RunController calls it once with
	// RestartPodsOnPromotion. nil: nothing is told.
	NewVolumeMoved func(restartPods bool) (api.VolumeMoved, error)
	// Workloads acts on Kubernetes objects for replicated volumes (pods of
	// moved volumes, orphaned server pools: pkg/workloads).
	Workloads workloads.Config
}

// AddFlags registers the controller's flags.
func (c *ControllerConfig) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint to serve, unix:///path (the sidecars' socket, made 0600)")
	fs.StringVar(&c.HTTPAddress, "http-address", ":8081", "address of /healthz, /readyz and /metrics")
	fs.StringVar(&c.AdminSocket, "admin-socket", "", "unix socket (made 0600) serving /servers for `dots servers --http unix://PATH`; empty: not served")
	c.TLS.AddFlags(fs)
	c.discovery().AddFlags(fs)
	fs.StringVar(&c.DefaultVolumeSize, "default-volume-size", "1Gi", "size of a volume whose request names none")
	fs.DurationVar(&c.ProbeInterval, "probe-interval", 10*time.Second, "how often each storage server's health and capacity are read")
	fs.DurationVar(&c.ForgetAfter, "forget-server-after", 5*time.Minute, "how long a server that discovery no longer lists keeps its connection; its volumes then answer Unavailable until it is back or declared gone (`dots server forget`)")
	fs.StringVar(&c.Placements, "placements", "kubernetes", "where the controller records which server each volume and snapshot name was sent to, before it is sent: kubernetes[:NAMESPACE] (Leases), dir:PATH, or memory (tests only: lost on restart)")
	fs.DurationVar(&c.CallTimeout, "call-timeout", DefaultCallTimeout, "deadline of a call that changes something on a storage server")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", DefaultReadTimeout, "deadline of a call that reads from one storage server, and of each server's part of a listing (a server that misses it is left out)")
	fs.BoolVar(&c.Publish, "controller-publish", false, "advertise PUBLISH_UNPUBLISH_VOLUME and pass publish and unpublish to the servers, whose exports then admit only the nodes each volume is published to (servers' --export-access=per-node); set it with the CSIDriver's attachRequired: true and the external-attacher")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", 5*time.Minute, "how often the placements are completed from what the servers hold (volumes created before placements were recorded)")
	c.Failover.AddFlags(fs)
	c.Workloads.AddFlags(fs)
	fs.DurationVar(&c.PromoteAfter, "promote-after", 0, "promote a replica of each replicated volume whose primary's server has been unhealthy this long, or out of reach after discovery dropped it (the leader controller only); 0: never automatically (`dots volume promote` does it by hand)")
	fs.BoolVar(&c.RestartPodsOnPromotion, "restart-pods-on-promotion", false, "when a volume's primary moves, delete the pods using it so their controllers recreate them on the new primary; else an Event on the claim says a restart is needed")
}

// Validate checks the configuration and that exactly one server source is set.
func (c *ControllerConfig) Validate() error {
	if network, _, err := csirpc.ParseEndpoint(c.Endpoint); err != nil {
		return err
	} else if network != "unix" {
		// Plaintext CSI must not reach the network; the sidecars share the pod.
		return fmt.Errorf("--endpoint %s: the controller serves CSI on a unix socket only", c.Endpoint)
	}
	if c.discovery().Given() != 1 {
		return errors.New("give exactly one of --server, --servers-file, --discover-dns")
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if err := discovery.ValidateAll(c.Servers); err != nil {
		return err
	}
	if _, err := c.defaultSize(); err != nil {
		return err
	}
	if c.ProbeInterval <= 0 {
		return errors.New("--probe-interval must be positive")
	}
	if c.Placements == "" {
		return errors.New("--placements is required")
	}
	if c.PromoteAfter < 0 {
		return errors.New("--promote-after must not be negative")
	}
	if c.CallTimeout <= 0 || c.ReadTimeout <= 0 || c.ReconcileInterval <= 0 {
		return errors.New("--call-timeout, --read-timeout and --reconcile-interval must be positive")
	}
	return c.Failover.Validate()
}

func (c *ControllerConfig) defaultSize() (int64, error) {
	n, err := capacity.ParseSize(c.DefaultVolumeSize)
	if err == nil && n <= 0 {
		err = fmt.Errorf("--default-volume-size must be positive")
	}
	return n, err
}

// discovery binds the server flags to the configuration.
func (c *ControllerConfig) discovery() discovery.Flags {
	return discovery.Flags{Servers: &c.Servers, File: &c.ServersFile, DNS: &c.DiscoverDNS}
}

func (c *ControllerConfig) source() (discovery.Source, error) {
	return c.discovery().Source()
}
