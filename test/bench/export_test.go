//go:build integration

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
)

// exportMethod is a way pkg/nfs adds an export: its name in the figure,
// how it configures a ganesha, and whether the target applies
// (the server's default, DBus; SIGHUP is its fallback, measured to show
// what DBus saves).
type exportMethod struct {
	name      string
	configure func(*nfs.GaneshaConfig)
	target    bool
}

var exportMethods = []exportMethod{
	{name: "dbus", configure: func(c *nfs.GaneshaConfig) { c.DBus = nfs.DBusOn }, target: true},
	{name: "sighup", configure: func(c *nfs.GaneshaConfig) { c.DBus = nfs.DBusOff }},
}

// exportServer is a ganesha holding existing exports of plain
// directories (no datasets, so 800 of them cost no zfs-fuse mounts).
type exportServer struct {
	g   *testenv.GaneshaEnv
	dir string
}

func newExportServer(t *testing.T, m exportMethod, existing int) *exportServer {
	t.Helper()
	g := testenv.StartGanesha(t, nil, m.configure)
	es := &exportServer{g: g, dir: filepath.Join(g.Dir, "data")}
	exports := make([]nfs.Export, existing)
	for i := range exports {
		exports[i] = es.export(uint32(i + 1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := g.SetExports(ctx, exports); err != nil {
		t.Fatal(err)
	}
	return es
}

func (es *exportServer) export(id uint32) nfs.Export {
	name := fmt.Sprintf("e%d", id)
	p := filepath.Join(es.dir, name)
	_ = os.Mkdir(p, 0o755)
	return nfs.Export{ID: id, Path: p, Pseudo: "/dots/" + name, Clients: testenv.LoopbackClients}
}

// add times one export added (Export returns once ganesha serves it),
// then removes it again untimed, so the count stays.
func (es *exportServer) add() (time.Duration, error) {
	e := es.export(nfs.MaxExportID)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := es.g.Export(ctx, e); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	return d, es.g.Unexport(ctx, e.ID)
}

// TestExportAdd: adding one export to a ganesha that serves 800 exports
// against one that serves 10, per method; repetitions alternate between
// the two servers, so both see the same machine.
func TestExportAdd(t *testing.T) {
	md := runMode()
	const few, many = 10, 800
	perRep := 5
	if md.short {
		perRep = 3
	}
	for _, m := range exportMethods {
		small, large := newExportServer(t, m, few), newExportServer(t, m, many)
		var at10, at800 []float64
		var errs error
		for range md.reps {
			for _, side := range []struct {
				es  *exportServer
				out *[]float64
			}{{small, &at10}, {large, &at800}} {
				var all []time.Duration
				for range perRep {
					d, err := side.es.add()
					errs = first(errs, err)
					all = append(all, d)
				}
				*side.out = append(*side.out, percentile(all, 50))
			}
		}
		var tgt *Target
		if m.target {
			tgt = &Target{Of: "ratio", Op: "<=", Value: 1.5, Source: "issue: export add at 800 exports ≤ 1.5× at 10"}
		}
		f := newFigure("export_add_800_vs_10_"+m.name, "ms", fmt.Sprintf("p50 of %d export adds (until ganesha serves it) with %d exports served (dots column) vs %d (baseline), method %s: pkg/nfs as the server's CreateVolume uses it",
			perRep, many, few, m.name), at800, at10, tgt)
		f.Fatal = md.short && m.target
		failed(&f, errs)
		report.add(t, f)
	}
}
