// Package session is one client's MQTT session as a state machine: subscriptions, the outbound
// queue and its in-flight window, packet identifiers, inbound QoS 2 identifiers. It does no I/O,
// takes no locks, reads no clock and starts no goroutines: what must be stored comes out as
// Writes, a read of the queue on disk as a Load request, and whom to wake as a returned Outlet;
// time comes in as an argument. The broker carries the effects out and serialises the calls
// (broker/handle.go holds the lock).
//
// A persistent session (clean-session=0) keeps its queue on disk: in memory it holds at most a
// window of entries, and asks for the rest as the window frees, so an offline client with a
// million queued messages costs a few counters, not a million messages. A clean session lives
// only as long as its connection and keeps everything in memory.
//
// Sequence numbers of persistent entries are assigned by the store in commit order, and Applied
// is called in that order as each entry takes its place, Durable once the disk holds it; so
// "highest seq held in memory" versus "highest seq applied" is enough to know whether the queue
// has entries memory does not, and "highest seq durable" bounds what a read of the disk finds. A
// message published at QoS 0 or 1 may go to the client once applied: should the broker crash
// before it is durable, its publisher, not acknowledged, sends it again, and at least once
// allows the repeat. One published at QoS 2 waits until it is durable: routed again as new after
// a crash, it would reach the client twice.
package session

import (
	"maps"
	"slices"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/router"
)

// Options bound one session.
type Options struct {
	MaxInflight       int   // unacknowledged QoS 1/2 messages sent to the client
	MaxQueuedMessages int   // entries not yet acknowledged, in-flight included
	MaxQueuedBytes    int64 // their payload bytes; 0 = unlimited
	MemoryWindow      int   // persistent sessions: queued entries held in memory beyond the in-flight window
}

// Session is one client's state. It is not safe for concurrent use: its caller serialises the
// calls.
type Session struct {
	ID         string
	Persistent bool // clean-session=0: survives disconnects and restarts

	opts *Options

	level     byte
	subs      map[string]message.SubOptions
	noLocal   int              // subscriptions with No Local
	decorated int              // subscriptions with Retain As Published or an identifier
	pending   []*message.Entry // queued, not yet sent, in order
	leased    []*message.Entry // shared groups' entries handed to this session, not yet sent
	inflight  []*message.Entry // sent, awaiting acknowledgement, in send order
	// sentOffline: of a persistent session offline, the entries sent to an earlier connection and
	// not acknowledged; they are on disk only, and sent again first on the next Attach.
	sentOffline int
	byPID       map[uint16]*message.Entry
	resend      bool // the in-flight entries must be sent again (new connection)
	queued      int  // every unacknowledged entry: pending, in flight, and on disk only
	queuedBytes int64
	lastQueued  uint64 // persistent: highest seq applied for this session
	lastDurable uint64 // persistent: highest seq durable for this session (readable from disk)
	lastLoaded  uint64 // persistent: highest seq held in memory (or already acknowledged)
	gen         uint64 // bumped on detach, so a disk read that raced a detach is discarded
	nextPID     uint16
	burnt       map[uint16]struct{} // ids of QoS 2 group messages moved away before PUBREC: see Detach
	conns       uint64              // connections attached so far: a group's hand-off names the one it meant
	inbound     map[uint16]struct{}
	outlet      Outlet      // non-nil while a connection is attached
	link        Link        // the attached connection's (or the last one's)
	will        *codec.Will // the attached connection's will, until it is published or discarded
	willAt      time.Time   // when a will delayed past its connection's end is due; zero: not pending
	expiry      uint32      // MQTT 5 Session Expiry Interval, seconds, when expirySet
	expirySet   bool        // false: a 3.x session, which the broker's default ends
	identity    Identity
	offlineAt   time.Time // when the last connection went away; zero if none has yet
	// headArrived is when the oldest entry held on disk only arrived, as far as the session can
	// tell without reading it (see OldestQueued); headSet: it stands for the current queue (it
	// may be zero, not known, for a queue recovered from an older store).
	headArrived time.Time
	headSet     bool
	// uncounted: restored before the store counted its queue (Saved.Uncounted); Counted adds it.
	uncounted bool

	// tail holds every entry applied with a seq above tailFrom, none of them durable yet
	// (persistent): what a session that is not caught up could not keep in memory and cannot read
	// from disk yet. Once memory holds everything up to tailFrom, the tail joins it, so that a
	// session behind catches up under a steady stream, where some entry is nearly always not
	// durable.
	tail     []*message.Entry
	tailFrom uint64
}

// New returns a session.
func New(id string, persistent bool, level byte, opts *Options) *Session {
	return &Session{
		ID:         id,
		Persistent: persistent,
		opts:       opts,
		level:      level,
		subs:       make(map[string]message.SubOptions),
		byPID:      make(map[uint16]*message.Entry),
		inbound:    make(map[uint16]struct{}),
	}
}

// Saved is what the store held of a persistent session at start, besides its subscriptions.
type Saved struct {
	ClientID    string
	Record      Record
	QueuedCount int    // unacknowledged queue entries
	Inflight    int    // of them sent to a connection before (their in-flight states)
	QueuedBytes int64  // their payload bytes
	LastSeq     uint64 // the highest seq of its queue
	// OldestQueued is when the first entry of its queue arrived (zero: empty or not known).
	OldestQueued time.Time
	// Uncounted: the store has not counted the queue yet. QueuedCount and QueuedBytes are 0 and
	// LastSeq bounds the queue from above (see persist.RecoverSessions); Counted adds the count.
	// Until then the queue limits do not see the queue's old entries.
	Uncounted   bool
	InboundQoS2 []uint16
	Will        *codec.Will // the will of its last connection, if it was not published yet
}

