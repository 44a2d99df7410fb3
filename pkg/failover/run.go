package failover

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/kubeclient"
)

// Leader election timing: client-go's and the CSI sidecars' defaults. A
// controller that stops cleanly releases the Lease, so its successor takes
// over at once; one that dies is replaced after LeaseDuration.
const (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// Run fails storage servers over until ctx ends, in whichever controller
// replica holds the Lease: two replicas never act at once. It connects as
// the pod it runs in (or with $KUBECONFIG) and registers its metrics with
// reg.
func Run(ctx context.Context, cfg Config, reg prometheus.Registerer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	sel, err := labels.Parse(cfg.Selector)
	if err != nil {
		return err
	}
	rc, err := kubeclient.Config()
	if err != nil {
		return fmt.Errorf("server failover: %w", err)
	}
	ns, err := kubeclient.Namespace(cfg.Namespace)
	if err != nil {
		return fmt.Errorf("server failover: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	metrics := NewMetrics(reg)
	events := record.NewBroadcaster(record.WithContext(ctx))
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer events.Shutdown()
	recorder := events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "dots-controller"})

	klog.InfoS("Server failover on", "namespace", ns, "selector", sel.String(), "after", cfg.After, "lease", cfg.Lease)
	return Lead(ctx, cs, ns, cfg.Lease, "server failover", func(term context.Context) error {
		c := New(cs, Options{Namespace: ns, Selector: sel, After: cfg.After, Recorder: recorder, Metrics: metrics})
		defer metrics.Pending.Reset()
		return c.Run(term)
	})
}

// Lead runs run whenever this process holds the Lease named lease in ns
// (duty names it in the logs: "Leading server failover"),
// until ctx ends: two processes never run it at once. A term ends when
// the Lease is lost (run's context ends) or when run returns (the Lease
// is then released, not held by a process doing nothing); the next
// election follows.
func Lead(ctx context.Context, cs kubernetes.Interface, ns, lease, duty string, run func(term context.Context) error) error {
	host, _ := os.Hostname()
	id := host + "_" + string(uuid.NewUUID())
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: lease, Namespace: ns},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	for ctx.Err() == nil {
		// Each term runs here, in this goroutine, and has stopped before
		// the next election: no two terms overlap.
		terms := make(chan context.Context, 1)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
			ReleaseOnCancel: true, Name: lease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(term context.Context) { terms <- term },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return err
		}
		ectx, stop := context.WithCancel(ctx)
		elected := make(chan struct{})
		go func() {
			defer close(elected)
			le.Run(ectx)
		}()
		select {
		case term := <-terms:
			klog.InfoS("Leading "+duty, "lease", lease, "identity", id)
			if err := run(term); err != nil && term.Err() == nil {
				klog.ErrorS(err, "Stopped leading on an error", "lease", lease)
			}
			stop()
			<-elected
			klog.InfoS("No longer leading "+duty, "lease", lease, "identity", id)
		case <-elected:
		}
		stop()
	}
	return nil
}
