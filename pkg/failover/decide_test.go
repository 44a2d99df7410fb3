package failover

import (
	"flag"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func node(name string, ready corev1.ConditionStatus, since time.Time, taints ...corev1.Taint) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Taints: taints}}
	if ready != "" {
		n.Status.Conditions = []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.NewTime(since.Add(-time.Hour))},
			{Type: corev1.NodeReady, Status: ready, LastTransitionTime: metav1.NewTime(since)},
		}
	}
	return n
}

func unreachable(at time.Time) corev1.Taint {
	tm := metav1.NewTime(at)
	return corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &tm}
}

func podOn(nodeName string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "dots-server-0", Namespace: "dots"}, Spec: corev1.PodSpec{NodeName: nodeName}}
}

func TestDecide(t *testing.T) {
	after := 30 * time.Second
	now := t0.Add(40 * time.Second)
	for _, c := range []struct {
		name string
		pod  *corev1.Pod
		node *corev1.Node
		want Verdict
		in   time.Duration
	}{
		{"not scheduled", podOn(""), nil, Keep, 0},
		{"node object gone", podOn("a"), nil, Keep, 0},
		{"another node's object", podOn("a"), node("b", corev1.ConditionUnknown, t0), Keep, 0},
		{"ready", podOn("a"), node("a", corev1.ConditionTrue, t0), Keep, 0},
		// The taint outlives a node's return by up to a monitor period.
		{"ready with a stale unreachable taint", podOn("a"), node("a", corev1.ConditionTrue, now, unreachable(t0)), Keep, 0},
		{"never reported", podOn("a"), node("a", "", t0), Keep, 0},
		{"not ready since an unknown time", podOn("a"), node("a", corev1.ConditionUnknown, time.Time{}), Keep, 0},
		{"unknown, not long enough", podOn("a"), node("a", corev1.ConditionUnknown, now.Add(-10*time.Second)), Wait, 20 * time.Second},
		{"false, not long enough", podOn("a"), node("a", corev1.ConditionFalse, now.Add(-29*time.Second)), Wait, time.Second},
		{"unknown for exactly the delay", podOn("a"), node("a", corev1.ConditionUnknown, now.Add(-after)), Fail, 0},
		{"unknown for longer", podOn("a"), node("a", corev1.ConditionUnknown, t0), Fail, 0},
		{"false for longer", podOn("a"), node("a", corev1.ConditionFalse, t0), Fail, 0},
		// The condition flapped (Unknown to False) lately, the taint
		// remembers since when the node has been gone.
		{"taint older than the condition", podOn("a"), node("a", corev1.ConditionFalse, now.Add(-5*time.Second), unreachable(t0)), Fail, 0},
		{"taint newer than the condition", podOn("a"), node("a", corev1.ConditionUnknown, now.Add(-5*time.Second), unreachable(now)), Wait, 25 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.pod, c.node, now, after)
			if d.Verdict != c.want || d.In != c.in {
				t.Errorf("Decide = %v in %s (%s), want %v in %s", d.Verdict, d.In, d.Why, c.want, c.in)
			}
			if d.Why == "" {
				t.Error("no reason given")
			}
		})
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []struct {
		args    []string
		enabled bool
		err     string
	}{
		{nil, false, ""},
		{[]string{"--server-failover-after=0", "--server-failover-selector=app=s"}, false, ""},
		{[]string{"--server-failover-selector=app.kubernetes.io/component=server,app.kubernetes.io/instance=dots"}, true, ""},
		{[]string{"--server-failover-selector=app=s", "--server-failover-after=-1s"}, false, "negative"},
		{[]string{"--server-failover-selector=app in (", "--server-failover-after=1s"}, false, "selector"},
		// An empty selector would make every pod of the namespace a server.
		{[]string{"--server-failover-selector= "}, false, "every pod"},
		{[]string{"--server-failover-selector=app=s", "--server-failover-lease="}, false, "lease"},
	} {
		var cfg Config
		fs := flag.NewFlagSet("controller", flag.ContinueOnError)
		cfg.AddFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		err := cfg.Validate()
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%v: Validate = %v, want %q", c.args, err, c.err)
		}
		if err == nil && cfg.Enabled() != c.enabled {
			t.Errorf("%v: Enabled = %v, want %v", c.args, cfg.Enabled(), c.enabled)
		}
	}
	var cfg Config
	cfg.AddFlags(flag.NewFlagSet("", flag.ContinueOnError))
	if cfg.After != DefaultAfter || cfg.Lease != DefaultLease {
		t.Errorf("defaults: %+v", cfg)
	}
}