// Restore returns a persistent session rebuilt from what the store held, at start-up time now: a
// session that was online when the broker stopped counts as offline from now.
func Restore(sv Saved, opts *Options, now time.Time) *Session {
	s := New(sv.ClientID, true, sv.Record.ProtocolLevel, opts)
	s.queued = sv.QueuedCount
	s.queuedBytes = sv.QueuedBytes
	s.lastQueued, s.lastDurable, s.tailFrom = sv.LastSeq, sv.LastSeq, sv.LastSeq
	s.uncounted = sv.Uncounted
	s.sentOffline = sv.Inflight
	for _, pid := range sv.InboundQoS2 {
		s.inbound[pid] = struct{}{}
	}
	s.offlineAt = now
	s.headArrived, s.headSet = sv.OldestQueued, sv.QueuedCount > 0
	if !sv.Record.OfflineSince.IsZero() {
		s.offlineAt = sv.Record.OfflineSince
	}
	s.identity = sv.Record.Owner
	s.expiry, s.expirySet = sv.Record.Expiry, sv.Record.ExpirySet
	if sv.Will != nil {
		// Its connection ended (at the latest when the broker stopped) without DISCONNECT: due
		// after its delay, counted from then.
		s.will = sv.Will
		s.pendWill(s.offlineAt)
	}
	return s
}

// Write is a record that a persistent session needs the store to hold: the effects' "records to
// persist". The broker turns Writes into a persist.Batch for the session's client id.
type Write struct {
	Kind     WriteKind
	Seq      uint64 // the queue entry
	PacketID uint16 // WriteSent, WriteReleased

	// Group, when set, is the shared group whose queue holds the entry (its store id): the
	// record is the group's, whichever session asked for it, and the group is told too. A Sent
	// or Released state of a group's entry names its Holder, the member it is in flight to.
	Group  string
	Holder string
}

// WriteKind says what a Write records.
type WriteKind uint8

const (
	// WriteSent: entry Seq was sent with PacketID and awaits PUBACK or PUBREC.
	WriteSent WriteKind = iota + 1
	// WriteReleased: PUBREC received for entry Seq, PUBREL sent with PacketID.
	WriteReleased
	// WriteDone: entry Seq is finished; it and its in-flight state go.
	WriteDone
	// WriteDoneQueued: entry Seq is finished and no in-flight state was ever written for it.
	WriteDoneQueued
)

// Outlet is the connection a session is attached to. The session only keeps it, to tell its
// callers where to send and whom to wake; it never calls it.
type Outlet interface {
	// Wake tells the connection's writer that Fill has something new.
	Wake()
	// SendPublish writes a QoS 0 message straight to the connection, bypassing the queue.
	SendPublish(p *codec.Publish)
	// SendEncoded writes n QoS 0 PUBLISH packets already encoded in b (payload bytes in all).
	SendEncoded(b []byte, n int, payload int64)
	// AppendPublish encodes a QoS 0 PUBLISH for the connection (its protocol level and packet
	// size limit); false when it may not be sent there, with nothing appended.
	AppendPublish(dst []byte, p *codec.Publish) ([]byte, bool)
}

// Link is what the connection being attached agreed on in its CONNECT: the protocol level and, at
// level 5, the limits the client set on what the broker sends it.
type Link struct {
	Level          byte
	ReceiveMaximum uint16 // unacknowledged QoS 1/2 PUBLISH packets the client takes; 0: 65,535 (§3.1.2.11.3)
	MaxPacketSize  uint32 // the largest packet the client takes; 0: no limit but the protocol's
	TopicAliasMax  uint16 // topic aliases the broker may assign; 0: none [MQTT-3.1.2-26]
	// Bridge: a link between brokers, a 3.x broker bridging in or one of this broker's bridges
	// out. As Mosquitto does, every subscription then has No Local (nothing it sent goes back,
	// so bridges cannot loop) and Retain As Published, at any level.
	Bridge bool
}

// Attach marks the session online behind o, a connection that agreed on l; the caller then wakes
// o. Everything in flight is sent again with DUP set [MQTT-4.4.0-1].
func (s *Session) Attach(l Link, o Outlet) {
	s.level = l.Level
	s.link = l
	s.outlet = o
	s.resend = true
	s.sentOffline = 0 // read again with the queue, into inflight
	s.conns++
}

// SetOptions replaces the bounds of a session restored with the broker's defaults (a bridge has
// its own).
func (s *Session) SetOptions(o *Options) { s.opts = o }

// Conn numbers the attached connection: a shared group's hand-off to an earlier one is refused.
func (s *Session) Conn() uint64 { return s.conns }

// Window is how many QoS 1/2 messages may be in flight to the client.
func (s *Session) Window() int {
	if r := int(s.link.ReceiveMaximum); r > 0 && r < s.opts.MaxInflight {
		return r // [MQTT-3.3.4-9]
	}
	return s.opts.MaxInflight
}

// Outlet returns the attached connection, or nil while offline.
func (s *Session) Outlet() Outlet {
	return s.outlet
}

// Detach marks the session offline at now. A persistent session drops its in-memory window: the
// entries stay on disk with their in-flight state and are read again on the next Attach. The
// state of in-flight QoS 1 messages is written only now, and returned: while connected it is
// kept in memory alone (saving a store write per message), and a crash then costs a redelivery
// without DUP, which QoS 1 allows.
//
// Shared groups' entries not yet PUBREC'd go back to their groups (back): a member that went away
// holds none of them. Those PUBREC'd stay with a persistent session; a clean one ends, and with
// it their exchange, so they are finished (a Write with Group).
func (s *Session) Detach(now time.Time) (ws []Write, back []*message.Entry) {
	s.outlet = nil
	s.offlineAt = now
	back = s.leased
	s.leased = nil
	var held []*message.Entry
	own := 0
	for _, e := range s.inflight {
		switch {
		case e.Group == "":
			own++
			if s.Persistent && e.QoS == 1 {
				ws = append(ws, Write{Kind: WriteSent, Seq: e.Seq, PacketID: e.PacketID})
			}
		case e.State != message.Released:
			back = append(back, s.moveAway(e))
		case s.Persistent:
			held = append(held, e)
		default:
			ws = append(ws, s.done(e))
		}
	}
	if s.Persistent {
		s.sentOffline = own
		s.pending = nil
		s.inflight = held
		clear(s.byPID)
		for _, e := range held {
			s.byPID[e.PacketID] = e
		}
		s.lastLoaded = 0
		s.gen++
	}
	return ws, back
}

