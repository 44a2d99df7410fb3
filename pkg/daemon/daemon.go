// Package daemon runs a dots daemon's serving part: the gRPC endpoint with
// the dots interceptor, the HTTP endpoint with /healthz, /readyz and
// /metrics, and the daemon's background loops, until its context ends. The
// storage server, the controller, the node plugin and the local stack all
// serve through Run, so they listen, report readiness, stop and fail the
// same way.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/health"
)

// DefaultGrace is how long in-flight calls may run on after a stop.
const DefaultGrace = 10 * time.Second

// Spec is what a daemon serves.
type Spec struct {
	Name string // for logs: "storage server", "controller", ...
	// Endpoint is the gRPC endpoint (unix:///path or tcp://host:port).
	Endpoint string
	// Creds secure a tcp:// endpoint, which is refused without them
	// (plaintext there only through insecure.NewCredentials, by an
	// explicit --insecure). A unix socket is plaintext and owner-only.
	Creds credentials.TransportCredentials
	// Register adds the daemon's services to its gRPC server.
	Register func(*grpc.Server)
	// Codes maps the daemon's errors to gRPC codes.
	Codes csirpc.Codes
	// HTTPAddress serves /healthz, /readyz and /metrics.
	HTTPAddress string
	// Metrics gathers and registers the daemon's metrics (NewRegistry).
	Metrics *prometheus.Registry
	// Ready lists the checks /readyz runs.
	Ready []health.Check
	// AdminSocket, when set, serves AdminHandlers (by pattern) over HTTP
	// on this unix socket, which only the daemon's user may open: what
	// must not be on the network, such as the list of storage servers.
	AdminSocket   string
	AdminHandlers map[string]http.Handler
	// Background loops run beside the endpoints until ctx ends; one that
	// returns an error stops the daemon.
	Background []func(ctx context.Context) error
	// Grace bounds a graceful stop; 0 means DefaultGrace.
	Grace time.Duration
}

// Addrs are the addresses a daemon actually bound (a ":0" port resolved).
type Addrs struct {
	GRPC  string
	HTTP  string
	Admin string // the admin socket's path, "" when none
}

// NewRegistry returns a metrics registry holding the Go runtime's and the
// process's collectors, and dots_build_info.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	return reg
}

// Run listens on both endpoints, calls ready (if not nil) once they
// listen, and serves until ctx ends or a part fails. A stop by ctx is a
// clean exit (nil); in-flight calls get Grace to finish. Listeners opened
// before a failure are closed. An error from ready stops the daemon and is
// returned.
func Run(ctx context.Context, s Spec, ready func(Addrs) error) error {
	if s.Metrics == nil {
		return errors.New("daemon: no metrics registry")
	}
	grace := s.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	network, _, err := csirpc.ParseEndpoint(s.Endpoint)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	var opts []grpc.ServerOption
	if network == "tcp" {
		if s.Creds == nil {
			return fmt.Errorf("%s: not serving %s in plaintext over the network: it needs TLS credentials (a storage server's --tls-* flags, or --insecure); or serve a unix:// socket", s.Name, s.Endpoint)
		}
		opts = append(opts, grpc.Creds(s.Creds))
	}
	g := csirpc.NewServer(s.Codes, csirpc.NewMetrics(s.Metrics), opts...)
	if s.Register != nil {
		s.Register(g)
	}
	lis, err := csirpc.Listen(s.Endpoint)
	if err != nil {
		return fmt.Errorf("%s: gRPC endpoint %s: %w", s.Name, s.Endpoint, err)
	}
	var admin *adminServer
	if s.AdminSocket != "" {
		if admin, err = listenAdmin(s.AdminSocket, s.AdminHandlers); err != nil {
			lis.Close()
			return fmt.Errorf("%s: admin socket %s: %w", s.Name, s.AdminSocket, err)
		}
	}
	hs, err := health.Listen(s.HTTPAddress, s.Metrics, s.Ready...)
	if err != nil {
		lis.Close()
		if admin != nil {
			admin.lis.Close()
		}
		return fmt.Errorf("%s: HTTP address %s: %w", s.Name, s.HTTPAddress, err)
	}
	addrs := Addrs{GRPC: lis.Addr().String(), HTTP: hs.Addr()}
	if admin != nil {
		addrs.Admin = s.AdminSocket
	}
	klog.InfoS("Serving", "daemon", s.Name, "grpc", addrs.GRPC, "http", addrs.HTTP, "admin", addrs.Admin)

	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return hs.Serve(gctx) })
	if admin != nil {
		eg.Go(func() error { return admin.serve(gctx) })
	}
	eg.Go(func() error { return csirpc.Serve(gctx, lis, g, grace) })
	for _, bg := range s.Background {
		eg.Go(func() error { return bg(gctx) })
	}
	if ready != nil {
		// Run in the group, so its error stops the rest.
		eg.Go(func() error { return ready(addrs) })
	}
	err = eg.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	klog.InfoS("Stopped", "daemon", s.Name, "err", err)
	return err
}
