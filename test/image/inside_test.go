//go:build image

package image

import (
	"debug/elf"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const entrypoint = "/usr/local/bin/dots"

// maxSizeMB bounds the compressed image: about 65 MB today (51 MB of
// Debian, 14 MB of dots). A package that drags in perl or a compiler shows.
const maxSizeMB = 90

func checkMetadata(t *testing.T, img *ociImage) {
	if n := len(img.manifest.Layers); n != 2 {
		t.Errorf("%d layers, want 2 (Debian, dots)", n)
	}
	for _, l := range img.manifest.Layers {
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
			t.Errorf("layer %s: media type %q", l.Digest, l.MediaType)
		}
	}
	if mb := float64(img.size()) / 1e6; mb > maxSizeMB {
		t.Errorf("the image is %.0f MB compressed, over %d MB: what grew? (bin/dots-image.dpkg.txt)", mb, maxSizeMB)
	}
	c := img.config
	if c.OS != "linux" || c.Architecture == "" {
		t.Errorf("platform %s/%s", c.OS, c.Architecture)
	}
	if !slices.Equal(c.Config.Entrypoint, []string{entrypoint}) || len(c.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [%s] and none: the chart passes the subcommand as args",
			c.Config.Entrypoint, c.Config.Cmd, entrypoint)
	}
	if !slices.ContainsFunc(c.Config.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=/usr/local/sbin:") }) {
		t.Errorf("no PATH in the environment: %q", c.Config.Env)
	}
	if len(c.RootFS.DiffIDs) != len(img.manifest.Layers) || len(c.History) != len(img.manifest.Layers) {
		t.Errorf("%d diff ids and %d history entries for %d layers", len(c.RootFS.DiffIDs), len(c.History), len(img.manifest.Layers))
	}

	// Labels (config) and annotations (manifest) say what was built, from
	// what, when.
	head := strings.TrimSpace(must(t, time.Minute, "git", "-C", repo, "rev-parse", "HEAD"))
	epoch, err := strconv.ParseInt(strings.TrimSpace(must(t, time.Minute, "git", "-C", repo, "log", "-1", "--format=%ct")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Unix(epoch, 0).UTC().Format(time.RFC3339)
	if c.Created != created {
		t.Errorf("created %s, want HEAD's commit time %s", c.Created, created)
	}
	want := map[string]string{
		"org.opencontainers.image.revision": head,
		"org.opencontainers.image.source":   "https://github.com/dots-csi/dots",
		"org.opencontainers.image.created":  created,
		"org.opencontainers.image.title":    "dots",
	}
	for name, labels := range map[string]map[string]string{"label": c.Config.Labels, "annotation": img.manifest.Annotations} {
		for k, v := range want {
			if labels[k] != v {
				t.Errorf("%s %s=%q, want %q", name, k, labels[k], v)
			}
		}
		if v := labels["org.opencontainers.image.version"]; v == "" || strings.ContainsAny(v, " \n") {
			t.Errorf("%s org.opencontainers.image.version=%q", name, v)
		}
	}
	if v := c.Config.Labels["org.opencontainers.image.version"]; regexp.MustCompile(`[^A-Za-z0-9_.-]`).ReplaceAllString(v, "_") != img.tag {
		t.Errorf("tagged %q, version %q", img.tag, v)
	}
}

// checkContents returns the unpacked size and the number of packages.
func checkContents(t *testing.T, root string) (float64, int) {
	at := func(p string) string { return filepath.Join(root, p) }
	absent := func(p, why string) {
		if _, err := os.Lstat(at(p)); err == nil {
			t.Errorf("%s is in the image: %s", p, why)
		}
	}
	absent("/etc/hostid", "zfsutils' postinst writes a random one; the node's must count")
	absent("/etc/hostname", "the build machine's")
	absent("/etc/resolv.conf", "the build machine's")
	absent("/usr/share/man", "no manual pages")
	absent("/usr/share/info", "no info pages")
	absent("/usr/share/perl", "no perl (usrmerge brings it)")
	if b, err := os.ReadFile(at("/etc/machine-id")); err == nil && len(b) > 0 {
		t.Errorf("/etc/machine-id holds %q: every container would share it", b)
	}
	if l, err := os.Readlink(at("/etc/mtab")); err != nil || l != "../proc/self/mounts" {
		t.Errorf("/etc/mtab: %q, %v; ganesha's VFS FSAL needs it to be ../proc/self/mounts", l, err)
	}
	// Only the empty directories and locks apt keeps.
	emptyBut := func(dir string, keep ...string) {
		_ = filepath.WalkDir(at(dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || slices.Contains(keep, d.Name()) {
				return err
			}
			t.Errorf("%s is in the image", strings.TrimPrefix(p, root))
			return nil
		})
	}
	emptyBut("/var/lib/apt/lists", "lock")
	emptyBut("/var/cache/apt", "lock")
	emptyBut("/dev")
	emptyBut("/tmp")
	emptyBut("/run")
	emptyBut("/usr/share/doc", "copyright") // the licences stay

	// What dots runs: the server zfs, zpool and ganesha.nfsd (with its VFS
	// FSAL), OpenZFS mount.zfs and /bin/mount; the node plugin mount,
	// umount and mount.nfs4; ganesha's export manager a private dbus.
	for _, p := range []string{
		entrypoint, "/usr/bin/ganesha.nfsd", "/usr/sbin/zfs", "/usr/sbin/zpool", "/usr/sbin/mount.zfs",
		"/usr/bin/mount", "/usr/bin/umount", "/bin/mount", "/usr/sbin/mount.nfs", "/usr/sbin/mount.nfs4",
		"/usr/bin/dbus-daemon",
	} {
		if fi, err := os.Stat(at(p)); err != nil || fi.Mode()&0o111 == 0 || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v (mode %v), want an executable file", p, err, fi)
		}
	}
	if fsal, _ := filepath.Glob(at("/usr/lib/*/ganesha/libfsalvfs.so")); len(fsal) != 1 {
		t.Errorf("ganesha's VFS FSAL: found %q", fsal)
	}
	if f, err := elf.Open(at(entrypoint)); err != nil {
		t.Error(err)
	} else {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked: build it with CGO_ENABLED=0", entrypoint)
			}
		}
		f.Close()
	}

	var bytes int64
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				bytes += fi.Size()
			}
		}
		return nil
	})
	out, _, code := inImage(t, root, "dpkg-query", "-W", "-f", "${binary:Package}\n")
	if code != 0 {
		t.Errorf("dpkg-query in the image: exit status %d", code)
	}
	return float64(bytes) / 1e6, len(strings.Fields(out))
}

