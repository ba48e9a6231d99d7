package session

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/holdfast/holdfast/message"
)

// Strategy is how a shared subscription group picks the member that gets a message.
type Strategy uint8

const (
	// RoundRobin: online members with a free window in turn. No order across members; one
	// member gets a group's messages in the order they were queued.
	RoundRobin Strategy = iota
	// LeastInflight: the online member with the most free window (ties in turn): fast members
	// take more.
	LeastInflight
	// Sticky: one online member per topic, chosen by hashing topic and member, so that one
	// topic's messages reach one member in order while the members stay the same.
	Sticky
	// Random: any online member with a free window, uniformly.
	Random
)

var strategyNames = [...]string{RoundRobin: "round-robin", LeastInflight: "least-inflight", Sticky: "sticky", Random: "random"}

// ParseStrategy reads a strategy's configuration name.
func ParseStrategy(s string) (Strategy, error) {
	for i, n := range strategyNames {
		if n == s {
			return Strategy(i), nil
		}
	}
	return 0, fmt.Errorf("unknown strategy %q (want %s)", s, strings.Join(strategyNames[:], ", "))
}

func (s Strategy) String() string { return strategyNames[s] }

// GroupOptions configure every shared subscription group.
type GroupOptions struct {
	Strategy Strategy
	// MaxRedeliveries is how often a message may come back from a member that went away before
	// it is dropped as poison (0: never dropped).
	MaxRedeliveries int
	// Rand returns a number in [0, n), for Random.
	Rand func(n int) int
}

// GroupPrefix starts the store id of every group's queue: U+0000 is in no client identifier
// [MQTT-1.5.3-2], so a group's records never mix with a client's.
const GroupPrefix = "\x00$share/"

// GroupID is the store id of the queue of share name's group on filter.
func GroupID(name, filter string) string { return GroupPrefix + name + "/" + filter }

// ParseGroupID is GroupID's inverse; ok is false for a client's id.
func ParseGroupID(id string) (name, filter string, ok bool) {
	rest, ok := strings.CutPrefix(id, GroupPrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, "/")
}

// Group is one shared subscription group as a state machine (§4.8.2): its members, and its queue
// of QoS 1/2 messages, which it owns until a member has acknowledged one (or, at QoS 2, answered
// PUBREC: the message then stays with that member). It hands each message to one online member
// with a free window at a time, takes back what a member that went away held, and keeps the rest
// on disk: in memory it holds a window of entries, like a persistent session. K is the broker's
// handle of a member session. Not safe for concurrent use.
type Group[K comparable] struct {
	ID           string // the store id of its queue (GroupID)
	Name, Filter string

	opts  *Options
	gopts *GroupOptions

	members  []*member[K] // in subscription order
	next     int          // where the round robin resumes
	pending  []*message.Entry
	out      map[uint64]*lease[K] // handed to a member and not finished, by seq
	returns  map[uint64]int       // how often an entry came back
	recorded map[uint64]bool      // entries with an in-flight state in the store (QoS 2 handed out)
	loading  bool

	queued      int // every entry on disk: pending, out, and not loaded
	queuedBytes int64
	lastQueued  uint64
	lastLoaded  uint64
	uncounted   bool // restored before the store counted the queue: see Counted

	Redelivered int64 // entries taken back from a member that went away and handed out again
	Poisoned    int64 // entries dropped after MaxRedeliveries returns
}

type member[K comparable] struct {
	key    K
	id     string // its client id, which the store records as the holder of a PUBREC'd entry
	qos    byte
	online bool
	conn   uint64 // the attached connection's number (Session.Conn), while online
	window int
	out    int // entries handed to it and not finished, PUBREC'd ones excepted
}

type lease[K comparable] struct {
	m    *member[K]
	size int
	qos  byte // the group's, which the member's copy may lower
	held bool // PUBREC'd: stays with its member
}

// NewGroup returns the group of share name on filter with an empty queue.
func NewGroup[K comparable](name, filter string, opts *Options, gopts *GroupOptions) *Group[K] {
	return &Group[K]{
		ID: GroupID(name, filter), Name: name, Filter: filter,
		opts: opts, gopts: gopts,
		out:      make(map[uint64]*lease[K]),
		returns:  make(map[uint64]int),
		recorded: make(map[uint64]bool),
	}
}

