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
	// Handlers are more HTTP handlers, by pattern.
	Handlers map[string]http.Handler
	// Background loops run beside the endpoints until ctx ends; one that
	// returns an error stops the daemon.
	Background []func(ctx context.Context) error
	// Grace bounds a graceful stop; 0 means DefaultGrace.
	Grace time.Duration
}

// Addrs are the addresses a daemon actually bound (a ":0" port resolved).
type Addrs struct {
	GRPC string
	HTTP string
}

// NewRegistry returns a metrics registry holding the Go runtime's and the
// process's collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
	g := csirpc.NewServer(s.Codes, csirpc.NewMetrics(s.Metrics))
	if s.Register != nil {
		s.Register(g)
	}
	lis, err := csirpc.Listen(s.Endpoint)
	if err != nil {
		return fmt.Errorf("%s: gRPC endpoint %s: %w", s.Name, s.Endpoint, err)
	}
	hs, err := health.Listen(s.HTTPAddress, s.Metrics, s.Ready...)
	if err != nil {
		lis.Close()
		return fmt.Errorf("%s: HTTP address %s: %w", s.Name, s.HTTPAddress, err)
	}
	for pattern, h := range s.Handlers {
		hs.Handle(pattern, h)
	}
	addrs := Addrs{GRPC: lis.Addr().String(), HTTP: hs.Addr()}
	klog.InfoS("Serving", "daemon", s.Name, "grpc", addrs.GRPC, "http", addrs.HTTP)

	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return hs.Serve(gctx) })
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
