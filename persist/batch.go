package persist

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/holdfast/holdfast/codec"
)

type opKind uint8

const (
	opSet           opKind = iota // blind set of key/val
	opDelete                      // blind delete of key
	opDeleteSession               // cid: everything of the session
	opEnqueue                     // Batch.enq
	opAck                         // cid, seq
	opAckQueued                   // cid, seq: no in-flight state was written
)

// op is one operation of a Batch. Keys and values are encoded by the
// submitting goroutine, so the writer only hands them to Badger.
type op struct {
	kind opKind
	key  []byte
	val  []byte
	cid  string
	seq  uint64
}

// enqueueOp is the pre-encoded form of an Enqueue. Keys carry a zero
// sequence number in their last 8 bytes; the writer fills it in.
type enqueueOp struct {
	bodyKey []byte // shared only
	bodyVal []byte // shared only
	targets []enqueueTarget
}

// enqueueTarget is one target's queue entry.
type enqueueTarget struct {
	cid      string
	key, val []byte
}

// enqueueOne is an Enqueue to one target, the broker's usual, in one allocation with the Batch's
// first op.
type enqueueOne struct {
	e  enqueueOp
	t  [1]enqueueTarget
	op [1]op
}

// rec is a Badger entry written into the current transaction, kept so the
// writer can replay a request into a fresh transaction.
type rec struct {
	key, val []byte
	del      bool
}

// Batch collects operations that commit together, atomically whatever their
// number (see Submit). Build it on any
// goroutine; it is not safe for concurrent use, and it may be submitted once.
// Methods copy what they keep, so the caller may reuse its buffers (topics,
// payloads) once a method returns. Operations apply in the order they were
// added.
//
// Invalid input (a key longer than MaxKeySize, a QoS above 2) does not panic:
// the first such error is kept and the whole Batch fails with it, in order,
// when submitted.
type Batch struct {
	ops       []op
	enq       *enqueueOp
	enqCalled bool
	entries   int   // estimated Badger entries
	bytes     int64 // key+value bytes
	maxVal    int   // largest value, checked against the store's limit
	err       error // first validation error

	// Owned by Submit and the writer.
	submitted bool
	done      func(uint64, error)
	onApplied func(seq uint64)
	ctl       func(w *writer) error // internal control request
	seq       uint64
	hasSeq    bool
	result    error
	applied   []rec
	// payload (cluster mode): the entries of the group commit that this request opens, encoded
	// for Replicate; the syncer replicates it before calling back (landAfterSync).
	payload []byte
}

// OnApplied asks the writer to call fn once b has its place in the commit order: its Enqueue's
// sequence number assigned (seq, 0 without one) and its entries in a group commit, which may
// still fail and is not durable yet; done follows as usual. fn runs on the writer goroutine, in
// submission order, and only for a Batch that does not fail on its own (done then reports why).
// It must not block, submit, or take a lock that a goroutine may hold while it calls Submit (the
// writer would wait for itself). Call before Submit.
func (b *Batch) OnApplied(fn func(seq uint64)) { b.onApplied = fn }

// Len reports the number of operations added (an Enqueue counts once).
func (b *Batch) Len() int { return len(b.ops) }

func (b *Batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *Batch) checkKey(k []byte) bool {
	if len(k) > MaxKeySize {
		b.fail(newError(ErrTooLarge, nil, "%s: key of %d bytes exceeds %d", describeKey(k), len(k), MaxKeySize))
		return false
	}
	return true
}

// checkQueueKey is checkKey of queue key (cid, seq), built only to name it in the error.
func (b *Batch) checkQueueKey(cid string, seq uint64) bool {
	return seqKeyLen(cid) <= MaxKeySize || b.checkKey(queueKey(cid, seq))
}

func (b *Batch) checkCID(cid string) bool {
	if len(cid) > 0xFFFF {
		b.fail(newError(ErrTooLarge, nil, "client id of %d bytes exceeds 65535", len(cid)))
		return false
	}
	return true
}

