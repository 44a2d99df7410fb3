//go:build integration

package nfs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
)

// TestExportChangeCost measures how long one Export and one Unexport take
// (each returns once the change is live) on a server with 10 and with 800
// exports, over DBus and with SIGHUP, and prints one line per case and the
// ratios, all from this run:
//
//	export-add: method=dbus exports=10 p50_ms=... p90_ms=... samples=... reloads=...
//
// The exports are plain directories: 800 datasets would take 800 of the
// ~1000 FUSE mounts zfs-fuse serves the whole machine, shared with other
// tests. What is measured is ganesha's cost per export, which a reload
// pays for every export; each added export is read through libnfs right
// after its Export returns.
func TestExportChangeCost(t *testing.T) {
	root := t.TempDir()
	const samples = 15
	counts := []int{10, 800}
	p50 := map[string]map[int]float64{}
	for _, method := range []string{nfs.MethodDBus, nfs.MethodSIGHUP} {
		p50[method] = map[int]float64{}
		for _, n := range counts {
			add, remove, reloads := measureExportChanges(t, root, method, n, samples)
			p50[method][n] = pct(add, 50)
			fmt.Printf("export-add: method=%s exports=%d p50_ms=%.2f p90_ms=%.2f samples=%d reloads=%d\n",
				method, n, pct(add, 50), pct(add, 90), samples, reloads)
			fmt.Printf("export-remove: method=%s exports=%d p50_ms=%.2f p90_ms=%.2f samples=%d\n",
				method, n, pct(remove, 50), pct(remove, 90), samples)
		}
	}
	for _, method := range []string{nfs.MethodDBus, nfs.MethodSIGHUP} {
		fmt.Printf("export-add-ratio: method=%s exports800_vs_10=%.2f\n", method, p50[method][800]/p50[method][10])
	}
	for _, n := range counts {
		fmt.Printf("export-add-ratio: exports=%d sighup_vs_dbus=%.2f\n", n, p50[nfs.MethodSIGHUP][n]/p50[nfs.MethodDBus][n])
	}
}

// BenchmarkExportChangeDBus10000 is TestExportChangeCost's DBus case at
// 10,000 exports, too slow for every run: ganesha 4.3 takes about two
// minutes here to load 10,000 exports at a start (its config parsing
// grows faster than the export count), as long as a SIGHUP reload of
// them would. It prints the same line:
//
//	go test -tags integration -run '^$' -bench ExportChangeDBus10000 -benchtime 1x ./pkg/nfs
func BenchmarkExportChangeDBus10000(b *testing.B) {
	for range b.N {
		add, remove, reloads := measureExportChanges(b, b.TempDir(), nfs.MethodDBus, 10000, 15, func(c *nfs.GaneshaConfig) {
			c.StartTimeout = 10 * time.Minute
		})
		fmt.Printf("export-add: method=dbus exports=10000 p50_ms=%.2f p90_ms=%.2f samples=15 reloads=%d\n", pct(add, 50), pct(add, 90), reloads)
		fmt.Printf("export-remove: method=dbus exports=10000 p50_ms=%.2f p90_ms=%.2f samples=15\n", pct(remove, 50), pct(remove, 90))
	}
}

// measureExportChanges runs one ganesha (with DBus or without) serving n
// directories under root and times samples additions and removals of one
// more. It returns their durations in ms and the SIGHUPs they took.
func measureExportChanges(t testing.TB, root, method string, n, samples int, mutate ...func(*nfs.GaneshaConfig)) (add, remove []float64, reloads int) {
	t.Helper()
	base := filepath.Join(root, fmt.Sprintf("%s-%d", method, n))
	exports := make([]nfs.Export, n)
	for i := range exports {
		p := filepath.Join(base, fmt.Sprintf("e%d", i+1))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		exports[i] = nfs.Export{ID: uint32(i + 1), Path: p, Pseudo: fmt.Sprintf("/%s%d/e%d", method, n, i+1), Clients: testenv.LoopbackClients}
	}
	mode := nfs.DBusOff
	if method == nfs.MethodDBus {
		mode = nfs.DBusOn
	}
	env := testenv.StartGanesha(t, exports, append(mutate, func(c *nfs.GaneshaConfig) { c.DBus = mode })...)
	defer func() {
		ctx := ctxFor(t, time.Minute)
		if err := env.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	ctx := ctxFor(t, 10*time.Minute)
	extra := filepath.Join(base, "extra")
	if err := os.MkdirAll(extra, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(extra, "id"), []byte("extra"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := nfs.Export{ID: nfs.MaxExportID, Path: extra, Pseudo: fmt.Sprintf("/%s%d/extra", method, n), Clients: testenv.LoopbackClients}
	before := env.Stats().Reloads
	for range samples {
		t0 := time.Now()
		if err := env.Export(ctx, e); err != nil {
			t.Fatal(err)
		}
		add = append(add, ms(time.Since(t0)))
		if err := readable(ctx, env, e.Pseudo, "extra"); err != nil {
			t.Fatalf("%s, %d exports: the added export right after Export: %v", method, n, err)
		}
		t0 = time.Now()
		if err := env.Unexport(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
		remove = append(remove, ms(time.Since(t0)))
	}
	reloads = env.Stats().Reloads - before
	if method == nfs.MethodDBus && reloads != 0 {
		t.Errorf("%d SIGHUPs with DBus, want none (changes %v)", reloads, env.Stats().Changes)
	}
	return add, remove, reloads
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct is the p-th percentile (nearest rank) of v.
func pct(v []float64, p int) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}
