package persist

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

func TestParseDurability(t *testing.T) {
	for _, d := range []Durability{Sync, Async, None} {
		got, err := ParseDurability(d.String())
		if err != nil || got != d {
			t.Errorf("ParseDurability(%q) = %v, %v", d.String(), got, err)
		}
	}
	if _, err := ParseDurability("fsync"); err == nil {
		t.Error("ParseDurability(fsync): no error")
	}
}

func TestRoundTrip(t *testing.T) {
	ts := openTest(t)
	disc := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)

	b := &Batch{}
	b.PutSession("c1", SessionRecord{ProtocolLevel: 4})
	b.PutSession("c2", SessionRecord{ProtocolLevel: 3, DisconnectedAt: disc})
	b.PutSubscription("c1", Subscription{Filter: "a/+", SubOptions: SubOptions{QoS: 1}})
	b.PutSubscription("c1", Subscription{Filter: "b/#", SubOptions: SubOptions{QoS: 2}})
	b.PutSubscription("c2", Subscription{Filter: "x", SubOptions: SubOptions{QoS: 0}})
	b.PutRetained(&Message{Topic: "r/1", Payload: []byte("one"), QoS: 1, Retain: true})
	b.PutRetained(&Message{Topic: "r/2", Payload: []byte("two"), QoS: 0, Retain: true})
	b.PutInbound("c1", 7)
	b.PutInbound("c1", 3)
	if seq := ts.commit(b); seq != 0 {
		t.Fatalf("seq without Enqueue = %d", seq)
	}

	b = &Batch{}
	b.Enqueue(&Message{Topic: "a/b", Payload: []byte("hello"), QoS: 2, Retain: true}, []Target{{"c1", 1}})
	seq1 := ts.commit(b)
	b = &Batch{}
	b.Enqueue(msg("a/c", "world!", 1), []Target{{"c1", 1}})
	seq2 := ts.commit(b)
	if seq1 == 0 || seq2 <= seq1 {
		t.Fatalf("seqs %d, %d", seq1, seq2)
	}
	b = &Batch{}
	b.DeleteSubscription("c1", "b/#")
	b.DeleteRetained("r/2")
	b.DeleteInbound("c1", 3)
	ts.commit(b)

	check := func(st *State) {
		t.Helper()
		if len(st.Sessions) != 2 {
			t.Fatalf("sessions = %+v", st.Sessions)
		}
		c1, c2 := session(st, "c1"), session(st, "c2")
		if c1 == nil || c2 == nil || c1.Orphan || c2.Orphan {
			t.Fatalf("sessions = %+v", st.Sessions)
		}
		if c1.Record.ProtocolLevel != 4 || !c1.Record.DisconnectedAt.IsZero() {
			t.Errorf("c1 record = %+v", c1.Record)
		}
		if c2.Record.ProtocolLevel != 3 || !c2.Record.DisconnectedAt.Equal(disc) {
			t.Errorf("c2 record = %+v", c2.Record)
		}
		if !slices.Equal(c1.Subscriptions, []Subscription{{"a/+", SubOptions{QoS: 1}}}) {
			t.Errorf("c1 subs = %+v", c1.Subscriptions)
		}
		if !slices.Equal(c2.Subscriptions, []Subscription{{"x", SubOptions{QoS: 0}}}) {
			t.Errorf("c2 subs = %+v", c2.Subscriptions)
		}
		if c1.QueuedCount != 2 || c1.QueuedBytes != int64(len("hello")+len("world!")) || c1.LastSeq != seq2 {
			t.Errorf("c1 queue = %d entries, %d bytes, last %d", c1.QueuedCount, c1.QueuedBytes, c1.LastSeq)
		}
		if c2.QueuedCount != 0 || c2.LastSeq != 0 {
			t.Errorf("c2 queue = %+v", c2)
		}
		if !slices.Equal(c1.InboundQoS2, []uint16{7}) {
			t.Errorf("c1 inbound = %v", c1.InboundQoS2)
		}
		if len(st.Retained) != 1 || st.Retained[0].Topic != "r/1" || string(st.Retained[0].Payload) != "one" ||
			st.Retained[0].QoS != 1 || !st.Retained[0].Retain {
			t.Errorf("retained = %+v", st.Retained)
		}
		q := ts.readQueue("c1", 0, 10)
		if len(q) != 2 {
			t.Fatalf("queue = %+v", q)
		}
		want := []QueueEntry{
			{Seq: seq1, QoS: 1, Message: &Message{Topic: "a/b", Payload: []byte("hello"), QoS: 2, Retain: true}},
			{Seq: seq2, QoS: 1, Message: &Message{Topic: "a/c", Payload: []byte("world!"), QoS: 1}},
		}
		for i := range want {
			if !entryEqual(q[i], want[i]) {
				t.Errorf("queue[%d] = %s, want %s", i, fmtEntry(q[i]), fmtEntry(want[i]))
			}
		}
	}
	check(ts.recover())
	ts.reopen()
	check(ts.recover())

	// Sequence numbers continue after the highest one on disk.
	b = &Batch{}
	b.Enqueue(msg("a/d", "x", 1), []Target{{"c2", 1}})
	if seq := ts.commit(b); seq != seq2+1 {
		t.Errorf("seq after reopen = %d, want %d", seq, seq2+1)
	}
}

func entryEqual(a, b QueueEntry) bool {
	if a.Seq != b.Seq || a.QoS != b.QoS || a.State != b.State || a.PacketID != b.PacketID {
		return false
	}
	if a.Message == nil || b.Message == nil {
		return a.Message == b.Message
	}
	return a.Message.Topic == b.Message.Topic && bytes.Equal(a.Message.Payload, b.Message.Payload) &&
		a.Message.QoS == b.Message.QoS && a.Message.Retain == b.Message.Retain
}

func fmtEntry(e QueueEntry) string {
	return fmt.Sprintf("{seq %d qos %d %s pid %d msg %+v}", e.Seq, e.QoS, e.State, e.PacketID, e.Message)
}

