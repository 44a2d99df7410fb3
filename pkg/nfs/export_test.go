package nfs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestExportValidate(t *testing.T) {
	good := Export{ID: 7, Path: "/tank/dots/volumes/pvc-1", Pseudo: "/dots/pvc-1"}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid export rejected: %v", err)
	}
	for name, e := range map[string]Export{
		"id zero":             {ID: 0, Path: "/a", Pseudo: "/p"},
		"id 65535":            {ID: 65535, Path: "/a", Pseudo: "/p"},
		"relative path":       {ID: 1, Path: "a/b", Pseudo: "/p"},
		"empty path":          {ID: 1, Path: "", Pseudo: "/p"},
		"root path":           {ID: 1, Path: "/", Pseudo: "/p"},
		"dotdot path":         {ID: 1, Path: "/a/../etc", Pseudo: "/p"},
		"trailing slash":      {ID: 1, Path: "/a/", Pseudo: "/p"},
		"double slash":        {ID: 1, Path: "/a//b", Pseudo: "/p"},
		"quote in path":       {ID: 1, Path: `/a"; } EXPORT { Path = "/`, Pseudo: "/p"},
		"newline in path":     {ID: 1, Path: "/a\nEXPORT {", Pseudo: "/p"},
		"brace in path":       {ID: 1, Path: "/a}", Pseudo: "/p"},
		"semicolon in path":   {ID: 1, Path: "/a;b", Pseudo: "/p"},
		"space in path":       {ID: 1, Path: "/a b", Pseudo: "/p"},
		"percent in path":     {ID: 1, Path: "/%include", Pseudo: "/p"},
		"hash in path":        {ID: 1, Path: "/a#b", Pseudo: "/p"},
		"backslash in path":   {ID: 1, Path: `/a\"b`, Pseudo: "/p"},
		"nul in path":         {ID: 1, Path: "/a\x00b", Pseudo: "/p"},
		"unicode in path":     {ID: 1, Path: "/é", Pseudo: "/p"},
		"long path":           {ID: 1, Path: "/" + strings.Repeat("a", maxPathLen), Pseudo: "/p"},
		"empty pseudo":        {ID: 1, Path: "/a", Pseudo: ""},
		"root pseudo":         {ID: 1, Path: "/a", Pseudo: "/"},
		"relative pseudo":     {ID: 1, Path: "/a", Pseudo: "dots/x"},
		"quote in pseudo":     {ID: 1, Path: "/a", Pseudo: `/x"`},
		"brace in pseudo":     {ID: 1, Path: "/a", Pseudo: "/x{"},
		"newline in pseudo":   {ID: 1, Path: "/a", Pseudo: "/x\n}"},
		"semicolon in pseudo": {ID: 1, Path: "/a", Pseudo: "/x;"},
		"dotdot pseudo":       {ID: 1, Path: "/a", Pseudo: "/dots/../x"},
	} {
		if err := e.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate(%+v) = %v, want ErrInvalid", name, e, err)
		}
	}
}

func TestValidateSet(t *testing.T) {
	a := Export{ID: 1, Path: "/v/a", Pseudo: "/dots/a"}
	b := Export{ID: 2, Path: "/v/b", Pseudo: "/dots/b"}
	if _, err := validateSet([]Export{a, b}); err != nil {
		t.Fatalf("valid set rejected: %v", err)
	}
	if _, err := validateSet(nil); err != nil {
		t.Fatalf("empty set rejected: %v", err)
	}
	// The same path under two pseudo paths is allowed (ganesha allows it).
	if _, err := validateSet([]Export{a, {ID: 3, Path: a.Path, Pseudo: "/dots/a-ro", ReadOnly: true}}); err != nil {
		t.Fatalf("shared path rejected: %v", err)
	}
	for name, set := range map[string][]Export{
		"duplicate id":     {a, {ID: 1, Path: "/v/c", Pseudo: "/dots/c"}},
		"duplicate pseudo": {a, {ID: 3, Path: "/v/c", Pseudo: "/dots/a"}},
		"nested pseudo":    {a, {ID: 3, Path: "/v/c", Pseudo: "/dots/a/c"}},
		"nesting pseudo":   {{ID: 3, Path: "/v/c", Pseudo: "/dots/a/c/d"}, a},
		"invalid member":   {a, {ID: 0, Path: "/v/c", Pseudo: "/dots/c"}},
	} {
		if _, err := validateSet(set); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: validateSet = %v, want ErrInvalid", name, err)
		}
	}
}