// Discard ends the exchanges of the group entries a session that is going away holds PUBREC'd: it
// returns the Writes that finish them (see Detach for a clean session's).
func (s *Session) Discard() (ws []Write) {
	s.inflight = slices.DeleteFunc(s.inflight, func(e *message.Entry) bool {
		if e.Group == "" || e.State != message.Released {
			return false
		}
		delete(s.byPID, e.PacketID)
		ws = append(ws, s.done(e))
		return true
	})
	return ws
}

// Lease hands the session a shared group's entry, to send like its own queue's. It refuses, and
// the group takes the entry back, when connection conn is no longer attached.
func (s *Session) Lease(e *message.Entry, conn uint64) bool {
	if s.outlet == nil || s.conns != conn {
		return false
	}
	s.leased = append(s.leased, e)
	return true
}

// Unshare takes back from the session the entries of group (its store id) not yet PUBREC'd: the
// session left the group.
func (s *Session) Unshare(group string) (back []*message.Entry) {
	keep := func(e *message.Entry) bool {
		if e.Group != group || e.State == message.Released {
			return true
		}
		back = append(back, e)
		return false
	}
	s.leased = slices.DeleteFunc(s.leased, func(e *message.Entry) bool { return !keep(e) })
	s.inflight = slices.DeleteFunc(s.inflight, func(e *message.Entry) bool {
		if keep(e) {
			return false
		}
		s.moveAway(e)
		return true
	})
	return back
}

// moveAway frees the packet identifier of a group's entry that goes back to its group. One of a
// QoS 2 PUBLISH stays taken: the client may hold it awaiting PUBREL (its PUBREC lost with the
// connection) and would take a new message under it for a repeat [MQTT-4.3.3-9]. A PUBREC or
// PUBCOMP from the client for it frees it.
func (s *Session) moveAway(e *message.Entry) *message.Entry {
	delete(s.byPID, e.PacketID)
	if e.QoS == 2 {
		if s.burnt == nil {
			s.burnt = make(map[uint16]struct{})
		}
		s.burnt[e.PacketID] = struct{}{}
	}
	return e
}

// Adopt takes, at start, a group's entry that this session's client answered PUBREC for before
// the restart: PUBREL goes out again on the next Attach.
func (s *Session) Adopt(e *message.Entry) {
	s.inflight = append(s.inflight, e)
	s.byPID[e.PacketID] = e
}

// SetWill records the will of the connection being attached [MQTT-3.1.2-8]. A will still pending
// from the previous connection is not sent: the session resumed in time [MQTT-3.1.3-9].
func (s *Session) SetWill(w *codec.Will) {
	s.will, s.willAt = w, time.Time{}
}

// Disconnected handles DISCONNECT: the will is discarded without being published [MQTT-3.1.2-10].
func (s *Session) Disconnected() { s.will = nil }

// Will returns the will the session holds (its connection's, or one pending), for the store.
func (s *Session) Will() *codec.Will { return s.will }

// TakeWill, once the connection is gone (after Detach), returns the will to publish now and
// forgets it: a will is published at most once. A will with a Will Delay Interval is kept
// instead, and WillDue returns it once the delay or the session has ended, whichever is first
// [MQTT-3.1.3-9]; def is the broker's expiry for a session without its own.
func (s *Session) TakeWill(def time.Duration) *codec.Will {
	if s.will == nil {
		return nil
	}
	if s.Persistent && s.pendWill(s.offlineAt) {
		if end, ok := s.ExpiresAt(def); !ok || end.After(s.offlineAt) {
			if ok && end.Before(s.willAt) {
				s.willAt = end
			}
			return nil
		}
	}
	w := s.will
	s.will, s.willAt = nil, time.Time{}
	return w
}

// pendWill marks the will due its delay after from, and reports whether it has one.
func (s *Session) pendWill(from time.Time) bool {
	if s.will.Props == nil || s.will.Props.WillDelay == 0 {
		s.willAt = from
		return false
	}
	s.willAt = from.Add(time.Duration(s.will.Props.WillDelay) * time.Second)
	return true
}

// WillDue returns the pending will if it is due at now (or ending: the session ends now) and
// forgets it; nil if there is none, or it is not due yet, or the session is online.
func (s *Session) WillDue(now time.Time, ending bool) *codec.Will {
	if s.will == nil || s.outlet != nil || s.willAt.IsZero() || !ending && now.Before(s.willAt) {
		return nil
	}
	w := s.will
	s.will, s.willAt = nil, time.Time{}
	return w
}

// SetExpiry sets the level-5 Session Expiry Interval in seconds, from CONNECT or DISCONNECT
// [MQTT-3.1.2-23]; set false makes it a 3.x session again, which the broker's default ends.
func (s *Session) SetExpiry(seconds uint32, set bool) {
	s.expiry, s.expirySet = seconds, set
}

// Expiry returns the Session Expiry Interval, if the session has one of its own.
func (s *Session) Expiry() (seconds uint32, set bool) { return s.expiry, s.expirySet }

// neverExpires is the Session Expiry Interval that never ends (§3.1.2.11.2).
const neverExpires = 0xFFFFFFFF