func TestEnqueueInlineAndShared(t *testing.T) {
	ts := openTest(t)
	b := &Batch{}
	for _, c := range []string{"a", "b", "c"} {
		b.PutSession(c, SessionRecord{ProtocolLevel: 4})
	}
	ts.commit(b)

	// One target: inline, no body.
	b = &Batch{}
	b.Enqueue(msg("t/1", "solo", 1), []Target{{"a", 1}})
	solo := ts.commit(b)
	if keys := rawKeys(t, ts.db, famBody); len(keys) != 0 {
		t.Fatalf("bodies after a one-target Enqueue: %x", keys)
	}

	// Three targets (and a duplicate that must merge): one body, three entries.
	b = &Batch{}
	b.Enqueue(msg("t/3", "fan-out", 2), []Target{{"a", 1}, {"b", 2}, {"c", 0}, {"b", 1}})
	seq := ts.commit(b)
	if keys := rawKeys(t, ts.db, famBody); len(keys) != 1 || seqOfKey(keys[0]) != seq {
		t.Fatalf("bodies = %x, want one for seq %d", keys, seq)
	}
	if keys := rawKeys(t, ts.db, famQueue); len(keys) != 4 {
		t.Fatalf("queue keys = %d, want 4", len(keys))
	}
	refs := func() int32 {
		var n int32
		_ = ts.control(func(w *writer) error { n = w.refs[seq]; return nil })
		return n
	}
	if n := refs(); n != 3 {
		t.Fatalf("refcount = %d, want 3", n)
	}
	for cid, qos := range map[string]byte{"a": 1, "b": 2, "c": 0} {
		q := ts.readQueue(cid, solo, 10)
		want := QueueEntry{Seq: seq, QoS: qos, Message: msg("t/3", "fan-out", 2)}
		if len(q) != 1 || !entryEqual(q[0], want) {
			t.Errorf("queue of %s = %v, want %s", cid, q, fmtEntry(want))
		}
	}
	// The refcount is rebuilt at reopen.
	ts.reopen()
	ts.recover()
	if n := refs(); n != 3 {
		t.Fatalf("refcount after reopen = %d, want 3", n)
	}

	for i, cid := range []string{"b", "a", "c"} {
		b = &Batch{}
		b.Ack(cid, seq)
		b.Ack(cid, seq) // a duplicate ack must not drop another reference
		ts.commit(b)
		bodies := rawKeys(t, ts.db, famBody)
		if last := i == 2; last != (len(bodies) == 0) {
			t.Fatalf("after ack %d (%s): bodies = %x", i+1, cid, bodies)
		}
		if n, want := refs(), int32(2-i); n != want {
			t.Fatalf("after ack %d: refcount %d, want %d", i+1, n, want)
		}
		if q := ts.readQueue(cid, solo, 10); len(q) != 0 {
			t.Fatalf("queue of %s after ack = %v", cid, q)
		}
	}
	if q := ts.readQueue("a", 0, 10); len(q) != 1 || q[0].Seq != solo {
		t.Fatalf("inline entry = %v", q)
	}
}

// Enqueue and acks of all targets in one batch: the body is written and
// deleted in the same transaction.
func TestEnqueueAndAckInOneBatch(t *testing.T) {
	ts := openTest(t)
	ts.sessions("x", "y")
	b := &Batch{}
	b.Enqueue(msg("t", "p", 1), []Target{{"x", 1}, {"y", 1}})
	seq := ts.commit(b)
	b = &Batch{}
	b.Ack("x", seq)
	b.Ack("y", seq)
	b2 := &Batch{}
	b2.Enqueue(msg("t", "q", 1), []Target{{"x", 1}, {"y", 1}})
	// Both in the same group commit (Submit without waiting).
	done := make(chan uint64, 2)
	ts.Submit(b, func(uint64, error) { done <- 0 })
	ts.Submit(b2, func(s uint64, err error) {
		if err != nil {
			t.Error(err)
		}
		done <- s
	})
	<-done
	seq2 := <-done
	if keys := rawKeys(t, ts.db, famBody); len(keys) != 1 || seqOfKey(keys[0]) != seq2 {
		t.Fatalf("bodies = %x, want only %d", keys, seq2)
	}
}

