package persist

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// arrived is a fixed arrival time with nanoseconds, which the records keep.
var arrived = time.Unix(1800000000, 987654321).UTC()

func withArrival(m *Message, t time.Time) *Message {
	m.Arrived = t
	return m
}

// A queue entry and a body keep the arrival time, with and without the other v5 parts; a retained
// message does not store it, and a message without one costs no byte.
func TestRecordArrival(t *testing.T) {
	k := queueKey("c", 1)
	for _, m := range []*Message{withArrival(msg("a/b", "p", 1), arrived), withArrival(v5Message("a/b", "p"), arrived)} {
		if _, got, err := decodeQueue(k, encodeQueueInline(1, m), true); err != nil || !sameMessage(got, m) || !got.Arrived.Equal(arrived) {
			t.Errorf("inline: %+v, %v", got, err)
		}
		if h, _, err := decodeQueue(k, encodeQueueInline(1, m), false); err != nil || !h.arrived.Equal(arrived) {
			t.Errorf("inline header: %+v, %v", h, err)
		}
		if got, err := decodeBody(bodyKey(1), encodeBody(m), true); err != nil || !sameMessage(got, m) || !got.Arrived.Equal(arrived) {
			t.Errorf("body: %+v, %v", got, err)
		}
		if got, err := decodeRetained(retainedKey("a/b"), encodeRetained(m)); err != nil || !got.Arrived.IsZero() {
			t.Errorf("retained: %+v, %v", got, err)
		}
	}
	with, without := withArrival(msg("a/b", "p", 1), arrived), msg("a/b", "p", 1)
	if d := len(encodeQueueInline(1, with)) - len(encodeQueueInline(1, without)); d != 8 {
		t.Errorf("inline entry with an arrival time: %d bytes more, want 8", d)
	}
	if d := len(encodeBody(with)) - len(encodeBody(without)); d != 8 {
		t.Errorf("body with an arrival time: %d bytes more, want 8", d)
	}
	if v := encodeQueueInline(1, without); v[2]&mfArrived != 0 {
		t.Errorf("entry without an arrival time has the flag: %x", v)
	}
}

