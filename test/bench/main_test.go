//go:build integration

package bench

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/internal/testenv"
)

func TestMain(m *testing.M) {
	quietKlog()
	testenv.MainThen(m, func() error {
		report.Mode = "full"
		if testing.Short() {
			report.Mode = "short"
		}
		return report.write(outPath())
	})
}

// outPath is where the JSON goes: DOTS_BENCH_OUT, else bench/results.json
// at the top of the repository (the test runs in test/bench).
func outPath() string {
	if p := os.Getenv("DOTS_BENCH_OUT"); p != "" {
		return p
	}
	if testing.Short() {
		return filepath.Join("..", "..", "bench", "results-short.json")
	}
	return filepath.Join("..", "..", "bench", "results.json")
}

// mode holds the sizes of a run: -short for CI, full for `make bench`.
type mode struct {
	short bool
	reps  int // repetitions of each figure
}

func runMode() mode {
	if testing.Short() {
		return mode{short: true, reps: 3}
	}
	return mode{reps: 5}
}

// poolPrefix names the benchmark's pools (testenv: PREFIX-PID-RANDOM);
// DOTS_BENCH_POOL_PREFIX changes it (it must start with "dots").
func poolPrefix() string {
	if p := os.Getenv("DOTS_BENCH_POOL_PREFIX"); p != "" {
		return p
	}
	return "dotsbench"
}

// quietKlog keeps the libraries' logs (TLS loads, gRPC) out of the
// figures; the daemons under test log to files of their own.
func quietKlog() {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for k, v := range map[string]string{"logtostderr": "false", "alsologtostderr": "false", "stderrthreshold": "FATAL"} {
		_ = fs.Set(k, v)
	}
	klog.SetOutput(io.Discard)
}

func init() {
	report.Started = time.Now().UTC()
	report.Machine = machine()
}