// checkQoS takes what the QoS belongs to in two parts, joined only for the error: the message
// path calls it for every message and target.
func (b *Batch) checkQoS(kind, name string, qos byte) bool {
	if qos > 2 {
		b.fail(fmt.Errorf("persist: %s %s: QoS %d out of range", kind, name, qos))
		return false
	}
	return true
}

func (b *Batch) add(o op, entries int) {
	b.ops = append(b.ops, o)
	b.entries += entries
	b.bytes += int64(len(o.key) + len(o.val))
	b.maxVal = max(b.maxVal, len(o.val))
}

func (b *Batch) set(k, v []byte) {
	if b.checkKey(k) {
		b.add(op{kind: opSet, key: k, val: v}, 1)
	}
}

func (b *Batch) del(k []byte) {
	if b.checkKey(k) {
		b.add(op{kind: opDelete, key: k}, 1)
	}
}

// PutSession writes the session record of cid.
func (b *Batch) PutSession(cid string, r SessionRecord) {
	if b.checkCID(cid) {
		if k := sessionKey(cid); b.checkKey(k) {
			// The writer tracks which sessions have records, hence the cid.
			b.add(op{kind: opSet, key: k, val: encodeSession(r), cid: cid}, 1)
		}
	}
}

// DeleteSession removes everything of cid: record, subscriptions, queue
// entries (dropping their references to shared bodies), in-flight states,
// inbound packet ids and will. The writer finds the keys by key-only iteration; a
// session with a very long queue makes this one slow operation.
func (b *Batch) DeleteSession(cid string) {
	if b.checkCID(cid) && b.checkQueueKey(cid, 0) {
		b.add(op{kind: opDeleteSession, cid: cid}, 9)
	}
}

// PutSubscription writes (or overwrites) a subscription of cid.
func (b *Batch) PutSubscription(cid string, s Subscription) {
	if !b.checkCID(cid) || !b.checkQoS("subscription", s.Filter, s.QoS) {
		return
	}
	if s.ID > maxSubID {
		b.fail(fmt.Errorf("persist: subscription %s: identifier %d out of range", s.Filter, s.ID))
		return
	}
	b.set(subKey(cid, s.Filter), encodeSub(s.SubOptions))
}

// DeleteSubscription removes the subscription of cid to filter.
func (b *Batch) DeleteSubscription(cid, filter string) {
	if b.checkCID(cid) {
		b.del(subKey(cid, filter))
	}
}

// PutWill stores the will of cid (MQTT 5: with its properties, Will Delay Interval included), so
// that a restart neither loses nor repeats it; DeleteWill or DeleteSession removes it.
func (b *Batch) PutWill(cid string, w *codec.Will) {
	if !b.checkCID(cid) || !b.checkQoS("will", w.Topic, w.QoS) {
		return
	}
	if len(w.Topic) > 0xFFFF {
		b.fail(newError(ErrTooLarge, nil, "will topic of %d bytes exceeds 65535", len(w.Topic)))
		return
	}
	b.set(willKey(cid), encodeWill(w))
}

// DeleteWill removes the will of cid (sent, or the session ended without it).
func (b *Batch) DeleteWill(cid string) {
	if b.checkCID(cid) {
		b.del(willKey(cid))
	}
}

// PutRetained stores m as the retained message of m.Topic. (An empty retained
// PUBLISH clears: call DeleteRetained for that.)
func (b *Batch) PutRetained(m *Message) {
	if b.checkQoS("retained", m.Topic, m.QoS) {
		b.set(retainedKey(m.Topic), encodeRetained(m))
	}
}

// DeleteRetained removes the retained message of topic.
func (b *Batch) DeleteRetained(topic string) {
	b.del(retainedKey(topic))
}