// An Ack repeated while the first one's group commit is still with the syncer (not in Badger
// yet) drops no second reference: the writer answers whether the entry exists from what it handed
// over, not from Badger alone, and does not wait for the syncer to find out.
func TestRepeatedAckWhileGroupUnlanded(t *testing.T) {
	ts := openTest(t)
	ts.sessions("x", "y", "z")
	const n = 200
	seqs := make([]uint64, n)
	for i := range seqs {
		b := &Batch{}
		b.Enqueue(msg("t", fmt.Sprint(i), 1), []Target{{"x", 1}, {"y", 1}, {"z", 1}})
		seqs[i] = ts.commit(b)
	}
	var wg sync.WaitGroup
	submit := func(b *Batch) {
		wg.Add(1)
		ts.Submit(b, func(_ uint64, err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
	}
	// Each Ack its own request, submitted without waiting, so that the repeats fall into later
	// group commits than the first while those are synced.
	for _, seq := range seqs {
		for range 3 {
			b := &Batch{}
			b.Ack("x", seq)
			submit(b)
		}
		b := &Batch{}
		b.Ack("y", seq)
		submit(b)
	}
	wg.Wait()
	if keys := rawKeys(t, ts.db, famBody); len(keys) != n {
		t.Fatalf("%d bodies left, want all %d (z has not acknowledged them)", len(keys), n)
	}
	if err := ts.control(func(w *writer) error { return checkInvariants(w.db, w) }); err != nil {
		t.Fatal(err)
	}
	for _, seq := range seqs {
		b := &Batch{}
		b.Ack("z", seq)
		submit(b)
	}
	wg.Wait()
	if keys := rawKeys(t, ts.db, famBody); len(keys) != 0 {
		t.Fatalf("%d bodies left after every target acknowledged", len(keys))
	}
}

func TestDeleteSessionPrefixes(t *testing.T) {
	ts := openTest(t)
	cids := []string{"a", "a:b", "ab", "", "a\x00"}
	b := &Batch{}
	for i, c := range cids {
		b.PutSession(c, SessionRecord{ProtocolLevel: 4})
		b.PutSubscription(c, Subscription{Filter: "f/" + c, SubOptions: SubOptions{QoS: 1}})
		b.PutSubscription(c, Subscription{Filter: "", SubOptions: SubOptions{QoS: 0}})
		b.PutInbound(c, uint16(i+1))
	}
	ts.commit(b)
	var seqs []uint64
	for i := 0; i < 3; i++ {
		b = &Batch{}
		targets := make([]Target, len(cids))
		for j, c := range cids {
			targets[j] = Target{c, 1}
		}
		b.Enqueue(msg("t", fmt.Sprint(i), 1), targets)
		seqs = append(seqs, ts.commit(b))
	}
	b = &Batch{}
	b.Enqueue(msg("t", "inline", 1), []Target{{"a", 1}})
	ts.commit(b)
	b = &Batch{}
	b.SetQueueState("a", seqs[0], Sent, 11)
	b.SetQueueState("a:b", seqs[0], Sent, 12)
	ts.commit(b)

	b = &Batch{}
	b.DeleteSession("a")
	ts.commit(b)

	st := ts.recover()
	if session(st, "a") != nil {
		t.Fatalf("session a still there: %+v", session(st, "a"))
	}
	for i, c := range cids[1:] {
		ss := session(st, c)
		if ss == nil || ss.Orphan || len(ss.Subscriptions) != 2 || ss.QueuedCount != 3 ||
			!slices.Equal(ss.InboundQoS2, []uint16{uint16(i + 2)}) {
			t.Errorf("session %q = %+v", c, ss)
		}
	}
	if q := ts.readQueue("a", 0, 100); len(q) != 0 {
		t.Errorf("queue of a = %v", q)
	}
	if q := ts.readQueue("a:b", 0, 100); len(q) != 3 || q[0].State != Sent || q[0].PacketID != 12 {
		t.Errorf("queue of a:b = %v", q)
	}
	for _, fam := range []byte{famSession, famSub, famQueue, famInflight, famInbound} {
		for _, k := range rawKeys(t, ts.db, fam) {
			if cid, _, _ := splitCID(k); cid == "a" {
				t.Errorf("left behind: %s", describeKey(k))
			}
		}
	}
	// Shared bodies lost one reference each.
	_ = ts.control(func(w *writer) error {
		for _, seq := range seqs {
			if w.refs[seq] != int32(len(cids)-1) {
				t.Errorf("refs[%d] = %d, want %d", seq, w.refs[seq], len(cids)-1)
			}
		}
		return nil
	})
	// Deleting the rest deletes the bodies.
	b = &Batch{}
	for _, c := range cids[1:] {
		b.DeleteSession(c)
	}
	ts.commit(b)
	for _, fam := range []byte{famSession, famSub, famQueue, famInflight, famBody, famInbound} {
		if keys := rawKeys(t, ts.db, fam); len(keys) != 0 {
			t.Errorf("family %#x not empty: %d keys", fam, len(keys))
		}
	}
}

// An Enqueue and a DeleteSession of the same client in one transaction: the
// delete sees the entry written before it.
func TestDeleteSessionSeesSameTxn(t *testing.T) {
	ts := openTest(t)
	b := &Batch{}
	b.PutSession("x", SessionRecord{ProtocolLevel: 4})
	b.PutSession("y", SessionRecord{ProtocolLevel: 4})
	b.Enqueue(msg("t", "p", 1), []Target{{"x", 1}, {"y", 1}})
	b.DeleteSession("x")
	ts.commit(b)
	if q := ts.readQueue("x", 0, 10); len(q) != 0 {
		t.Fatalf("queue of x = %v", q)
	}
	if q := ts.readQueue("y", 0, 10); len(q) != 1 || string(q[0].Message.Payload) != "p" {
		t.Fatalf("queue of y = %v", q)
	}
}

func TestReadQueueAfterLimit(t *testing.T) {
	ts := openTest(t)
	ts.sessions("q", "other")
	var seqs []uint64
	for i := 0; i < 20; i++ {
		b := &Batch{}
		targets := []Target{{"q", 1}}
		if i%3 == 0 {
			targets = append(targets, Target{"other", 1})
		}
		b.Enqueue(msg("t", fmt.Sprint(i), 1), targets)
		seqs = append(seqs, ts.commit(b))
	}
	got := ts.readQueue("q", 0, 5)
	if len(got) != 5 {
		t.Fatalf("limit 5: %d entries", len(got))
	}
	for i, e := range got {
		if e.Seq != seqs[i] || string(e.Message.Payload) != fmt.Sprint(i) {
			t.Errorf("entry %d = %s", i, fmtEntry(e))
		}
	}
	got = ts.readQueue("q", seqs[4], 100)
	if len(got) != 15 || got[0].Seq != seqs[5] || got[14].Seq != seqs[19] {
		t.Fatalf("after %d: %d entries, first %v", seqs[4], len(got), got)
	}
	if got := ts.readQueue("q", seqs[19], 100); len(got) != 0 {
		t.Errorf("after last: %v", got)
	}
	if got := ts.readQueue("q", 0, 0); len(got) != 0 {
		t.Errorf("limit 0: %v", got)
	}
	if got := ts.readQueue("nobody", 0, 10); len(got) != 0 {
		t.Errorf("unknown client: %v", got)
	}
	// After acking the head, reading from 0 starts at the new head.
	b := &Batch{}
	b.Ack("q", seqs[0])
	b.Ack("q", seqs[1])
	ts.commit(b)
	if got := ts.readQueue("q", 0, 1); len(got) != 1 || got[0].Seq != seqs[2] {
		t.Errorf("head after acks = %v", got)
	}
}

func TestQueueStateJoinAndReopen(t *testing.T) {
	ts := openTest(t)
	ts.sessions("s", "u")
	var seqs []uint64
	for i := 0; i < 6; i++ {
		b := &Batch{}
		b.Enqueue(msg("t", fmt.Sprint(i), 2), []Target{{"s", 2}, {"u", 1}}[:1+i%2])
		seqs = append(seqs, ts.commit(b))
	}
	b := &Batch{}
	b.SetQueueState("s", seqs[1], Sent, 101)
	b.SetQueueState("s", seqs[2], Sent, 102)
	b.SetQueueState("s", seqs[2], Released, 102)
	b.SetQueueState("s", seqs[4], Sent, 104)
	b.SetQueueState("u", seqs[3], Sent, 7) // another client's state must not leak into s
	ts.commit(b)
	b = &Batch{}
	b.SetQueueState("s", seqs[4], Queued, 0) // back to queued: state removed
	ts.commit(b)

	want := map[uint64]QueueEntry{
		seqs[1]: {State: Sent, PacketID: 101},
		seqs[2]: {State: Released, PacketID: 102},
	}
	check := func() {
		t.Helper()
		q := ts.readQueue("s", 0, 100)
		if len(q) != 6 {
			t.Fatalf("queue = %v", q)
		}
		for _, e := range q {
			w := want[e.Seq]
			if e.State != w.State || e.PacketID != w.PacketID {
				t.Errorf("seq %d: state %s pid %d, want %s pid %d", e.Seq, e.State, e.PacketID, w.State, w.PacketID)
			}
		}
		// Reading from the middle joins correctly too.
		q = ts.readQueue("s", seqs[1], 1)
		if len(q) != 1 || q[0].State != Released || q[0].PacketID != 102 {
			t.Errorf("from %d: %v", seqs[1], q)
		}
	}
	check()
	ts.reopen()
	ts.recover()
	check()
	// Ack removes the state with the entry.
	b = &Batch{}
	b.Ack("s", seqs[2])
	ts.commit(b)
	for _, k := range rawKeys(t, ts.db, famInflight) {
		if cid, seq, _ := parseSeqKey(k); cid == "s" && seq == seqs[2] {
			t.Errorf("in-flight state left after ack")
		}
	}
}

// A state written for an entry that is gone is removed by Recover.
func TestStrayInflightRemoved(t *testing.T) {
	ts := openTest(t, skipLiveCheck())
	ts.sessions("s")
	b := &Batch{}
	b.Enqueue(msg("t", "p", 1), []Target{{"s", 1}})
	seq := ts.commit(b)
	if n := len(rawKeys(t, ts.db, famQueue)); n != 1 {
		t.Fatalf("queue keys = %d", n)
	}
	b = &Batch{}
	b.Ack("s", seq)
	ts.commit(b)
	b = &Batch{}
	b.SetQueueState("s", seq, Sent, 1) // too late: the session layer raced
	ts.commit(b)
	if n := len(rawKeys(t, ts.db, famInflight)); n != 1 {
		t.Fatalf("in-flight keys = %d", n)
	}
	st := ts.recover()
	if n := len(rawKeys(t, ts.db, famInflight)); n != 0 {
		t.Fatalf("in-flight keys after Recover = %d", n)
	}
	if len(st.Sessions) != 1 || st.Sessions[0].ClientID != "s" || st.Sessions[0].Orphan || st.Sessions[0].QueuedCount != 0 {
		t.Errorf("sessions = %+v", st.Sessions)
	}
	if !strings.Contains(ts.logs.String(), "removing leftovers") {
		t.Errorf("no warning logged: %s", ts.logs)
	}
}

// Session data without a record: persist no longer creates queue entries for
// such a client (Enqueue skips it), but a store written before that rule, a
// blind PutSubscription/PutInbound, or a record lost some other way leaves
// orphans. Here "ghost" loses its record by a raw Badger delete while it has a
// shared queue entry, an inline one and an in-flight state.
func TestOrphanSessionData(t *testing.T) {
	ts := openTest(t)
	ts.sessions("known", "ghost")
	b := &Batch{}
	b.Enqueue(msg("t", "p", 1), []Target{{"known", 1}, {"ghost", 1}})
	shared := ts.commit(b)
	b = &Batch{}
	b.Enqueue(msg("t", "solo", 1), []Target{{"ghost", 1}})
	solo := ts.commit(b)
	b = &Batch{}
	b.SetQueueState("ghost", solo, Sent, 9)
	b.PutSubscription("ghost2", Subscription{Filter: "f", SubOptions: SubOptions{QoS: 1}}) // blind write, no record needed
	b.PutInbound("ghost2", 5)
	ts.commit(b)
	ts.rawUpdate(func(txn *badger.Txn) error { return txn.Delete(sessionKey("ghost")) })

	st := ts.recover()
	if ss := session(st, "known"); ss == nil || ss.Orphan {
		t.Errorf("known = %+v", ss)
	}
	g := session(st, "ghost")
	if g == nil || !g.Orphan || g.QueuedCount != 2 || g.LastSeq != solo || g.Record != (SessionRecord{}) {
		t.Errorf("ghost = %+v", g)
	}
	if g2 := session(st, "ghost2"); g2 == nil || !g2.Orphan || len(g2.Subscriptions) != 1 || !slices.Equal(g2.InboundQoS2, []uint16{5}) {
		t.Errorf("ghost2 = %+v", g2)
	}
	if !strings.Contains(ts.logs.String(), "session data without a session record") {
		t.Errorf("no warning: %s", ts.logs)
	}
	// The writer learnt at Open that ghost has no record: a new Enqueue skips it.
	b = &Batch{}
	b.Enqueue(msg("t", "late", 1), []Target{{"ghost", 1}, {"known", 1}})
	late := ts.commit(b)
	if q := ts.readQueue("ghost", solo, 10); len(q) != 0 {
		t.Errorf("Enqueue wrote to an orphan: %v", q)
	}
	// The session layer's cleanup works on orphans, dropping ghost's reference
	// to the shared body and keeping known's.
	b = &Batch{}
	b.DeleteSession("ghost")
	b.DeleteSession("ghost2")
	ts.commit(b)
	st = ts.recover()
	if len(st.Sessions) != 1 || st.Sessions[0].ClientID != "known" || st.Sessions[0].QueuedCount != 2 {
		t.Errorf("sessions after cleanup = %+v", st.Sessions)
	}
	q := ts.readQueue("known", 0, 10)
	if len(q) != 2 || q[0].Seq != shared || string(q[0].Message.Payload) != "p" || q[1].Seq != late {
		t.Errorf("queue of known = %v", q)
	}
	if keys := rawKeys(t, ts.db, famBody); len(keys) != 2 {
		t.Errorf("bodies = %d, want 2 (seq %d and %d)", len(keys), shared, late)
	}
}

func TestSubmitOrderAndBarrier(t *testing.T) {
	ts := openTest(t)
	ts.sessions("o", "p")
	const n = 500
	var order []int
	var seqs []uint64
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		b := &Batch{}
		switch i % 4 {
		case 0:
			b.Enqueue(msg("t", fmt.Sprint(i), 1), []Target{{"o", 1}})
		case 1:
			// empty: a barrier
		case 2:
			b.Enqueue(msg("t", fmt.Sprint(i), 1), []Target{{"o", 1}, {"p", 1}})
			b.PutInbound("pub", uint16(i))
		case 3:
			b.PutSubscription("o", Subscription{Filter: fmt.Sprint(i), SubOptions: SubOptions{QoS: 1}})
		}
		i := i
		ts.Submit(b, func(seq uint64, err error) {
			if err != nil {
				t.Errorf("batch %d: %v", i, err)
			}
			order = append(order, i) // callbacks run on the one writer goroutine
			if seq != 0 {
				seqs = append(seqs, seq)
			}
			if i == n-1 {
				close(done)
			}
		})
	}
	<-done
	_ = ts.control(func(*writer) error { return nil }) // happens-after all callbacks
	for i, v := range order {
		if v != i {
			t.Fatalf("callback %d was batch %d", i, v)
		}
	}
	if len(seqs) != n/2 {
		t.Fatalf("%d seqs", len(seqs))
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("seqs not increasing: %v", seqs[i-1:i+1])
		}
	}
	if st := ts.Stats(); st.Commits >= st.Requests {
		t.Errorf("no batching: %d commits for %d requests", st.Commits, st.Requests)
	}
}

