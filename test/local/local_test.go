//go:build integration

// Package local tests `dots local` end to end, as a user runs it: the real
// binary as a subprocess, driven by the real client, stopped with SIGTERM.
package local

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/local"
	"github.com/dots-csi/dots/pkg/mtls"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stack is one `dots local` subprocess.
type stack struct {
	t       *testing.T
	state   string
	metrics string // from the ready line
	cmd     *exec.Cmd
	log     bytes.Buffer
	done    chan error
}

func start(t *testing.T, state string, extra ...string) *stack {
	t.Helper()
	s := &stack{t: t, state: state, done: make(chan error, 1)}
	s.cmd = exec.Command(testenv.DotsBinary(t), append([]string{"local", "--state-dir", state, "--pool-size", "2Gi"}, extra...)...)
	s.cmd.Stderr = &s.log
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready ") {
				ready <- sc.Text()
			}
		}
	}()
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.stop()
		}
	})
	select {
	case line := <-ready:
		if !strings.Contains(line, "endpoint=unix://"+state+"/csi.sock") || !strings.Contains(line, "metrics=http://") {
			t.Fatalf("ready line %q does not name the endpoint and metrics address", line)
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "metrics="); ok {
				s.metrics = v
			}
		}
	case err := <-s.done:
		t.Fatalf("dots local exited before ready: %v\n%s", err, s.log.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("dots local not ready in 2 minutes\n%s", s.log.String())
	}
	return s
}

// stop sends SIGTERM and waits for a clean exit.
func (s *stack) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Fatalf("dots local exited with %v after SIGTERM\n%s", err, s.log.String())
		}
	case <-time.After(2 * time.Minute):
		s.cmd.Process.Kill()
		s.t.Fatalf("dots local did not stop within 2 minutes of SIGTERM")
	}
}

// dots runs the client against the stack and returns stdout, stderr and
// whether it succeeded.
func (s *stack) dots(args ...string) (string, string, bool) {
	var out, errb bytes.Buffer
	cmd := exec.Command(testenv.DotsBinary(s.t), args...)
	cmd.Env = append(os.Environ(), "DOTS_STATE_DIR="+s.state)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err == nil
}

func (s *stack) must(args ...string) string {
	s.t.Helper()
	out, errs, ok := s.dots(args...)
	if !ok {
		s.t.Fatalf("dots %s failed: %s", strings.Join(args, " "), errs)
	}
	return out
}

func (s *stack) mustFail(want string, args ...string) {
	s.t.Helper()
	_, errs, ok := s.dots(args...)
	if ok {
		s.t.Fatalf("dots %s succeeded, want an error with %q", strings.Join(args, " "), want)
	}
	if !strings.Contains(errs, want) {
		s.t.Fatalf("dots %s: error %q does not say %q", strings.Join(args, " "), errs, want)
	}
	if strings.Contains(errs, "rpc error") || strings.Contains(errs, "desc = ") {
		s.t.Fatalf("dots %s: error %q shows grpc's wording", strings.Join(args, " "), errs)
	}
}

func volumeID(t *testing.T, jsonOut string) string {
	t.Helper()
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(jsonOut), &v); err != nil || v.ID == "" {
		t.Fatalf("no volume id in %q: %v", jsonOut, err)
	}
	return v.ID
}

func poolPrefix(state string) string {
	h := sha256.Sum256([]byte(state))
	return "dotslocal-" + hex.EncodeToString(h[:4]) + "-"
}

