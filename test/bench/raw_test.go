//go:build integration

package bench

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
)

// raw is the baseline of a create: the work dots wraps, done by hand on
// the same pool. One `zfs create` carrying the properties dots writes,
// then an export added to a ganesha of its own through pkg/nfs (its file
// written, AddExport over DBus, and the wait until ganesha serves it: the
// mechanism dots' server uses by default, so both sides have the same).
// A delete is the export's removal and `zfs destroy`.
type raw struct {
	t      testing.TB
	g      *testenv.GaneshaEnv
	parent string // POOL/benchraw
	mnt    string // its mountpoint

	mu   sync.Mutex
	ids  map[string]uint32
	next uint32
}

func newRaw(t testing.TB, pool string) *raw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := &raw{t: t, ids: map[string]uint32{}}
	r.parent, r.mnt = rawParent(ctx, t, pool)
	r.g = testenv.StartGanesha(t, nil, func(c *nfs.GaneshaConfig) { c.DBus = nfs.DBusOn })
	return r
}

// rawParent makes POOL/benchraw, beside dots' own datasets, for the
// baselines' datasets and files, and returns it with its mountpoint.
func rawParent(ctx context.Context, t testing.TB, pool string) (dataset, mountpoint string) {
	t.Helper()
	dataset = pool + "/benchraw"
	if _, err := zfsRun(ctx, t, "create", dataset); err != nil {
		t.Fatal(err)
	}
	mountpoint, err := zfsRun(ctx, t, "get", "-H", "-o", "value", "mountpoint", dataset)
	if err != nil {
		t.Fatal(err)
	}
	return dataset, mountpoint
}

func (r *raw) create(ctx context.Context, name string, size int64) error {
	r.mu.Lock()
	r.next++
	id := r.next
	r.ids[name] = id
	r.mu.Unlock()
	sz := strconv.FormatInt(size, 10)
	if _, err := zfsRun(ctx, r.t, "create", "-o", "refquota="+sz, "-o", "dots:name="+name, "-o", "dots:capacity="+sz,
		"-o", "dots:thick=false", "-o", "dots:exportid="+strconv.FormatUint(uint64(id), 10),
		"-o", "dots:created="+time.Now().UTC().Format(time.RFC3339Nano), r.parent+"/"+name); err != nil {
		return err
	}
	return r.g.Export(ctx, nfs.Export{ID: id, Path: filepath.Join(r.mnt, name), Pseudo: "/raw/" + name, Clients: testenv.LoopbackClients})
}

// destroy removes the export, then the dataset (retried while busy, as
// dots' delete also does).
func (r *raw) destroy(ctx context.Context, name string) error {
	r.mu.Lock()
	id := r.ids[name]
	delete(r.ids, name)
	r.mu.Unlock()
	if err := r.g.Unexport(ctx, id); err != nil {
		return err
	}
	return destroyDataset(ctx, r.t, r.parent+"/"+name)
}

// destroyDataset runs `zfs destroy`, again while zfs-fuse calls the
// dataset busy (ENVIRONMENT.md: right after an unexport or unmount).
func destroyDataset(ctx context.Context, t testing.TB, dataset string) error {
	var other error // not "busy": not retried
	err := poll.Wait(30*time.Second, func() error {
		_, err := zfsRun(ctx, t, "destroy", dataset)
		if err != nil && !strings.Contains(err.Error(), "busy") {
			other = err
			return nil
		}
		return err
	})
	return errors.Join(err, other)
}
