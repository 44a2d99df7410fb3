package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/health"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
)

// events records what the fakes were asked to do, in order, so tests can
// check the order of export and pool operations.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, fmt.Sprintf(format, args...))
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.list)
}

func (e *events) reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = nil
}

// fakePool is an in-memory Pool with the semantics the server relies on:
// ErrExists with the existing volume, ErrNotFound, properties normalized
// as pkg/zfs normalizes them, sorted listings.
type fakePool struct {
	mu     sync.Mutex
	ev     *events
	vols   map[string]*zfs.Volume
	snaps  map[string]*zfs.Snapshot
	nextID uint32
	free   int64

	state     string        // what State reports ("" is ONLINE)
	stateErr  error         // returned by State when set
	deleteErr error         // returned by DeleteVolume when set
	mountErr  error         // returned by MountVolume when set
	hold      chan struct{} // when set, CreateVolume waits for it to close
	entered   chan struct{} // when set, CreateVolume signals here first
}

func newFakePool(ev *events) *fakePool {
	return &fakePool{ev: ev, vols: map[string]*zfs.Volume{}, snaps: map[string]*zfs.Snapshot{}, free: 10 << 30}
}

func copyVolume(v *zfs.Volume) *zfs.Volume {
	c := *v
	c.Properties = maps.Clone(v.Properties)
	c.Published = slices.Clone(v.Published)
	return &c
}

// unmount makes a volume's dataset not mounted, with mountErr as the reason
// further mounts fail (nil: they succeed).
func (p *fakePool) unmount(name string, mountErr error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.vols[name].Mounted = false
	p.mountErr = mountErr
}

func (p *fakePool) MountVolume(ctx context.Context, name string) (*zfs.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.vols[name]
	if !ok {
		return nil, fmt.Errorf("volume %q: %w", name, zfs.ErrNotFound)
	}
	if p.mountErr != nil {
		return copyVolume(v), fmt.Errorf("%w: %v", zfs.ErrNotMounted, p.mountErr)
	}
	v.Mounted = true
	p.ev.add("mount %s", name)
	return copyVolume(v), nil
}

func (p *fakePool) MountError(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Errorf("%w: %v", zfs.ErrNotMounted, p.mountErr)
}

func (p *fakePool) Audit(context.Context) (zfs.Audit, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var a zfs.Audit
	for n, v := range p.vols {
		if !v.Mounted {
			a.Unmounted = append(a.Unmounted, n)
		}
	}
	return a, nil
}

func (p *fakePool) Capacity(context.Context) (zfs.Capacity, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return zfs.Capacity{Size: p.free, Available: p.free}, nil
}

