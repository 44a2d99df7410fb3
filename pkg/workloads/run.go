package workloads

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/failover"
	"github.com/dots-csi/dots/pkg/kubeclient"
)

// Config is what the controller tells this package.
type Config struct {
	// Enabled: the controller runs in Kubernetes and acts on its objects
	// (--kubernetes-workloads); else nothing here runs.
	Enabled bool
	// Driver is the CSI driver name in the PVs (version.DriverName).
	Driver string
	// RestartPods deletes the pods using a moved volume
	// (--restart-pods-on-promotion); else an Event says they must restart.
	RestartPods bool
	// Selector of the storage-server StatefulSet (the labels it shares
	// with its pods: the failover's selector); "" looks for no orphaned
	// pools.
	Selector string
	// Namespace of the servers; "" is the controller's own.
	Namespace string
	// OrphanInterval between scans; 0: DefaultOrphanInterval.
	OrphanInterval time.Duration
	// Lease (in Namespace) elects the controller replica that records
	// the OrphanedPool Events; "": this one always does.
	Lease string
	// Counts, if not nil, tells which servers hold volumes.
	Counts VolumeCounts
}

// AddFlags registers the flags of `dots controller` this package reads
// (RestartPods, Driver and Counts are the controller's to set).
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, "kubernetes-workloads", false, "act on Kubernetes objects for replicated volumes: restart (or record an Event on the claim of) the pods of a volume whose primary moved, and report orphaned server pools (the chart sets it)")
	fs.StringVar(&c.Selector, "orphaned-pools-selector", "", "label selector of the storage-server StatefulSet (the labels of its pods); its pool claims past spec.replicas are reported as orphaned; empty: not looked for")
	fs.StringVar(&c.Namespace, "orphaned-pools-namespace", "", "namespace of the storage-server StatefulSet; empty: $POD_NAMESPACE, else the controller's own")
	fs.DurationVar(&c.OrphanInterval, "orphaned-pools-interval", DefaultOrphanInterval, "how often the storage-server StatefulSet and its claims are read for orphaned pools")
	fs.StringVar(&c.Lease, "orphaned-pools-lease", "", "Lease (in the orphaned-pools namespace) by which controller replicas elect the one that records OrphanedPool Events (every replica lists them); empty: this one always records them")
}

// Validate checks the flags.
func (c *Config) Validate() error {
	if c.RestartPods && !c.Enabled {
		return errors.New("--restart-pods-on-promotion needs --kubernetes-workloads (the controller finds the pods through the Kubernetes API)")
	}
	if c.Selector != "" {
		if !c.Enabled {
			return errors.New("--orphaned-pools-selector needs --kubernetes-workloads")
		}
		sel, err := labels.Parse(c.Selector)
		if err != nil {
			return fmt.Errorf("--orphaned-pools-selector: %w", err)
		}
		if sel.Empty() {
			return errors.New("--orphaned-pools-selector selects every StatefulSet: name the storage servers' labels")
		}
	}
	if c.OrphanInterval < 0 {
		return errors.New("--orphaned-pools-interval must not be negative")
	}
	return nil
}

// Kube is the controller's Kubernetes side of replicas.
type Kube struct {
	*Mover
	orphans  *Orphans // nil without a selector
	interval time.Duration
	events   record.EventBroadcaster
	// lead runs its argument while this replica holds the Lease (nil:
	// no election, this replica records the Events).
	lead func(ctx context.Context, run func(term context.Context) error) error
}

// New connects as the controller's pod (or $KUBECONFIG) and registers the
// metrics with reg.
func New(cfg Config, reg prometheus.Registerer) (*Kube, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc, err := kubeclient.Config()
	if err != nil {
		return nil, fmt.Errorf("pods of moved volumes: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return newKube(cs, cfg, reg)
}

func newKube(cs kubernetes.Interface, cfg Config, reg prometheus.Registerer) (*Kube, error) {
	metrics := NewMetrics(reg)
	events := record.NewBroadcaster()
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	recorder := events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "dots-controller"})
	k := &Kube{Mover: NewMover(cs, cfg.Driver, cfg.RestartPods, recorder, metrics), events: events, interval: cfg.OrphanInterval}
	if k.interval <= 0 {
		k.interval = DefaultOrphanInterval
	}
	if cfg.Selector != "" {
		sel, err := labels.Parse(cfg.Selector)
		if err != nil {
			events.Shutdown()
			return nil, fmt.Errorf("server selector: %w", err)
		}
		ns, err := kubeclient.Namespace(cfg.Namespace)
		if err != nil {
			events.Shutdown()
			return nil, err
		}
		k.orphans = NewOrphans(cs, ns, sel, cfg.Counts, recorder, metrics)
		if cfg.Lease != "" {
			k.lead = func(ctx context.Context, run func(context.Context) error) error {
				return failover.Lead(ctx, cs, ns, cfg.Lease, "orphaned-pool events", run)
			}
		}
	}
	return k, nil
}

// Orphans returns the orphaned pools of the last scan (none without a
// selector).
func (k *Kube) Orphans() []api.OrphanedPool {
	if k.orphans == nil {
		return []api.OrphanedPool{}
	}
	if o := k.orphans.Orphans(); o != nil {
		return o
	}
	return []api.OrphanedPool{}
}

// Run looks for orphaned pools until ctx ends, then stops recording events.
func (k *Kube) Run(ctx context.Context) error {
	defer k.events.Shutdown()
	if k.orphans == nil {
		klog.InfoS("Not looking for orphaned server pools: no server selector (--server-failover-selector)")
		<-ctx.Done()
		return nil
	}
	if k.lead == nil {
		k.orphans.Run(ctx, k.interval)
		return nil
	}
	k.orphans.SetLeading(false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.orphans.Run(ctx, k.interval)
	}()
	err := k.lead(ctx, func(term context.Context) error {
		k.orphans.SetLeading(true)
		<-term.Done()
		k.orphans.SetLeading(false)
		return nil
	})
	<-done
	return err
}
