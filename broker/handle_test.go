package broker

import (
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/session"
)

type wakeCounter struct{ wakes int }

func (w *wakeCounter) Wake()                          { w.wakes++ }
func (w *wakeCounter) SendPublish(*codec.Publish)     {}
func (w *wakeCounter) SendEncoded([]byte, int, int64) {}
func (w *wakeCounter) AppendPublish(dst []byte, p *codec.Publish) ([]byte, bool) {
	return p.Append(dst), true
}

var handleOptions = session.Options{MaxInflight: 3, MaxQueuedMessages: 100, MemoryWindow: 2}

// A publisher waits while an online session's backlog is high, until it halves or the session is
// marked stuck; an offline session is never waited for (nobody drains it).
func TestHandleCongestion(t *testing.T) {
	const high = 8
	h := newHandle(session.New("c", false, codec.Level311, &handleOptions), high)
	h.lock().Attach(session.Link{Level: codec.Level311}, &wakeCounter{})
	h.unlock()
	for range high - 1 {
		h.lock().Reserve(1)
		h.unlock()
	}
	if h.congested() != nil {
		t.Fatal("a publisher waits below the high mark")
	}
	h.lock().Reserve(1)
	h.unlock()
	ch := h.congested()
	if ch == nil {
		t.Fatal("no wait at the high mark")
	}
	for range high/2 - 1 {
		h.unreserve(1)
	}
	select {
	case <-ch:
		t.Fatal("the wait ended before the backlog halved")
	default:
	}
	h.unreserve(1)
	select {
	case <-ch:
	default:
		t.Fatal("the wait did not end when the backlog halved")
	}
	for range high / 2 {
		h.lock().Reserve(1)
		h.unlock()
	}
	h.markStuck()
	if h.congested() != nil {
		t.Error("publishers still wait for a stuck session")
	}
	h.unreserve(1)
	h.unreserve(1)
	h.unreserve(1)
	h.unreserve(1)
	for range high / 2 {
		h.lock().Reserve(1)
		h.unlock()
	}
	ch = h.congested()
	if ch == nil {
		t.Fatal("a session that drained is still treated as stuck")
	}
	h.lock().Detach(time.Now())
	h.unlock()
	select {
	case <-ch:
	default:
		t.Fatal("publishers still wait for a session that went offline")
	}
	if h.congested() != nil {
		t.Error("publishers wait for an offline session")
	}
}

// MQTT-3.1.4-2: a new connection of a client id takes over its session; a session removed by a
// connection that no longer holds it must not remove its successor.
func TestRegistryTakeOver(t *testing.T) {
	r := newRegistry()
	old := newHandle(session.New("c", true, codec.Level311, &handleOptions), 8)
	r.put(old)
	next := newHandle(session.New("c", false, codec.Level311, &handleOptions), 8)
	r.put(next)
	if r.get("c") != next {
		t.Fatal("put did not replace the session of the same id")
	}
	if r.remove(old) {
		t.Fatal("removing a replaced session removed its successor")
	}
	r.put(newHandle(session.New("d", false, codec.Level311, &handleOptions), 8))
	if n := len(r.snapshot()); n != 2 {
		t.Fatalf("snapshot of %d sessions, want 2", n)
	}
	if !r.remove(next) || r.get("c") != nil {
		t.Fatal("remove of the current session failed")
	}
}