// Enqueue queues m for every target; the writer assigns the sequence number
// (reported to the completion callback). Targets naming the same client twice
// are merged, keeping the highest QoS. With exactly one target the message is
// stored inline in the queue entry; with more, its body is stored once under
// 0x06 seq and every entry refers to it. An Enqueue with no targets is ignored.
// At most one Enqueue per Batch: a second one panics. A target whose session record does not
// exist when the writer applies the batch (deleted by an earlier batch) is skipped, so a publish
// racing a session's deletion never leaves queue entries without a session.
func (b *Batch) Enqueue(m *Message, targets []Target) {
	if b.enqCalled {
		panic("persist: more than one Enqueue in a Batch")
	}
	b.enqCalled = true
	if !b.checkQoS("message", m.Topic, m.QoS) {
		return
	}
	if len(m.Topic) > 0xFFFF {
		b.fail(newError(ErrTooLarge, nil, "topic of %d bytes exceeds 65535", len(m.Topic)))
		return
	}
	if uint64(len(m.Payload)) > math.MaxUint32 {
		b.fail(newError(ErrTooLarge, nil, "payload of %d bytes", len(m.Payload)))
		return
	}
	targets = dedupTargets(targets)
	if len(targets) == 0 {
		return
	}
	var e *enqueueOp
	if len(targets) == 1 {
		t := targets[0]
		if !b.checkCID(t.ClientID) || !b.checkQoS("target", t.ClientID, t.QoS) {
			return
		}
		one := &enqueueOne{}
		e = &one.e
		e.targets = one.t[:]
		if b.ops == nil {
			b.ops = one.op[:0]
		}
		// Key and value share one buffer: they live and die together.
		kl := seqKeyLen(t.ClientID)
		buf := binary.BigEndian.AppendUint64(appendCIDPrefix(make([]byte, 0, kl+queueInlineLen(m)), famQueue, t.ClientID), 0)
		e.targets[0] = enqueueTarget{cid: t.ClientID, key: buf[:kl:kl], val: appendQueueInline(buf[kl:], t.QoS, m)}
		b.maxVal = max(b.maxVal, len(e.targets[0].val))
	} else {
		e = &enqueueOp{targets: make([]enqueueTarget, len(targets))}
		e.bodyKey = bodyKey(0)
		e.bodyVal = encodeBody(m)
		b.bytes += int64(len(e.bodyKey) + len(e.bodyVal))
		b.maxVal = max(b.maxVal, len(e.bodyVal))
		size := 0
		for _, t := range targets {
			size += seqKeyLen(t.ClientID) + queueHeaderLen
		}
		// Every target's key and value in one buffer.
		buf := make([]byte, 0, size)
		for i, t := range targets {
			if !b.checkCID(t.ClientID) || !b.checkQoS("target", t.ClientID, t.QoS) {
				return
			}
			start := len(buf)
			buf = binary.BigEndian.AppendUint64(appendCIDPrefix(buf, famQueue, t.ClientID), 0)
			kend := len(buf)
			buf = appendQueueShared(buf, t.QoS, len(m.Payload))
			e.targets[i] = enqueueTarget{cid: t.ClientID, key: buf[start:kend:kend], val: buf[kend:len(buf):len(buf)]}
		}
	}
	for _, t := range e.targets {
		if !b.checkKey(t.key) {
			return
		}
		b.bytes += int64(len(t.key) + len(t.val))
	}
	b.enq = e
	b.add(op{kind: opEnqueue}, len(e.targets))
	if e.bodyKey != nil {
		b.entries++
	}
}