// RestoreQueue sets what the store holds of the group's queue at start.
func (g *Group[K]) RestoreQueue(count int, bytes int64, lastSeq uint64) {
	g.queued, g.queuedBytes, g.lastQueued = count, bytes, lastSeq
}

// RestoreUncounted is RestoreQueue before the store has counted the queue: nothing is known of
// it but that every entry has a seq up to lastSeq. Counted adds the count; until then the
// queue limits do not see the queue's old entries.
func (g *Group[K]) RestoreUncounted(lastSeq uint64) {
	g.lastQueued, g.uncounted = lastSeq, true
}

// Counted adds what the store counted of a queue restored with RestoreUncounted (the entries
// finished since have taken the counters below that already); otherwise it does nothing.
func (g *Group[K]) Counted(count int, bytes int64) {
	if !g.uncounted {
		return
	}
	g.uncounted = false
	g.queued += count
	g.queuedBytes += bytes
}

// Join adds k (client id id) as a member at qos, or updates its QoS; true if new.
func (g *Group[K]) Join(k K, id string, qos byte) bool {
	if m := g.member(k); m != nil {
		m.qos = qos
		return false
	}
	g.members = append(g.members, &member[K]{key: k, id: id, qos: qos})
	return true
}

// Leave removes k; what it held comes back with Return first. It reports whether the group has no
// members left (it then ends).
func (g *Group[K]) Leave(k K) (empty bool) {
	for i, m := range g.members {
		if m.key == k {
			g.members = slices.Delete(g.members, i, i+1)
			if i < g.next {
				g.next--
			}
			break
		}
	}
	return len(g.members) == 0
}

func (g *Group[K]) member(k K) *member[K] {
	for _, m := range g.members {
		if m.key == k {
			return m
		}
	}
	return nil
}

// Online marks member k attached on connection conn, taking window QoS 1/2 messages at a time.
func (g *Group[K]) Online(k K, conn uint64, window int) {
	if m := g.member(k); m != nil {
		m.online, m.conn, m.window = true, conn, window
	}
}

// Offline marks member k gone; what it held comes back with Return.
func (g *Group[K]) Offline(k K) {
	if m := g.member(k); m != nil {
		m.online = false
	}
}

// Members returns the number of members, and of those online.
func (g *Group[K]) Members() (all, online int) {
	for _, m := range g.members {
		if m.online {
			online++
		}
	}
	return len(g.members), online
}

// Queued returns the entries the group holds on disk and those handed to members.
func (g *Group[K]) Queued() (queued, out int) { return g.queued, len(g.out) }

// QoS is the highest QoS a member was granted: a message is queued for the group at most at it.
func (g *Group[K]) QoS() byte {
	var q byte
	for _, m := range g.members {
		q = max(q, m.qos)
	}
	return q
}

// Reserve counts a message of size payload bytes against the group's queue limits; false, with
// nothing counted, when the queue is full.
func (g *Group[K]) Reserve(size int) bool {
	if g.queued >= g.opts.MaxQueuedMessages || g.opts.MaxQueuedBytes > 0 && g.queuedBytes+int64(size) > g.opts.MaxQueuedBytes {
		return false
	}
	g.queued++
	g.queuedBytes += int64(size)
	return true
}

// Unreserve gives back a reservation whose message was never queued.
func (g *Group[K]) Unreserve(size int) {
	g.queued--
	g.queuedBytes -= int64(size)
}

// Committed takes entry seq, durably queued for the group, in commit order (see
// Session.Committed).
func (g *Group[K]) Committed(seq uint64, m *message.Message, qos byte) {
	inMemory := g.lastLoaded == g.lastQueued && len(g.pending) < g.opts.MemoryWindow
	g.lastQueued = seq
	if inMemory {
		g.lastLoaded = seq
		g.pending = append(g.pending, &message.Entry{Seq: seq, QoS: qos, Message: m, Group: g.ID})
	}
}

// Handoff is an entry the group gives to a member: the broker passes it on with Session.Lease,
// and hands it back with Refused if the session says no.
type Handoff[K comparable] struct {
	Member K
	Conn   uint64
	Entry  *message.Entry
}

