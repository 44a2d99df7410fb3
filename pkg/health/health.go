// Package health serves a process's HTTP side: /healthz (the process is
// alive), /readyz (it can serve: its checks pass) and /metrics (Prometheus).
package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
)

// Check returns nil when its component is ready.
type Check func() error

// Server is the HTTP endpoint.
type Server struct {
	lis  net.Listener
	http *http.Server
}

// Listen binds addr (":0" picks a free port) and prepares the handlers.
func Listen(addr string, gatherer prometheus.Gatherer, ready ...Check) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		for _, c := range ready {
			if err := c(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return &Server{lis: lis, http: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Handle adds a handler (e.g. a status page) before Serve.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.http.Handler.(*http.ServeMux).Handle(pattern, h)
}

// Addr is the address actually bound.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve serves until ctx is done.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(s.lis) }()
	klog.InfoS("Serving HTTP", "address", s.Addr())
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return s.http.Shutdown(sctx)
	}
}
