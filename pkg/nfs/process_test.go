package nfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeGanesha writes a script that stands in for ganesha.nfsd: it counts
// its runs in a file, logs line to the file given with -L, and exits 1.
func fakeGanesha(t *testing.T, line string) (spec LaunchSpec, runs func() int) {
	t.Helper()
	dir := t.TempDir()
	count := filepath.Join(dir, "runs")
	script := `#!/bin/sh
echo x >> "` + count + `"
while [ $# -gt 0 ]; do [ "$1" = -L ] && log="$2"; shift; done
echo "` + line + `" >> "$log"
exit 1
`
	bin := filepath.Join(dir, "ganesha.nfsd")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	spec = LaunchSpec{Binary: bin, ConfigPath: filepath.Join(dir, "ganesha.conf"), LogPath: filepath.Join(dir, "ganesha.log"),
		PidPath: filepath.Join(dir, "ganesha.pid"), OutPath: filepath.Join(dir, "out"),
		ListenAddr: "127.0.0.1:0", ProbeAddr: "127.0.0.1:1"}
	return spec, func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "x")
	}
}

func TestStartRetriesRPCBindRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const refused = "02/12/2026 08:00:00 : epoch 1 : h : ganesha.nfsd-1[main] __Register_program :DISP :MAJ :Cannot register NFS V3 on TCP"
	spec, runs := fakeGanesha(t, refused)
	_, _, err := ExecRunner{}.Start(ctx, spec)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errRegistration) || !strings.Contains(err.Error(), "Cannot register NFS V3 on TCP") {
		t.Fatalf("Start of a ganesha rpcbind refuses = %v, want ErrUnavailable naming the refusal", err)
	}
	if n := runs(); n != maxRegistrationAttempts {
		t.Errorf("ganesha started %d times, want %d", n, maxRegistrationAttempts)
	}

	// Any other failure at start is final at once.
	spec, runs = fakeGanesha(t, "02/12/2026 08:00:00 : epoch 1 : h : ganesha.nfsd-1[main] config_errs_to_log :CONFIG :CRIT :Config File: bad block")
	_, _, err = ExecRunner{}.Start(ctx, spec)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, errRegistration) {
		t.Fatalf("Start of a ganesha with a bad config = %v, want ErrUnavailable only", err)
	}
	if n := runs(); n != 1 {
		t.Errorf("ganesha with a bad config started %d times, want once", n)
	}
}

func TestStartRetriesWithinTheContext(t *testing.T) {
	spec, runs := fakeGanesha(t, "x :DISP :MAJ :Cannot register NFS V4 on TCP")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := (ExecRunner{}).Start(ctx, spec); err == nil {
		t.Fatal("Start with a cancelled context succeeded")
	}
	if n := runs(); n > 1 {
		t.Errorf("ganesha started %d times under a cancelled context, want at most once", n)
	}
}