// checkCommands runs, inside the image, the programs dots runs.
func checkCommands(t *testing.T, img *ociImage, root string) {
	labels := img.config.Config.Labels
	out, errOut, code := inImage(t, root, "dots", "version")
	want := "dots version=" + labels["org.opencontainers.image.version"] + " revision=" + labels["org.opencontainers.image.revision"] + " "
	if code != 0 || !strings.HasPrefix(out, want) || !strings.Contains(out, "platform=linux/"+img.config.Architecture) {
		t.Errorf("dots version: exit status %d, %q%s; want %q... platform=linux/%s", code, out, errOut, want, img.config.Architecture)
	}
	// -h and --help print the flags and exit 0.
	out, errOut, code = inImage(t, root, "dots", "server", "--help")
	if code != 0 || !strings.Contains(out+errOut, "-pool") || !strings.Contains(out+errOut, "-nfs-port") {
		t.Errorf("dots server --help: exit status %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = inImage(t, root, "ganesha.nfsd", "-v")
	if code != 0 || !strings.Contains(out+errOut, "NFS-Ganesha Release = V") {
		t.Errorf("ganesha.nfsd -v: exit status %d\n%s%s", code, out, errOut)
	}
	// The userland version only: with no ZFS module here, both also say
	// zfs_version_kernel() failed and exit 1. It is the image's zfs, not
	// this machine's zfs-fuse (which has no --version): it matches the
	// image's zfsutils-linux package.
	pkg, _, _ := inImage(t, root, "dpkg-query", "-W", "-f", "${Version}", "zfsutils-linux")
	for _, tool := range []string{"zfs", "zpool"} {
		out, errOut, _ = inImage(t, root, tool, "--version")
		if first, _, _ := strings.Cut(out, "\n"); first != "zfs-"+pkg || !strings.HasPrefix(pkg, "2.") {
			t.Errorf("%s --version: %q%s; want zfs-%s, OpenZFS 2.x", tool, out, errOut, pkg)
		}
	}
	for _, c := range [][]string{{"mount", "--version"}, {"umount", "--version"}, {"mount.nfs", "-V"}, {"dbus-daemon", "--version"}} {
		if out, errOut, code := inImage(t, root, c...); code != 0 {
			t.Errorf("%s: exit status %d\n%s%s", strings.Join(c, " "), code, out, errOut)
		}
	}
	// Every library they load is there (the FSAL is loaded only when the
	// first export is made).
	fsal, _ := filepath.Glob(filepath.Join(root, "/usr/lib/*/ganesha/libfsalvfs.so"))
	libs := []string{"/usr/bin/ganesha.nfsd", "/usr/sbin/zfs", "/usr/sbin/zpool", "/usr/sbin/mount.nfs", "/usr/bin/dbus-daemon"}
	for _, f := range fsal {
		libs = append(libs, strings.TrimPrefix(f, root))
	}
	for _, bin := range libs {
		out, errOut, code := inImage(t, root, "ldd", bin)
		if code != 0 || strings.Contains(out, "not found") {
			t.Errorf("ldd %s: exit status %d\n%s%s", bin, code, out, errOut)
		}
	}
}
