package failover

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// DefaultAfter is how long a storage server's node must have been not
// ready, beyond the cluster's own node-monitor-grace-period, before its pod
// is failed over. The e2e test measures what follows the decision (new pod
// bound, pool disk attached to the new node) at a few seconds, so the
// total is dominated by this and the grace period; 30 s rides out a kubelet
// restart or a short partition without moving a pool for nothing.
const DefaultAfter = 30 * time.Second

// DefaultLease is the Lease the controller's replicas elect the one that
// fails servers over with.
const DefaultLease = "dots-server-failover"

// Config says which storage-server pods the controller fails over, and when.
type Config struct {
	// Selector is a label selector of the storage-server pods; "" turns
	// failover off.
	Selector string
	// Namespace of the server pods and of the Lease; "" is the
	// controller's own ($POD_NAMESPACE, else its service account's).
	Namespace string
	// After is how long a server pod's node must have been not ready
	// before the pod is failed over; 0 turns failover off.
	After time.Duration
	// Lease names the Lease the controller's replicas elect the one that
	// acts with, so that two replicas never race.
	Lease string
}

// AddFlags registers the failover flags of `dots controller`.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Selector, "server-failover-selector", "", "label selector of the storage-server pods to fail over when their node dies (force-delete the pod, delete its volumes' VolumeAttachments on that node); empty: no failover")
	fs.StringVar(&c.Namespace, "server-failover-namespace", "", "namespace of the storage-server pods and of the failover Lease; empty: $POD_NAMESPACE, else the controller's own")
	fs.DurationVar(&c.After, "server-failover-after", DefaultAfter, "how long a storage server's node must have been not ready (Ready condition not True) before its pod is failed over; 0: never")
	fs.StringVar(&c.Lease, "server-failover-lease", DefaultLease, "Lease (in the failover namespace) by which controller replicas elect the one that fails servers over")
}

// Enabled says whether the controller fails servers over.
func (c *Config) Enabled() bool { return c.Selector != "" && c.After > 0 }

// Validate checks the flags.
func (c *Config) Validate() error {
	if c.After < 0 {
		return errors.New("--server-failover-after must not be negative (0 turns failover off)")
	}
	if c.Selector == "" {
		return nil
	}
	sel, err := labels.Parse(c.Selector)
	if err != nil {
		return fmt.Errorf("--server-failover-selector: %w", err)
	}
	if sel.Empty() {
		// Every pod of the namespace would be a storage server.
		return errors.New("--server-failover-selector selects every pod: name the storage servers' labels")
	}
	if c.Lease == "" {
		return errors.New("--server-failover-lease is required with --server-failover-selector")
	}
	return nil
}
