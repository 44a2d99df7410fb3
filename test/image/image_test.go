//go:build image

package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The image make image built; DOTS_IMAGE names another layout (relative
// to the repository's root, as make sees it).
func layoutDir() string {
	d := os.Getenv("DOTS_IMAGE")
	if d == "" {
		d = "bin/dots-image"
	}
	if filepath.IsAbs(d) {
		return d
	}
	return filepath.Join(repo, d)
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
}

type manifest struct {
	MediaType   string            `json:"mediaType"`
	Config      descriptor        `json:"config"`
	Layers      []descriptor      `json:"layers"`
	Annotations map[string]string `json:"annotations"`
}

type imageConfig struct {
	Created      string `json:"created"`
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		Env        []string          `json:"Env"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		CreatedBy  string `json:"created_by"`
		EmptyLayer bool   `json:"empty_layer"`
	} `json:"history"`
}

// ociImage is one image of an OCI layout, read and checked blob by blob.
type ociImage struct {
	dir      string
	tag      string
	digest   string // the manifest's
	manifest manifest
	config   imageConfig
	rawCfg   []byte
}

// openImage reads the layout's one image and checks that every blob it
// names is there with the digest and size it is named by.
func openImage(t *testing.T, dir string) *ociImage {
	t.Helper()
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	readJSON(t, filepath.Join(dir, "index.json"), &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("%s: index.json has %d manifests, want 1", dir, len(index.Manifests))
	}
	m := index.Manifests[0]
	img := &ociImage{dir: dir, tag: m.Annotations["org.opencontainers.image.ref.name"], digest: m.Digest}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("%s: the image is a %q, want an OCI image manifest", dir, m.MediaType)
	}
	if img.tag == "" {
		t.Errorf("%s: the image has no tag (org.opencontainers.image.ref.name)", dir)
	}
	if err := json.Unmarshal(img.blob(t, m), &img.manifest); err != nil {
		t.Fatal(err)
	}
	img.rawCfg = img.blob(t, img.manifest.Config)
	if err := json.Unmarshal(img.rawCfg, &img.config); err != nil {
		t.Fatal(err)
	}
	for _, l := range img.manifest.Layers {
		img.verify(t, l)
	}
	return img
}

func (img *ociImage) path(d descriptor) string {
	return filepath.Join(img.dir, "blobs", "sha256", strings.TrimPrefix(d.Digest, "sha256:"))
}

func (img *ociImage) blob(t *testing.T, d descriptor) []byte {
	t.Helper()
	img.verify(t, d)
	b, err := os.ReadFile(img.path(d))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (img *ociImage) verify(t *testing.T, d descriptor) {
	t.Helper()
	f, err := os.Open(img.path(d))
	if err != nil {
		t.Fatalf("blob %s: %v", d.Digest, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d.Digest || n != d.Size {
		t.Errorf("blob %s: digest %s, size %d; the manifest says size %d", d.Digest, got, n, d.Size)
	}
}

func (img *ociImage) size() (total int64) {
	for _, l := range img.manifest.Layers {
		total += l.Size
	}
	return total
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// run runs a command on this machine with a deadline and returns its
// stdout, stderr and exit code (-1 if it did not run to an exit).
func run(t *testing.T, timeout time.Duration, env []string, argv ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		return stdout.String(), stderr.String(), ee.ExitCode()
	default:
		t.Fatalf("%s: %v (deadline %s)\n%s%s", strings.Join(argv, " "), err, timeout, stdout.String(), stderr.String())
		return "", "", -1
	}
}

// must runs a command that has to succeed and returns its stdout.
func must(t *testing.T, timeout time.Duration, argv ...string) string {
	t.Helper()
	out, errOut, code := run(t, timeout, nil, argv...)
	if code != 0 {
		t.Fatalf("%s: exit status %d\n%s%s", strings.Join(argv, " "), code, out, errOut)
	}
	return out
}

// unpack unpacks the image's root file system as a runtime would (layers in
// order, owners kept) into a temporary directory.
func unpack(t *testing.T, img *ociImage) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	must(t, 5*time.Minute, "umoci", "raw", "unpack", "--image", img.dir+":"+img.tag, root)
	return root
}

// inImage runs argv inside the unpacked image (hack/image/run.sh) and
// returns its output and exit code.
func inImage(t *testing.T, root string, argv ...string) (string, string, int) {
	t.Helper()
	return run(t, 2*time.Minute, nil, append([]string{filepath.Join(repo, "hack/image/run.sh"), root}, argv...)...)
}

// figures are what the image test prints at the end.
type figures struct {
	buildS       float64
	reproducible bool
	unpackedMB   float64
	packages     int
}

// TestImage checks the image that make image built: the layout and its
// metadata, what the root file system holds and lacks, the programs dots
// runs, run from the inside, the chart's flags against the image's binary,
// ganesha serving an export that pkg/nfs configures, pushes to a loopback
// registry (one image, and an index of two), and a second build for
// reproducibility. It prints
// `image: ok build_s=... size_mb=... layers=... reproducible=...`.
func TestImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the image test runs as root (chroot, mounts): make test-image")
	}
	dir := layoutDir()
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		t.Fatalf("no image at %s (%v): make test-image builds it first", dir, err)
	}
	img := openImage(t, dir)
	var fig figures
	t.Run("metadata", func(t *testing.T) { checkMetadata(t, img) })
	root := unpack(t, img)
	t.Run("contents", func(t *testing.T) { fig.unpackedMB, fig.packages = checkContents(t, root) })
	t.Run("commands", func(t *testing.T) { checkCommands(t, img, root) })
	t.Run("chart-flags", func(t *testing.T) { checkChartFlags(t, root) })
	t.Run("ganesha", func(t *testing.T) { checkGanesha(t, root) })
	t.Run("push", func(t *testing.T) { checkPush(t, img) })
	t.Run("push-index", func(t *testing.T) { checkPushIndex(t, img) })
	t.Run("reproducible", func(t *testing.T) { fig.buildS, fig.reproducible = checkReproducible(t, img) })

	status := "ok"
	if t.Failed() {
		status = "FAIL"
	}
	fmt.Printf("image: %s build_s=%.0f size_mb=%.1f unpacked_mb=%.0f layers=%d packages=%d reproducible=%t\n",
		status, fig.buildS, float64(img.size())/1e6, fig.unpackedMB, len(img.manifest.Layers), fig.packages, fig.reproducible)
	for i, l := range img.manifest.Layers {
		t.Logf("layer %d: %s (%.1f MB)", i, l.Digest, float64(l.Size)/1e6)
	}
	t.Logf("manifest: %s", img.digest)
}