func TestCloseAndSubmitAfterClose(t *testing.T) {
	ts := openTest(t)
	ts.sessions("c")
	// Submitted before Close: completed by Close.
	got := make(chan error, 100)
	for i := 0; i < 100; i++ {
		b := &Batch{}
		b.Enqueue(msg("t", "p", 1), []Target{{"c", 1}})
		ts.Submit(b, func(_ uint64, err error) { got <- err })
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 {
		t.Fatalf("%d callbacks before Close returned", len(got))
	}
	for i := 0; i < 100; i++ {
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	b := &Batch{}
	b.PutSession("c", SessionRecord{})
	if _, err := ts.Commit(b); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close: %v", err)
	}
	if _, err := ts.ReadQueue("c", 0, 10); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadQueue after Close: %v", err)
	}
	_ = ts.Stats()
	ts.reopen()
	if q := ts.readQueue("c", 0, 1000); len(q) != 100 {
		t.Errorf("%d entries after reopen", len(q))
	}
}

func TestDurabilityModes(t *testing.T) {
	t.Run("async", func(t *testing.T) {
		ts := openTest(t, withOptions(func(o *Options) { o.Durability = Async; o.AsyncInterval = time.Millisecond }))
		ts.sessions("c")
		b := &Batch{}
		b.Enqueue(msg("t", "p", 1), []Target{{"c", 1}})
		ts.commit(b)
		if !mqtttest.Within(5*time.Second, func() bool { return ts.Stats().Syncs > 0 }) {
			t.Error("no background sync")
		}
		ts.reopen()
		if q := ts.readQueue("c", 0, 10); len(q) != 1 {
			t.Errorf("queue after reopen = %v", q)
		}
	})
	t.Run("none", func(t *testing.T) {
		ts := openTest(t, withOptions(func(o *Options) { o.Durability = None; o.Dir = "" }))
		ts.sessions("c", "d")
		b := &Batch{}
		b.Enqueue(msg("t", "p", 1), []Target{{"c", 1}, {"d", 1}})
		seq := ts.commit(b)
		if q := ts.readQueue("d", 0, 10); len(q) != 1 || q[0].Seq != seq {
			t.Errorf("queue = %v", q)
		}
		// Values above 1 MB cannot be stored in memory mode.
		b = &Batch{}
		b.Enqueue(&Message{Topic: "big", Payload: make([]byte, 2<<20), QoS: 1}, []Target{{"c", 1}})
		if _, err := ts.Commit(b); !errors.Is(err, ErrTooLarge) {
			t.Errorf("2 MB in memory mode: %v", err)
		}
	})
}

