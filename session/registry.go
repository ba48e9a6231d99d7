package session

import "sync"

// Registry maps client identifiers to sessions. It is shared by every listener, so a client can
// take its session over from any of them.
type Registry struct {
	mu sync.RWMutex
	m  map[string]*Session
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{m: make(map[string]*Session)}
}

// Get returns the session of id, or nil.
func (r *Registry) Get(id string) *Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[id]
}

// Put stores s under s.ID, replacing any other session of that id.
func (r *Registry) Put(s *Session) {
	r.mu.Lock()
	r.m[s.ID] = s
	r.mu.Unlock()
}

// Remove deletes s, but only if it is still the session stored under its id.
func (r *Registry) Remove(s *Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[s.ID] != s {
		return false
	}
	delete(r.m, s.ID)
	return true
}

// Snapshot returns every session at the time of the call.
func (r *Registry) Snapshot() []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Session, 0, len(r.m))
	for _, s := range r.m {
		out = append(out, s)
	}
	return out
}
