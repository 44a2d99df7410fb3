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

	host, _ := os.Hostname()
	id := host + "_" + string(uuid.NewUUID())
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: cfg.Lease, Namespace: ns},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	klog.InfoS("Server failover on", "namespace", ns, "selector", sel.String(), "after", cfg.After, "lease", cfg.Lease, "identity", id)
	for ctx.Err() == nil {
		// Each term runs its own controller here, in this goroutine, and
		// it has stopped before the next election: no two terms overlap.
		terms := make(chan context.Context, 1)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
			ReleaseOnCancel: true, Name: cfg.Lease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(term context.Context) { terms <- term },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return err
		}
		// Cancelled when a term's controller stops on its own, so that the
		// Lease is released instead of held by a replica doing nothing.
		ectx, stop := context.WithCancel(ctx)
		elected := make(chan struct{})
		go func() {
			defer close(elected)
			le.Run(ectx)
		}()
		select {
		case term := <-terms:
			klog.InfoS("Leading server failover", "lease", cfg.Lease, "identity", id)
			c := New(cs, Options{Namespace: ns, Selector: sel, After: cfg.After, Recorder: recorder, Metrics: metrics})
			if err := c.Run(term); err != nil && term.Err() == nil {
				klog.ErrorS(err, "Server failover stopped")
			}
			stop()
			<-elected
			klog.InfoS("No longer leading server failover", "lease", cfg.Lease, "identity", id)
			metrics.Pending.Reset()
		case <-elected:
		}
		stop()
	}
	return nil
}
