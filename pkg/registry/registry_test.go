package registry

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/mtls"
)

func testCreds(t *testing.T) credentials.TransportCredentials {
	t.Helper()
	b, err := mtls.EnsureBundle(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := mtls.ClientCredentials(b.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// changing is a discovery source whose list the test sets.
type changing struct{ servers []discovery.Server }

func (c *changing) Servers(context.Context) ([]discovery.Server, error) { return c.servers, nil }

func names(r *Registry) []string {
	var out []string
	for _, m := range r.List() {
		out = append(out, m.Name)
	}
	return out
}

// TestMissingServerIsKeptForAWhile: a server discovery stops listing stays
// known for ForgetAfter (a DNS hiccup must not make its volumes vanish),
// comes back without losing anything, and is forgotten after that.
func TestMissingServerIsKeptForAWhile(t *testing.T) {
	a := discovery.Server{Name: "a", APIAddress: "127.0.0.1:1", NFSAddress: "10.0.0.1"}
	b := discovery.Server{Name: "b", APIAddress: "127.0.0.1:2", NFSAddress: "10.0.0.2"}
	src := &changing{servers: []discovery.Server{a, b}}
	r := New(src, testCreds(t), Options{ForgetAfter: time.Minute}, nil)
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	t.Cleanup(r.close)

	r.sync(src.servers)
	src.servers = []discovery.Server{a}
	r.sync(src.servers)
	if got := names(r); len(got) != 2 {
		t.Fatalf("right after b went missing: %v, want both kept", got)
	}
	clock = clock.Add(30 * time.Second)
	r.sync([]discovery.Server{a, b}) // back: the clock restarts
	clock = clock.Add(45 * time.Second)
	r.sync([]discovery.Server{a})
	clock = clock.Add(59 * time.Second)
	r.sync([]discovery.Server{a})
	if _, ok := r.Get("b"); !ok {
		t.Fatal("b forgotten before ForgetAfter")
	}
	clock = clock.Add(2 * time.Second)
	r.sync([]discovery.Server{a})
	if got := names(r); len(got) != 1 || got[0] != "a" {
		t.Fatalf("after ForgetAfter: %v, want [a]", got)
	}
	// Never probed, so never seen failing: unreachable from the moment
	// it was forgotten.
	if g := r.Gone(); len(g) != 1 || !g["b"].Equal(clock) {
		t.Fatalf("gone %v, want b since %v", g, clock)
	}
	r.sync([]discovery.Server{a, b})
	if g := r.Gone(); len(g) != 0 {
		t.Fatalf("gone %v after b was discovered again", g)
	}
}

// TestChangedAddressReplacesConnection: a server whose address changed is
// reached at the new one.
func TestChangedAddressReplacesConnection(t *testing.T) {
	r := New(discovery.Static{}, testCreds(t), Options{}, nil)
	t.Cleanup(r.close)
	r.sync([]discovery.Server{{Name: "a", APIAddress: "127.0.0.1:1", NFSAddress: "10.0.0.1"}})
	old, _ := r.Get("a")
	r.sync([]discovery.Server{{Name: "a", APIAddress: "127.0.0.1:9", NFSAddress: "10.0.0.1"}})
	m, _ := r.Get("a")
	if m == old || m.APIAddress != "127.0.0.1:9" {
		t.Fatalf("member not replaced: %+v", m.Server)
	}
}
