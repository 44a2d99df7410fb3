//go:build integration

package server

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
)

// TestExportChangesOverDBus runs a server with --nfs-dbus=on and
// per-node exports: creating, publishing (the client list changes),
// unpublishing and deleting a volume each take effect as the call returns,
// through ganesha's export manager, without one SIGHUP reload; the metrics
// say so.
func TestExportChangesOverDBus(t *testing.T) {
	s := startTestServer(t, func(c *Config) {
		c.ExportAccess = string(AccessPerNode)
		c.NFS.DBus = nfs.DBusOn
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vol := s.mustCreate(ctx, createReq("dbus", 64*mib, nil, nil))
	exp := exportOf(vol)
	refused := func(what string) {
		t.Helper()
		if _, err := s.nfs.List(ctx, exp, ""); !errors.Is(err, libnfs.ErrAccess) && !errors.Is(err, libnfs.ErrNotFound) {
			t.Errorf("%s: listing %s = %v, want refused", what, exp, err)
		}
	}
	refused("published to nobody")

	rwx := csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	if _, err := s.ctrl.ControllerPublishVolume(ctx, publishReq(vol.GetVolumeId(), "n1@127.0.0.1", rwx, false)); err != nil {
		t.Fatal(err)
	}
	data := []byte("over dbus\n")
	s.mustWrite(ctx, exp, "f.txt", data) // no retries: live when Publish returned
	s.mustRead(ctx, exp, "f.txt", data)

	if _, err := s.ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol.GetVolumeId(), NodeId: "n1@127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	refused("unpublished")
	if _, err := s.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	refused("deleted")

	m := testenv.Metrics(t, s.http)
	if got := metric(t, m, `dots_ganesha_reloads_total`); got != 0 {
		t.Errorf("%v SIGHUP reloads, want 0", got)
	}
	// Create, publish, unpublish, delete: at least one call each.
	if got := metric(t, m, `dots_ganesha_export_changes_total{method="dbus",outcome="ok"}`); got < 4 {
		t.Errorf("%v export changes over DBus, want at least 4", got)
	}
	for _, series := range []string{
		`dots_ganesha_export_changes_total{method="dbus",outcome="error"}`,
		`dots_ganesha_export_changes_total{method="sighup",outcome="ok"}`,
	} {
		if got := metric(t, m, series); got != 0 {
			t.Errorf("%s = %v, want 0", series, got)
		}
	}
	if got := metric(t, m, `dots_ganesha_dbus_up`); got != 1 {
		t.Errorf("dots_ganesha_dbus_up = %v, want 1", got)
	}
}

// metric reads one sample from a /metrics page.
func metric(t *testing.T, page, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no %s in the metrics", series)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