// Dispatch hands out pending entries to online members with a free window, by the strategy,
// appending to dst. When memory runs dry while the disk holds more, it also returns the read to
// make (see Session's Load); the caller hands its answer to Loaded and dispatches again.
func (g *Group[K]) Dispatch(dst []Handoff[K]) ([]Handoff[K], *Load) {
	kept := g.pending[:0]
	for i, e := range g.pending {
		m := g.pick(e.Message.Topic, true)
		if m == nil {
			if g.gopts.Strategy != Sticky {
				kept = append(kept, g.pending[i:]...) // nobody has room
				break
			}
			kept = append(kept, e) // its member is busy; the other topics go on
			continue
		}
		m.out++
		g.out[e.Seq] = &lease[K]{m: m, size: len(e.Message.Payload), qos: e.QoS}
		h := *e
		h.QoS = min(e.QoS, m.qos)
		dst = append(dst, Handoff[K]{Member: m.key, Conn: m.conn, Entry: &h})
	}
	clear(g.pending[len(kept):])
	g.pending = kept
	if len(g.pending) == 0 {
		g.pending = nil
	}
	if len(g.pending) == 0 && !g.loading && g.lastLoaded < g.lastQueued && g.anyFree() {
		g.loading = true
		return dst, &Load{After: g.lastLoaded, Limit: g.opts.MemoryWindow, upTo: g.lastQueued}
	}
	return dst, nil
}

func (g *Group[K]) anyFree() bool {
	for _, m := range g.members {
		if m.online && m.out < m.window {
			return true
		}
	}
	return false
}

// Loaded takes the entries read for l. Entries a member holds (PUBREC'd, handed back at start
// with Held) and entries not yet durable when the read was asked for are skipped.
func (g *Group[K]) Loaded(l *Load, entries []message.Entry) {
	g.loading = false
	if l.After != g.lastLoaded {
		return
	}
	for i := range entries {
		e := &entries[i]
		if e.Seq > l.upTo {
			break
		}
		if e.Seq <= g.lastLoaded {
			continue
		}
		g.lastLoaded = e.Seq
		if e.State != message.Queued {
			continue
		}
		e.Group = g.ID
		g.pending = append(g.pending, e)
	}
	if len(entries) < l.Limit {
		g.lastLoaded = max(g.lastLoaded, l.upTo)
	}
}

// LoadFailed forgets the read asked for: the next Dispatch asks again.
func (g *Group[K]) LoadFailed() { g.loading = false }

// pick returns the member that gets a message on topic: online, and with a free window when
// windowed (QoS 1/2); nil if none may.
func (g *Group[K]) pick(topic string, windowed bool) *member[K] {
	n := len(g.members)
	free := func(m *member[K]) bool { return m.online && (!windowed || m.out < m.window) }
	switch g.gopts.Strategy {
	case Sticky:
		// Rendezvous hashing over the online members: a member joining or leaving moves only the
		// topics it wins or held.
		var best *member[K]
		var bestScore uint32
		for _, m := range g.members {
			if !m.online {
				continue
			}
			h := fnv.New32a()
			h.Write([]byte(topic))
			h.Write([]byte{0})
			h.Write([]byte(m.id))
			if s := h.Sum32(); best == nil || s > bestScore {
				best, bestScore = m, s
			}
		}
		if best == nil || !free(best) {
			return nil
		}
		return best
	case Random:
		var cands []*member[K]
		for _, m := range g.members {
			if free(m) {
				cands = append(cands, m)
			}
		}
		if len(cands) == 0 {
			return nil
		}
		return cands[g.gopts.Rand(len(cands))]
	}
	var best *member[K]
	at := 0
	for i := range n {
		j := (g.next + i) % n
		m := g.members[j]
		if !free(m) {
			continue
		}
		if g.gopts.Strategy == RoundRobin || !windowed {
			best, at = m, j
			break
		}
		if best == nil || m.window-m.out > best.window-best.out {
			best, at = m, j
		}
	}
	if best != nil {
		g.next = (at + 1) % n
	}
	return best
}

