package persist

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// group is the queue of shared subscription group g/t, under the pseudo client id the broker
// gives it ("\x00" + name + "/" + filter).
const group = "\x00g/t"

// heldFixture enqueues five messages for the group (the fourth also for session "x", so that
// its body is shared), marks the second Sent without a holder and holds the third and fourth by
// members, the fourth first: ReadHeld must return them in seq order however they were written.
func heldFixture(t *testing.T, ts *testStore) (seqs []uint64, want []QueueEntry) {
	t.Helper()
	ts.sessions(group, "x")
	for i := range 5 {
		b := &Batch{}
		targets := []Target{{group, 2}}
		if i == 3 {
			targets = append(targets, Target{"x", 1})
		}
		b.Enqueue(msg("t", fmt.Sprint("m", i), 2), targets)
		seqs = append(seqs, ts.commit(b))
	}
	b := &Batch{}
	b.HoldReleased(group, seqs[3], 40, "w2")
	b.SetQueueState(group, seqs[1], Sent, 10)
	ts.commit(b)
	b = &Batch{}
	b.HoldReleased(group, seqs[2], 30, "w1")
	ts.commit(b)
	want = []QueueEntry{
		{Seq: seqs[1], QoS: 2, State: Sent, PacketID: 10, Message: msg("t", "m1", 2)},
		{Seq: seqs[2], QoS: 2, State: Released, PacketID: 30, Holder: "w1", Message: msg("t", "m2", 2)},
		{Seq: seqs[3], QoS: 2, State: Released, PacketID: 40, Holder: "w2", Message: msg("t", "m3", 2)},
	}
	return seqs, want
}

func checkHeld(t *testing.T, s *Store, want []QueueEntry) {
	t.Helper()
	got, err := s.ReadHeld(group)
	if err != nil {
		t.Fatalf("ReadHeld: %v", err)
	}
	if !slices.EqualFunc(got, want, heldEqual) {
		t.Errorf("ReadHeld = %v\nwant %v", fmtHeld(got), fmtHeld(want))
	}
}

func heldEqual(a, b QueueEntry) bool { return entryEqual(a, b) && a.Holder == b.Holder }

func fmtHeld(es []QueueEntry) string {
	var sb strings.Builder
	for _, e := range es {
		fmt.Fprintf(&sb, "%s holder %q ", fmtEntry(e), e.Holder)
	}
	return sb.String()
}

// HoldReleased's state reads back through ReadQueue and ReadHeld, before and after a reopen and
// Recover, which counts it as in flight.
func TestHoldReleasedRoundTrip(t *testing.T) {
	ts := openTest(t)
	seqs, want := heldFixture(t, ts)
	check := func() {
		t.Helper()
		checkHeld(t, ts.Store, want)
		q := ts.readQueue(group, 0, 100)
		if len(q) != len(seqs) {
			t.Fatalf("ReadQueue = %v", fmtHeld(q))
		}
		for i, e := range q {
			w := QueueEntry{Seq: seqs[i], QoS: 2, Message: msg("t", fmt.Sprint("m", i), 2)}
			if j := slices.IndexFunc(want, func(h QueueEntry) bool { return h.Seq == e.Seq }); j >= 0 {
				w = want[j]
			}
			if !heldEqual(e, w) {
				t.Errorf("ReadQueue entry %d = %s holder %q, want %s holder %q", i, fmtEntry(e), e.Holder, fmtEntry(w), w.Holder)
			}
		}
		// Another client's entry of the same message has no holder.
		if q := ts.readQueue("x", 0, 10); len(q) != 1 || q[0].State != Queued || q[0].Holder != "" {
			t.Errorf("queue of x = %v", fmtHeld(q))
		}
	}
	check()
	inv, err := ts.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	wantHeld := []HeldInfo{{Seq: seqs[2], PacketID: 30, Holder: "w1"}, {Seq: seqs[3], PacketID: 40, Holder: "w2"}}
	if i := slices.IndexFunc(inv.Sessions, func(si SessionInfo) bool { return si.ClientID == group }); i < 0 ||
		inv.Sessions[i].Inflight != 3 || !slices.Equal(inv.Sessions[i].Held, wantHeld) {
		t.Errorf("Inspect: %+v, want the group with 3 in flight, held %+v", inv.Sessions, wantHeld)
	}
	ts.reopen()
	st := ts.recover()
	if ss := session(st, group); ss == nil || ss.Orphan || ss.QueuedCount != len(seqs) {
		t.Errorf("recovered group session %+v", ss)
	}
	if !strings.Contains(ts.logs.String(), `"inflight":3`) {
		t.Errorf("Recover did not count the 3 in-flight states:\n%s", ts.logs)
	}
	check()
}

