package zfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// fakeSys makes root/sys/module/zfs with the given version file content;
// nil content: the directory without a version file; no call: no module.
func fakeSys(t *testing.T, root string, version *string) {
	t.Helper()
	dir := filepath.Join(root, "sys", "module", "zfs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if version != nil {
		if err := os.WriteFile(filepath.Join(dir, "version"), []byte(*version), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func ptr(s string) *string { return &s }

func TestCheckModule(t *testing.T) {
	for _, tc := range []struct {
		name     string
		module   bool
		version  *string
		userland string
		want     error // nil, ErrModuleMissing or ErrModuleMismatch
		patch    bool
		says     []string // in the error
	}{
		{name: "no module", userland: "2.1.11-1", want: ErrModuleMissing, says: []string{"sys/module/zfs does not exist", "OpenZFS 2.1.x", "modprobe zfs"}},
		{name: "no module, userland unknown", userland: "", want: ErrModuleMissing},
		{name: "same version", module: true, version: ptr("2.1.11-1\n"), userland: "2.1.11-1"},
		{name: "same series, other patch", module: true, version: ptr("2.1.5-1ubuntu6~22.04.4\n"), userland: "2.1.11-1", patch: true},
		{name: "other minor", module: true, version: ptr("2.2.2-0ubuntu9\n"), userland: "2.1.11-1", want: ErrModuleMismatch,
			says: []string{"2.2.2-0ubuntu9", "2.1.11-1", "OpenZFS 2.1 module", "userland is 2.2"}},
		{name: "other major", module: true, version: ptr("0.8.3-1ubuntu12\n"), userland: "2.1.11-1", want: ErrModuleMismatch},
		{name: "release candidate", module: true, version: ptr("2.3.0-rc5\n"), userland: "2.3.1-1", patch: true},
		{name: "two-part version", module: true, version: ptr("2.1\n"), userland: "2.1.11-1", patch: true},
		{name: "no version file", module: true, userland: "2.1.11-1", want: ErrModuleMismatch, says: []string{"cannot be read"}},
		{name: "garbage version", module: true, version: ptr("unknown\n"), userland: "2.1.11-1", want: ErrModuleMismatch, says: []string{"not a version"}},
		{name: "userland unknown", module: true, version: ptr("2.1.11-1\n"), userland: "", want: ErrModuleMismatch, says: []string{"userland"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.module {
				fakeSys(t, root, tc.version)
			}
			mc, err := CheckModule(root, tc.userland)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckModule: %v", err)
				}
				if mc.PatchDiffers != tc.patch || mc.Kernel != strings.TrimSpace(*tc.version) || mc.Userland != tc.userland {
					t.Errorf("CheckModule = %+v, want kernel %q, patch differs %v", mc, *tc.version, tc.patch)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("CheckModule: %v, want %v", err, tc.want)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// scripted answers each command with the output and error given for its
// command line, and records what ran.
type scripted struct {
	answers map[string]scriptedAnswer
	ran     []string
}

type scriptedAnswer struct {
	out string
	err error
}

func (s *scripted) Run(_ context.Context, c command.Cmd) ([]byte, error) {
	s.ran = append(s.ran, c.String())
	a, ok := s.answers[c.String()]
	if !ok {
		return nil, &command.Error{Cmd: c.String(), Stderr: "unexpected command", Err: errors.New("exit status 1")}
	}
	return []byte(a.out), a.err
}

func TestUserlandVersion(t *testing.T) {
	failed := &command.Error{Cmd: "zfs version", Stderr: "zfs_version_kernel() failed: No such file or directory", Err: errors.New("exit status 1")}
	for _, tc := range []struct {
		name    string
		answer  scriptedAnswer
		want    string
		wantErr bool
	}{
		{name: "module loaded", answer: scriptedAnswer{out: "zfs-2.1.11-1\nzfs-kmod-2.1.11-1\n"}, want: "2.1.11-1"},
		{name: "ubuntu", answer: scriptedAnswer{out: "zfs-2.2.2-0ubuntu9\nzfs-kmod-2.2.2-0ubuntu9\n"}, want: "2.2.2-0ubuntu9"},
		// Without a module, OpenZFS prints the userland, then fails.
		{name: "no module", answer: scriptedAnswer{out: "zfs-2.1.11-1\n", err: failed}, want: "2.1.11-1"},
		{name: "zfs-fuse", answer: scriptedAnswer{err: &command.Error{Cmd: "zfs version", Stderr: "unrecognized command 'version'", Err: errors.New("exit status 2")}}, wantErr: true},
		{name: "kmod only", answer: scriptedAnswer{out: "zfs-kmod-2.1.11-1\n"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &scripted{answers: map[string]scriptedAnswer{"zfs version": tc.answer}}
			got, err := UserlandVersion(context.Background(), r)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("UserlandVersion = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
