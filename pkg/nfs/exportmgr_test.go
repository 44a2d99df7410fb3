package nfs

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
)

func TestDiffExports(t *testing.T) {
	e := func(id uint32, path, pseudo string, clients ...string) Export {
		return Export{ID: id, Path: path, Pseudo: pseudo, Clients: clients}
	}
	live := map[uint32]Export{
		1: e(1, "/a", "/p/a", "10.0.0.1"),
		2: e(2, "/b", "/p/b", "10.0.0.1"),
		3: e(3, "/c", "/p/c"),
		4: e(4, "/d", "/p/d"),
		5: e(5, "/e", "/p/e"),
	}
	want := map[uint32]Export{
		1: e(1, "/a", "/p/a", "10.0.0.1"),   // the same: no call
		2: e(2, "/b", "/p/b", "10.0.0.2"),   // clients: update in place
		3: e(3, "/c2", "/p/c"),              // path: remove and add
		5: e(5, "/e", "/p/e2"),              // pseudo: remove and add
		6: e(6, "/f", "/p/d"),               // new, on the pseudo path 4 gives up
		9: e(9, "/g", "/p/g", "10.0.0.0/8"), // new
	}
	var got []string
	for _, c := range diffExports(live, want) {
		got = append(got, fmt.Sprintf("%s %d", [...]string{"remove", "update", "add"}[c.op], c.e.ID))
	}
	wantCalls := "remove 3, remove 4, remove 5, update 2, add 3, add 5, add 6, add 9"
	if strings.Join(got, ", ") != wantCalls {
		t.Errorf("calls:\n got %s\nwant %s", strings.Join(got, ", "), wantCalls)
	}
	if d := diffExports(live, live); len(d) != 0 {
		t.Errorf("no change gives calls %v", d)
	}
	// After a restart nothing is live: every export is an add.
	if d := diffExports(nil, want); len(d) != len(want) {
		t.Errorf("from nothing: %d calls, want %d", len(d), len(want))
	}
}

func TestCallSays(t *testing.T) {
	err := error(dbus.Error{Name: "org.freedesktop.DBus.Error.InvalidArgs", Body: []any{"lookup_export failed with Export id not found"}})
	if !callSays(err, errExportNotFound) {
		t.Error("ganesha's not-found reply not recognised")
	}
	if callSays(err, errAlreadyActive) {
		t.Error("matched another message")
	}
	if callSays(errors.New("Export id not found"), errExportNotFound) {
		t.Error("a transport error is not a reply from ganesha")
	}
	if callSays(nil, errExportNotFound) {
		t.Error("nil matched")
	}
}

func TestRenderBusConfig(t *testing.T) {
	got := renderBusConfig("/run/dots/ganesha/dbus/bus.sock")
	for _, want := range []string{
		`<listen>unix:path=/run/dots/ganesha/dbus/bus.sock</listen>`,
		`<auth>EXTERNAL</auth>`,
		`<allow own="org.ganesha.nfsd"/>`,
		`<deny user="*"/>`,
		`<allow user="root"/>`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("bus config lacks %s:\n%s", want, got)
		}
	}
	// Nothing but the one socket: no TCP, no other owners.
	if strings.Count(got, "<listen>") != 1 || strings.Contains(got, "tcp:") || strings.Count(got, "<allow own=") != 1 {
		t.Errorf("bus config listens or allows too much:\n%s", got)
	}
}

func TestConfigDBus(t *testing.T) {
	c := validConfig()
	n, err := c.normalized()
	if err != nil {
		t.Fatal(err)
	}
	if n.DBus != DBusOff || n.DBusDaemon != "dbus-daemon" || n.DBusTimeout <= 0 {
		t.Errorf("defaults: mode %q, daemon %q, timeout %v", n.DBus, n.DBusDaemon, n.DBusTimeout)
	}
	for _, mode := range []string{DBusOff, DBusAuto, DBusOn} {
		c.DBus = mode
		if err := c.Validate(); err != nil {
			t.Errorf("mode %s: %v", mode, err)
		}
	}
	bad := []func(*GaneshaConfig){
		func(c *GaneshaConfig) { c.DBus = "yes" },
		func(c *GaneshaConfig) { c.DBus = DBusAuto; c.DBusDaemon = "bin/dbus-daemon" },
		func(c *GaneshaConfig) { c.DBus = DBusOn; c.DBusTimeout = -1 },
		// The socket path would not fit a sockaddr_un.
		func(c *GaneshaConfig) { c.DBus = DBusAuto; c.RunDir = "/run/" + strings.Repeat("x", 100) },
	}
	for i, mutate := range bad {
		c := validConfig()
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("case %d: %v, want ErrInvalid", i, err)
		}
	}
	// A long run dir is fine when DBus is off.
	c = validConfig()
	c.RunDir = "/run/" + strings.Repeat("x", 100)
	if err := c.Validate(); err != nil {
		t.Errorf("long run dir without DBus: %v", err)
	}
}