func TestLargeValue(t *testing.T) {
	ts := openTest(t)
	ts.sessions("a", "b")
	payload := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MB: into the value log
	b := &Batch{}
	b.Enqueue(&Message{Topic: "big", Payload: payload, QoS: 1}, []Target{{"a", 1}, {"b", 1}})
	seq := ts.commit(b)
	b = &Batch{}
	b.PutRetained(&Message{Topic: "big", Payload: payload, QoS: 1})
	ts.commit(b)
	ts.reopen()
	st := ts.recover()
	if len(st.Retained) != 1 || !bytes.Equal(st.Retained[0].Payload, payload) {
		t.Error("retained payload differs")
	}
	q := ts.readQueue("b", 0, 1)
	if len(q) != 1 || q[0].Seq != seq || !bytes.Equal(q[0].Message.Payload, payload) {
		t.Error("queued payload differs")
	}
	if ss := session(st, "a"); ss == nil || ss.QueuedBytes != int64(len(payload)) {
		t.Errorf("a = %+v", ss)
	}
	// Larger than the value-log file: refused, not split.
	b = &Batch{}
	b.Enqueue(&Message{Topic: "huge", Payload: make([]byte, ts.opt.ValueLogFileSize+1), QoS: 1}, []Target{{"a", 1}})
	if _, err := ts.Commit(b); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge value: %v", err)
	}
}

func TestInvalidBatches(t *testing.T) {
	ts := openTest(t)
	long := strings.Repeat("x", MaxKeySize)
	cases := map[string]func(b *Batch){
		"long filter":      func(b *Batch) { b.PutSubscription("c", Subscription{Filter: long, SubOptions: SubOptions{QoS: 1}}) },
		"long topic":       func(b *Batch) { b.PutRetained(&Message{Topic: long + long, QoS: 0}) },
		"long client id":   func(b *Batch) { b.PutSession(long+long, SessionRecord{}) },
		"long target":      func(b *Batch) { b.Enqueue(msg("t", "p", 1), []Target{{long, 1}}) },
		"qos 3":            func(b *Batch) { b.PutSubscription("c", Subscription{Filter: "f", SubOptions: SubOptions{QoS: 3}}) },
		"target qos 3":     func(b *Batch) { b.Enqueue(msg("t", "p", 1), []Target{{"a", 1}, {"b", 3}}) },
		"bad queue state":  func(b *Batch) { b.SetQueueState("c", 1, QueueState(9), 1) },
		"published qos 3":  func(b *Batch) { b.Enqueue(msg("t", "p", 3), []Target{{"a", 1}}) },
		"long delete sess": func(b *Batch) { b.DeleteSession(long) },
	}
	for name, f := range cases {
		b := &Batch{}
		b.PutSession("valid-but-in-a-bad-batch", SessionRecord{})
		f(b)
		if _, err := ts.Commit(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if st := ts.recover(); len(st.Sessions) != 0 {
		t.Errorf("a failed batch left data: %+v", st.Sessions)
	}
	// A failed batch between good ones keeps the order.
	var order []int
	done := make(chan struct{})
	for i := 0; i < 3; i++ {
		b := &Batch{}
		if i == 1 {
			b.PutSubscription("c", Subscription{Filter: long, SubOptions: SubOptions{QoS: 1}})
		} else {
			b.PutSession(fmt.Sprint(i), SessionRecord{})
		}
		ts.Submit(b, func(_ uint64, err error) {
			order = append(order, i)
			if (err != nil) != (i == 1) {
				t.Errorf("batch %d: %v", i, err)
			}
			if i == 2 {
				close(done)
			}
		})
	}
	<-done
	_ = ts.control(func(*writer) error { return nil })
	if !slices.Equal(order, []int{0, 1, 2}) {
		t.Errorf("order = %v", order)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("second Enqueue did not panic")
			}
		}()
		b := &Batch{}
		b.Enqueue(msg("t", "p", 1), []Target{{"a", 1}})
		b.Enqueue(msg("t", "p", 1), []Target{{"a", 1}})
	}()
}