func TestPseudoConflict(t *testing.T) {
	ix := pseudoIndex{"/dots/a": 1, "/dots/b/c": 2}
	for _, tc := range []struct {
		e    Export
		want bool // conflict expected
	}{
		{Export{ID: 3, Pseudo: "/dots/c"}, false},
		{Export{ID: 1, Pseudo: "/dots/a"}, false},      // itself
		{Export{ID: 1, Pseudo: "/dots/a2"}, false},     // itself, moved
		{Export{ID: 3, Pseudo: "/dots/a-x"}, false},    // sibling sharing a prefix
		{Export{ID: 3, Pseudo: "/dots/a"}, true},       // taken
		{Export{ID: 3, Pseudo: "/dots/a/x"}, true},     // inside another
		{Export{ID: 3, Pseudo: "/dots/b"}, true},       // would contain another
		{Export{ID: 2, Pseudo: "/dots/b/c/d"}, false},  // itself, deeper
		{Export{ID: 1, Pseudo: "/dots/b/c/d/e"}, true}, // inside 2
	} {
		err := ix.conflict(tc.e)
		if got := err != nil; got != tc.want {
			t.Errorf("conflict(%+v) = %v, want conflict %v", tc.e, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("conflict(%+v) = %v, want ErrInvalid", tc.e, err)
		}
	}
}

func validConfig() GaneshaConfig {
	return GaneshaConfig{
		RunDir:      "/run/dots/ganesha",
		RecoveryDir: "/tank/.dots/nfs-recovery",
		Clients:     []string{"10.0.0.0/8"},
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := validConfig().normalized()
	if err != nil {
		t.Fatal(err)
	}
	if c.Binary != "ganesha.nfsd" || c.NFSPort != 2049 || c.BindAddr != "0.0.0.0" || c.Squash != SquashRoot {
		t.Errorf("defaults: %+v", c)
	}
	if len(c.Protocols) != 1 || c.Protocols[0] != 4 {
		t.Errorf("protocols default %v, want [4]", c.Protocols)
	}
	if len(c.MinorVersions) != 2 || c.MinorVersions[0] != 1 || c.MinorVersions[1] != 2 {
		t.Errorf("minor versions default %v, want [1 2]", c.MinorVersions)
	}
	if c.probeAddr() != "127.0.0.1:2049" || c.listenAddr() != "0.0.0.0:2049" {
		t.Errorf("probe %s listen %s", c.probeAddr(), c.listenAddr())
	}
}

func TestConfigNormalizes(t *testing.T) {
	cfg := validConfig()
	cfg.Clients = []string{"10.1.2.3/8", "192.168.1.0/24", "10.0.0.0/8"}
	cfg.Protocols = []int{4, 3, 4}
	cfg.MountPort = 20048
	c, err := cfg.normalized()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Clients, ",") != "10.0.0.0/8,192.168.1.0/24" {
		t.Errorf("clients %v", c.Clients)
	}
	if len(c.Protocols) != 2 || c.Protocols[0] != 3 {
		t.Errorf("protocols %v", c.Protocols)
	}
	if cfg.Clients[0] != "10.1.2.3/8" {
		t.Errorf("normalizing changed the caller's slice: %v", cfg.Clients)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	for name, mutate := range map[string]func(*GaneshaConfig){
		"no clients":          func(c *GaneshaConfig) { c.Clients = nil },
		"bad cidr":            func(c *GaneshaConfig) { c.Clients = []string{"10.0.0.0/33"} },
		"host not cidr":       func(c *GaneshaConfig) { c.Clients = []string{"10.0.0.1"} },
		"cidr injection":      func(c *GaneshaConfig) { c.Clients = []string{`10.0.0.0/8"; Access_Type = RW; #`} },
		"wildcard":            func(c *GaneshaConfig) { c.Clients = []string{"*"} },
		"no run dir":          func(c *GaneshaConfig) { c.RunDir = "" },
		"relative run dir":    func(c *GaneshaConfig) { c.RunDir = "run" },
		"run dir injection":   func(c *GaneshaConfig) { c.RunDir = "/run\"\n%include \"/etc/x" },
		"no recovery dir":     func(c *GaneshaConfig) { c.RecoveryDir = "" },
		"bad recovery dir":    func(c *GaneshaConfig) { c.RecoveryDir = "/a;b" },
		"relative binary":     func(c *GaneshaConfig) { c.Binary = "bin/ganesha.nfsd" },
		"negative port":       func(c *GaneshaConfig) { c.NFSPort = -1 },
		"port high":           func(c *GaneshaConfig) { c.NFSPort = 70000 },
		"v3 without mount":    func(c *GaneshaConfig) { c.Protocols = []int{3, 4} },
		"mount port without3": func(c *GaneshaConfig) { c.MountPort = 20048 },
		"mount equals nfs":    func(c *GaneshaConfig) { c.Protocols = []int{3}; c.MountPort = 2049 },
		"protocol 2":          func(c *GaneshaConfig) { c.Protocols = []int{2} },
		"minor 3":             func(c *GaneshaConfig) { c.MinorVersions = []int{3} },
		"bad bind":            func(c *GaneshaConfig) { c.BindAddr = "localhost" },
		"bad squash":          func(c *GaneshaConfig) { c.Squash = "root_squash; Access_Type = RW" },
		"grace fraction":      func(c *GaneshaConfig) { c.GracePeriod = 1500 * time.Millisecond },
		"grace too long":      func(c *GaneshaConfig) { c.GracePeriod = 181 * time.Second },
		"lease too long":      func(c *GaneshaConfig) { c.LeaseLifetime = 121 * time.Second },
		"grace below lease":   func(c *GaneshaConfig) { c.GracePeriod, c.LeaseLifetime = 20*time.Second, 30*time.Second },
		// Ganesha's own lease is 60 s.
		"grace below default lease": func(c *GaneshaConfig) { c.GracePeriod = 30 * time.Second },
		"default grace below lease": func(c *GaneshaConfig) { c.LeaseLifetime = 100 * time.Second },
		"negative timeout":          func(c *GaneshaConfig) { c.StopTimeout = -time.Second },
		"max delay below min":       func(c *GaneshaConfig) { c.RestartDelay = time.Minute; c.MaxRestartDelay = time.Second },
	} {
		c := validConfig()
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
		if _, err := NewGanesha(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: NewGanesha = %v, want ErrInvalid", name, err)
		}
	}
}

func TestExportClients(t *testing.T) {
	base := Export{ID: 7, Path: "/tank/dots/volumes/pvc-1", Pseudo: "/dots/pvc-1"}
	for _, c := range []string{`10.0.0.1; Access_Type = RW`, "10.0.0.1 ", "010.0.0.1", "10.0.0.0/8 ", "10.1.2.3/8",
		"host.example", "*", "@netgroup", "fe80::1%eth0", "", "10.0.0.1,10.0.0.2"} {
		e := base
		e.Clients = []string{c}
		if err := e.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("client %q: %v, want ErrInvalid", c, err)
		}
		e.Clients, e.ReadOnlyClients = nil, []string{c}
		if err := e.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("read-only client %q: %v, want ErrInvalid", c, err)
		}
	}
	e := base
	e.Squash = "root_squash; Access_Type = RW"
	if err := e.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("squash injection: %v", err)
	}

	cfg := validConfig()
	cfg.Clients = []string{"10.0.0.0/16"}
	cfg, err := cfg.normalized()
	if err != nil {
		t.Fatal(err)
	}
	for c, ok := range map[string]bool{"10.0.3.4": true, "10.0.0.0/24": true, "10.1.0.1": false, "10.0.0.0/8": false, "fd00::1": false} {
		e := base
		e.Clients = []string{c}
		if err := cfg.within(e); (err == nil) != ok {
			t.Errorf("within(%s) = %v, want ok=%v", c, err, ok)
		}
	}
}

// Grace ends at one of ganesha's reaper runs (every half lease, at most
// 10 s): measured by test/failover (30 s with a 15 s lease lasted 35 s).
func TestGraceTiming(t *testing.T) {
	for _, c := range []struct{ grace, lease, tick, full time.Duration }{
		{32 * time.Second, 16 * time.Second, 8 * time.Second, 32 * time.Second},
		{30 * time.Second, 15 * time.Second, 7 * time.Second, 35 * time.Second},
		{30 * time.Second, 20 * time.Second, 10 * time.Second, 30 * time.Second},
		{0, 0, 10 * time.Second, 90 * time.Second}, // ganesha's 90 s and 60 s
		{2 * time.Second, 2 * time.Second, time.Second, 2 * time.Second},
		{5 * time.Second, time.Second, 0, 5 * time.Second},
	} {
		cfg := GaneshaConfig{GracePeriod: c.grace, LeaseLifetime: c.lease}
		if tick, full := cfg.GraceTiming(); tick != c.tick || full != c.full {
			t.Errorf("grace %v lease %v: tick %v full %v, want %v %v", c.grace, c.lease, tick, full, c.tick, c.full)
		}
	}
}
