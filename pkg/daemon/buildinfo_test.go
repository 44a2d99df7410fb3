package daemon

import (
	"runtime"
	"testing"

	"github.com/dots-csi/dots/pkg/version"
)

func TestBuildInfo(t *testing.T) {
	mfs, err := NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dots_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("dots_build_info: %v", mf)
		}
		labels := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["version"] != version.Version || labels["goversion"] != runtime.Version() || labels["revision"] == "" {
			t.Errorf("labels %v", labels)
		}
		return
	}
	t.Fatal("no dots_build_info in a daemon's registry")
}
