//go:build image

package image

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// startRegistry serves crane's in-memory registry on a free loopback port
// until the test ends and returns its address.
func startRegistry(t *testing.T, crane string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	cmd := exec.CommandContext(ctx, crane, "registry", "serve", "--address", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	port := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`serving on port (\d+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case p := <-port:
		return "127.0.0.1:" + p
	case <-time.After(time.Minute):
		t.Fatal("crane registry serve did not say its port within a minute")
		return ""
	}
}

// checkPush pushes the layout the way make image-push does, to a registry
// on loopback, and the tarball the way crane and docker read it; the
// registry must then hold exactly the image that was built.
func checkPush(t *testing.T, img *ociImage) {
	crane := filepath.Join(toolsDir(t, "crane"), "bin", "crane")
	reg := startRegistry(t, crane)

	push := filepath.Join(repo, "hack/image/push.sh")
	ref := reg + "/dots/dots:" + img.tag
	out := must(t, 5*time.Minute, push, ref, img.dir)
	if got := strings.TrimSpace(out); got != reg+"/dots/dots@"+img.digest {
		t.Errorf("push.sh printed %q, want %s", got, reg+"/dots/dots@"+img.digest)
	}
	if got := strings.TrimSpace(must(t, time.Minute, crane, "digest", ref)); got != img.digest {
		t.Errorf("the registry serves %s as %s, the layout holds %s", ref, got, img.digest)
	}

	// OUT.tar: its manifest.json (docker load) names the same config and
	// layers.
	tarRef := reg + "/dots/dots:from-tar"
	must(t, 5*time.Minute, crane, "push", img.dir+".tar", tarRef)
	var m manifest
	if err := json.Unmarshal([]byte(must(t, time.Minute, crane, "manifest", tarRef)), &m); err != nil {
		t.Fatal(err)
	}
	digests := func(ds []descriptor) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Digest)
		}
		return out
	}
	if m.Config.Digest != img.manifest.Config.Digest || !slices.Equal(digests(m.Layers), digests(img.manifest.Layers)) {
		t.Errorf("%s.tar loads as config %s layers %v; the layout has %s %v", img.dir, m.Config.Digest, digests(m.Layers),
			img.manifest.Config.Digest, digests(img.manifest.Layers))
	}
}

// checkPushIndex pushes the image and a copy of it relabelled as another
// architecture as make image-push IMAGE_ARCHES="amd64 arm64" does: the tag
// must name an index of exactly the two images, each with its platform.
func checkPushIndex(t *testing.T, img *ociImage) {
	other := map[bool]string{true: "amd64", false: "arm64"}[img.config.Architecture == "arm64"]
	copyDir := filepath.Join(t.TempDir(), "other")
	must(t, 5*time.Minute, "cp", "-a", img.dir, copyDir)
	must(t, 5*time.Minute, "umoci", "config", "--no-history", "--image", copyDir+":"+img.tag, "--architecture", other)
	otherImg := openImage(t, copyDir)

	crane := filepath.Join(toolsDir(t, "crane"), "bin", "crane")
	reg := startRegistry(t, crane)
	ref := reg + "/dots/multi:" + img.tag
	must(t, 5*time.Minute, filepath.Join(repo, "hack/image/push.sh"), ref, img.dir, copyDir)
	var index struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal([]byte(must(t, time.Minute, crane, "manifest", ref)), &index); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range index.Manifests {
		got[m.Platform.OS+"/"+m.Platform.Architecture] = m.Digest
	}
	want := map[string]string{"linux/" + img.config.Architecture: img.digest, "linux/" + other: otherImg.digest}
	if len(got) != 2 || got["linux/"+img.config.Architecture] != img.digest || got["linux/"+other] != otherImg.digest {
		t.Errorf("%s is an index of %v, want %v", ref, got, want)
	}
}

// checkReproducible builds the image again from the same inputs and
// compares. The dots layer and the config (but for the Debian layer's
// digest) must be identical. The Debian layer is too when the mirror
// served the same packages; if it did not (it is no snapshot, and moves
// with Debian's updates), the difference is logged and the result is
// reproducible=false. Returns the second build's duration.
func checkReproducible(t *testing.T, img *ociImage) (float64, bool) {
	labels := img.config.Config.Labels
	out := filepath.Join(t.TempDir(), "again")
	start := time.Now()
	_, errOut, code := run(t, 20*time.Minute, []string{
		"IMAGE_ARCH=" + img.config.Architecture,
		"VERSION=" + labels["org.opencontainers.image.version"],
		"REVISION=" + labels["org.opencontainers.image.revision"],
	}, filepath.Join(repo, "hack/image/build.sh"), out)
	took := time.Since(start).Seconds()
	if code != 0 {
		t.Fatalf("second build: exit status %d\n%s", code, errOut)
	}
	again := openImage(t, out)
	t.Logf("second build in %.0f s: %s", took, again.digest)
	if again.digest == img.digest {
		return took, true
	}
	a, b := img.manifest.Layers, again.manifest.Layers
	if len(a) != len(b) {
		t.Fatalf("%d layers, then %d", len(a), len(b))
	}
	if a[len(a)-1].Digest != b[len(b)-1].Digest {
		t.Errorf("the dots layer differs: %s, then %s", a[len(a)-1].Digest, b[len(b)-1].Digest)
	}
	if x, y := withoutDebianLayer(t, img), withoutDebianLayer(t, again); x != y {
		t.Errorf("the configs differ beyond the Debian layer:\n%s\n%s", x, y)
	}
	if a[0].Digest != b[0].Digest {
		first, err1 := os.ReadFile(img.dir + ".dpkg.txt")
		second, err2 := os.ReadFile(out + ".dpkg.txt")
		if err1 != nil || err2 != nil {
			t.Fatalf("package lists: %v, %v", err1, err2)
		}
		if string(first) == string(second) {
			t.Errorf("the Debian layer differs (%s, then %s) with the same packages: not reproducible", a[0].Digest, b[0].Digest)
		} else {
			t.Logf("the Debian layer differs because the mirror served other packages between the builds:\n%s",
				lineDiff(string(first), string(second)))
		}
	}
	return took, false
}

// withoutDebianLayer is the config with the first layer's diff id blanked.
func withoutDebianLayer(t *testing.T, img *ociImage) string {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(img.rawCfg, &c); err != nil {
		t.Fatal(err)
	}
	if rootfs, ok := c["rootfs"].(map[string]any); ok {
		if ids, ok := rootfs["diff_ids"].([]any); ok && len(ids) > 0 {
			ids[0] = "(debian)"
		}
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// lineDiff lists the lines only in a (-) and only in b (+).
func lineDiff(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range as {
		if !slices.Contains(bs, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bs {
		if !slices.Contains(as, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
