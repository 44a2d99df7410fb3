package server

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// versionRunner answers `zfs version` with out and err, and counts calls.
type versionRunner struct {
	out   string
	err   error
	calls int
}

func (r *versionRunner) Run(_ context.Context, c command.Cmd) ([]byte, error) {
	r.calls++
	if c.String() != "zfs version" {
		return nil, errors.New("unexpected " + c.String())
	}
	return []byte(r.out), r.err
}

func moduleRoot(t *testing.T, version string) string {
	t.Helper()
	root := t.TempDir()
	if version != "" {
		dir := filepath.Join(root, "sys", "module", "zfs")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "version"), []byte(version+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// The server's decision: which flavour is checked, and what stops it.
func TestCheckZFSModule(t *testing.T) {
	noModule := &command.Error{Cmd: "zfs version", Stderr: "zfs_version_kernel() failed", Err: errors.New("exit status 1")}
	for _, tc := range []struct {
		name    string
		cli     zfs.CLI
		skip    bool
		module  string // "" = none loaded
		out     string
		outErr  error
		want    error
		runsZFS bool
	}{
		{name: "openzfs, matching", cli: zfs.CLIOpenZFS, module: "2.1.11-1", out: "zfs-2.1.11-1\nzfs-kmod-2.1.11-1\n", runsZFS: true},
		{name: "openzfs, no module", cli: zfs.CLIOpenZFS, out: "zfs-2.1.11-1\n", outErr: noModule, want: zfs.ErrModuleMissing, runsZFS: true},
		{name: "openzfs, other series", cli: zfs.CLIOpenZFS, module: "2.2.2-0ubuntu9", out: "zfs-2.1.11-1\nzfs-kmod-2.2.2-0ubuntu9\n", want: zfs.ErrModuleMismatch, runsZFS: true},
		{name: "openzfs, userland unreadable", cli: zfs.CLIOpenZFS, module: "2.1.11-1", outErr: errors.New("exec: zfs not found"), want: zfs.ErrModuleMismatch, runsZFS: true},
		{name: "openzfs, skipped", cli: zfs.CLIOpenZFS, skip: true},
		{name: "zfs-fuse has no module", cli: zfs.CLIZFSFuse},
		{name: "auto without a module", cli: zfs.CLIAuto},
		{name: "auto with a module of another series", cli: zfs.CLIAuto, module: "2.3.4-1", out: "zfs-2.1.11-1\n", want: zfs.ErrModuleMismatch, runsZFS: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &versionRunner{out: tc.out, err: tc.outErr}
			cfg := Config{ZFSCLI: string(tc.cli), SkipZFSModuleCheck: tc.skip}
			err := checkZFSModule(context.Background(), cfg, r, moduleRoot(t, tc.module))
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("checkZFSModule: %v, want %v", err, tc.want)
			}
			if (r.calls > 0) != tc.runsZFS {
				t.Errorf("zfs version ran %d times, want run=%v", r.calls, tc.runsZFS)
			}
			if err != nil && startFailureReason(err) == "StartFailed" {
				t.Errorf("no Event reason for %v", err)
			}
		})
	}
}

func TestStartFailureEvent(t *testing.T) {
	env := map[string]string{"POD_NAME": "dots-server-0", "POD_NAMESPACE": "storage", "POD_UID": "1234-abcd"}
	ref, ok := podFromEnv(func(k string) string { return env[k] })
	if !ok {
		t.Fatal("pod not found in the environment")
	}
	if _, ok := podFromEnv(func(k string) string { return map[string]string{"POD_NAME": "x"}[k] }); ok {
		t.Error("a pod without a namespace")
	}
	cs := fake.NewClientset()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	msg := "the OpenZFS kernel module is not loaded " + strings.Repeat("x", 2000)
	if err := recordStartFailure(context.Background(), cs.CoreV1(), ref, "ZFSModuleMissing", msg, now); err != nil {
		t.Fatal(err)
	}
	evs, err := cs.CoreV1().Events("storage").List(context.Background(), metav1.ListOptions{})
	if err != nil || len(evs.Items) != 1 {
		t.Fatalf("events: %v %v", evs, err)
	}
	ev := evs.Items[0]
	if ev.InvolvedObject.Kind != "Pod" || ev.InvolvedObject.Name != "dots-server-0" || ev.InvolvedObject.Namespace != "storage" ||
		ev.InvolvedObject.UID != "1234-abcd" || ev.Type != corev1.EventTypeWarning || ev.Reason != "ZFSModuleMissing" ||
		!ev.LastTimestamp.Time.Equal(now) || ev.Source.Component != "dots-server" {
		t.Errorf("event %+v", ev)
	}
	if len(ev.Message) > maxEventMessage || !strings.HasPrefix(ev.Message, "the OpenZFS kernel module") {
		t.Errorf("message of %d bytes: %.60q", len(ev.Message), ev.Message)
	}
}

func TestZFSModuleCheckFlag(t *testing.T) {
	for args, skip := range map[string]bool{"": false, "--zfs-module-check": false, "--zfs-module-check=true": false, "--zfs-module-check=false": true} {
		var c Config
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		c.AddFlags(fs)
		if err := fs.Parse(strings.Fields(args)); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if c.SkipZFSModuleCheck != skip {
			t.Errorf("%q: skip=%v, want %v", args, c.SkipZFSModuleCheck, skip)
		}
	}
	var c Config
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"--zfs-module-check=maybe"}); err == nil {
		t.Error("--zfs-module-check=maybe accepted")
	}
}