// PickQoS0 returns the online member that gets a QoS 0 message on topic (nothing is queued for
// the group at QoS 0), and false when none is online.
func (g *Group[K]) PickQoS0(topic string) (k K, qos byte, ok bool) {
	if m := g.pick(topic, false); m != nil {
		return m.key, m.qos, true
	}
	return k, 0, false
}

// Refused takes back an entry that Lease refused: the member's connection conn has gone, which the
// group has not heard yet.
func (g *Group[K]) Refused(k K, conn uint64, e *message.Entry) {
	if m := g.member(k); m != nil && m.conn == conn {
		m.online = false
	}
	g.takeBack(e)
}

// takeBack puts e back among the pending entries, in seq order.
func (g *Group[K]) takeBack(e *message.Entry) {
	back := &message.Entry{Seq: e.Seq, QoS: e.QoS, Message: e.Message, Group: g.ID}
	if l := g.out[e.Seq]; l != nil {
		back.QoS = l.qos
		if !l.held {
			l.m.out--
		}
	}
	delete(g.out, e.Seq)
	if q := g.pending; len(q) > 0 && q[len(q)-1].Seq > back.Seq {
		i, _ := slices.BinarySearchFunc(q, back.Seq, func(x *message.Entry, s uint64) int { return cmp.Compare(x.Seq, s) })
		g.pending = slices.Insert(q, i, back)
		return
	}
	g.pending = append(g.pending, back)
}

// Return takes back the entries a member that went away (or left the group) held, not yet
// PUBREC'd, to hand them to another member. An entry that came back more than MaxRedeliveries
// times is dropped instead: returned as poison with the Write that removes it.
func (g *Group[K]) Return(entries []*message.Entry) (poison []*message.Entry, ws []Write) {
	for _, e := range entries {
		if _, ok := g.out[e.Seq]; !ok {
			continue // finished meanwhile
		}
		g.returns[e.Seq]++
		if lim := g.gopts.MaxRedeliveries; lim > 0 && g.returns[e.Seq] > lim {
			poison = append(poison, e)
			ws = append(ws, g.Finished(e.Seq))
			continue
		}
		g.Redelivered++
		g.takeBack(e)
	}
	g.Poisoned += int64(len(poison))
	return poison, ws
}

// Settled applies what a member's Write records of a group's entry: Sent, its QoS 2 PUBLISH is
// stored as in flight to that member; Released, the member answered PUBREC and the message stays
// with it. It returns the Write that removes a finished entry from the store (Finished).
func (g *Group[K]) Settled(w Write) Write {
	switch w.Kind {
	case WriteSent:
		g.recorded[w.Seq] = true
	case WriteReleased:
		g.recorded[w.Seq] = true
		if l := g.out[w.Seq]; l != nil && !l.held {
			l.held = true
			l.m.out--
		}
	case WriteDone, WriteDoneQueued:
		return g.Finished(w.Seq)
	}
	return w
}

// Adopt records, at start, an entry the store holds as in flight to member k: Released (PUBREC'd:
// it stays with k) or Sent (k gets it again with DUP when it reconnects; see Session.Unshare for
// when it does not). It returns false if k is not a member (its session ended): the caller then
// finishes a Released entry and queues a Sent one again.
func (g *Group[K]) Adopt(k K, e *message.Entry) bool {
	m := g.member(k)
	if m == nil {
		return false
	}
	held := e.State == message.Released
	if !held {
		m.out++
	}
	g.out[e.Seq] = &lease[K]{m: m, size: len(e.Message.Payload), qos: e.QoS, held: held}
	g.recorded[e.Seq] = true
	return true
}

// Finished removes entry seq, acknowledged by its member (or dropped for it), from the group and
// returns the Write that removes it from the store.
func (g *Group[K]) Finished(seq uint64) Write {
	w := Write{Kind: WriteDoneQueued, Seq: seq, Group: g.ID}
	if g.recorded[seq] {
		w.Kind = WriteDone
	}
	if l := g.out[seq]; l != nil {
		if !l.held {
			l.m.out--
		}
		g.queued--
		g.queuedBytes -= int64(l.size)
		delete(g.out, seq)
	}
	delete(g.returns, seq)
	delete(g.recorded, seq)
	return w
}
