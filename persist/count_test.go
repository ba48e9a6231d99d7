package persist

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// RecoverSessions leaves the queues to CountQueues, which counts them from what the store held at
// Open while the store takes writes: acknowledgements of old entries before the count (one of
// them the last reference to a shared body once counted), new entries, and a client that had
// queue entries but no session record at Open and has a session since, whose new entry stays.
func TestCountQueuesWhileServing(t *testing.T) {
	ts := openTest(t)
	ts.sessions("a", "b", "o")
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	enq := func(payload string, at time.Time, cids ...string) uint64 {
		m := msg("t", payload, 1)
		m.Arrived = at
		var b Batch
		var targets []Target
		for _, c := range cids {
			targets = append(targets, Target{ClientID: c, QoS: 1})
		}
		b.Enqueue(m, targets)
		return ts.commit(&b)
	}
	shared := enq("both", t0, "a", "b") // a's first entry is a shared body
	inline := enq("a-only", t0.Add(time.Minute), "a")
	enq("b-only", t0.Add(2*time.Minute), "b")
	orphaned := enq("o-old", t0, "o")
	// o loses its record behind the store's back (as a store written before Enqueue checked
	// records could hold it): its entry is an orphan at the next Open.
	ts.rawUpdate(func(txn *badger.Txn) error { return txn.Delete(sessionKey("o")) })
	ts.reopen()

	st, err := ts.RecoverSessions()
	if err != nil {
		t.Fatal(err)
	}
	if st.Bound != orphaned+1 {
		t.Fatalf("bound %d, want %d: one past the highest seq on disk", st.Bound, orphaned+1)
	}
	for _, ss := range st.Sessions {
		if !ss.Uncounted || ss.QueuedCount != 0 || ss.LastSeq != st.Bound-1 {
			t.Fatalf("session %q: %+v; want uncounted, 0 queued, last seq %d", ss.ClientID, ss, st.Bound-1)
		}
	}
	if session(st, "o") != nil {
		t.Fatal("a client with queue entries only is reported before its count")
	}

	// Served before the count: a's shared entry and inline entry acknowledged, o made again.
	var b Batch
	b.Ack("a", shared)
	b.Ack("a", inline)
	ts.commit(&b)
	ts.sessions("o")
	fresh := enq("o-new", t0.Add(time.Hour), "o")
	if fresh < st.Bound {
		t.Fatalf("new entry seq %d below the bound %d", fresh, st.Bound)
	}

	var got []QueueCount
	if err := ts.CountQueues(nil, func(q QueueCount) { got = append(got, q) }); err != nil {
		t.Fatal(err)
	}
	want := []QueueCount{
		{ClientID: "a", Count: 2, Bytes: int64(len("both") + len("a-only")), LastSeq: inline, Oldest: t0},
		{ClientID: "b", Count: 2, Bytes: int64(len("both") + len("b-only")), LastSeq: orphaned - 1, Oldest: t0},
	}
	if !slices.EqualFunc(got, want, func(x, y QueueCount) bool {
		return x.ClientID == y.ClientID && x.Count == y.Count && x.Bytes == y.Bytes && x.LastSeq == y.LastSeq && x.Oldest.Equal(y.Oldest)
	}) {
		t.Fatalf("counted %+v, want %+v (as at Open; o's entries without a record left out)", got, want)
	}
	if err := ts.CountQueues(nil, func(QueueCount) {}); err == nil {
		t.Fatal("a second count succeeded")
	}
	if q := ts.readQueue("o", 0, 10); len(q) != 1 || q[0].Seq != fresh {
		t.Fatalf("o's queue %+v, want only its new entry %d (the orphaned one deleted)", q, fresh)
	}
	var refs int32
	_ = ts.control(func(w *writer) error { refs = w.refs[shared]; return nil })
	if refs != 1 {
		t.Fatalf("shared body: %d references after the count, want 1 (b's)", refs)
	}
	b = Batch{}
	b.Ack("b", shared)
	ts.commit(&b)
	if keys := rawKeys(t, ts.db, famBody); len(keys) != 0 {
		t.Fatalf("bodies %q left after the last reference went", keys)
	}
	if !containsAll(ts.logs.String(), "deleting the queue of a client without a session record", "counted the queues") {
		t.Errorf("log: %s", ts.logs.String())
	}
}

// A shared body acknowledged away completely before the count: the count finds it referenced,
// the writer noted the drops, and the body goes once the count arrives.
func TestCountQueuesDropsBodyAckedBeforeCount(t *testing.T) {
	ts := openTest(t)
	ts.sessions("a", "b")
	var b Batch
	b.Enqueue(msg("t", "x", 1), []Target{{ClientID: "a", QoS: 1}, {ClientID: "b", QoS: 1}})
	seq := ts.commit(&b)
	ts.reopen()
	if _, err := ts.RecoverSessions(); err != nil {
		t.Fatal(err)
	}
	b = Batch{}
	b.Ack("a", seq)
	b.Ack("b", seq)
	b.Ack("b", seq) // again: the entry is gone, no second drop
	ts.commit(&b)
	if len(rawKeys(t, ts.db, famBody)) != 1 {
		t.Fatal("the body went before its references were counted")
	}
	if err := ts.CountQueues(nil, func(QueueCount) {}); err != nil {
		t.Fatal(err)
	}
	if keys := rawKeys(t, ts.db, famBody); len(keys) != 0 {
		t.Fatalf("bodies %q left after the count", keys)
	}
}

// A queue entry whose body is missing, found by the count while the store serves: the store fails
// (fail-stop) with ErrCorrupt naming the entry.
func TestCountQueuesCorruptFailsStore(t *testing.T) {
	o := testOptions(t.TempDir(), nil)
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	putSessions(t, s, "a", "b")
	var b Batch
	b.Enqueue(msg("t", "x", 1), []Target{{ClientID: "a", QoS: 1}, {ClientID: "b", QoS: 1}})
	seq, err := s.Commit(&b)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(bodyKey(seq)) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(o); err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if _, err := s.RecoverSessions(); err != nil {
		t.Fatal(err)
	}
	err = s.CountQueues(nil, func(QueueCount) {})
	if !errors.Is(err, ErrCorrupt) || !containsAll(err.Error(), "does not exist", "a") {
		t.Fatalf("count: %v, want ErrCorrupt naming a's entry", err)
	}
	select {
	case <-s.Failed():
	default:
		t.Fatal("the store serves on after the count found damage")
	}
}