// ExpiresAt returns when the offline session ends: its own interval after it went offline, or
// def for a session without one (0: never). ok is false while online and for a session that
// never ends.
func (s *Session) ExpiresAt(def time.Duration) (at time.Time, ok bool) {
	if s.outlet != nil {
		return time.Time{}, false
	}
	d := def
	if s.expirySet {
		if s.expiry == neverExpires {
			return time.Time{}, false
		}
		d = time.Duration(s.expiry) * time.Second
	} else if d <= 0 {
		return time.Time{}, false
	}
	return s.offlineAt.Add(d), true
}

// NextEvent returns when the offline session next needs the broker: its pending will is due or it
// ends, whichever is first; ok is false when nothing is scheduled.
func (s *Session) NextEvent(def time.Duration) (at time.Time, ok bool) {
	at, ok = s.ExpiresAt(def)
	if s.will != nil && s.outlet == nil && !s.willAt.IsZero() && (!ok || s.willAt.Before(at)) {
		at, ok = s.willAt, true
	}
	return at, ok
}

// Online reports whether a connection is attached.
func (s *Session) Online() bool {
	return s.outlet != nil
}

// OfflineSince is when the last connection went away (meaningful only while offline).
func (s *Session) OfflineSince() time.Time {
	return s.offlineAt
}

// Record is what the store keeps of a session besides its subscriptions and queue.
type Record struct {
	ProtocolLevel byte
	Owner         Identity  // Known false: not recorded
	OfflineSince  time.Time // zero while online
	Expiry        uint32    // the Session Expiry Interval, seconds, when ExpirySet
	ExpirySet     bool
}

// Record returns what the store keeps of the session.
func (s *Session) Record() Record {
	r := Record{ProtocolLevel: s.level, Owner: s.identity, Expiry: s.expiry, ExpirySet: s.expirySet}
	if s.outlet == nil {
		r.OfflineSince = s.offlineAt
	}
	return r
}

// Subscribe records a granted subscription and reports whether it is new.
func (s *Session) Subscribe(filter string, o message.SubOptions) bool {
	old, had := s.subs[filter]
	if had {
		s.count(old, -1)
	}
	s.count(o, 1)
	s.subs[filter] = o
	return !had
}

// count keeps the counters that let Via and HasNoLocal skip the subscriptions of a session that
// uses no options.
func (s *Session) count(o message.SubOptions, n int) {
	if o.NoLocal {
		s.noLocal += n
	}
	if o.RetainAsPublished || o.ID != 0 {
		s.decorated += n
	}
}

// Unsubscribe forgets a subscription and reports whether it existed.
func (s *Session) Unsubscribe(filter string) bool {
	old, had := s.subs[filter]
	if had {
		s.count(old, -1)
	}
	delete(s.subs, filter)
	return had
}

// Subscriptions returns a copy of the filters and what they were granted.
func (s *Session) Subscriptions() map[string]message.SubOptions {
	return maps.Clone(s.subs)
}

// OwnQoS is the QoS at which a message this session's own client published on topic reaches it
// through its ordinary subscriptions: the highest of the matching ones without No Local
// [MQTT-3.8.3-3]; ok is false when every matching one has No Local, and always for a bridge. (A
// shared subscription may not have No Local [MQTT-3.8.3-4].)
func (s *Session) OwnQoS(topic string) (qos byte, ok bool) {
	if s.link.Bridge {
		return 0, false
	}
	for f, o := range s.subs {
		if !o.NoLocal && carries(f, "", topic) {
			qos, ok = max(qos, o.QoS), true
		}
	}
	return qos, ok
}

// carries reports whether a message on topic reaches the session through its subscription to f:
// a group's message (group is the group's store id) only through that group's shared
// subscription, any other only through the ordinary ones.
func carries(f, group, topic string) bool {
	name, filter, shared, _ := router.ParseShared(f)
	if shared != (group != "") || shared && GroupID(name, filter) != group {
		return false
	}
	return router.MatchFilter(filter, topic)
}

// Via returns, for a message on topic, the identifiers of the subscriptions it came through (its
// group's, for a shared group's message; else the matching ordinary ones), to be sent with it in
// one PUBLISH [MQTT-3.3.4-3], and whether one of them keeps RETAIN as published. Both are MQTT
// 5's: a client attached at 3.x gets neither, a bridge only the second. A shared and an ordinary
// subscription are two copies, each with its own identifier [MQTT-3.3.4-5].
func (s *Session) Via(topic, group string) (ids []uint32, retainAsPublished bool) {
	if s.link.Bridge {
		return nil, true
	}
	if s.decorated == 0 || s.level != codec.Level5 {
		return nil, false
	}
	for f, o := range s.subs {
		if (o.ID != 0 || o.RetainAsPublished) && carries(f, group, topic) {
			if o.ID != 0 {
				ids = append(ids, o.ID)
			}
			retainAsPublished = retainAsPublished || o.RetainAsPublished
		}
	}
	// Map order is random: sorted, the same message looks the same every time. One identifier
	// given to overlapping subscriptions goes once (a client may take a repeat for a protocol
	// error: mosquitto_sub 2.0 disconnects).
	slices.Sort(ids)
	return slices.Compact(ids), retainAsPublished
}

// HasNoLocal reports whether any subscription has No Local (a bridge's all have), so that the
// broker asks OwnQoS only then.
func (s *Session) HasNoLocal() bool { return s.noLocal > 0 || s.link.Bridge }

// Reserve counts a message of size payload bytes against the queue limits before it is queued.
// It returns false, counting nothing, when the session is full: the message is dropped for this
// session only.
func (s *Session) Reserve(size int) bool {
	if s.queued >= s.opts.MaxQueuedMessages {
		return false
	}
	if s.opts.MaxQueuedBytes > 0 && s.queuedBytes+int64(size) > s.opts.MaxQueuedBytes {
		return false
	}
	s.queued++
	s.queuedBytes += int64(size)
	return true
}