// A power cut leaves the synced write-ahead log and none of Badger's state: replayed, it gives
// back the held entries with their holders.
func TestHoldReleasedSurvivesPowerCut(t *testing.T) {
	ts := openTest(t)
	_, want := heldFixture(t, ts)
	s, err := Open(testOptions(walCopy(t, ts, 0), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Recover(); err != nil {
		t.Fatal(err)
	}
	checkHeld(t, s, want)
}

// Ack removes a held state with its entry; a held state written after the Ack (the broker
// raced) is not read back and Recover removes it.
func TestHoldReleasedAck(t *testing.T) {
	ts := openTest(t, skipLiveCheck())
	seqs, want := heldFixture(t, ts)
	b := &Batch{}
	b.Ack(group, seqs[2])
	b.Ack(group, seqs[3]) // shared body: x still refers to it
	ts.commit(b)
	checkHeld(t, ts.Store, want[:1])
	for _, k := range rawKeys(t, ts.db, famInflight) {
		if _, seq, _ := parseSeqKey(k); seq == seqs[2] || seq == seqs[3] {
			t.Errorf("%s left after Ack", describeKey(k))
		}
	}
	if q := ts.readQueue("x", 0, 10); len(q) != 1 || string(q[0].Message.Payload) != "m3" {
		t.Errorf("queue of x after the group's Ack = %v", fmtHeld(q))
	}

	b = &Batch{}
	b.HoldReleased(group, seqs[2], 31, "late")
	ts.commit(b)
	checkHeld(t, ts.Store, want[:1])
	ts.recover()
	if n := len(rawKeys(t, ts.db, famInflight)); n != 1 {
		t.Errorf("%d in-flight keys after Recover, want 1 (the stray held state removed)", n)
	}
}

// ReadHeld reads the states of a long queue without its other entries, in seq order, and
// nothing of another client.
func TestReadHeldLongQueue(t *testing.T) {
	ts := openTest(t)
	ts.sessions(group, "\x00g/t2", "w1")
	var seqs []uint64
	for i := range 600 {
		b := &Batch{}
		b.Enqueue(msg("t", fmt.Sprint(i), 2), []Target{{group, 2}, {"\x00g/t2", 2}}[:1+i%2])
		seqs = append(seqs, ts.commit(b))
	}
	held := []int{599, 17, 300, 0, 301}
	b := &Batch{}
	for j, i := range held {
		b.HoldReleased(group, seqs[i], uint16(j+1), fmt.Sprint("w", j))
		if i%2 == 1 { // another group's state of the same message
			b.HoldReleased("\x00g/t2", seqs[i], 99, "other")
		}
	}
	b.SetQueueState("w1", seqs[5], Sent, 5) // a client without that entry: a stray, not read
	ts.commit(b)
	var want []QueueEntry
	for j, i := range held {
		want = append(want, QueueEntry{Seq: seqs[i], QoS: 2, State: Released, PacketID: uint16(j + 1), Holder: fmt.Sprint("w", j),
			Message: msg("t", fmt.Sprint(i), 2)})
	}
	slices.SortFunc(want, func(a, b QueueEntry) int { return int(a.Seq) - int(b.Seq) })
	checkHeld(t, ts.Store, want)
	if got, err := ts.ReadHeld("nobody"); err != nil || len(got) != 0 {
		t.Errorf("ReadHeld of a client without states = %v, %v", got, err)
	}
	b = &Batch{}
	b.Ack("w1", seqs[5]) // remove the stray so that the cleanup's invariants hold
	ts.commit(b)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.ReadHeld(group); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadHeld after Close: %v, want ErrClosed", err)
	}
	s, err := Open(ts.opt)
	if err != nil {
		t.Fatal(err)
	}
	ts.Store = s
}

func TestHoldReleasedRefusesLongHolder(t *testing.T) {
	ts := openTest(t)
	ts.sessions(group)
	b := &Batch{}
	b.HoldReleased(group, 1, 1, strings.Repeat("h", 0x10000))
	if _, err := ts.Commit(b); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Commit with a holder of 65536 bytes: %v, want ErrTooLarge", err)
	}
}

// A damaged version-2 in-flight state is ErrCorrupt naming its key, from the decoder, Recover,
// ReadHeld and ReadQueue alike.
func TestHeldStateDamageIsCorrupt(t *testing.T) {
	k := inflightKey(group, 1)
	good := encodeInflight(Released, 7, "w1")
	set := func(i int, b byte) []byte { v := slices.Clone(good); v[i] = b; return v }
	bad := map[string][]byte{
		"no holder length":      good[:4],
		"holder length 0":       {recordV2, byte(Released), 0, 7, 0, 0},
		"holder truncated":      good[:len(good)-1],
		"bytes after holder":    append(slices.Clone(good), 'x'),
		"holder length too big": set(5, 9),
		"state 3":               set(1, 3),
		"state queued":          set(1, byte(Queued)),
		"record version 3":      set(0, 3),
	}
	for name, v := range bad {
		if _, err := decodeInflight(k, v); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `in-flight state key (client "\x00g/t", seq 1)`) {
			t.Errorf("%s: %v, want ErrCorrupt naming the key", name, err)
		}
	}

	ts := openTest(t, skipLiveCheck())
	seqs, _ := heldFixture(t, ts)
	key := inflightKey(group, seqs[2])
	name := fmt.Sprintf(`in-flight state key (client "\x00g/t", seq %d)`, seqs[2])
	ts.rawUpdate(func(txn *badger.Txn) error { return txn.Set(key, bad["holder truncated"]) })
	if _, err := ts.Recover(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name) {
		t.Errorf("Recover: %v, want ErrCorrupt naming %s", err, name)
	}
	if _, err := ts.ReadHeld(group); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name) {
		t.Errorf("ReadHeld: %v, want ErrCorrupt naming %s", err, name)
	}
	if _, err := ts.ReadQueue(group, 0, 10); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name) {
		t.Errorf("ReadQueue: %v, want ErrCorrupt naming %s", err, name)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, ts.dir)
	if rep.Inflight != 3 || rep.Held != 1 { // the damaged state counts as in flight, without a holder
		t.Errorf("Verify counted %d in flight, %d held; want 3 and 1", rep.Inflight, rep.Held)
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], name) {
		t.Errorf("Verify problems %q, want one naming %s", rep.Problems, name)
	}
	// Repaired, so that the cleanup's reopen recovers.
	rawUpdate(t, ts.dir, func(txn *badger.Txn) error { return txn.Set(key, encodeInflight(Released, 30, "w1")) })
	s, err := Open(ts.opt)
	if err != nil {
		t.Fatal(err)
	}
	ts.Store = s
}
