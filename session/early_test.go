package session

import (
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/message"
)

// The rows below feed a persistent session entries the way the broker does since issue 18:
// Applied when persist's writer gives the entry its seq, Durable once the disk holds it. The disk
// (a slice, as in spec_test.go) receives an entry only when it is durable, as Badger does.

// queued is an entry applied for a session and not yet durable.
type queued struct {
	seq uint64
	m   *message.Message
	qos byte
}

// apply reserves room for m and hands it to s as applied (not durable); it returns the entry
// for durable and the outlet Applied returned.
func apply(s *Session, seq uint64, m *message.Message, qos byte) (queued, Outlet) {
	s.Reserve(len(m.Payload))
	return queued{seq, m, qos}, s.Applied(seq, m, qos)
}

// durable puts es on d and tells s that they are durable, up to the last; it returns the outlet
// Durable returned.
func durable(s *Session, d *disk, es ...queued) Outlet {
	for _, e := range es {
		*d = append(*d, message.Entry{Seq: e.seq, QoS: e.qos, Message: e.m})
	}
	return s.Durable(es[len(es)-1].seq)
}

func TestSessionEarlyDelivery(t *testing.T) {
	rows := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a QoS 1 entry goes out once applied; Durable then wakes nobody", func(t *testing.T) {
			s, out := newSpecSession(true)
			var d disk
			e, o := apply(s, 1, msg("a", 1), 1)
			if o != out {
				t.Fatalf("Applied returned %v, want the outlet to wake", o)
			}
			now, after, ws := fill(t, s, &d)
			if got := payloads(publishes(t, now)); len(got) != 1 || got[0] != "a" || len(after) != 0 || len(ws) != 0 {
				t.Fatalf("sent %v now, %d after, writes %v; want a now and nothing to store", got, len(after), ws)
			}
			if o := durable(s, &d, e); o != nil {
				t.Errorf("Durable of an entry already sent returned %v, want nobody woken", o)
			}
			if now, _, _ := fill(t, s, &d); len(now) != 0 {
				t.Errorf("sent %d packets again after Durable", len(now))
			}
		}},
		{"a QoS 2 entry, and those behind it, wait until it is durable", func(t *testing.T) {
			s, out := newSpecSession(true)
			var d disk
			e1, _ := apply(s, 1, msg("one", 1), 1)
			e2, o := apply(s, 2, msg("two", 2), 2)
			if o != nil {
				t.Errorf("Applied of a QoS 2 entry returned %v, want nobody woken before it is durable", o)
			}
			e3, _ := apply(s, 3, msg("three", 1), 1)
			now, after, _ := fill(t, s, &d)
			if got := payloads(publishes(t, now)); len(got) != 1 || got[0] != "one" || len(after) != 0 {
				t.Fatalf("sent %v now and %d after, want only the QoS 1 entry before the QoS 2 one", got, len(after))
			}
			if o := durable(s, &d, e1); o != nil {
				t.Errorf("Durable(1) returned %v, want nobody woken: entry 2 is not durable yet", o)
			}
			if o := durable(s, &d, e2, e3); o != out {
				t.Fatalf("Durable(3) returned %v, want the outlet: entry 2 may go now", o)
			}
			now, after, ws := fill(t, s, &d)
			if got := payloads(publishes(t, after)); len(got) != 1 || got[0] != "two" || len(ws) != 1 || ws[0].Kind != WriteSent || ws[0].Seq != 2 {
				t.Fatalf("after Durable sent %v after writes %v, want two once its state is stored", got, ws)
			}
			if got := payloads(publishes(t, now)); len(got) != 1 || got[0] != "three" {
				t.Fatalf("after Durable sent %v now, want three", got)
			}
		}},
		{"an entry acknowledged before it is durable is removed like any other", func(t *testing.T) {
			s, _ := newSpecSession(true)
			var d disk
			e, _ := apply(s, 7, msg("a", 1), 1)
			now, _, _ := fill(t, s, &d)
			pid := publishes(t, now)[0].PacketID
			w, ok := s.Ack(pid, codec.TypePuback)
			if !ok || w != (Write{Kind: WriteDoneQueued, Seq: 7}) {
				t.Fatalf("PUBACK: %v %v, want entry 7 removed (no in-flight state stored)", w, ok)
			}
			if o := durable(s, &d, e); o != nil {
				t.Errorf("Durable after the ack returned %v, want nobody woken", o)
			}
			d.apply([]Write{w})
			if n, _ := s.Queued(); n != 0 || len(d) != 0 {
				t.Errorf("queued %d, disk %v after the ack, want nothing", n, d)
			}
		}},
		{"detached while its entry is in flight and not durable: sent again with DUP once it is", func(t *testing.T) {
			s, _ := newSpecSession(true)
			var d disk
			e, _ := apply(s, 1, msg("a", 1), 1)
			now, _, _ := fill(t, s, &d)
			first := publishes(t, now)[0]
			ws, _ := s.Detach(time.Now())
			if len(ws) != 1 || ws[0] != (Write{Kind: WriteSent, Seq: 1, PacketID: first.PacketID}) {
				t.Fatalf("Detach writes %v, want the in-flight state of entry 1", ws)
			}
			out := &fakeOutlet{}
			s.Attach(Link{Level: codec.Level311}, out)
			if now, _, _ := fill(t, s, &d); len(now) != 0 {
				t.Fatalf("sent %d packets before entry 1 is durable: the disk does not hold it yet", len(now))
			}
			if o := durable(s, &d, e); o != out {
				t.Fatalf("Durable returned %v, want the outlet: the disk now holds what memory does not", o)
			}
			d.apply(ws) // persist applies the state after the entry: it was submitted after it
			now, _, _ = fill(t, s, &d)
			again := publishes(t, now)
			if len(again) != 1 || !again[0].Dup || again[0].PacketID != first.PacketID {
				t.Fatalf("after reconnect sent %+v, want entry 1 again with DUP and packet id %d", again, first.PacketID)
			}
		}},
		{"window full: what memory cannot hold is read from disk once durable, in order", func(t *testing.T) {
			s, out := newSpecSession(true) // window 3 in flight, 2 more in memory
			var d disk
			var es []queued
			for i, p := range []string{"1", "2", "3", "4", "5", "6"} {
				e, _ := apply(s, uint64(i+1), msg(p, 1), 1)
				es = append(es, e)
			}
			// 1 and 2 are in memory, 3 to 6 in neither memory nor on disk: the tail.
			now, _, _ := fill(t, s, &d)
			if got := payloads(publishes(t, now)); len(got) != 3 || got[0] != "1" || got[2] != "3" {
				t.Fatalf("sent %v, want 1 2 3: the tail joins memory once memory caught up", got)
			}
			if len(s.pending) != 1 || len(s.tail) != 2 {
				t.Fatalf("%d pending, %d in the tail; want 4 in memory (the window holds 2), 5 and 6 in the tail", len(s.pending), len(s.tail))
			}
			if o := durable(s, &d, es...); o != out {
				t.Fatalf("Durable(6) returned %v, want the outlet: 5 and 6 are on disk and not in memory", o)
			}
			if len(s.tail) != 0 {
				t.Fatalf("%d entries left in the tail, want none: the disk holds them", len(s.tail))
			}
			for _, p := range publishes(t, now) {
				s.Ack(p.PacketID, codec.TypePuback)
			}
			var o Outgoing
			s.Fill(&o)
			if !o.NeedLoad || o.Load.After != 4 {
				t.Fatalf("Fill asks to load %+v (%v), want the entries after 4 from disk", o.Load, o.NeedLoad)
			}
			s.Loaded(&o, d.read(o.Load))
			s.Fill(&o)
			if got := payloads(publishes(t, decode(t, o.Now))); len(got) != 3 || got[0] != "4" || got[1] != "5" || got[2] != "6" {
				t.Fatalf("sent %v, want 4 (in memory), then 5 and 6 read from disk", got)
			}
			// Caught up again: the next entry stays in memory and goes at once.
			apply(s, 7, msg("7", 1), 1)
			if s.Inflight() != 3 || len(s.pending) != 1 || len(s.tail) != 0 {
				t.Fatalf("entry 7: %d pending, %d in the tail, want it in memory", len(s.pending), len(s.tail))
			}
		}},
		{"offline, then back under a steady stream: reads the disk, then catches up through the tail", func(t *testing.T) {
			s, _ := newSpecSession(true)
			var d disk
			s.Detach(time.Now())
			e1, _ := apply(s, 1, msg("1", 1), 1)
			durable(s, &d, e1)
			e2, _ := apply(s, 2, msg("2", 1), 1) // not durable yet when the client connects
			out := &fakeOutlet{}
			s.Attach(Link{Level: codec.Level311}, out)
			if _, o := apply(s, 3, msg("3", 1), 1); o != nil {
				t.Fatalf("Applied(3) returned %v, want nobody woken: 2 comes first", o)
			}
			now, _, _ := fill(t, s, &d)
			if got := payloads(publishes(t, now)); len(got) != 1 || got[0] != "1" {
				t.Fatalf("sent %v, want 1 from disk, then nothing until 2 is durable", got)
			}
			if o := durable(s, &d, e2); o != out {
				t.Fatalf("Durable(2) returned %v, want the outlet", o)
			}
			now, _, _ = fill(t, s, &d)
			if got := payloads(publishes(t, now)); len(got) != 2 || got[0] != "2" || got[1] != "3" {
				t.Fatalf("sent %v, want 2 from disk, then 3 from the tail", got)
			}
			if _, o := apply(s, 4, msg("4", 1), 1); o != out {
				t.Fatalf("Applied(4) returned %v, want the outlet: the session caught up", o)
			}
		}},
	}
	for _, r := range rows {
		t.Run(r.name, r.run)
	}
}
