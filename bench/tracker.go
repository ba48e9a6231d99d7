package bench

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// maxSeq bounds the sequence numbers a tracker accepts, so that a corrupt
// or foreign payload cannot make it allocate a huge bitmap.
const maxSeq = 1 << 34

// seqSet remembers which sequence numbers of one publisher arrived. It
// grows by doubling, so memory is one bit per message sent and growth is
// amortised away.
type seqSet struct {
	words []uint64
	n     uint64 // distinct sequence numbers seen
}

// add marks seq and reports whether it is new.
func (s *seqSet) add(seq uint64) bool {
	w := seq / 64
	if w >= uint64(len(s.words)) {
		n := max(2*uint64(len(s.words)), w+1, 1024)
		grown := make([]uint64, n)
		copy(grown, s.words)
		s.words = grown
	}
	bit := uint64(1) << (seq % 64)
	if s.words[w]&bit != 0 {
		return false
	}
	s.words[w] |= bit
	s.n++
	return true
}

// has reports whether seq was seen.
func (s *seqSet) has(seq uint64) bool {
	w := seq / 64
	return w < uint64(len(s.words)) && s.words[w]&(1<<(seq%64)) != 0
}

// missing counts the sequence numbers in s that are not in got.
func (s *seqSet) missing(got *seqSet) uint64 {
	var n int
	for i, w := range s.words {
		if i < len(got.words) {
			w &^= got.words[i]
		}
		n += bits.OnesCount64(w)
	}
	return uint64(n)
}

// tracker accounts for what one subscriber received: which messages of
// which publisher (loss and duplicates) and how long each took.
type tracker struct {
	run   uint32
	pubs  []seqSet
	uniq  uint64
	dup   uint64
	stray uint64 // payloads of another run, malformed, or out of range
	lat   histogram
	last  int64 // run clock of the last message counted
}

func newTracker(run uint32, pubs int) *tracker {
	return &tracker{run: run, pubs: make([]seqSet, pubs)}
}

// add counts one payload that arrived at now (run clock) and reports
// whether it was a new message of this run.
func (t *tracker) add(payload []byte, now int64) bool {
	s, ok := readStamp(payload)
	if !ok || s.run != t.run || s.pub >= uint32(len(t.pubs)) || s.seq >= maxSeq {
		t.stray++
		return false
	}
	t.last = now
	if !t.pubs[s.pub].add(s.seq) {
		t.dup++
		return false
	}
	t.uniq++
	t.lat.record(now - s.sent)
	return true
}

// lost counts the messages publisher p sent (sequence numbers 0..sent-1)
// that never arrived.
func (t *tracker) lost(p int, sent uint64) uint64 {
	set := &t.pubs[p]
	if set.n >= sent {
		// Only sequence numbers below sent exist, so all arrived.
		return 0
	}
	var got uint64
	for seq := range sent {
		if set.has(seq) {
			got++
		}
	}
	return sent - got
}

// groupTracker is one tracker for all the members of a shared subscription,
// whose read loops take turns under mu: a message is new if no member had it
// yet, a duplicate if any had.
type groupTracker struct {
	mu   sync.Mutex
	t    *tracker
	uniq atomic.Uint64 // t.uniq, readable without mu
}

func newGroupTracker(run uint32, pubs int) *groupTracker {
	return &groupTracker{t: newTracker(run, pubs)}
}

// add is tracker.add for one member.
func (g *groupTracker) add(payload []byte, now int64) bool {
	g.mu.Lock()
	fresh := g.t.add(payload, now)
	g.mu.Unlock()
	if fresh {
		g.uniq.Add(1)
	}
	return fresh
}
