package server

import (
	"context"
	"errors"
	"flag"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dots-csi/dots/pkg/api"
)

// TestZoneFlags: --zone is a label value; --zone wins over the node's.
func TestZoneFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"--zone=eu-west-1a"}, true},
		{[]string{"--zone=a b"}, false},
		{[]string{"--zone=-a"}, false},
		{[]string{"--zone-from-node=node-1"}, true},
	} {
		var z ZoneConfig
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		z.AddFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if err := z.Validate(); (err == nil) != c.ok {
			t.Errorf("%v: err %v, want ok %v", c.args, err, c.ok)
		}
	}
	z := ZoneConfig{Zone: "given", FromNode: "node-1"}
	if got := z.resolve(context.Background()); got != "given" {
		t.Errorf("resolve = %q, want the given zone (no API call)", got)
	}
}

// TestNodeZone: the zone is the node's topology.kubernetes.io/zone label;
// a node without one, or missing, is an error.
func TestNodeZone(t *testing.T) {
	node := func(name string, labels map[string]string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	cs := fake.NewClientset(node("n-a", map[string]string{ZoneLabel: "zone-a"}), node("n-none", nil),
		node("n-bad", map[string]string{ZoneLabel: "not a zone"}))
	ctx := context.Background()
	if z, err := nodeZone(ctx, cs.CoreV1(), "n-a"); err != nil || z != "zone-a" {
		t.Errorf("n-a: %q, %v", z, err)
	}
	for _, n := range []string{"n-none", "n-bad"} {
		if z, err := nodeZone(ctx, cs.CoreV1(), n); !errors.Is(err, errNoZoneLabel) {
			t.Errorf("%s: %q, %v; want errNoZoneLabel", n, z, err)
		}
	}
	if _, err := nodeZone(ctx, cs.CoreV1(), "n-missing"); err == nil {
		t.Error("a missing node gave a zone")
	}
	m := map[string]string{}
	manifestZone(m, "")
	if _, ok := m[api.ManifestZone]; ok {
		t.Error("an empty zone is in the manifest")
	}
	manifestZone(m, "zone-a")
	if m[api.ManifestZone] != "zone-a" {
		t.Errorf("manifest %v", m)
	}
}
