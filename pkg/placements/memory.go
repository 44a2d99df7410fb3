package placements

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
)

// Memory is a Store that lives in the process: for tests.
type Memory struct {
	mu        sync.Mutex
	records   map[Kind]map[string]Record
	forgotten map[string]bool
}

// NewMemory returns an empty store.
func NewMemory() *Memory {
	return &Memory{records: map[Kind]map[string]Record{Volume: {}, Snapshot: {}}, forgotten: map[string]bool{}}
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, kind Kind, id string) (string, bool, error) {
	r, ok, err := m.Lookup(ctx, kind, id)
	return r.Server, ok, err
}

// Lookup implements Store.
func (m *Memory) Lookup(_ context.Context, kind Kind, id string) (Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[kind][id]
	r.Replicas = slices.Clone(r.Replicas)
	return r, ok, nil
}

// Put implements Store.
func (m *Memory) Put(_ context.Context, r Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.records[r.Kind][r.ID]; ok {
		if old.Server != r.Server {
			return fmt.Errorf("%s %q: %w %q", r.Kind, r.ID, ErrConflict, old.Server)
		}
		return nil
	}
	r.Replicas = slices.Clone(r.Replicas)
	m.records[r.Kind][r.ID] = r
	return nil
}

// Update implements Store.
func (m *Memory) Update(_ context.Context, old, r Record) error {
	if err := checkUpdate(old, r); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.records[r.Kind][r.ID]
	if !ok || !cur.Equal(old) {
		return fmt.Errorf("%s %q: %w", r.Kind, r.ID, ErrChanged)
	}
	r.Replicas = slices.Clone(r.Replicas)
	m.records[r.Kind][r.ID] = r
	return nil
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, r Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.records[r.Kind][r.ID]; ok && cur.Server == r.Server {
		delete(m.records[r.Kind], r.ID)
	}
	return nil
}

// List implements Store.
func (m *Memory) List(context.Context) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Record
	for _, ids := range m.records {
		for _, r := range ids {
			r.Replicas = slices.Clone(r.Replicas)
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Kind < out[j].Kind || out[i].Kind == out[j].Kind && out[i].ID < out[j].ID
	})
	return out, nil
}

// Forget implements Store.
func (m *Memory) Forget(_ context.Context, server string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgotten[server] = true
	return nil
}

// Forgotten implements Store.
func (m *Memory) Forgotten(_ context.Context, server string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.forgotten[server], nil
}
