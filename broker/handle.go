package broker

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/session"
)

// sessionHandle is how the broker holds one session: the state machine, the lock that serialises
// the events fed to it (from its own connection's reader and writer, from publishers' readers and
// from persist's callbacks), and the publishers' flow control, which is the broker's policy, not
// MQTT's. The trie and the registry hold handles.
type sessionHandle struct {
	ID         string  // immutable, readable without the lock
	Persistent bool    // immutable
	bridge     *bridge // the bridge whose session this is; set before serving

	mu    sync.Mutex
	m     *session.Session
	bl    backlog
	timer *time.Timer // runs Server.reap while offline; nil until first needed
}

func newHandle(m *session.Session, backlogHigh int) *sessionHandle {
	return &sessionHandle{ID: m.ID, Persistent: m.Persistent, m: m, bl: backlog{high: backlogHigh}}
}

// lock returns the machine; nothing else may call it until unlock.
func (h *sessionHandle) lock() *session.Session {
	h.mu.Lock()
	return h.m
}

// unlock releases the machine, and with it the publishers waiting for its backlog once that has
// halved or the session went offline (nobody drains it now; its queue limit bounds it).
func (h *sessionHandle) unlock() {
	if h.bl.waited() {
		n, _ := h.m.Queued()
		h.bl.drained(n, h.m.Online())
	}
	h.mu.Unlock()
}

// online reports whether a connection is attached.
func (h *sessionHandle) online() bool {
	defer h.unlock()
	return h.lock().Online()
}

// congested returns a channel that is closed once an online session's backlog has drained to half
// of backlogHigh, or nil when a publisher need not wait: the backlog is below the mark, the
// session is offline, or it is stuck. Publishers wait on it, so a busy broker slows them down to
// what their subscribers take before any queue fills up.
func (h *sessionHandle) congested() <-chan struct{} {
	m := h.lock()
	defer h.unlock()
	n, _ := m.Queued()
	return h.bl.congested(n, m.Online())
}

func (h *sessionHandle) String() string { return h.ID }

// markStuck records that a publisher waited for this session in vain: publishers stop waiting for
// it until its backlog drains.
func (h *sessionHandle) markStuck() {
	h.lock()
	h.bl.stuck = true
	h.unlock()
}

// backlog is the publishers' flow control of one queue (a session's or a shared group's), the
// broker's policy, not MQTT's: publishers that route to a queue whose backlog is high wait until
// it halves. Its owner's lock guards it.
type backlog struct {
	drain chan struct{} // closed when the backlog falls to high/2; nil when nobody waits
	stuck bool          // a publisher waited in vain: stop making publishers wait until it drains
	high  int           // backlogHigh of the server
}

// congested returns the channel to wait on for a backlog of n entries, or nil when a publisher
// need not wait: n is below the mark, nobody is online to drain it, or it is stuck.
func (b *backlog) congested(n int, online bool) <-chan struct{} {
	if !online || b.stuck || n < b.high {
		return nil
	}
	if b.drain == nil {
		b.drain = make(chan struct{})
	}
	return b.drain
}

// waited reports whether drained has anything to do.
func (b *backlog) waited() bool { return b.drain != nil || b.stuck }

// drained releases the waiting publishers once the backlog n has halved or nobody is online.
func (b *backlog) drained(n int, online bool) {
	if n <= b.high/2 || !online {
		b.stuck = false
		if b.drain != nil {
			close(b.drain)
			b.drain = nil
		}
	}
}

// registry maps client identifiers to sessions. It is shared by every listener, so a client can
// take its session over from any of them.
type registry struct {
	mu sync.RWMutex
	m  map[string]*sessionHandle
}

func newRegistry() *registry {
	return &registry{m: make(map[string]*sessionHandle)}
}

// get returns the session of id, or nil.
func (r *registry) get(id string) *sessionHandle {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[id]
}

// put stores h under its id, replacing any other session of that id.
func (r *registry) put(h *sessionHandle) {
	r.mu.Lock()
	r.m[h.ID] = h
	r.mu.Unlock()
}

// remove deletes h, but only if it is still the session stored under its id.
func (r *registry) remove(h *sessionHandle) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[h.ID] != h {
		return false
	}
	delete(r.m, h.ID)
	return true
}

// snapshot returns every session at the time of the call.
func (r *registry) snapshot() []*sessionHandle {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Collect(maps.Values(r.m))
}

// applied hands a persistent session its entry seq, not yet durable (on persist's writer, in
// commit order), and wakes its writer if the entry may be sent now.
func (h *sessionHandle) applied(seq uint64, msg *message.Message, qos byte) {
	o := h.lock().Applied(seq, msg, qos)
	h.unlock()
	wake(o)
}

// durable tells a persistent session that its entries up to seq are durable, and wakes its
// writer if that lets it go on.
func (h *sessionHandle) durable(seq uint64) {
	o := h.lock().Durable(seq)
	h.unlock()
	wake(o)
}

// enqueue queues msg in a clean session's memory, and wakes its writer.
func (h *sessionHandle) enqueue(msg *message.Message, qos byte) {
	o := h.lock().Enqueue(msg, qos)
	h.unlock()
	wake(o)
}

// unreserve gives back room reserved for a message that was never queued.
func (h *sessionHandle) unreserve(size int) {
	h.lock().Unreserve(size)
	h.unlock()
}