// With a tiny memtable a transaction holds ~1600 entries: exercise the split
// of one big batch and the commit-then-rerun path for batches that do not fit
// next to others.
func TestTxnTooBig(t *testing.T) {
	ts := openTest(t, withOptions(func(o *Options) {
		o.MemTableSize = 1 << 20
		o.MaxBatchOps = 1 << 20
		o.MaxBatchBytes = 1 << 30
	}))
	var maxCount int64
	_ = ts.control(func(w *writer) error { maxCount = w.db.MaxBatchCount(); return nil })
	t.Logf("Badger MaxBatchCount = %d", maxCount)

	// One Enqueue to more targets than fit into one transaction.
	n := int(maxCount) * 2
	targets := make([]Target, n)
	for i := range targets {
		targets[i] = Target{fmt.Sprintf("c%05d", i), 1}
	}
	cids := make([]string, n)
	for i, tg := range targets {
		cids[i] = tg.ClientID
	}
	ts.sessions(cids...)
	if n := ts.Stats().Splits; n != 0 {
		t.Fatalf("%d splits before the big Enqueue", n)
	}
	b := &Batch{}
	b.Enqueue(msg("fan", "out", 1), targets)
	seq := ts.commit(b)
	if ts.Stats().Splits == 0 {
		t.Fatal("no split")
	}
	if !strings.Contains(ts.logs.String(), "batch larger than one transaction") {
		t.Error("split not logged")
	}
	if keys := rawKeys(t, ts.db, famQueue); len(keys) != n {
		t.Fatalf("queue keys = %d, want %d", len(keys), n)
	}
	_ = ts.control(func(w *writer) error {
		if w.refs[seq] != int32(n) {
			t.Errorf("refs = %d, want %d", w.refs[seq], n)
		}
		return nil
	})

	// Many batches of a few hundred entries each, submitted together: they
	// cannot all share one transaction.
	const batches = 40
	per := int(maxCount) / 5
	errs := make(chan error, batches)
	var order []int
	for i := 0; i < batches; i++ {
		b := &Batch{}
		for j := 0; j < per; j++ {
			b.PutSubscription(fmt.Sprintf("c%05d", j), Subscription{Filter: fmt.Sprintf("f/%d", i), SubOptions: SubOptions{QoS: 1}})
		}
		b.Ack(targets[i].ClientID, seq)
		ts.Submit(b, func(_ uint64, err error) { order = append(order, i); errs <- err })
	}
	for i := 0; i < batches; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	_ = ts.control(func(*writer) error { return nil })
	for i, v := range order {
		if v != i {
			t.Fatalf("order = %v", order)
		}
	}
	if keys := rawKeys(t, ts.db, famSub); len(keys) != batches*per {
		t.Fatalf("subscriptions = %d, want %d", len(keys), batches*per)
	}
	st := ts.Stats()
	var replays int
	_ = ts.control(func(w *writer) error { replays = w.replays; return nil })
	t.Logf("stats: %d requests, %d commits, %d splits, %d reruns", st.Requests, st.Commits, st.Splits, replays)
	if replays == 0 {
		t.Error("no batch was rerun in a fresh transaction")
	}

	// DeleteSession of a client whose keys span several iterator chunks and
	// transactions.
	big := &Batch{}
	for i := 0; i < deleteChunk+100; i++ {
		big.PutSubscription("big", Subscription{Filter: fmt.Sprint(i), SubOptions: SubOptions{QoS: 1}})
	}
	big.PutSession("big", SessionRecord{})
	ts.commit(big)
	for i := 0; i < 3; i++ {
		b := &Batch{}
		b.Enqueue(msg("t", "p", 1), []Target{{"big", 1}, {"c00000", 1}})
		ts.commit(b)
	}
	b = &Batch{}
	b.DeleteSession("big")
	ts.commit(b)
	for _, k := range rawKeys(t, ts.db, famSub) {
		if cid, _, _ := splitCID(k); cid == "big" {
			t.Fatal("subscriptions of big left")
		}
	}
	if q := ts.readQueue("big", 0, 10); len(q) != 0 {
		t.Fatalf("queue of big = %v", q)
	}
}

func TestVersionRefused(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(dir, nil)
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	rawUpdate(t, dir, func(txn *badger.Txn) error {
		return txn.Set(schemaKey, encodeSchema(FormatVersion+1, "holdfast-future"))
	})
	_, err = Open(o)
	if !errors.Is(err, ErrVersion) || !containsAll(err.Error(), fmt.Sprint("format version ", FormatVersion+1), fmt.Sprint("reads version ", FormatVersion), "holdfast-future") {
		t.Fatalf("newer version: %v", err)
	}

	// Data but no version key: not ours, refused.
	dir2 := t.TempDir()
	rawUpdate(t, dir2, func(txn *badger.Txn) error { return txn.Set([]byte("someone else's"), []byte("data")) })
	_, err = Open(testOptions(dir2, nil))
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "no format version") {
		t.Fatalf("no version: %v", err)
	}

	// A fresh store gets the current version.
	dir3 := t.TempDir()
	s, err = Open(testOptions(dir3, nil))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	var v []byte
	rawUpdate(t, dir3, func(txn *badger.Txn) error {
		item, err := txn.Get(schemaKey)
		if err == nil {
			v, err = item.ValueCopy(nil)
		}
		return err
	})
	if f, w, err := decodeSchema(v); err != nil || f != FormatVersion || w != "holdfast" {
		t.Errorf("schema = %d %q %v", f, w, err)
	}
}

