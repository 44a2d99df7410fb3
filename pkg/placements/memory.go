package placements

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Memory is a Store that lives in the process: for tests.
type Memory struct {
	mu        sync.Mutex
	records   map[Kind]map[string]string
	forgotten map[string]bool
}

// NewMemory returns an empty store.
func NewMemory() *Memory {
	return &Memory{records: map[Kind]map[string]string{Volume: {}, Snapshot: {}}, forgotten: map[string]bool{}}
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, kind Kind, id string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.records[kind][id]
	return s, ok, nil
}

// Put implements Store.
func (m *Memory) Put(_ context.Context, r Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.records[r.Kind][r.ID]; ok && s != r.Server {
		return fmt.Errorf("%s %q: %w %q", r.Kind, r.ID, ErrConflict, s)
	}
	m.records[r.Kind][r.ID] = r.Server
	return nil
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, r Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.records[r.Kind][r.ID] == r.Server {
		delete(m.records[r.Kind], r.ID)
	}
	return nil
}

// List implements Store.
func (m *Memory) List(context.Context) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Record
	for k, ids := range m.records {
		for id, s := range ids {
			out = append(out, Record{Kind: k, ID: id, Server: s})
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
