//go:build integration

package helm

import (
	"strings"
	"testing"
)

// The server's NFSv4 timing and fencing come from values: the measured
// defaults (README "Failover"), overridable; the hostid from the node the
// pod runs on, never from the image.
func TestServerFailoverValues(t *testing.T) {
	sts := render(t).get(t, "StatefulSet", "dots-server")
	c := container(t, sts, "dots")
	a := args(c)
	wantFlag(t, "server", a, "nfs-lease-lifetime", "16s")
	wantFlag(t, "server", a, "nfs-grace-period", "32s")
	wantFlag(t, "server", a, "hostid-from", "$(NODE_NAME)")
	found := false
	for _, e := range dig(c, "env").([]any) {
		if dig(e, "name") == "NODE_NAME" {
			found = dig(e, "valueFrom", "fieldRef", "fieldPath") == "spec.nodeName"
		}
	}
	if !found {
		t.Errorf("NODE_NAME must come from spec.nodeName: %v", dig(c, "env"))
	}
	if _, ok := flagValue(a, "hostid"); ok {
		t.Error("a fixed --hostid would be shared by every node")
	}

	a = args(container(t, render(t, "--set", "server.nfs.leaseLifetime=10s,server.nfs.gracePeriod=20s,server.fencing.multihost=false").
		get(t, "StatefulSet", "dots-server"), "dots"))
	wantFlag(t, "server", a, "nfs-lease-lifetime", "10s")
	wantFlag(t, "server", a, "nfs-grace-period", "20s")
	if _, ok := flagValue(a, "hostid-from"); ok {
		t.Error("fencing.multihost=false still passes --hostid-from")
	}

	// Clients mount hard: a server's restart or move is a pause, never an
	// error to the application.
	for _, sc := range render(t).all("StorageClass") {
		if !strings.Contains(strings.Join(toStrings(dig(sc, "mountOptions")), ","), "hard") {
			t.Errorf("StorageClass %s mounts without hard: %v", sc.name(), dig(sc, "mountOptions"))
		}
	}
	for _, bad := range []string{"server.nfs.gracePeriod=30", "server.nfs.leaseLifetime=1m", "server.fencing.hostid=1"} {
		if _, err := renderErr(t, "--set", bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// Export changes go over the private DBus by default; off and on pass
// through, anything else is refused by the schema.
func TestServerDBusValues(t *testing.T) {
	a := args(container(t, render(t).get(t, "StatefulSet", "dots-server"), "dots"))
	wantFlag(t, "server", a, "nfs-dbus", "auto")
	for _, mode := range []string{"on", "off"} {
		a := args(container(t, render(t, "--set", "server.nfs.dbus="+mode).get(t, "StatefulSet", "dots-server"), "dots"))
		wantFlag(t, "server", a, "nfs-dbus", mode)
	}
	if _, err := renderErr(t, "--set", "server.nfs.dbus=yes"); err == nil {
		t.Error("server.nfs.dbus=yes accepted")
	}
}