func rawUpdate(t *testing.T, dir string, fn func(*badger.Txn) error) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(8 << 20).WithValueLogFileSize(16 << 20))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestLocked(t *testing.T) {
	ts := openTest(t)
	_, err := Open(ts.opt)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v", err)
	}
	if !strings.Contains(err.Error(), ts.dir) || !strings.Contains(err.Error(), "in use by another holdfast process") {
		t.Errorf("message: %v", err)
	}
}

func TestCorruptValue(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(dir, nil)
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	b := &Batch{}
	b.PutSession("victim-client", SessionRecord{ProtocolLevel: 4})
	b.PutSession("other", SessionRecord{ProtocolLevel: 4})
	b.Enqueue(msg("t", "p", 1), []Target{{"victim-client", 1}, {"other", 1}})
	seq, err := s.Commit(b)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	recoverErr := func() error {
		t.Helper()
		s, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Recover()
		return err
	}
	set := func(key, val []byte) {
		rawUpdate(t, dir, func(txn *badger.Txn) error { return txn.Set(key, val) })
	}
	corrupt := func(key, val []byte, wantInMsg ...string) {
		t.Helper()
		set(key, val)
		if err := recoverErr(); !errors.Is(err, ErrCorrupt) || !containsAll(err.Error(), wantInMsg...) {
			t.Fatalf("Recover: %v (want ErrCorrupt naming %q)", err, wantInMsg)
		}
	}
	sk := sessionKey("victim-client")
	corrupt(sk, []byte{0xde, 0xad, 0xbe, 0xef}, "session", `"victim-client"`, "record version 222")
	corrupt(sk, []byte{1, 4}, "session", `"victim-client"`, "2 bytes")
	corrupt(sk, nil, "session", `"victim-client"`, "empty")
	set(sk, encodeSession(SessionRecord{ProtocolLevel: 4}))
	if err := recoverErr(); err != nil {
		t.Fatalf("repaired: %v", err)
	}

	qk := queueKey("victim-client", seq)
	good := encodeQueueShared(1, 1)
	corrupt(qk, []byte{1, 1, 0x80, 0, 0, 0, 1}, "queue entry", `"victim-client"`, fmt.Sprintf("seq %d", seq), "flags")
	corrupt(qk, encodeQueueInline(1, msg("t", "p", 1))[:10], "queue entry", `"victim-client"`, "inline")
	set(qk, good)
	rawUpdate(t, dir, func(txn *badger.Txn) error { return txn.Delete(bodyKey(seq)) })
	if err := recoverErr(); !errors.Is(err, ErrCorrupt) || !containsAll(err.Error(), "queue entry", fmt.Sprint(seq), "does not exist") {
		t.Fatalf("missing body: %v", err)
	}
}

// Zero options take Badger's own defaults and the writer's internal ones, and run no value-log
// GC; what only the configuration can set is refused when missing.
func TestZeroOptions(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b := &Batch{}
	b.PutSession("c", SessionRecord{ProtocolLevel: 4})
	if _, err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	bd, got := badger.DefaultOptions(""), s.db.Opts()
	if got.MemTableSize != bd.MemTableSize || got.NumMemtables != bd.NumMemtables || got.ValueLogFileSize != bd.ValueLogFileSize ||
		got.BlockCacheSize != 0 || got.IndexCacheSize != 0 {
		t.Errorf("Badger runs with memtables %d x %d, value-log files %d, caches %d and %d; want Badger's defaults and no caches",
			got.NumMemtables, got.MemTableSize, got.ValueLogFileSize, got.BlockCacheSize, got.IndexCacheSize)
	}
	if s.opt.MaxBatchOps != DefaultMaxBatchOps || s.opt.MaxPending != DefaultMaxPending || s.opt.MaxBatchBytes != bd.MemTableSize/10 {
		t.Errorf("writer defaults not applied: %+v", s.opt)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]Options{
		"no directory":               {},
		"async without an interval":  {Dir: t.TempDir(), Durability: Async},
		"GC without a discard ratio": {Dir: t.TempDir(), GCInterval: time.Minute},
		"discard ratio of 1":         {Dir: t.TempDir(), GCInterval: time.Minute, GCDiscardRatio: 1},
	} {
		if s, err := Open(o); err == nil {
			s.Close()
			t.Errorf("%s: opened", name)
		}
	}
}

// Each Badger knob in Options reaches Badger as given.
func TestOptionsReachBadger(t *testing.T) {
	o := Options{
		Dir: t.TempDir(), MemTableSize: 3 << 20, NumMemtables: 2, BlockCacheSize: 5 << 20,
		IndexCacheSize: 6 << 20, ValueLogFileSize: 7 << 20,
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := s.db.Opts()
	if got.MemTableSize != o.MemTableSize || got.NumMemtables != o.NumMemtables || got.BlockCacheSize != o.BlockCacheSize ||
		got.IndexCacheSize != o.IndexCacheSize || got.ValueLogFileSize != o.ValueLogFileSize {
		t.Errorf("Badger runs with memtables %d x %d, block cache %d, index cache %d, value-log files %d; want %+v",
			got.NumMemtables, got.MemTableSize, got.BlockCacheSize, got.IndexCacheSize, got.ValueLogFileSize, o)
	}
}

// The value-log GC goroutine runs on its ticker and stops before Close.
func TestValueLogGC(t *testing.T) {
	ts := openTest(t, withOptions(func(o *Options) {
		o.GCInterval = 5 * time.Millisecond
		o.GCDiscardRatio = 0.5
		o.ValueLogFileSize = 1 << 20
	}))
	payload := make([]byte, 300<<10) // above the value threshold: in the value log
	for i := 0; i < 30; i++ {
		b := &Batch{}
		b.PutRetained(&Message{Topic: "big", Payload: payload, QoS: 1})
		ts.commit(b)
	}
	mqtttest.Eventually(t, 5*time.Second, "a value-log GC pass", func() bool { return ts.Stats().GCRuns > 0 })
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ts.logs.String(), `"level":"error"`) {
		t.Errorf("errors logged: %s", ts.logs)
	}
	if st := ts.Stats(); st.GCRuns == 0 {
		t.Error("GC never ran")
	} else {
		t.Logf("GC passes: %d, files rewritten: %d", st.GCRuns, st.GCRewrites)
	}
}

