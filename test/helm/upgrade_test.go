//go:build integration

package helm

import (
	"strings"
	"testing"
)

// A StatefulSet's volumeClaimTemplates cannot change: an upgrade that
// would change the servers' pool disks stops before anything is applied,
// saying how to grow the pools instead (the same quantity written another
// way is no change).
func TestServerStorageImmutableOnUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name              string
		size, class, mode string // the live StatefulSet's
		flags             []string
		want              []string // in the error; none: the upgrade renders
	}{
		{name: "unchanged", size: "1Ti", mode: "Block"},
		{name: "same size written otherwise", size: "1024Gi", mode: "Block"},
		{name: "larger", size: "1Ti", mode: "Block", flags: []string{"--set", "server.storage.size=2Ti"},
			want: []string{"server.storage.size is 2Ti", "has 1Ti", "kubectl -n storage patch pvc pool-dots-server-N",
				`"storage":"2Ti"`, "kubectl -n storage delete statefulset dots-server --cascade=orphan", "Or keep server.storage.size=1Ti"}},
		{name: "smaller", size: "2Ti", mode: "Block", want: []string{"server.storage.size is 1Ti"}},
		{name: "other class", size: "1Ti", class: "gp2", mode: "Block", flags: []string{"--set", "server.storage.storageClassName=gp3"},
			want: []string{`storageClassName is "gp3"`, `has "gp2"`}},
		{name: "class given where the default was used", size: "1Ti", mode: "Block", flags: []string{"--set", "server.storage.storageClassName=gp3"},
			want: []string{`has ""`}},
		{name: "other volume mode", size: "1Ti", mode: "Filesystem", want: []string{"volumeMode is Block", "has Filesystem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc, kubeconfig := newFakeCluster(t)
			fc.addStatefulSet(tc.size, tc.class, tc.mode)
			_, err := renderUpgrade(t, kubeconfig, tc.flags...)
			if !fc.looked("/apis/apps/v1/namespaces/" + namespace + "/statefulsets/dots-server") {
				t.Error("the chart did not look the StatefulSet up")
			}
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("upgrade refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("upgrade accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
	// A first install (no StatefulSet yet) takes any size.
	_, kubeconfig := newFakeCluster(t)
	if _, err := renderUpgrade(t, kubeconfig, "--set", "server.storage.size=3Ti"); err != nil {
		t.Errorf("without a StatefulSet: %v", err)
	}
}
