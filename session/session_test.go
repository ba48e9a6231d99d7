package session

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/persist"
)

type fakeOutlet struct{}

func (f *fakeOutlet) Wake()                          {}
func (f *fakeOutlet) SendPublish(*codec.Publish)     {}
func (f *fakeOutlet) SendEncoded([]byte, int, int64) {}
func (f *fakeOutlet) AppendPublish(dst []byte, p *codec.Publish) ([]byte, bool) {
	return p.Append(dst), true
}

// openStore opens a store holding the session record of client "p", the tests' session.
func openStore(t *testing.T) *persist.Store {
	t.Helper()
	o := persist.DefaultOptions(t.TempDir())
	o.MemTableSize = 4 << 20
	st, err := persist.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var rec persist.Batch
	rec.PutSession("p", persist.SessionRecord{ProtocolLevel: 4})
	if _, err := st.Commit(&rec); err != nil {
		t.Fatal(err)
	}
	return st
}

// queueForP commits m to client "p"'s queue at qos and returns its seq.
func queueForP(t *testing.T, st *persist.Store, m *persist.Message, qos byte) uint64 {
	t.Helper()
	var b persist.Batch
	b.Enqueue(m, []persist.Target{{ClientID: "p", QoS: qos}})
	seq, err := st.Commit(&b)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// committed is Applied and Durable at once, as for an entry whose commit is already durable: the
// outlet to wake, if either asks.
func committed(s *Session, seq uint64, m *message.Message, qos byte) Outlet {
	o := s.Applied(seq, m, qos)
	if d := s.Durable(seq); d != nil {
		o = d
	}
	return o
}

// fillFromStore runs Fill into o, answering its loads from st's queue of client "p".
func fillFromStore(t *testing.T, s *Session, st *persist.Store, o *Outgoing) {
	t.Helper()
	for s.Fill(o); o.NeedLoad; s.Fill(o) {
		entries, err := st.ReadQueue("p", o.Load.After, o.Load.Limit)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Loaded(o, entries) {
			break
		}
	}
}

// decode splits a Fill output into packets.
func decode(t *testing.T, b []byte) []codec.Packet {
	t.Helper()
	r := codec.NewReader(bytes.NewReader(b), 0)
	var out []codec.Packet
	for {
		p, err := r.ReadPacket()
		if err != nil {
			return out
		}
		out = append(out, p)
	}
}

func TestReserveLimits(t *testing.T) {
	s := New("c", false, 4, &Options{MaxInflight: 10, MaxQueuedMessages: 2, MaxQueuedBytes: 10})
	for i := 0; i < 2; i++ {
		if !s.Reserve(4) {
			t.Fatalf("reservation %d within limits refused", i+1)
		}
	}
	if s.Reserve(1) {
		t.Fatal("third message accepted past max_queued_messages=2")
	}
	s.Unreserve(4)
	if s.Reserve(7) {
		t.Fatal("accepted past max_queued_bytes=10")
	}
	if !s.Reserve(6) {
		t.Fatal("refused within limits")
	}
}

func TestCleanSessionWindowAndPacketIDs(t *testing.T) {
	s := New("c", false, 4, &Options{MaxInflight: 2, MaxQueuedMessages: 100})
	out := &fakeOutlet{}
	s.Attach(Link{Level: 4}, out)
	for i := 0; i < 3; i++ {
		s.Reserve(1)
		s.Enqueue(&persist.Message{Topic: "t", Payload: []byte{byte(i)}, QoS: 1}, 1)
	}
	var o Outgoing
	s.Fill(&o)
	ps := decode(t, o.Now)
	if len(ps) != 2 {
		t.Fatalf("sent %d, want the window of 2", len(ps))
	}
	p0 := ps[0].(*codec.Publish)
	if p0.PacketID == 0 || p0.PacketID == ps[1].(*codec.Publish).PacketID {
		t.Fatalf("packet ids %d and %d must be distinct and non-zero", p0.PacketID, ps[1].(*codec.Publish).PacketID)
	}
	if _, ok := s.Ack(p0.PacketID, codec.TypePubcomp); ok {
		t.Fatal("PUBCOMP accepted for a QoS 1 message")
	}
	if _, ok := s.Ack(p0.PacketID, codec.TypePuback); !ok {
		t.Fatal("PUBACK not accepted")
	}
	o = Outgoing{}
	s.Fill(&o)
	if ps := decode(t, o.Now); len(ps) != 1 || ps[0].(*codec.Publish).Payload[0] != 2 {
		t.Fatalf("after one ack got %v, want the third message", ps)
	}
	if n, _ := s.Queued(); n != 2 {
		t.Fatalf("queued %d, want 2", n)
	}
}

// A persistent session reads entries that did not fit in memory back from disk, in order.
func TestPersistentSessionSpillsToDisk(t *testing.T) {
	st := openStore(t)
	opts := &Options{MaxInflight: 5, MaxQueuedMessages: 1000, MemoryWindow: 3}
	s := New("p", true, 4, opts)
	out := &fakeOutlet{}
	s.Attach(Link{Level: 4}, out)
	const n = 40
	for i := 0; i < n; i++ {
		m := &persist.Message{Topic: "t", Payload: []byte(fmt.Sprint(i)), QoS: 1}
		s.Reserve(len(m.Payload))
		committed(s, queueForP(t, st, m, 1), m, 1)
	}
	var got []string
	for len(got) < n {
		var o Outgoing
		fillFromStore(t, s, st, &o)
		ps := decode(t, o.Now)
		if len(ps) == 0 {
			t.Fatalf("stalled after %d messages", len(got))
		}
		for _, p := range ps {
			pub := p.(*codec.Publish)
			got = append(got, string(pub.Payload))
			if _, ok := s.Ack(pub.PacketID, codec.TypePuback); !ok {
				t.Fatalf("ack of %d refused", pub.PacketID)
			}
		}
	}
	for i, g := range got {
		if g != fmt.Sprint(i) {
			t.Fatalf("message %d is %q: order lost", i, g)
		}
	}
}

// The console's "oldest queued": an offline session's queue is on disk only, and still tells
// when its first message arrived; once read in, memory tells, and acknowledgements move it on.
func TestOldestQueuedAcrossDiskAndMemory(t *testing.T) {
	st := openStore(t)
	s := New("p", true, 4, &Options{MaxInflight: 1, MaxQueuedMessages: 100, MemoryWindow: 256})
	if got := s.OldestQueued(); !got.IsZero() {
		t.Fatalf("empty queue: oldest %v, want none", got)
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		m := &persist.Message{Topic: "t", Payload: []byte{byte(i)}, QoS: 1, Arrived: t0.Add(time.Duration(i) * time.Minute)}
		s.Reserve(1)
		committed(s, queueForP(t, st, m, 1), m, 1)
	}
	if got := s.OldestQueued(); !got.Equal(t0) {
		t.Fatalf("offline, queue on disk: oldest %v, want %v", got, t0)
	}
	if h := s.Head(10); len(h) != 0 {
		t.Fatalf("offline: memory holds %d entries, want none (the caller reads the disk)", len(h))
	}

	s.Attach(Link{Level: 4}, &fakeOutlet{})
	var o Outgoing
	fillFromStore(t, s, st, &o)
	pub := decode(t, o.Now)[0].(*codec.Publish)
	if h := s.Head(10); len(h) != 3 || h[0].State != persist.Sent || h[1].State != persist.Queued {
		t.Fatalf("head %+v, want the one in flight (sent) then two queued", h)
	}
	if _, ok := s.Ack(pub.PacketID, codec.TypePuback); !ok {
		t.Fatal("PUBACK refused")
	}
	if got, want := s.OldestQueued(), t0.Add(time.Minute); !got.Equal(want) {
		t.Fatalf("after the first ack: oldest %v, want %v (read back from disk)", got, want)
	}

	r := Restore(Saved{ClientID: "r", QueuedCount: 2, QueuedBytes: 2, Inflight: 1, LastSeq: 9, OldestQueued: t0}, s.opts, t0.Add(time.Hour))
	if got := r.OldestQueued(); !got.Equal(t0) {
		t.Fatalf("recovered: oldest %v, want the store's %v", got, t0)
	}
	if r.Inflight() != 1 {
		t.Fatalf("recovered: in flight %d, want the store's 1", r.Inflight())
	}
}

// An ACL reloaded while a client was away reaches the messages sent on its last connection and
// not acknowledged: they are removed instead of sent again, from memory (a clean session) or as
// read back from disk (a persistent one).
func TestResendAsksMayRead(t *testing.T) {
	for _, persistent := range []bool{false, true} {
		t.Run(fmt.Sprintf("persistent=%v", persistent), func(t *testing.T) {
			st := openStore(t)
			s := New("p", persistent, 4, &Options{MaxInflight: 10, MaxQueuedMessages: 100, MemoryWindow: 256})
			fill := func(o *Outgoing) []codec.Packet {
				fillFromStore(t, s, st, o)
				return decode(t, append(o.Now, o.After...))
			}
			s.Attach(Link{Level: 4}, &fakeOutlet{})
			for i, topic := range []string{"secret/1", "open/1", "secret/2"} {
				qos := byte(1 + i/2) // secret/2 at QoS 2
				m := &persist.Message{Topic: topic, Payload: []byte{byte(i)}, QoS: qos}
				s.Reserve(1)
				if !persistent {
					s.Enqueue(m, qos)
					continue
				}
				committed(s, queueForP(t, st, m, qos), m, qos)
			}
			var o Outgoing
			if sent := fill(&o); len(sent) != 3 {
				t.Fatalf("sent %d, want 3", len(sent))
			}
			ws, _ := s.Detach(time.Now())
			if s.Inflight() != 3 {
				t.Fatalf("offline: in flight %d, want the 3 sent and not acknowledged (as the store counts them)", s.Inflight())
			}
			var b persist.Batch
			for _, w := range append(o.Writes, ws...) {
				if w.Kind == WriteSent {
					b.SetQueueState("p", w.Seq, persist.Sent, w.PacketID)
				}
			}
			if _, err := st.Commit(&b); err != nil {
				t.Fatal(err)
			}
			s.Attach(Link{Level: 4}, &fakeOutlet{})
			o = Outgoing{MayRead: func(topic string) bool { return topic == "open/1" }}
			again := fill(&o)
			if len(again) != 1 || again[0].(*codec.Publish).Topic != "open/1" {
				t.Fatalf("resent %v, want only open/1", again)
			}
			if n, _ := s.Queued(); n != 1 || s.Inflight() != 1 {
				t.Fatalf("queued %d, in flight %d: want the two refused removed", n, s.Inflight())
			}
			if _, ok := s.Ack(again[0].(*codec.Publish).PacketID, codec.TypePuback); !ok {
				t.Fatal("the resent message's PUBACK refused")
			}
		})
	}
}

// A session restored before the store counted its queue (persist.RecoverSessions) knows only an
// upper bound of its seqs: connected before the count, it reads its whole queue from disk, and
// the count, arriving after acknowledgements and new messages, makes its counters right.
func TestRestoredUncounted(t *testing.T) {
	st := openStore(t)
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var last uint64
	for i := range 5 {
		last = queueForP(t, st, &persist.Message{Topic: "t", Payload: []byte{byte(i)}, QoS: 1, Arrived: t0.Add(time.Duration(i) * time.Minute)}, 1)
	}
	opts := &Options{MaxInflight: 10, MaxQueuedMessages: 100, MemoryWindow: 256}
	s := Restore(Saved{ClientID: "p", Record: Record{ProtocolLevel: 4}, LastSeq: last, Uncounted: true}, opts, t0.Add(time.Hour))
	if n, b := s.Queued(); n != 0 || b != 0 || !s.OldestQueued().IsZero() {
		t.Fatalf("before the count: queued %d (%d bytes), oldest %v; want nothing known", n, b, s.OldestQueued())
	}

	s.Attach(Link{Level: 4}, &fakeOutlet{})
	var o Outgoing
	fillFromStore(t, s, st, &o)
	sent := decode(t, o.Now)
	if len(sent) != 5 {
		t.Fatalf("connected before the count: sent %d, want the 5 on disk", len(sent))
	}
	for _, p := range sent[:2] {
		if _, ok := s.Ack(p.(*codec.Publish).PacketID, codec.TypePuback); !ok {
			t.Fatal("PUBACK refused")
		}
	}
	if n, b := s.Queued(); n != -2 || b != -2 {
		t.Fatalf("two acknowledged before the count: queued %d (%d bytes), want -2 (-2)", n, b)
	}
	m := &persist.Message{Topic: "t", Payload: []byte{9}, QoS: 1, Arrived: t0.Add(time.Hour)}
	if !s.Reserve(1) {
		t.Fatal("reservation refused")
	}
	committed(s, queueForP(t, st, m, 1), m, 1)
	o = Outgoing{}
	s.Fill(&o)
	if got := decode(t, o.Now); len(got) != 1 || got[0].(*codec.Publish).Payload[0] != 9 {
		t.Fatalf("after the 5: sent %v, want the new message", got)
	}

	s.Counted(5, 5, t0)
	if n, b := s.Queued(); n != 4 || b != 4 {
		t.Fatalf("counted: queued %d (%d bytes), want 4 (4): 5 counted + 1 new - 2 acknowledged", n, b)
	}
	s.Counted(5, 5, t0)
	if n, _ := s.Queued(); n != 4 {
		t.Fatalf("counted twice: queued %d, want 4", n)
	}
	fresh := New("p", true, 4, opts)
	fresh.Counted(5, 5, t0)
	if n, _ := fresh.Queued(); n != 0 {
		t.Fatalf("a session made since the start took the count: queued %d, want 0", n)
	}

	off := Restore(Saved{ClientID: "q", Record: Record{ProtocolLevel: 4}, LastSeq: last, Uncounted: true}, opts, t0)
	off.Counted(3, 30, t0)
	if n, b := off.Queued(); n != 3 || b != 30 || !off.OldestQueued().Equal(t0) {
		t.Fatalf("offline, counted: queued %d (%d bytes), oldest %v; want 3 (30), %v", n, b, off.OldestQueued(), t0)
	}
}

// A read started ahead (NextLoad) and answered after more entries were committed keeps its own
// upTo: a short answer does not let the session skip what was committed after the read began.
func TestReadAheadKeepsItsUpTo(t *testing.T) {
	opts := specOptions
	s := New("c", true, codec.Level311, &opts)
	var d disk
	limit := opts.MemoryWindow + opts.MaxInflight
	first := uint64(limit + 2) // one full page, then a short one
	for seq := uint64(1); seq <= first; seq++ {
		commit(s, &d, seq, msg(fmt.Sprint(seq), 1), 1)
	}
	s.Attach(Link{Level: codec.Level311}, &fakeOutlet{})

	sent := map[string]int{}
	var ahead *Load
	var aheadEntries []message.Entry
	// send fills, answering loads from d (or from the read ahead when it answers), sends and
	// acknowledges what goes out, and starts a read ahead after every full page.
	send := func() {
		for {
			var o Outgoing
			s.Fill(&o)
			for _, p := range publishes(t, decode(t, o.Now)) {
				sent[string(p.Payload)]++
				w, ok := s.Ack(p.PacketID, codec.TypePuback)
				if !ok {
					t.Fatalf("PUBACK %d refused", p.PacketID)
				}
				d.apply([]Write{w})
			}
			d.apply(o.Writes)
			if !o.NeedLoad {
				if len(o.Now) == 0 {
					return
				}
				continue
			}
			entries := d.read(o.Load)
			if ahead != nil && ahead.Answers(o.Load) {
				o.Load, entries = *ahead, aheadEntries
			}
			ahead = nil
			full := len(entries) == o.Load.Limit
			more := s.Loaded(&o, entries)
			if l, ok := s.NextLoad(); ok && more && full {
				ahead, aheadEntries = &l, d.read(l) // the read as it would run now
				// Committed while the read ahead is in flight.
				for seq := first + 1; seq <= first+3; seq++ {
					commit(s, &d, seq, msg(fmt.Sprint(seq), 1), 1)
				}
			}
			if !more {
				return
			}
		}
	}
	send()
	send() // what Committed woke the writer for
	for seq := uint64(1); seq <= first+3; seq++ {
		if n := sent[fmt.Sprint(seq)]; n != 1 {
			t.Errorf("message %d sent %d times, want once", seq, n)
		}
	}
}