func (p *fakePool) CreateVolume(ctx context.Context, spec zfs.VolumeSpec) (*zfs.Volume, error) {
	if p.entered != nil {
		p.entered <- struct{}{}
	}
	if p.hold != nil {
		<-p.hold
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.vols[spec.Name]; ok {
		return copyVolume(v), fmt.Errorf("volume %q: %w", spec.Name, zfs.ErrExists)
	}
	props, err := zfs.ValidateProperties(spec.Properties)
	if err != nil {
		return nil, err
	}
	switch spec.Source.Kind {
	case zfs.SourceSnapshot:
		if _, ok := p.snaps[spec.Source.Name]; !ok {
			return nil, fmt.Errorf("source: %w", zfs.ErrNotFound)
		}
	case zfs.SourceVolume:
		if _, ok := p.vols[spec.Source.Name]; !ok {
			return nil, fmt.Errorf("source: %w", zfs.ErrNotFound)
		}
	}
	capacity := spec.Capacity
	if capacity > p.free {
		return nil, zfs.ErrNoSpace
	}
	p.nextID++
	v := &zfs.Volume{
		Name: spec.Name, Dataset: "fake/dots/volumes/" + spec.Name, Mountpoint: "/fake/mnt/" + spec.Name,
		Capacity: capacity, Thick: spec.Thick, Source: spec.Source, Properties: props, ExportID: p.nextID,
		CreatedAt: time.Now(), Mounted: true, AnonUID: api.DefaultAnonID, AnonGID: api.DefaultAnonID,
	}
	if a := spec.Access; a != nil {
		v.Squash, v.AnonUID, v.AnonGID = a.Squash, a.AnonUID, a.AnonGID
	}
	p.vols[spec.Name] = v
	p.ev.add("create %s", spec.Name)
	return copyVolume(v), nil
}

func (p *fakePool) GetVolume(ctx context.Context, name string) (*zfs.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.vols[name]
	if !ok {
		return nil, fmt.Errorf("volume %q: %w", name, zfs.ErrNotFound)
	}
	return copyVolume(v), nil
}

func (p *fakePool) SetPublished(ctx context.Context, name string, pubs []zfs.Publication) (*zfs.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.vols[name]
	if !ok {
		return nil, fmt.Errorf("volume %q: %w", name, zfs.ErrNotFound)
	}
	v.Published = slices.Clone(pubs)
	p.ev.add("publish %s %d", name, len(pubs))
	return copyVolume(v), nil
}

func (p *fakePool) ListVolumes(context.Context) ([]*zfs.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*zfs.Volume
	for _, name := range slices.Sorted(maps.Keys(p.vols)) {
		out = append(out, copyVolume(p.vols[name]))
	}
	return out, nil
}

func (p *fakePool) ExpandVolume(ctx context.Context, name string, capacity int64) (*zfs.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.vols[name]
	if !ok {
		return nil, zfs.ErrNotFound
	}
	v.Capacity = max(v.Capacity, capacity)
	p.ev.add("expand %s %d", name, v.Capacity)
	return copyVolume(v), nil
}

func (p *fakePool) ModifyVolume(ctx context.Context, name string, m zfs.Modification) (*zfs.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.vols[name]
	if !ok {
		return nil, zfs.ErrNotFound
	}
	if m.Thick != nil {
		v.Thick = *m.Thick
	}
	if v.Properties == nil {
		v.Properties = map[string]string{}
	}
	for k, val := range m.Properties {
		v.Properties[k] = val
	}
	if m.Squash != nil {
		v.Squash = *m.Squash
	}
	if m.AnonUID != nil {
		v.AnonUID = *m.AnonUID
	}
	if m.AnonGID != nil {
		v.AnonGID = *m.AnonGID
	}
	p.ev.add("modify %s", name)
	return copyVolume(v), nil
}

func (p *fakePool) DeleteVolume(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ev.add("delete %s", name)
	if p.deleteErr != nil {
		return p.deleteErr
	}
	if _, ok := p.vols[name]; !ok {
		return zfs.ErrNotFound
	}
	delete(p.vols, name)
	return nil
}

func (p *fakePool) CreateSnapshot(ctx context.Context, volume, name string) (*zfs.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.snaps[name]; ok {
		c := *s
		return &c, fmt.Errorf("snapshot %q: %w", name, zfs.ErrExists)
	}
	v, ok := p.vols[volume]
	if !ok {
		return nil, zfs.ErrNotFound
	}
	s := &zfs.Snapshot{Name: name, SourceVolume: volume, Dataset: v.Dataset + "@" + name, Size: 1 << 20, CreatedAt: time.Now()}
	p.snaps[name] = s
	p.ev.add("snapshot %s@%s", volume, name)
	c := *s
	return &c, nil
}

func (p *fakePool) GetSnapshot(ctx context.Context, name string) (*zfs.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.snaps[name]
	if !ok {
		return nil, zfs.ErrNotFound
	}
	c := *s
	return &c, nil
}

func (p *fakePool) ListSnapshots(context.Context) ([]*zfs.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*zfs.Snapshot
	for _, s := range p.snaps {
		c := *s
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (p *fakePool) DeleteSnapshot(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.snaps[name]; !ok {
		return zfs.ErrNotFound
	}
	delete(p.snaps, name)
	p.ev.add("delete snapshot %s", name)
	return nil
}

// fakeExporter is an in-memory nfs.Exporter whose calls can be made to fail.
type fakeExporter struct {
	mu          sync.Mutex
	ev          *events
	exports     map[uint32]nfs.Export
	exportErr   error
	unexportErr error
}

func newFakeExporter(ev *events) *fakeExporter {
	return &fakeExporter{ev: ev, exports: map[uint32]nfs.Export{}}
}

func (x *fakeExporter) Export(ctx context.Context, e nfs.Export) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ev.add("export %d %s", e.ID, e.Pseudo)
	if x.exportErr != nil {
		return x.exportErr
	}
	if err := e.Validate(); err != nil {
		return err
	}
	x.exports[e.ID] = e
	return nil
}

func (x *fakeExporter) Unexport(ctx context.Context, id uint32) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ev.add("unexport %d", id)
	if x.unexportErr != nil {
		return x.unexportErr
	}
	delete(x.exports, id)
	return nil
}

func (x *fakeExporter) SetExports(ctx context.Context, exports []nfs.Export) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ev.add("set %d exports", len(exports))
	x.exports = map[uint32]nfs.Export{}
	for _, e := range exports {
		x.exports[e.ID] = e
	}
	return nil
}

func (x *fakeExporter) Exports() []nfs.Export {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []nfs.Export
	for _, id := range slices.Sorted(maps.Keys(x.exports)) {
		out = append(out, x.exports[id])
	}
	return out
}

// healthCheck is a check the test flips.
type healthCheck = health.Check

func (p *fakePool) Name() string { return "fake" }

// State is ONLINE unless a test set another (setState).
func (p *fakePool) State(context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stateErr != nil {
		return "", p.stateErr
	}
	if p.state == "" {
		return zfs.HealthOnline, nil
	}
	return p.state, nil
}

func (p *fakePool) setState(state string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state, p.stateErr = state, err
}

// VolumePage pages the sorted volumes as the pool's index does.
func (p *fakePool) VolumePage(after string, max int) ([]*zfs.Volume, bool) {
	vols, _ := p.ListVolumes(context.Background())
	i := sort.Search(len(vols), func(i int) bool { return vols[i].Name > after })
	vols = vols[i:]
	if max > 0 && len(vols) > max {
		return vols[:max], true
	}
	return vols, false
}

func (p *fakePool) SnapshotPage(after string, max int, source string) ([]*zfs.Snapshot, bool) {
	all, _ := p.ListSnapshots(context.Background())
	var out []*zfs.Snapshot
	for _, s := range all {
		if s.Name <= after || (source != "" && s.SourceVolume != source) {
			continue
		}
		if max > 0 && len(out) == max {
			return out, true
		}
		out = append(out, s)
	}
	return out, false
}

func (p *fakePool) Counts() zfs.Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := zfs.Counts{Volumes: len(p.vols), Snapshots: len(p.snaps)}
	for _, v := range p.vols {
		c.Provisioned += v.Capacity
	}
	return c
}

// Reindex finds nothing: the fake is its own index.
func (p *fakePool) Reindex(context.Context) (zfs.IndexDiff, error) { return zfs.IndexDiff{}, nil }

func (p *fakePool) RefreshCapacity(ctx context.Context) (zfs.Capacity, error) { return p.Capacity(ctx) }
