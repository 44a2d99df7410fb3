package csirpc

import (
	"context"
	"strings"
	"time"

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
			klog.V(level).InfoS("CSI call done", "method", info.FullMethod, "response", protosanitizer.StripSecrets(resp), "duration", time.Since(start))
		}
		return resp, err
	}
}
