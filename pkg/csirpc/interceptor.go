package csirpc

import (
	"context"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// Metrics counts and times CSI calls by method and result code.
type Metrics struct {
	calls *prometheus.HistogramVec
}

// NewMetrics registers the call metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "dots_csi_call_duration_seconds",
		Help:    "Duration of CSI calls served, by method and gRPC code.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
	}, []string{"method", "code"})}
	reg.MustRegister(m.calls)
	return m
}

// quiet calls are polled constantly by sidecars and kubelet; they are logged
// only at high verbosity so the logs show what changed.
func quiet(method string) bool {
	for _, q := range []string{"/Probe", "/GetPluginInfo", "/GetPluginCapabilities", "Capabilities", "/NodeGetInfo", "/GetCapacity", "/NodeGetVolumeStats"} {
		if strings.HasSuffix(method, q) {
			return true
		}
	}
	return false
}

// Interceptor logs each call with its sanitized request (secrets stripped),
// maps its error through codes, and records it in m (which may be nil).
func Interceptor(codes Codes, m *Metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		level := klog.Level(2)
		if quiet(info.FullMethod) {
			level = 5
		}
		start := time.Now()
		klog.V(level).InfoS("CSI call", "method", info.FullMethod, "request", protosanitizer.StripSecrets(req))
		resp, err := handler(ctx, req)
		err = codes.Status(err)
		code := status.Code(err)
		if m != nil {
			m.calls.WithLabelValues(info.FullMethod, code.String()).Observe(time.Since(start).Seconds())
		}
		if err != nil {
			klog.ErrorS(err, "CSI call failed", "method", info.FullMethod, "code", code.String(), "duration", time.Since(start))
		} else {
			logDone(level, info.FullMethod, resp, time.Since(start))
		}
		return resp, err
	}
}

// StreamInterceptor is Interceptor for streaming calls (the replication
// service's Receive): the call is logged by method (a stream's messages
// are data, not logged), its error mapped through codes and recorded in m.
func StreamInterceptor(codes Codes, m *Metrics) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		klog.V(2).InfoS("Streaming call", "method", info.FullMethod)
		err := codes.Status(handler(srv, ss))
		code := status.Code(err)
		if m != nil {
			m.calls.WithLabelValues(info.FullMethod, code.String()).Observe(time.Since(start).Seconds())
		}
		if err != nil {
			klog.ErrorS(err, "Streaming call failed", "method", info.FullMethod, "code", code.String(), "duration", time.Since(start))
		} else {
			klog.V(2).InfoS("Streaming call done", "method", info.FullMethod, "duration", time.Since(start))
		}
		return err
	}
}

// logDone logs a call's answer. A listing's page (up to thousands of
// entries) is logged in full only at high verbosity: rendering it at every
// page would cost more than the page itself.
func logDone(level klog.Level, method string, resp any, d time.Duration) {
	if n, ok := entries(resp); ok && level < 5 {
		if klog.V(5).Enabled() {
			level = 5
		} else {
			klog.V(level).InfoS("CSI call done", "method", method, "entries", n, "duration", d)
			return
		}
	}
	klog.V(level).InfoS("CSI call done", "method", method, "response", protosanitizer.StripSecrets(resp), "duration", d)
}

// entries counts the entries of a listing's answer.
func entries(resp any) (int, bool) {
	switch r := resp.(type) {
	case interface {
		GetEntries() []*csi.ListVolumesResponse_Entry
	}:
		return len(r.GetEntries()), true
	case interface {
		GetEntries() []*csi.ListSnapshotsResponse_Entry
	}:
		return len(r.GetEntries()), true
	}
	return 0, false
}