// Enqueue skips targets whose session record does not exist when the writer
// applies the batch.
func TestEnqueueSkipsTargetsWithoutRecord(t *testing.T) {
	ts := openTest(t)
	ts.sessions("a", "c")
	refs := func(seq uint64) int32 {
		var n int32
		_ = ts.control(func(w *writer) error { n = w.refs[seq]; return nil })
		return n
	}
	queueCIDs := func() []string {
		var cids []string
		for _, k := range rawKeys(t, ts.db, famQueue) {
			cid, _, _ := splitCID(k)
			cids = append(cids, cid)
		}
		return cids
	}

	// [a, b], b has no record: only a's entry; the body is shared (two
	// targets) with one reference.
	b := &Batch{}
	b.Enqueue(&Message{Topic: "t/ab", Payload: []byte("for a"), QoS: 2, Retain: true}, []Target{{"a", 1}, {"b", 2}})
	seq := ts.commit(b)
	if got := queueCIDs(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("queue entries of %q, want only a", got)
	}
	if keys := rawKeys(t, ts.db, famBody); len(keys) != 1 || seqOfKey(keys[0]) != seq {
		t.Fatalf("bodies = %x, want seq %d", keys, seq)
	}
	if n := refs(seq); n != 1 {
		t.Fatalf("refs = %d, want 1", n)
	}
	want := QueueEntry{Seq: seq, QoS: 1, Message: &Message{Topic: "t/ab", Payload: []byte("for a"), QoS: 2, Retain: true}}
	check := func() {
		t.Helper()
		if q := ts.readQueue("a", 0, 10); len(q) != 1 || !entryEqual(q[0], want) {
			t.Fatalf("queue of a = %v, want %s", q, fmtEntry(want))
		}
		if q := ts.readQueue("b", 0, 10); len(q) != 0 {
			t.Fatalf("queue of b = %v", q)
		}
	}
	check()
	ts.reopen() // the count is rebuilt from keys
	st := ts.recover()
	check()
	if n := refs(seq); n != 1 {
		t.Fatalf("refs after reopen = %d, want 1", n)
	}
	if session(st, "b") != nil {
		t.Fatalf("b recovered: %+v", session(st, "b"))
	}
	// Its last (only) Ack deletes the body.
	b = &Batch{}
	b.Ack("a", seq)
	ts.commit(b)
	if keys := rawKeys(t, ts.db, famBody); len(keys) != 0 {
		t.Fatalf("bodies after the last Ack = %x", keys)
	}
	if n := refs(seq); n != 0 {
		t.Fatalf("refs after the last Ack = %d", n)
	}

	// No target has a record: nothing written, not even the body, but a seq
	// is still reported (and not given out again).
	for _, targets := range [][]Target{{{"x", 1}}, {{"x", 1}, {"y", 1}}} {
		b = &Batch{}
		b.Enqueue(msg("t/none", "lost", 1), targets)
		s := ts.commit(b)
		if s <= seq {
			t.Fatalf("seq %d after %d", s, seq)
		}
		seq = s
		if q, bodies := rawKeys(t, ts.db, famQueue), rawKeys(t, ts.db, famBody); len(q)+len(bodies) != 0 {
			t.Fatalf("Enqueue to %v wrote %d queue entries, %d bodies", targets, len(q), len(bodies))
		}
	}

	// DeleteSession, then Enqueue in a later batch: nothing for that client.
	b = &Batch{}
	b.DeleteSession("c")
	ts.commit(b)
	b = &Batch{}
	b.Enqueue(msg("t", "after delete", 1), []Target{{"c", 1}})
	ts.commit(b)
	b = &Batch{}
	b.Enqueue(msg("t", "after delete, shared", 1), []Target{{"c", 1}, {"a", 0}})
	s2 := ts.commit(b)
	if got := queueCIDs(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("queue entries of %q, want only a", got)
	}
	if q := ts.readQueue("a", 0, 10); len(q) != 1 || q[0].Seq != s2 || string(q[0].Message.Payload) != "after delete, shared" {
		t.Fatalf("queue of a = %v", q)
	}

	// Within one batch operations apply in order: a record put before the
	// Enqueue counts, one deleted before it or put after it does not.
	b = &Batch{}
	b.PutSession("d", SessionRecord{ProtocolLevel: 5})
	b.DeleteSession("a")
	b.Enqueue(msg("t", "same batch", 1), []Target{{"a", 1}, {"d", 1}, {"e", 1}})
	b.PutSession("e", SessionRecord{ProtocolLevel: 5})
	s3 := ts.commit(b)
	if got := queueCIDs(); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("queue entries of %q, want only d", got)
	}
	if q := ts.readQueue("d", 0, 10); len(q) != 1 || q[0].Seq != s3 {
		t.Fatalf("queue of d = %v", q)
	}
	// Later batches see e's record.
	b = &Batch{}
	b.Enqueue(msg("t", "e now", 1), []Target{{"e", 1}})
	ts.commit(b)
	if q := ts.readQueue("e", 0, 10); len(q) != 1 {
		t.Fatalf("queue of e = %v", q)
	}
}

func TestAckQueuedDeletesTheEntry(t *testing.T) {
	ts := openTest(t)
	ts.sessions("a", "b")
	var b Batch
	b.Enqueue(msg("t", "one", 1), []Target{{ClientID: "a", QoS: 1}})
	seq := ts.commit(&b)
	var shared Batch
	shared.Enqueue(msg("t", "two", 1), []Target{{ClientID: "a", QoS: 1}, {ClientID: "b", QoS: 1}})
	seq2 := ts.commit(&shared)
	var ack Batch
	ack.AckQueued("a", seq)
	ack.AckQueued("a", seq2)
	ack.AckQueued("b", seq2)
	ts.commit(&ack)
	if q := ts.readQueue("a", 0, 10); len(q) != 0 {
		t.Fatalf("queue of a after AckQueued: %+v", q)
	}
	if keys := rawKeys(t, ts.db, famBody); len(keys) != 0 {
		t.Fatalf("shared body left behind: %d keys", len(keys))
	}
}
