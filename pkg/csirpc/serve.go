package csirpc

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"
)

// NewServer returns a gRPC server with the dots interceptors installed
// (unary and streaming calls), mapping errors through codes.
func NewServer(codes Codes, m *Metrics, opts ...grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append([]grpc.ServerOption{grpc.UnaryInterceptor(Interceptor(codes, m)),
		grpc.StreamInterceptor(StreamInterceptor(codes, m))}, opts...)...)
}

// Serve serves srv on lis until ctx is done, then stops gracefully, giving
// in-flight calls up to grace to finish. Listening first (Listen) lets the
// caller report readiness only once the endpoint exists.
func Serve(ctx context.Context, lis net.Listener, srv *grpc.Server, grace time.Duration) error {
	klog.InfoS("Serving gRPC", "address", lis.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		srv.Stop()
	}
	return nil
}