// assertNothingLeft checks the machine for what a stopped stack must not leave.
func assertNothingLeft(t *testing.T, state string, wantPools bool) {
	t.Helper()
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), state) {
		t.Errorf("mounts under %s left behind:\n%s", state, grepLines(string(mi), state))
	}
	ps, _ := exec.Command("pgrep", "-af", "ganesha.nfsd").Output()
	if strings.Contains(string(ps), state) {
		t.Errorf("ganesha processes left behind:\n%s", grepLines(string(ps), state))
	}
	pools, _ := exec.Command("zpool", "list", "-H", "-o", "name").Output()
	if strings.Contains(string(pools), poolPrefix(state)) {
		t.Errorf("pools still imported: %s", grepLines(string(pools), poolPrefix(state)))
	}
	files, _ := filepath.Glob(filepath.Join(state, "pools", "*.img"))
	if wantPools && len(files) == 0 {
		t.Errorf("--keep: the pool files are gone")
	}
	if !wantPools && len(files) > 0 {
		t.Errorf("pool files left behind: %v", files)
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestLocalStack(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	s := start(t, state)

	if _, errs, ok := s.dots("local", "--state-dir", state); ok || !strings.Contains(errs, "another dots local") {
		t.Fatalf("a second dots local on the same state dir: ok=%v, %q", ok, errs)
	}
	if out, _, ok := s.dots("--help"); !ok || !strings.Contains(out, "Usage: dots COMMAND") {
		t.Fatalf("dots --help: ok=%v\n%s", ok, out)
	}
	assertServers(t, s)
	assertTLS(t, state, s.metrics)

	id := volumeID(t, s.must("volume", "create", "data", "--size", "64Mi", "-o", "json"))
	src := filepath.Join(t.TempDir(), "in.txt")
	os.WriteFile(src, []byte("hello dots\n"), 0o644)
	// The stack's exports admit only its node, once a volume is published to it.
	s.mustFail("access denied", "volume", "put", id, "hello.txt", "--from", src)
	s.mustFail("hint: the export admits only the nodes the volume is published to: `dots volume publish "+id+"`", "volume", "put", id, "hello.txt", "--from", src)
	s.must("volume", "publish", id)
	s.must("volume", "put", id, "hello.txt", "--from", src)
	if got := s.must("volume", "cat", id, "hello.txt"); got != "hello dots\n" {
		t.Fatalf("read back %q", got)
	}
	server := strings.Split(id, "/")[0]
	s.must("snapshot", "create", id, "snap1")
	restored := volumeID(t, s.must("snapshot", "restore", server+"/snap1", "restored", "-o", "json"))
	s.must("volume", "publish", restored)
	if got := s.must("volume", "cat", restored, "hello.txt"); got != "hello dots\n" {
		t.Fatalf("restored volume holds %q", got)
	}
	clone := volumeID(t, s.must("volume", "clone", id, "copy", "-o", "json"))
	s.must("volume", "publish", clone)
	if got := s.must("volume", "cat", clone, "hello.txt"); got != "hello dots\n" {
		t.Fatalf("clone holds %q", got)
	}
	s.must("volume", "expand", id, "--size", "128Mi")
	if out := s.must("volume", "get", id, "-o", "json"); !strings.Contains(out, `"capacityBytes": 134217728`) {
		t.Fatalf("after expand: %s", out)
	}
	if out := s.must("volume", "list"); strings.Count(out, server+"/") < 3 || !strings.Contains(out, "USED") {
		t.Fatalf("volume list misses volumes or what they hold:\n%s", out)
	}
	assertVolumeList(t, s, id)
	assertRestoreSize(t, s, id)

	s.mustFail("NotFound: ", "volume", "get", server+"/no-such-volume")
	s.mustFail("hint: `dots volume list`", "volume", "get", server+"/no-such-volume")
	s.mustFail("ResourceExhausted: ", "volume", "create", "huge", "--size", "100Gi")
	s.mustFail("InvalidArgument", "volume", "create", "bad name;rm")
	s.mustFail("InvalidArgument", "volume", "create", "x", "--param", "colour=blue")

	// A mount left in place: the stack must take it down on SIGTERM.
	leftMounted := filepath.Join(state, "pods", "left-mounted")
	s.must("volume", "mount", id, leftMounted)
	if st := s.must("volume", "stats", id, leftMounted, "-o", "json"); !strings.Contains(st, `"totalBytes": 134217728`) || !strings.Contains(st, `"health": []`) {
		t.Fatalf("stats of the mount: %s", st)
	}
	assertMetrics(t, s.metrics)
	assertServerMetrics(t, state, server, strings.TrimPrefix(id, server+"/"))
	s.stop()
	assertNothingLeft(t, state, false)
}

// assertTLS checks what the stack keeps private: its servers serve mutual
// TLS with its own CA (a plaintext client is refused, one with the stack's
// controller certificate served), its keys and local.json are its user's
// alone, and the server list is on the admin socket, not on HTTP.
func assertTLS(t *testing.T, state, metricsURL string) {
	t.Helper()
	for path, want := range map[string]os.FileMode{
		"local.json": 0o600, "admin.sock": 0o600, "csi.sock": 0o600, "tls": 0o700,
		"tls/ca.key": 0o600, "tls/server.key": 0o600, "tls/controller.key": 0o600,
	} {
		fi, err := os.Stat(filepath.Join(state, path))
		if err != nil {
			t.Error(err)
			continue
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}
	raw, err := os.ReadFile(filepath.Join(state, "local.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "PRIVATE KEY") {
		t.Errorf("local.json holds a key:\n%s", raw)
	}
	info, err := local.ReadInfo(state)
	if err != nil {
		t.Fatal(err)
	}
	if info.Admin != "unix://"+filepath.Join(state, "admin.sock") {
		t.Errorf("local.json names admin %q", info.Admin)
	}
	resp, err := http.Get(strings.TrimSuffix(metricsURL, "/metrics") + "/servers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /servers over TCP: %s, want 404 (it is on the admin socket)", resp.Status)
	}
	creds, err := mtls.ClientCredentials(mtls.Bundle{Dir: filepath.Join(state, "tls")}.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	probe := func(api string, creds credentials.TransportCredentials) error {
		conn, err := grpc.NewClient("passthrough:///"+api, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = csi.NewIdentityClient(conn).Probe(ctx, &csi.ProbeRequest{})
		return err
	}
	for _, srv := range info.Servers {
		if err := probe(srv.API, insecure.NewCredentials()); err == nil {
			t.Errorf("server %s answered a plaintext client", srv.Name)
		}
		if err := probe(srv.API, creds); err != nil {
			t.Errorf("server %s refused the stack's controller certificate: %v", srv.Name, err)
		}
	}
}

// assertMetrics reads the metrics address the ready line named.
func assertMetrics(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`dots_server_up{server="dots-server-0"} 1`,
		`dots_server_up{server="dots-server-1"} 1`,
		`dots_server_available_bytes{server="dots-server-0"}`,
		`dots_csi_call_duration_seconds_count{code="OK",method="/csi.v1.Controller/CreateVolume"}`,
		`dots_csi_call_duration_seconds_count{code="NotFound",method="/csi.v1.Controller/ControllerGetVolume"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestLocalStackKeep(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	s := start(t, state, "--keep")
	id := volumeID(t, s.must("volume", "create", "kept", "--size", "32Mi", "-o", "json"))
	src := filepath.Join(t.TempDir(), "in.txt")
	os.WriteFile(src, []byte("still here\n"), 0o644)
	s.must("volume", "publish", id)
	s.must("volume", "put", id, "data.txt", "--from", src)
	s.must("snapshot", "create", id, "kept-snap")
	s.stop()
	assertNothingLeft(t, state, true)

	s = start(t, state, "--keep")
	if got := s.must("volume", "cat", id, "data.txt"); got != "still here\n" {
		t.Fatalf("after a --keep restart the file holds %q", got)
	}
	if out := s.must("snapshot", "list"); !strings.Contains(out, "kept-snap") {
		t.Fatalf("after a --keep restart the snapshot is gone:\n%s", out)
	}
	s.stop()

	// Without --keep the next run starts empty and leaves nothing.
	s = start(t, state)
	if out := s.must("volume", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("a run without --keep found volumes: %s", out)
	}
	s.stop()
	assertNothingLeft(t, state, false)
}