func TestRecordArrivalDamageIsCorrupt(t *testing.T) {
	k := queueKey("c", 1)
	m := withArrival(msg("t", "", 1), arrived)
	inline, body := encodeQueueInline(1, m), encodeBody(m)
	set := func(v []byte, i int, b byte) []byte { v = slices.Clone(v); v[i] = b; return v }
	for name, dec := range map[string]func() error{
		"entry arrival truncated": func() error { _, _, err := decodeQueue(k, inline[:len(inline)-1], true); return err },
		"body arrival truncated":  func() error { _, err := decodeBody(k, body[:len(body)-1], true); return err },
		"v1 entry with arrival":   func() error { _, _, err := decodeQueue(k, set(inline, 0, 1), true); return err },
		"v1 body with arrival":    func() error { _, err := decodeBody(k, set(body, 0, 1), true); return err },
		"retained with arrival": func() error {
			v := encodeRetained(msg("t", "p", 1))
			_, err := decodeRetained(retainedKey("t"), set(v, 2, mfArrived))
			return err
		},
		"shared entry with arrival": func() error {
			_, _, err := decodeQueue(k, set(encodeQueueShared(1, 1), 2, qfShared|mfArrived), true)
			return err
		},
	} {
		if err := dec(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// arrivals maps a queued message's payload to its arrival time.
type arrivals map[string]time.Time

// checkArrivals reads cid's queue (and, for held, its held entries) and checks that each
// message's arrival time is the one want has for its payload.
func checkArrivals(t *testing.T, s *Store, cid string, held bool, want arrivals) {
	t.Helper()
	read := func() ([]QueueEntry, error) { return s.ReadQueue(cid, 0, 100) }
	if held {
		read = func() ([]QueueEntry, error) { return s.ReadHeld(cid) }
	}
	q, err := read()
	if err != nil || len(q) != len(want) {
		t.Fatalf("%s: %d entries (held %t), %v; want %d", cid, len(q), held, err, len(want))
	}
	for _, e := range q {
		w, ok := want[string(e.Message.Payload)]
		if !ok || !e.Message.Arrived.Equal(w) || e.Message.Arrived.Location() != time.UTC {
			t.Errorf("%s: entry %d %q arrived %v, want %v", cid, e.Seq, e.Message.Payload, e.Message.Arrived, w)
		}
	}
}

// oldestQueued returns the inventory's OldestQueued of every session, by client id.
func oldestQueued(inv *Inventory) map[string]*time.Time {
	out := make(map[string]*time.Time)
	for _, si := range inv.Sessions {
		out[si.ClientID] = si.OldestQueued
	}
	return out
}

func checkOldest(t *testing.T, what string, inv *Inventory, want map[string]time.Time) {
	t.Helper()
	for cid, got := range oldestQueued(inv) {
		w, ok := want[cid]
		if ok != (got != nil) || (ok && !got.Equal(w)) {
			t.Errorf("%s: %s oldest queued %v, want %v", what, cid, got, w)
		}
	}
}

// The arrival time goes through Enqueue, a reopen and Recover, inline and shared, to ReadQueue and
// ReadHeld; the inventory gives each session's oldest, live and from the stopped directory.
func TestArrivalAcrossRestart(t *testing.T) {
	ts := openTest(t)
	ts.sessions("a", "b", "g")
	t0 := arrived
	t1, t2, t3 := t0.Add(time.Second), t0.Add(2*time.Second), t0.Add(-time.Hour)
	for _, e := range []struct {
		m       *Message
		targets []Target
	}{
		{withArrival(msg("t", "inline a", 1), t1), []Target{{"a", 1}}},
		{withArrival(msg("t", "shared", 1), t0), []Target{{"a", 1}, {"b", 1}}},
		{withArrival(v5Message("t", "inline b"), t2), []Target{{"b", 2}}},
		{msg("t", "unknown", 1), []Target{{"b", 1}}},
		{withArrival(msg("t", "group", 2), t3), []Target{{"g", 2}}},
	} {
		b := &Batch{}
		b.Enqueue(e.m, e.targets)
		ts.commit(b)
	}
	q := ts.readQueue("g", 0, 1)
	b := &Batch{}
	b.Hold("g", q[0].Seq, Released, 9, "member")
	ts.commit(b)
	wantA := arrivals{"inline a": t1, "shared": t0}
	wantB := arrivals{"shared": t0, "inline b": t2, "unknown": {}}
	wantG := arrivals{"group": t3}
	oldest := map[string]time.Time{"a": t0, "b": t0, "g": t3}

	check := func(when string) {
		t.Helper()
		checkArrivals(t, ts.Store, "a", false, wantA)
		checkArrivals(t, ts.Store, "b", false, wantB)
		checkArrivals(t, ts.Store, "g", true, wantG)
		inv, err := ts.Inspect()
		if err != nil {
			t.Fatal(err)
		}
		checkOldest(t, when, inv, oldest)
	}
	check("live")
	ts.reopen()
	// Recover tells each session when the head of its queue arrived, inline or shared body.
	heads := map[string]time.Time{"a": t1, "b": t0, "g": t3}
	for _, ss := range ts.recover().Sessions {
		if want := heads[ss.ClientID]; !ss.OldestQueued.Equal(want) {
			t.Errorf("Recover: %s's OldestQueued %v, want %v (its first entry's)", ss.ClientID, ss.OldestQueued, want)
		}
	}
	check("after a restart")
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	inv, err := InspectDir(ts.dir)
	if err != nil {
		t.Fatal(err)
	}
	checkOldest(t, "stopped", inv, oldest)
	ts.reopen()
}

// A store of format 3 (testdata/format3.tar.gz) migrates to 4 with no arrival time invented for
// its messages; those enqueued afterwards keep theirs.
func TestFormat3Migrates(t *testing.T) {
	dir := testFixtureMigrates(t, 3)
	s, err := Open(testOptions(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	inv, err := s.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	checkOldest(t, "migrated", inv, nil)
	b := &Batch{}
	b.Enqueue(withArrival(msg("fx/all", "after", 1), arrived), []Target{{"sub-a", 1}, {"sub-b", 1}})
	if _, err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	checkArrivals(t, s, "sub-b", false, arrivals{"shared by a and b": {}, "after": arrived})
	if inv, err = s.Inspect(); err != nil {
		t.Fatal(err)
	}
	checkOldest(t, "after an enqueue", inv, map[string]time.Time{"sub-a": arrived, "sub-b": arrived})
}

// A backup restored into a new directory gives the arrival times back.
func TestBackupKeepsArrival(t *testing.T) {
	ts := openTest(t)
	ts.sessions("a", "b")
	b := &Batch{}
	b.Enqueue(withArrival(msg("t", "inline", 1), arrived), []Target{{"a", 1}})
	ts.commit(b)
	b = &Batch{}
	b.Enqueue(withArrival(msg("t", "shared", 1), arrived.Add(time.Minute)), []Target{{"a", 1}, {"b", 1}})
	ts.commit(b)
	var buf bytes.Buffer
	if _, err := ts.Backup(&buf, 0); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(dir, &buf); err != nil {
		t.Fatal(err)
	}
	s, err := Open(testOptions(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Recover(); err != nil {
		t.Fatal(err)
	}
	checkArrivals(t, s, "a", false, arrivals{"inline": arrived, "shared": arrived.Add(time.Minute)})
	checkArrivals(t, s, "b", false, arrivals{"shared": arrived.Add(time.Minute)})
}

// Stats.Checkpoints counts the checkpoint that ends the replay at Open, each one the log's size
// brings, and the one at Close.
func TestCheckpointsCounted(t *testing.T) {
	ts := openTest(t, withOptions(func(o *Options) { o.checkpointBytes = 32 << 10 }))
	ts.sessions("a")
	if n := ts.Stats().Checkpoints; n != 1 {
		t.Fatalf("%d checkpoints after Open, want 1 (the replay's)", n)
	}
	payload := string(make([]byte, 4<<10))
	for i := 0; ts.Stats().Checkpoints < 3; i++ {
		if i == 100 { // 400 KiB of records: a dozen checkpoints due
			t.Fatalf("%d checkpoints after %d enqueues of %d bytes", ts.Stats().Checkpoints, i, len(payload))
		}
		b := &Batch{}
		b.Enqueue(msg("t", payload, 1), []Target{{"a", 1}})
		ts.commit(b)
	}
	n := ts.Stats().Checkpoints
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ts.Stats().Checkpoints; got != n+1 {
		t.Errorf("%d checkpoints after Close, want %d", got, n+1)
	}
	ts.reopen()
}
