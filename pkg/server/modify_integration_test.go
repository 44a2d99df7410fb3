//go:build integration

package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// modifyProps are the properties ControllerModifyVolume touches, as the
// test reads them back with zfs get.
var modifyProps = []string{"compression", "recordsize", "atime", "refreservation", "dots:thick"}

// zfsProps reads props of a dataset: name to "value/source".
func zfsProps(t *testing.T, ds string, props ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(testenv.Zfs(t, "get", "-Hp", "-o", "property,value,source", strings.Join(props, ","), ds)), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 3 {
			t.Fatalf("zfs get %s: line %q", ds, l)
		}
		src := "local"
		switch {
		case f[0] == "refreservation":
			// It cannot be inherited: once set, even to none, it stays
			// set locally; only its value tells.
			out[f[0]] = f[1]
			continue
		case f[2] != "local":
			src = "notlocal"
		}
		out[f[0]] = f[1] + "/" + src
	}
	return out
}

// TestModifyVolume changes compression, recordsize, atime, thick and
// squash of a live volume holding data through ControllerModifyVolume on a real
// server: the dataset's properties follow, the data written before reads
// back unchanged, ControllerGetVolume reports the new values, a repeat
// runs no zfs set, and every refused request (bad value, unknown or
// immutable key, no space for thick, a property this ZFS lacks after
// others were applied) leaves the dataset as it was.
func TestModifyVolume(t *testing.T) {
	s := startTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vol := s.mustCreate(ctx, createReq("modify-me", 64*mib, nil, nil))
	id := vol.GetVolumeId()
	ds := s.cfg.Pool + "/dots/volumes/" + id
	data := randomBytes(t, 4*mib)
	sum := sha256.Sum256(data)
	s.mustWrite(ctx, exportOf(vol), "before.bin", data)
	modify := func(params map[string]string) error {
		_, err := s.ctrl.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: id, MutableParameters: params})
		return err
	}

	want := map[string]string{"compression": "gzip", "recordsize": "16K", "atime": "off", "thick": "true"}
	start := time.Now()
	if err := modify(want); err != nil {
		t.Fatalf("ControllerModifyVolume %v: %v", want, err)
	}
	applyMs := time.Since(start).Milliseconds()
	after := zfsProps(t, ds, modifyProps...)
	for k, v := range map[string]string{"compression": "gzip/local", "recordsize": "16384/local", "atime": "off/local",
		"refreservation": fmt.Sprint(64 * mib), "dots:thick": "true/local"} {
		if after[k] != v {
			t.Errorf("after modify, zfs get %s %s = %s, want %s", k, ds, after[k], v)
		}
	}
	got, err := s.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"compression": "gzip", "recordsize": "16384", "atime": "off", "thick": "true"} {
		if c := got.GetVolume().GetVolumeContext()[api.ContextParamPrefix+k]; c != v {
			t.Errorf("ControllerGetVolume reports %s=%q, want %q (context %v)", k, c, v, got.GetVolume().GetVolumeContext())
		}
	}
	back, err := s.readNFS(ctx, exportOf(vol), "before.bin")
	if err != nil || sha256.Sum256(back) != sum {
		t.Fatalf("data written before the modify: %d bytes, err %v, checksum differs: %t", len(back), err, sha256.Sum256(back) != sum)
	}

	// A repeat is a no-op: no zfs set runs.
	sets := `dots_zfs_commands_total{outcome="ok",subcommand="set",tool="zfs"}`
	before := metricValue(t, s.http, sets)
	if err := modify(want); err != nil {
		t.Fatalf("repeated ControllerModifyVolume: %v", err)
	}
	if n := metricValue(t, s.http, sets); n != before {
		t.Errorf("a repeated modify ran %v zfs set commands, want none", n-before)
	}

	// Refused requests change nothing, not even their valid parts.
	bad := map[string]map[string]string{
		"bad compression":           {"atime": "on", "compression": "bogus"},
		"recordsize not power of 2": {"atime": "on", "recordsize": "3K"},
		"thick not a bool":          {"atime": "on", "thick": "maybe"},
		"unknown key":               {"atime": "on", "colour": "blue"},
		"server (placement)":        {"atime": "on", "server": "elsewhere"},
		"uid (creation only)":       {"atime": "on", "uid": "1000"},
		"squash=some":               {"atime": "on", "squash": "some"},
		"empty value":               {"atime": "on", "compression": ""},
	}
	for what, params := range bad {
		wantCode(t, what, modify(params), codes.InvalidArgument)
	}
	unchangedOnError := true
	if now := zfsProps(t, ds, modifyProps...); fmt.Sprint(now) != fmt.Sprint(after) {
		t.Errorf("refused modifies changed the dataset: %v, was %v", now, after)
		unchangedOnError = false
	}
	_, err = s.ctrl.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{MutableParameters: want})
	wantCode(t, "no volume id", err, codes.InvalidArgument)
	_, err = s.ctrl.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: "no-such-volume", MutableParameters: want})
	wantCode(t, "missing volume", err, codes.NotFound)

	// Back to thin: the reservation goes.
	if err := modify(map[string]string{"thick": "false", "compression": "off"}); err != nil {
		t.Fatal(err)
	}
	if now := zfsProps(t, ds, "refreservation", "dots:thick", "compression"); now["refreservation"] != "0" ||
		now["dots:thick"] != "false/local" || now["compression"] != "off/local" {
		t.Errorf("after thick=false compression=off: %v", now)
	}

	// Thick without the space: ResourceExhausted, nothing changed. Two
	// thin volumes of 600 MiB fit a 1 GiB pool; both reserved do not.
	big1 := s.mustCreate(ctx, createReq("big-1", 600*mib, nil, nil))
	big2 := s.mustCreate(ctx, createReq("big-2", 600*mib, nil, nil))
	if _, err := s.ctrl.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: big1.GetVolumeId(),
		MutableParameters: map[string]string{"thick": "true"}}); err != nil {
		t.Fatalf("reserving 600 MiB of a 1 GiB pool: %v", err)
	}
	ds2 := s.cfg.Pool + "/dots/volumes/" + big2.GetVolumeId()
	before2 := zfsProps(t, ds2, modifyProps...)
	_, err = s.ctrl.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: big2.GetVolumeId(),
		MutableParameters: map[string]string{"thick": "true", "compression": "gzip"}})
	wantCode(t, "thick without the space", err, codes.ResourceExhausted)
	if now := zfsProps(t, ds2, modifyProps...); fmt.Sprint(now) != fmt.Sprint(before2) {
		t.Errorf("a modify refused for space changed the dataset: %v, was %v", now, before2)
		unchangedOnError = false
	}

	// zfs-fuse has no sync: the set of it fails after the reservation and
	// compression were applied one by one, and those are set back.
	if exec.Command(command.ZFS, "get", "sync", s.cfg.Pool).Run() == nil {
		t.Log("this ZFS knows sync: the undo of a partial modify is not exercised")
	} else {
		small := s.mustCreate(ctx, createReq("partial", 32*mib, nil, nil))
		ds3 := s.cfg.Pool + "/dots/volumes/" + small.GetVolumeId()
		before3 := zfsProps(t, ds3, modifyProps...)
		_, err = s.ctrl.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: small.GetVolumeId(),
			MutableParameters: map[string]string{"thick": "true", "compression": "gzip", "sync": "always"}})
		wantCode(t, "sync on zfs-fuse", err, codes.InvalidArgument)
		if now := zfsProps(t, ds3, modifyProps...); fmt.Sprint(now) != fmt.Sprint(before3) {
			t.Errorf("a modify that failed half way left the dataset changed: %v, was %v", now, before3)
			unchangedOnError = false
		}
		got, err := s.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: small.GetVolumeId()})
		if err != nil || got.GetVolume().GetVolumeContext()[api.ContextParamPrefix+"thick"] != "false" {
			t.Errorf("after an undone modify, ControllerGetVolume: %v %v", got, err)
		}
	}
	// Squashing: re-exported at once. The harness's client writes as
	// root; squashed to nobody it may not write into the root-owned
	// volume root, and may again once squashing is off.
	if err := modify(map[string]string{"squash": "all"}); err != nil {
		t.Fatal(err)
	}
	if sq := zfsProps(t, ds, "dots:squash"); sq["dots:squash"] != "all/local" {
		t.Errorf("dots:squash after squash=all: %v", sq)
	}
	if err := s.nfs.WriteFile(ctx, exportOf(vol), "as-root.txt", []byte("root\n")); err == nil {
		t.Error("root wrote into the volume root with squash=all: the export did not change")
	}
	if err := modify(map[string]string{"squash": "none"}); err != nil {
		t.Fatal(err)
	}
	s.mustWrite(ctx, exportOf(vol), "as-root.txt", []byte("root\n"))
	s.mustRead(ctx, exportOf(vol), "before.bin", data)
	fmt.Printf("modify-volume: ok props=compression,recordsize,atime,thick,squash apply_ms=%d unchanged_on_error=%t\n", applyMs, unchangedOnError)
}
