package image

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const repo = "../.."

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// contains reports each of wants that text (the file name) lacks.
func contains(t *testing.T, name, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q", name, want)
		}
	}
}

// packages parses deploy/image/packages.txt: one name a line, '#' comments.
func packages(t *testing.T) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(read(t, "deploy/image/packages.txt")))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		out = append(out, strings.Fields(line)...)
	}
	return out
}

// The list holds what dots runs, each once, and nothing that is not a
// Debian package name.
func TestPackageList(t *testing.T) {
	pkgs := packages(t)
	name := regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	seen := map[string]bool{}
	for _, p := range pkgs {
		if !name.MatchString(p) {
			t.Errorf("packages.txt: %q is not a Debian package name", p)
		}
		if seen[p] {
			t.Errorf("packages.txt: %s twice", p)
		}
		seen[p] = true
	}
	// What the server, the node plugin and ganesha run: zfs and zpool,
	// ganesha.nfsd and its VFS FSAL, mount.nfs, mount and umount,
	// dbus-daemon for ganesha's export manager.
	for _, want := range []string{"zfsutils-linux", "nfs-ganesha", "nfs-ganesha-vfs", "nfs-common", "mount", "dbus"} {
		if !seen[want] {
			t.Errorf("packages.txt lacks %s", want)
		}
	}
}

// deploy/Dockerfile installs exactly packages.txt: it copies the list, the
// dpkg options and customize.sh, names no package of its own on the
// apt-get line, and runs customize.sh.
func TestDockerfileUsesTheSameInputs(t *testing.T) {
	df := read(t, "deploy/Dockerfile")
	contains(t, "deploy/Dockerfile", df,
		"COPY deploy/image/dpkg.cfg /etc/dpkg/dpkg.cfg.d/",
		"deploy/image/packages.txt",
		"hack/image/customize.sh",
		"/tmp/image/packages.txt",
		"/tmp/image/customize.sh /",
		"--no-install-recommends",
		"Components: main contrib",
		"debian:bookworm-slim",
		"CGO_ENABLED=0 go build -trimpath",
		"pkg/version.revision=${REVISION}",
	)
	install := regexp.MustCompile(`apt-get install ([^\n\\]*)`).FindAllStringSubmatch(df, -1)
	if len(install) != 1 {
		t.Fatalf("deploy/Dockerfile: want one apt-get install, found %d", len(install))
	}
	for _, w := range strings.Fields(install[0][1]) {
		if !strings.HasPrefix(w, "-") {
			t.Errorf("deploy/Dockerfile installs %q outside packages.txt", w)
		}
	}
}

// hack/image/build.sh reads the same inputs, builds from bookworm with
// contrib, and its entrypoint is the Dockerfile's.
func TestBuildScriptUsesTheSameInputs(t *testing.T) {
	sh := read(t, "hack/image/build.sh")
	contains(t, "hack/image/build.sh", sh,
		"deploy/image/packages.txt",
		`--dpkgopt="$repo/deploy/image/dpkg.cfg"`,
		`--customize-hook="$here/customize.sh"`,
		"--components=main,contrib",
		"SUITE=bookworm",
		"CGO_ENABLED=0",
		"-trimpath",
	)
	entry := regexp.MustCompile(`(?m)^ENTRYPOINT=(\S+)$`).FindStringSubmatch(sh)
	if entry == nil {
		t.Fatal("hack/image/build.sh sets no ENTRYPOINT")
	}
	df := read(t, "deploy/Dockerfile")
	if want := `ENTRYPOINT ["` + entry[1] + `"]`; !strings.Contains(df, want) {
		t.Errorf("deploy/Dockerfile: want %s, as hack/image/build.sh", want)
	}
	if !strings.Contains(df, "COPY --from=build /out/dots "+entry[1]) {
		t.Errorf("deploy/Dockerfile does not put dots at %s", entry[1])
	}
}

// The chart gives the dots containers args (the subcommand first) and
// never a command: the image's entrypoint is dots.
func TestChartRunsTheEntrypoint(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repo, "deploy/helm/dots/templates/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no chart templates: %v", err)
	}
	image := regexp.MustCompile(`image: \{\{ include "dots\.image" [^\n]*\}\}\n(?:.*\n){0,4}? *args:\n *- (\w+)\n`)
	found := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("command:")) {
			t.Errorf("%s sets a command: the image's entrypoint is dots, the chart passes args", filepath.Base(f))
		}
		for _, m := range image.FindAllSubmatch(b, -1) {
			found++
			if sub := string(m[1]); !slices.Contains([]string{"controller", "node", "server"}, sub) {
				t.Errorf("%s: the dots image runs %q, not a daemon subcommand", filepath.Base(f), sub)
			}
		}
	}
	if found != 3 {
		t.Errorf("found %d containers of the dots image with args, want 3 (controller, node, server)", found)
	}
}

// make image-push without IMAGE says what to do and changes nothing.
func TestPushNeedsAnImage(t *testing.T) {
	for _, args := range [][]string{{"", "bin/dots-image"}, {""}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, filepath.Join(repo, "hack/image/push.sh"), args...).CombinedOutput()
		cancel()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("push.sh %q: %v, want exit status 2\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "make image-push IMAGE=") {
			t.Errorf("push.sh %q does not say how to name the image:\n%s", args, out)
		}
	}
}