// Counted adds what the store counted of the queue of a session restored uncounted
// (Saved.Uncounted): count entries of bytes payload bytes, the first of which arrived at oldest.
// Entries acknowledged since the start have taken the counters below that already, below zero
// even, which this makes right. A session that was not restored uncounted, or was counted
// already, ignores it: a session made since under the same client id has none of those entries.
func (s *Session) Counted(count int, bytes int64, oldest time.Time) {
	if !s.uncounted {
		return
	}
	s.uncounted = false
	s.queued += count
	s.queuedBytes += bytes
	switch {
	case s.queued <= 0:
		s.headArrived, s.headSet = time.Time{}, false
	case count > 0 && (!s.headSet || oldest.Before(s.headArrived)):
		// The counted entries came before any committed since; an acknowledged one may have
		// been the oldest, which leaves the answer no later than the truth.
		s.headArrived, s.headSet = oldest, true
	}
}

// Unreserve gives back a reservation whose message was never queued (its commit failed).
func (s *Session) Unreserve(size int) {
	s.release(size)
}

func (s *Session) release(size int) {
	s.queued--
	s.queuedBytes -= int64(size)
	if s.queued == 0 {
		s.headArrived, s.headSet = time.Time{}, false
	}
}

// OldestQueued returns when the oldest unacknowledged entry of the queue arrived; zero when the
// queue is empty or its time is not known. Memory holds the head of the queue when it holds any
// entry; otherwise the head is on disk, and the answer is when the first entry arrived into an
// empty queue or, after acknowledgements, the latest arrival acknowledged: no later than the
// truth, and exact again once the queue is read in.
func (s *Session) OldestQueued() time.Time {
	if s.queued == 0 {
		return time.Time{}
	}
	var oldest time.Time
	for _, q := range [2][]*message.Entry{s.inflight, s.pending} {
		for _, e := range q {
			if e.Group == "" {
				if oldest.IsZero() || e.Message.Arrived.Before(oldest) {
					oldest = e.Message.Arrived
				}
				break
			}
		}
	}
	if oldest.IsZero() {
		return s.headArrived
	}
	return oldest
}

// Head returns copies of the first n of the queue's entries held in memory, in flight first:
// what the operator sees of a queue (entries of shared groups are the groups'). An entry in
// flight is Sent there, even at QoS 1, whose state the store does not keep.
func (s *Session) Head(n int) []message.Entry {
	var out []message.Entry
	for i, q := range [2][]*message.Entry{s.inflight, s.pending} {
		for _, e := range q {
			if len(out) == n {
				return out
			}
			if e.Group == "" {
				out = append(out, *e)
				if i == 0 && e.State == message.Queued {
					// A persistent session's QoS 1 entry keeps Queued while in flight (see send).
					out[len(out)-1].State = message.Sent
				}
			}
		}
	}
	return out
}

// Queued returns the number of unacknowledged entries and their payload bytes.
func (s *Session) Queued() (int, int64) {
	return s.queued, s.queuedBytes
}

// Enqueue adds a reserved message to a clean session's in-memory queue. It returns the outlet to
// wake, nil while offline.
func (s *Session) Enqueue(m *message.Message, qos byte) Outlet {
	s.pending = append(s.pending, &message.Entry{QoS: qos, Message: m})
	return s.outlet
}

// Applied tells a persistent session that persist queued seq for it, not yet durably. It must be
// called in commit order (persist's writer applies batches in that order), for every entry, and
// Durable for seq after it. The entry is kept in memory only while the session is online, nothing
// older waits on disk, and the window has room. It returns the outlet to wake when the entry may
// be sent now, else nil.
func (s *Session) Applied(seq uint64, m *message.Message, qos byte) Outlet {
	inMemory := s.outlet != nil && s.lastLoaded == s.lastQueued && len(s.pending) < s.opts.MemoryWindow
	if !s.headSet {
		s.headArrived, s.headSet = m.Arrived, true // the first entry of an empty queue
	}
	s.lastQueued = seq
	if !inMemory {
		if s.outlet == nil {
			// The next connection reads the queue from disk up to seq first, once it is durable:
			// the tail starts after it.
			clear(s.tail)
			s.tail, s.tailFrom = nil, seq
		} else {
			s.tail = append(s.tail, &message.Entry{Seq: seq, QoS: qos, Message: m})
		}
		return nil
	}
	s.lastLoaded, s.tailFrom = seq, seq
	e := &message.Entry{Seq: seq, QoS: qos, Message: m}
	s.pending = append(s.pending, e)
	if s.waits(e) {
		return nil
	}
	return s.outlet
}

// Durable tells a persistent session that its entries up to seq are durable (in commit order,
// like Applied). It returns the outlet to wake when that lets the writer go on: the disk holds
// entries memory does not, or the next entry to send waited for it.
func (s *Session) Durable(seq uint64) Outlet {
	waited := len(s.pending) > 0 && s.waits(s.pending[0])
	s.lastDurable = seq
	n := 0
	for n < len(s.tail) && s.tail[n].Seq <= seq {
		n++
	}
	if n > 0 {
		clear(s.tail[:n]) // readable from disk now
		s.tail = s.tail[n:]
	}
	s.tailFrom = max(s.tailFrom, seq)
	if s.outlet == nil {
		return nil
	}
	if s.lastLoaded < seq || waited && !s.waits(s.pending[0]) {
		return s.outlet
	}
	return nil
}

// takeTail moves the tail into memory, as much as the memory window takes, once memory holds
// every entry up to tailFrom; it reports whether it moved any.
func (s *Session) takeTail() bool {
	if len(s.tail) == 0 || s.lastLoaded < s.tailFrom {
		return false
	}
	n := min(len(s.tail), max(1, s.opts.MemoryWindow-len(s.pending)))
	s.pending = append(s.pending, s.tail[:n]...)
	s.lastLoaded = s.tail[n-1].Seq
	s.tailFrom = s.lastLoaded
	clear(s.tail[:n])
	s.tail = s.tail[n:]
	if len(s.tail) == 0 {
		s.tail = nil
	}
	return true
}

