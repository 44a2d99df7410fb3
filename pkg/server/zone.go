package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/kubeclient"
)

// ZoneLabel is the well-known node label --zone-from-node reads.
const ZoneLabel = "topology.kubernetes.io/zone"

// ZoneConfig is the server's failure zone, reported in its manifest
// (api.ManifestZone): the controller puts a volume's replicas in other
// zones than its primary's when it can.
type ZoneConfig struct {
	// Zone given as is (--zone).
	Zone string
	// FromNode: read the zone from this node's ZoneLabel at start
	// (--zone-from-node; in Kubernetes the pod's node, $(NODE_NAME)):
	// a server's pool lives in one zone (its PV's), and a pod cannot read
	// its node's labels but through the API.
	FromNode string
}

// AddFlags registers --zone and --zone-from-node.
func (z *ZoneConfig) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&z.Zone, "zone", "", "failure zone of this server (a label value, e.g. eu-west-1a): replicas go to servers of other zones when they can; empty: none")
	fs.StringVar(&z.FromNode, "zone-from-node", "", "read the zone from this Kubernetes node's "+ZoneLabel+" label at start (needs get on nodes); --zone wins")
}

// Validate checks a given zone.
func (z *ZoneConfig) Validate() error {
	if z.Zone == "" {
		return nil
	}
	if errs := validation.IsValidLabelValue(z.Zone); len(errs) > 0 {
		return fmt.Errorf("--zone %q: %s", z.Zone, strings.Join(errs, "; "))
	}
	return nil
}

// resolve returns the zone: the given one, else the node's label. A node
// without the label, or an API that does not answer, leaves none (logged):
// the zone only steers where replicas go, and storage must start without
// it.
func (z *ZoneConfig) resolve(ctx context.Context) string {
	if z.Zone != "" || z.FromNode == "" {
		return z.Zone
	}
	zone, err := z.fromAPI(ctx)
	if err != nil {
		klog.ErrorS(err, "No zone: reading the node's zone label failed; replicas may share this server's zone", "node", z.FromNode)
		return ""
	}
	klog.InfoS("Zone read from the node", "node", z.FromNode, "zone", zone)
	return zone
}

func (z *ZoneConfig) fromAPI(ctx context.Context) (string, error) {
	cfg, err := kubeclient.Config()
	if err != nil {
		return "", err
	}
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return nodeZone(cctx, cs.CoreV1(), z.FromNode)
}

// errNoZoneLabel: the node carries no (valid) zone label.
var errNoZoneLabel = errors.New("the node has no valid " + ZoneLabel + " label")

// nodeZone reads a node's zone label.
func nodeZone(ctx context.Context, nodes typedcorev1.NodesGetter, node string) (string, error) {
	n, err := nodes.Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading node %q: %w", node, err)
	}
	zone := n.Labels[ZoneLabel]
	if zone == "" || len(validation.IsValidLabelValue(zone)) > 0 {
		return "", fmt.Errorf("node %q: %w (%q)", node, errNoZoneLabel, zone)
	}
	return zone, nil
}

// manifestZone adds the zone to a manifest.
func manifestZone(m map[string]string, zone string) {
	if zone != "" {
		m[api.ManifestZone] = zone
	}
}