// dedupTargets merges targets naming the same client (highest QoS wins),
// keeping first-seen order. The input is not modified.
func dedupTargets(ts []Target) []Target {
	if len(ts) < 2 {
		return ts
	}
	if len(ts) <= 8 { // quadratic is cheaper than a map for the usual fan-out
		out := make([]Target, 0, len(ts))
	outer:
		for _, t := range ts {
			for i := range out {
				if out[i].ClientID == t.ClientID {
					out[i].QoS = max(out[i].QoS, t.QoS)
					continue outer
				}
			}
			out = append(out, t)
		}
		return out
	}
	idx := make(map[string]int, len(ts))
	out := make([]Target, 0, len(ts))
	for _, t := range ts {
		if i, ok := idx[t.ClientID]; ok {
			out[i].QoS = max(out[i].QoS, t.QoS)
			continue
		}
		idx[t.ClientID] = len(out)
		out = append(out, t)
	}
	return out
}

// SetQueueState records the outbound state of queue entry (cid, seq): Sent or
// Released with its packet id; Queued removes the state. A blind write: it
// does not check that the entry exists (Recover removes states left without
// their entry).
func (b *Batch) SetQueueState(cid string, seq uint64, state QueueState, pid uint16) {
	if !b.checkCID(cid) {
		return
	}
	switch state {
	case Queued:
		b.del(inflightKey(cid, seq))
	case Sent, Released:
		b.set(inflightKey(cid, seq), encodeInflight(state, pid, ""))
	default:
		b.fail(fmt.Errorf("persist: unknown queue state %d", state))
	}
}

// Hold records queue entry (cid, seq) of a shared subscription group's queue (cid is the
// group's) as in flight to the member holder with packet id pid: Sent (the PUBLISH goes out once
// this is durable, so that after a crash the same member gets it again with DUP, never another
// as new) or Released (the member answered PUBREC, so the message stays with it until it
// completes). It lasts across a restart until Ack removes it (not AckQueued, which leaves
// in-flight states behind). A blind write like SetQueueState, with the same rules: another Hold
// or SetQueueState replaces it, and Recover removes it when the entry is gone. An empty holder
// records no holder.
func (b *Batch) Hold(cid string, seq uint64, state QueueState, pid uint16, holder string) {
	if !b.checkCID(cid) {
		return
	}
	if len(holder) > 0xFFFF {
		b.fail(newError(ErrTooLarge, nil, "holder client id of %d bytes exceeds 65535", len(holder)))
		return
	}
	if state != Sent && state != Released {
		b.fail(fmt.Errorf("persist: a held entry is Sent or Released, not %d", state))
		return
	}
	b.set(inflightKey(cid, seq), encodeInflight(state, pid, holder))
}

// Ack removes queue entry (cid, seq) and its in-flight state, and the shared
// body when this was its last reference. Acking an absent entry is a no-op.
func (b *Batch) Ack(cid string, seq uint64) {
	if b.checkCID(cid) && b.checkQueueKey(cid, seq) {
		b.add(op{kind: opAck, cid: cid, seq: seq}, 3)
	}
}

// AckQueued is Ack for an entry whose in-flight state was never written (SetQueueState was not
// called for it): it spares the store a deletion of a key that does not exist.
func (b *Batch) AckQueued(cid string, seq uint64) {
	if b.checkCID(cid) && b.checkQueueKey(cid, seq) {
		b.add(op{kind: opAckQueued, cid: cid, seq: seq}, 2)
	}
}

// PutInbound records inbound QoS 2 packet id pid of cid as awaiting PUBREL.
func (b *Batch) PutInbound(cid string, pid uint16) {
	if b.checkCID(cid) {
		b.set(inboundKey(cid, pid), inboundValue)
	}
}

// DeleteInbound forgets inbound packet id pid of cid (PUBREL received).
func (b *Batch) DeleteInbound(cid string, pid uint16) {
	if b.checkCID(cid) {
		b.del(inboundKey(cid, pid))
	}
}

// String summarises the batch for logs.
func (b *Batch) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "batch(%d ops, ~%d entries, %d bytes", len(b.ops), b.entries, b.bytes)
	if b.enq != nil {
		fmt.Fprintf(&sb, ", enqueue to %d", len(b.enq.targets))
	}
	sb.WriteString(")")
	return sb.String()
}