// waits reports whether pending entry e may not be sent yet: published at QoS 2 and not durable.
func (s *Session) waits(e *message.Entry) bool {
	return e.Message.QoS == 2 && e.Seq > s.lastDurable
}

// Outgoing is what the writer must send from the queue: Now can be written at once; After must
// wait until Writes are durable (a QoS 2 message is sent only once its packet identifier is on
// disk, so that a crash can never make it look new to the client). Writes may hold records of
// other entries too, which nobody waits for.
type Outgoing struct {
	Now       []byte
	After     []byte
	Writes    []Write
	Sent      [3]int   // PUBLISH packets appended, by QoS (for the broker's counters)
	SentBytes [3]int64 // their payload bytes
	Expired   int      // queued messages dropped because their Message Expiry Interval ran out
	TooLarge  int      // messages dropped because they exceed the client's Maximum Packet Size

	// At is the time of the fill: a message whose expiry has passed is dropped, and the others
	// carry what remains of their interval.
	At time.Time

	// MayRead, when set, is asked before a queued message is first sent, and before one sent on
	// an earlier connection is sent again: an ACL reloaded since the message was queued may no
	// longer let this client read its topic. A refused entry is acknowledged (removed) instead of
	// sent; one past PUBREC is finished with PUBREL whatever the ACL says.
	MayRead func(topic string) bool

	// Aliases, when set, are the topic aliases of the attached connection (nil: none).
	Aliases Aliases

	// Rename, when set, gives the topic a message goes out on (a bridge's prefixes).
	Rename func(topic string) string

	// Load, when NeedLoad is set, is the read of the session's queue on disk that Fill needs
	// before it can go on: the caller reads it and hands the entries to Loaded, then calls Fill
	// again. The session itself does no I/O.
	Load     Load
	NeedLoad bool
}

// Aliases is the table of the topic aliases the broker assigns on one connection
// [MQTT-3.3.2-7]. The connection owns it, not the session: QoS 0 copies sent straight to the
// connection use the same aliases, and only the connection knows in which order its packets
// reach the wire.
type Aliases interface {
	// Lookup returns the alias of topic, reserving a new one if the client allows more (0: none).
	// known reports that a packet defining it reaches the wire before what Fill writes now, so
	// that the alias may stand alone.
	Lookup(topic string) (alias uint16, known bool)
	// Defined records that a packet Fill wrote defines the alias Lookup gave topic.
	Defined(topic string)
}

// Load asks for the queue entries of a persistent session after seq After, at most Limit of them
// (persist's ReadQueue).
type Load struct {
	After uint64
	Limit int
	upTo  uint64 // the highest seq durable when it was asked: the disk may not hold later ones yet
	gen   uint64 // a Detach since then makes the answer stale
}

// Answers reports whether entries read for l answer ask, which a later Fill asked for: the same
// window of the same attachment. The caller hands them to Loaded with l (whose upTo is as old as
// the read) in place of ask.
func (l Load) Answers(ask Load) bool {
	return l.After == ask.After && l.Limit == ask.Limit && l.gen == ask.gen
}

// NextLoad returns the read Fill will ask for once memory has nothing more to send, when the
// disk holds entries memory does not, so that the caller may start it ahead: every entry up to
// what it asks for is durable already.
func (s *Session) NextLoad() (Load, bool) {
	if s.outlet == nil || !s.Persistent || s.lastLoaded >= s.lastDurable {
		return Load{}, false
	}
	return s.nextLoad(), true
}

func (s *Session) nextLoad() Load {
	return Load{After: s.lastLoaded, Limit: s.opts.MemoryWindow + s.opts.MaxInflight, upTo: s.lastDurable, gen: s.gen}
}

func (o *Outgoing) count(e *message.Entry) {
	o.Sent[e.QoS]++
	o.SentBytes[e.QoS] += int64(len(e.Message.Payload))
}

// Fill appends to o what the writer should send now: the in-flight entries again after an Attach
// (with DUP, or PUBREL for those already past PUBREC), then new messages while the in-flight
// window has room. When a persistent session's memory runs dry while the disk holds more, Fill
// stops and sets o.NeedLoad: see Outgoing.Load; once it has read the disk up to what is durable,
// the tail follows. A message published at QoS 2 stops it until it is durable.
func (s *Session) Fill(o *Outgoing) {
	if s.outlet == nil {
		return
	}
	if s.resend {
		s.resend = false
		kept := s.inflight[:0]
		for _, e := range s.inflight {
			if e.State != message.Released && o.MayRead != nil && !o.MayRead(e.Message.Topic) {
				// Sent on an earlier connection, and an ACL reloaded since no longer lets this
				// client read it: removed rather than sent again, as a queued one would be.
				delete(s.byPID, e.PacketID)
				s.refuse(o, e)
				continue
			}
			kept = append(kept, e)
			s.appendResend(o, e)
		}
		clear(s.inflight[len(kept):])
		s.inflight = kept
	}
	for len(s.inflight) < s.Window() && len(s.leased) > 0 {
		e := s.leased[0]
		s.leased[0] = nil
		s.leased = s.leased[1:]
		s.deliver(o, e)
	}
	for len(s.inflight) < s.Window() {
		if len(s.pending) == 0 {
			if !s.Persistent {
				break
			}
			if s.lastLoaded < s.lastDurable {
				o.NeedLoad, o.Load = true, s.nextLoad()
				break
			}
			if !s.takeTail() {
				break
			}
		}
		e := s.pending[0]
		if s.Persistent && s.waits(e) {
			break // Durable wakes the writer
		}
		s.pending[0] = nil
		s.pending = s.pending[1:]
		if len(s.pending) == 0 {
			s.pending = nil // let the backing array go
		}
		s.deliver(o, e)
	}
}

