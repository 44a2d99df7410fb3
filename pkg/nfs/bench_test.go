//go:build integration

package nfs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
)

// BenchmarkExportReady measures how long one Export takes to become usable
// (Export returns only then) while the server already has 10 or 300
// exports. Each reload re-reads every export, so this grows with the count.
//
//	go test -run '^$' -bench ExportReady -benchtime 20x ./pkg/nfs
func BenchmarkExportReady(b *testing.B) {
	for _, existing := range []int{10, 300} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			benchmarkExportReady(b, existing)
		})
	}
}

func benchmarkExportReady(b *testing.B, existing int) {
	env := testenv.StartGanesha(b, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	exports := make([]nfs.Export, existing)
	for i := range exports {
		name := fmt.Sprintf("e%d", i+1)
		exports[i] = nfs.Export{ID: uint32(i + 1), Path: newDir(b, env, name), Pseudo: "/dots/" + name, Clients: testenv.LoopbackClients}
	}
	if err := env.SetExports(ctx, exports); err != nil {
		b.Fatal(err)
	}
	e := nfs.Export{ID: nfs.MaxExportID, Path: newDir(b, env, "extra"), Pseudo: "/dots/extra", Clients: testenv.LoopbackClients}
	reloads := 0
	b.ResetTimer()
	for range b.N {
		before := env.Stats().Reloads
		if err := env.Export(ctx, e); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		reloads += env.Stats().Reloads - before
		if err := env.Unexport(ctx, e.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(reloads)/float64(b.N), "reloads/op")
	if err := env.Export(ctx, e); err != nil {
		b.Fatal(err)
	}
	if _, err := env.Client.List(ctx, e.Pseudo, ""); err != nil {
		b.Fatalf("the benchmarked export is not usable: %v", err)
	}
}

// BenchmarkExportConcurrent300 measures 300 concurrent Export calls on an
// empty server: the time until all have returned, and the reloads it took.
func BenchmarkExportConcurrent300(b *testing.B) {
	const n = 300
	env := testenv.StartGanesha(b, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	exports := make([]nfs.Export, n)
	for i := range exports {
		name := fmt.Sprintf("c%d", i+1)
		exports[i] = nfs.Export{ID: uint32(i + 1), Path: newDir(b, env, name), Pseudo: "/dots/" + name, Clients: testenv.LoopbackClients}
	}
	reloads := env.Stats().Reloads
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		for _, e := range exports {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := env.Export(ctx, e); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		if err := env.SetExports(ctx, nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	// Minus the SetExports(nil) reload of each round.
	b.ReportMetric(float64(env.Stats().Reloads-reloads-b.N)/float64(b.N), "reloads/op")
}
