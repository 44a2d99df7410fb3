package mounter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dots-csi/dots/internal/mountfake"
	"github.com/dots-csi/dots/pkg/api"
	mount "k8s.io/mount-utils"
)

// confineHost is a Host over the fake mount table whose kubelet directory
// is kubelet.
func confineHost(t *testing.T, s *mountfake.Seams, kubelet string) *Host {
	t.Helper()
	cfg := seamsConfig(s, ModeNFS, "")
	cfg.KubeletDir = kubelet
	h, err := New(cfg)
	must(t, err)
	return h
}

func TestCheckKubeletDir(t *testing.T) {
	for _, ok := range []string{"/var/lib/kubelet", "/var/lib/k0s/kubelet", "/x"} {
		if err := CheckKubeletDir(ok); err != nil {
			t.Errorf("CheckKubeletDir(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/", "var/lib/kubelet", "/var/lib/kubelet/", "/var/lib/../kubelet", "/var//lib", "/a\x00b"} {
		if err := CheckKubeletDir(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("CheckKubeletDir(%q) = %v, want ErrInvalidConfig", bad, err)
		}
	}
}

// The paths of the issue against the default kubelet directory: what the
// path says is enough to refuse them.
func TestConfinePathDefaultKubeletDir(t *testing.T) {
	h := confineHost(t, mountfake.New(), "")
	refused := []string{
		"/", "/etc", "/etc/kubernetes", "/var/lib", "/var/lib/kubelet", "/var/lib/kubelet/",
		"/var/lib/kubelet/..", "/var/lib/kubelet/../etc", "/var/lib/kubelet/pods/../../../../etc",
		"/var/lib/kubelet-evil/pods/x", "/var/lib/kubeletx", "var/lib/kubelet/pods/x", "",
	}
	for _, p := range refused {
		got, err := h.ConfinePath(context.Background(), "staging path", p)
		if !errors.Is(err, api.ErrInvalid) {
			t.Errorf("ConfinePath(%q) = %q, %v; want api.ErrInvalid", p, got, err)
		}
	}
	got, err := h.ConfinePath(context.Background(), "target path", "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/pvc-1/mount")
	if err != nil || got != "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/pvc-1/mount" {
		t.Fatalf("kubelet's own target path: %q, %v", got, err)
	}
}

func TestConfinePath(t *testing.T) {
	kubelet := t.TempDir()
	pods := filepath.Join(kubelet, "pods")
	must(t, os.MkdirAll(pods, 0o750))
	link := func(name, to string) string {
		p := filepath.Join(kubelet, name)
		must(t, os.Symlink(to, p))
		return p
	}
	toEtc := link("to-etc", "/etc")
	toRoot := link("to-root", "/")
	dangling := link("dangling", filepath.Join(t.TempDir(), "gone"))
	loop := link("loop", filepath.Join(kubelet, "loop"))
	toKubelet := link("to-kubelet", kubelet)
	toParent := link("to-parent", "..")
	toPods := link("to-pods", "pods")
	must(t, os.WriteFile(filepath.Join(kubelet, "file"), nil, 0o600))
	// A mount point is trusted from the table, not looked at.
	mounted := filepath.Join(pods, "mounted")
	s := mountfake.New()
	s.Mounter.MountPoints = []mount.MountPoint{{Device: "10.0.0.1:/dots/pvc-1", Path: mounted, Type: "nfs4"}}
	h := confineHost(t, s, kubelet)

	refused := map[string]string{
		"root":                          "/",
		"etc":                           "/etc",
		"the kubelet dir":               kubelet,
		"the kubelet dir with a slash":  kubelet + "/",
		"the kubelet dir through .":     kubelet + "/.",
		"climbing out":                  kubelet + "/../etc",
		"climbing and back":             kubelet + "/pods/../pods/x",
		"dot dot at the end":            kubelet + "/pods/..",
		"a sibling with the prefix":     kubelet + "-evil/x",
		"relative":                      "pods/x",
		"dot relative":                  "./pods/x",
		"empty":                         "",
		"very long":                     kubelet + "/" + strings.Repeat("a", maxPathLen),
		"NUL byte":                      kubelet + "/pods/a\x00b",
		"NUL then climbing":             kubelet + "/pods\x00/../../etc",
		"newline":                       kubelet + "/pods/a\nb",
		"tab":                           kubelet + "/pods/a\tb",
		"space":                         kubelet + "/pods/a b",
		"backslash":                     kubelet + `/pods/a\b`,
		"symlink to /etc":               toEtc,
		"below a symlink to /etc":       toEtc + "/new/globalmount",
		"below a symlink to /":          toRoot + "/var/lib/x",
		"dangling symlink":              dangling,
		"below a dangling symlink":      dangling + "/globalmount",
		"symlink loop":                  loop + "/x",
		"symlink to the kubelet dir":    toKubelet,
		"symlink to the kubelet parent": toParent + "/x",
	}
	for name, p := range refused {
		t.Run(name, func(t *testing.T) {
			got, err := h.ConfinePath(context.Background(), "staging path", p)
			if !errors.Is(err, api.ErrInvalid) {
				t.Fatalf("ConfinePath(%q) = %q, %v; want api.ErrInvalid", p, got, err)
			}
			if !strings.Contains(err.Error(), "staging path") {
				t.Errorf("the error does not say which field: %v", err)
			}
		})
	}

	accepted := map[string]string{
		kubelet + "/pods/uid/volumes/kubernetes.io~csi/pvc-1/mount": kubelet + "/pods/uid/volumes/kubernetes.io~csi/pvc-1/mount",
		kubelet + "//pods/./x/":        kubelet + "/pods/x",
		kubelet + "/new":               kubelet + "/new",
		toPods + "/x":                  toPods + "/x", // a symlink that stays inside
		toKubelet + "/x":               toKubelet + "/x",
		kubelet + "/file/x":            kubelet + "/file/x", // the mount fails later, inside the kubelet dir
		mounted:                        mounted,
		filepath.Join(mounted, "deep"): filepath.Join(mounted, "deep"),
	}
	for p, want := range accepted {
		got, err := h.ConfinePath(context.Background(), "target path", p)
		if err != nil || got != want {
			t.Errorf("ConfinePath(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
	if entries, err := os.ReadDir(pods); err != nil || len(entries) != 0 {
		t.Fatalf("checking paths created %v (%v)", entries, err)
	}
}

// A kubelet directory that is itself a symlink (or not there yet) confines
// to where it leads.
func TestConfinePathSymlinkedKubeletDir(t *testing.T) {
	target := t.TempDir()
	kubelet := filepath.Join(t.TempDir(), "kubelet")
	must(t, os.Symlink(target, kubelet))
	h := confineHost(t, mountfake.New(), kubelet)
	if _, err := h.ConfinePath(context.Background(), "target path", kubelet+"/pods/x"); err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink("/etc", filepath.Join(target, "to-etc")))
	if _, err := h.ConfinePath(context.Background(), "target path", kubelet+"/to-etc/x"); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("escape through a symlinked kubelet dir: %v", err)
	}

	missing := confineHost(t, mountfake.New(), filepath.Join(t.TempDir(), "not", "yet"))
	if _, err := missing.ConfinePath(context.Background(), "target path", missing.KubeletDir()+"/pods/x"); err != nil {
		t.Fatalf("a kubelet dir not created yet: %v", err)
	}
}