// deliver sends e unless it expired or the client may not read it.
func (s *Session) deliver(o *Outgoing, e *message.Entry) {
	if e.Message.ExpiredAt(o.At) {
		s.refuse(o, e) // not yet on its way: the copy goes [MQTT-3.3.2-5]
		o.Expired++
		return
	}
	if o.MayRead != nil && !o.MayRead(e.Message.Topic) {
		s.refuse(o, e)
		return
	}
	s.send(o, e)
}

// Loaded takes the entries read for o.Load and clears o.NeedLoad; in-flight entries of an earlier
// connection among them are appended to o to be sent again. It reports whether Fill has new
// entries to send; if not, the caller waits for the next wake-up (the entries it needs are not
// durable yet) rather than asking again. Between Fill and Loaded the session may have been
// detached (the answer is then thrown away) or have had more entries applied. Every seq up to
// the request's upTo was durable before the read began, so a short read means memory has
// caught up with the disk at least to that point, and then the tail may follow.
func (s *Session) Loaded(o *Outgoing, entries []message.Entry) bool {
	req := o.Load
	o.NeedLoad, o.Load = false, Load{}
	upTo, limit := req.upTo, req.Limit
	if req.gen != s.gen || s.outlet == nil || req.After != s.lastLoaded {
		return false
	}
	for i := range entries {
		e := &entries[i]
		if e.Seq > upTo {
			// In the store but not yet durable (Async mode commits before the callbacks): it is
			// read once Durable says so.
			break
		}
		if e.Seq <= s.lastLoaded {
			continue
		}
		s.lastLoaded = e.Seq
		if e.State == message.Queued {
			s.pending = append(s.pending, e)
			continue
		}
		if e.State != message.Released && o.MayRead != nil && !o.MayRead(e.Message.Topic) {
			s.refuse(o, e) // as in Fill's resend: an ACL reloaded since no longer lets it be read
			continue
		}
		// In flight on an earlier connection: send again at once, whatever the window says.
		s.inflight = append(s.inflight, e)
		s.byPID[e.PacketID] = e
		s.appendResend(o, e)
	}
	if len(entries) < limit {
		s.lastLoaded = max(s.lastLoaded, upTo)
		if len(s.pending) == 0 {
			s.takeTail()
		}
	}
	return len(s.pending) > 0
}

func (s *Session) appendResend(o *Outgoing, e *message.Entry) {
	if e.State == message.Released {
		o.Now = (&codec.Pubrel{PacketID: e.PacketID}).AppendLevel(o.Now, s.level)
		return
	}
	o.count(e)
	o.Now, _ = s.appendPublish(o.Now, e, true, o, true)
}

// refuse removes an entry that may not be delivered: a pending one, or one sent on an earlier
// connection and not past PUBREC (done picks the Write that also removes its in-flight state).
func (s *Session) refuse(o *Outgoing, e *message.Entry) {
	if w := s.done(e); w.Kind != 0 {
		o.Writes = append(o.Writes, w)
	}
}

// done releases a finished entry and returns the Write that removes it from the store: the
// group's, for a group's entry, which the session's queue limits never counted; nothing for a
// clean session's own. The kind says whether in-flight state was written for it.
func (s *Session) done(e *message.Entry) Write {
	if e.Group != "" {
		// The group knows what the store holds of its entry: Group.Finished picks the kind.
		return Write{Kind: WriteDone, Seq: e.Seq, Group: e.Group}
	}
	if e.Message.Arrived.After(s.headArrived) {
		// Everything held on disk only is younger than what memory held.
		s.headArrived = e.Message.Arrived
	}
	s.release(len(e.Message.Payload))
	if !s.Persistent {
		return Write{}
	}
	if e.State == message.Queued {
		return Write{Kind: WriteDoneQueued, Seq: e.Seq}
	}
	return Write{Kind: WriteDone, Seq: e.Seq}
}

func (s *Session) send(o *Outgoing, e *message.Entry) {
	if e.QoS > 0 {
		e.PacketID = s.allocPID()
	}
	dst := &o.Now
	if e.QoS == 2 && (s.Persistent || e.Group != "") {
		// Sent once its packet identifier is durable (a group's, with its holder), so that a
		// crash can never make it look new to this client, or reach another member as new.
		dst = &o.After
	}
	var fits bool
	// A packet held back in After reaches the wire after those in Now: it may not be the one that
	// defines a topic alias the others use.
	if *dst, fits = s.appendPublish(*dst, e, false, o, dst == &o.Now); !fits {
		// Dropped for this client as if it had been delivered [MQTT-3.1.2-25].
		e.PacketID = 0
		s.refuse(o, e)
		o.TooLarge++
		return
	}
	o.count(e)
	if e.QoS == 0 {
		// Queued for an offline client at QoS 0 (or a group's message for a member that asked for
		// QoS 0): no acknowledgement will come, so it is done now.
		s.refuse(o, e)
		return
	}
	if e.QoS == 2 || !s.Persistent || e.Group != "" {
		// A persistent session's QoS 1 entry keeps State Queued while in flight: its state is not
		// on disk (it is written at Detach), and Ack tells the store so.
		e.State = message.Sent
	}
	s.inflight = append(s.inflight, e)
	s.byPID[e.PacketID] = e
	switch {
	case e.QoS == 2 && e.Group != "":
		o.Writes = append(o.Writes, Write{Kind: WriteSent, Seq: e.Seq, PacketID: e.PacketID, Group: e.Group, Holder: s.ID})
	case e.QoS == 2 && s.Persistent:
		o.Writes = append(o.Writes, Write{Kind: WriteSent, Seq: e.Seq, PacketID: e.PacketID})
	}
}

// appendPublish encodes e's PUBLISH for the attached connection at o.At. At level 5 it carries
// the publisher's properties, what remains of the message's expiry interval [MQTT-3.3.2-6] and a
// topic alias from o.Aliases when the client allows them; defines says whether the packet may
// define one for the packets after it. It reports false, having appended nothing, when the
// packet exceeds the client's Maximum Packet Size.
func (s *Session) appendPublish(dst []byte, e *message.Entry, dup bool, o *Outgoing, defines bool) ([]byte, bool) {
	m := e.Message
	p := codec.Publish{Dup: dup, QoS: e.QoS, Retain: m.Retain, Topic: m.Topic, PacketID: e.PacketID, Payload: m.Payload}
	if o.Rename != nil {
		p.Topic = o.Rename(m.Topic)
	}
	if s.level != codec.Level5 {
		p.Retain = p.Retain || s.link.Bridge && m.RetainPublished
		return p.Append(dst), true
	}
	props := m.PropsAt(o.At)
	ids, rap := s.Via(m.Topic, e.Group)
	props.SubscriptionIDs = ids
	p.Retain = p.Retain || rap && m.RetainPublished // [MQTT-3.3.1-12]
	var alias uint16
	var known bool
	if o.Aliases != nil {
		alias, known = o.Aliases.Lookup(p.Topic)
	}
	if alias != 0 {
		props.TopicAlias = alias
		if known {
			p.Topic = "" // the client maps the alias [MQTT-3.3.2-12]
		}
	}
	p.Props = &props
	before := len(dst)
	dst = p.AppendLevel(dst, codec.Level5)
	if s.link.MaxPacketSize > 0 && len(dst)-before > int(s.link.MaxPacketSize) {
		return dst[:before], false
	}
	if alias != 0 && !known && defines {
		o.Aliases.Defined(p.Topic)
	}
	return dst, true
}

// allocPID returns the next packet identifier not in flight. The window is far smaller than
// 65,535, so this terminates quickly.
func (s *Session) allocPID() uint16 {
	for {
		s.nextPID++
		if s.nextPID == 0 {
			s.nextPID = 1
		}
		_, used := s.byPID[s.nextPID]
		_, burnt := s.burnt[s.nextPID]
		if !used && !burnt {
			return s.nextPID
		}
	}
}

// removeInflight takes e out of the window.
func (s *Session) removeInflight(e *message.Entry) {
	delete(s.byPID, e.PacketID)
	for i, x := range s.inflight {
		if x == e {
			s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
			break
		}
	}
}

// Ack handles PUBACK (QoS 1) or PUBCOMP (QoS 2 after PUBREC). It reports whether the packet
// identifier matched an entry in the right state, and then the window has room again for the
// caller's writer. A persistent session returns the Write that removes the entry (the kind Kind
// zero for a clean session): WriteDoneQueued when no in-flight state was ever written for it (a
// QoS 1 entry of a connected client keeps its state in memory).
func (s *Session) Ack(pid uint16, kind codec.Type) (Write, bool) {
	e, ok := s.byPID[pid]
	if !ok {
		delete(s.burnt, pid)
		return Write{}, false
	}
	switch {
	case kind == codec.TypePuback && e.QoS == 1:
	case kind == codec.TypePubcomp && e.QoS == 2 && e.State == message.Released:
	default:
		return Write{}, false
	}
	s.removeInflight(e)
	return s.done(e), true
}

// Pubrec moves a QoS 2 entry to "PUBREC received, PUBREL sent". A persistent session returns the
// Write that PUBREL must wait for (so that a crash cannot make the broker send the PUBLISH again
// as new); ok is false if the identifier is unknown or not a QoS 2 entry (the PUBREC is answered
// anyway).
func (s *Session) Pubrec(pid uint16) (w Write, ok bool) {
	e, ok := s.byPID[pid]
	if !ok || e.QoS != 2 {
		delete(s.burnt, pid)
		return Write{}, false
	}
	e.State = message.Released
	switch {
	case e.Group != "":
		w = Write{Kind: WriteReleased, Seq: e.Seq, PacketID: pid, Group: e.Group, Holder: s.ID}
	case s.Persistent:
		w = Write{Kind: WriteReleased, Seq: e.Seq, PacketID: pid}
	}
	return w, true
}

// AddInbound records an inbound QoS 2 packet identifier awaiting PUBREL. It returns false if the
// identifier is already recorded: the PUBLISH is a retransmission and must not be routed again.
func (s *Session) AddInbound(pid uint16) bool {
	if _, dup := s.inbound[pid]; dup {
		return false
	}
	s.inbound[pid] = struct{}{}
	return true
}

// HasInbound reports whether an inbound QoS 2 identifier awaits its PUBREL.
func (s *Session) HasInbound(pid uint16) bool {
	_, ok := s.inbound[pid]
	return ok
}

// RemoveInbound forgets an inbound QoS 2 identifier on PUBREL and reports whether it was known.
func (s *Session) RemoveInbound(pid uint16) bool {
	_, ok := s.inbound[pid]
	delete(s.inbound, pid)
	return ok
}

// Inflight returns the number of messages sent and not yet acknowledged.
func (s *Session) Inflight() int {
	return len(s.inflight) + s.sentOffline
}

// Has reports whether filter is subscribed.
func (s *Session) Has(filter string) bool {
	_, ok := s.subs[filter]
	return ok
}

// NumSubscriptions returns the number of filters subscribed.
func (s *Session) NumSubscriptions() int {
	return len(s.subs)
}

// Identity is who owns a session: the username its client authenticated with.
type Identity struct {
	Username  string
	Anonymous bool
	Known     bool // false for a session recovered from a store that did not record it
}

// SetIdentity records the owner of the session.
func (s *Session) SetIdentity(id Identity) {
	id.Known = true
	s.identity = id
}

// Identity returns the owner of the session.
func (s *Session) Identity() Identity {
	return s.identity
}
