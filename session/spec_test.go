package session

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/message"
)

// The rows below are the statements of MQTT 3.1.1 about a server's session state, each checked
// as events into one session and the effects that come out: packets to send (Outgoing.Now and
// After), records to store (Writes), outlets to wake. No store or network is involved: the
// session's queue on disk is a slice the test hands to Loaded when Fill asks for it.

// disk is a persistent session's queue as the store would hold it.
type disk []message.Entry

// read answers a Load the way persist's ReadQueue does.
func (d disk) read(l Load) []message.Entry {
	var out []message.Entry
	for _, e := range d {
		if e.Seq > l.After && len(out) < l.Limit {
			out = append(out, e)
		}
	}
	return out
}

// apply brings d up to date with ws, as the store would.
func (d *disk) apply(ws []Write) {
	for _, w := range ws {
		i := slices.IndexFunc(*d, func(e message.Entry) bool { return e.Seq == w.Seq })
		if i < 0 {
			continue
		}
		switch w.Kind {
		case WriteSent:
			(*d)[i].State, (*d)[i].PacketID = message.Sent, w.PacketID
		case WriteReleased:
			(*d)[i].State, (*d)[i].PacketID = message.Released, w.PacketID
		case WriteDone, WriteDoneQueued:
			*d = slices.Delete(*d, i, i+1)
		}
	}
}

// fill runs Fill, answering its loads from d, and returns the packets to send now and after the
// writes, and the writes (already applied to d).
func fill(t *testing.T, s *Session, d *disk) (now, after []codec.Packet, ws []Write) {
	t.Helper()
	var o Outgoing
	for s.Fill(&o); o.NeedLoad; s.Fill(&o) {
		if !s.Loaded(&o, d.read(o.Load)) {
			break
		}
	}
	if d != nil {
		d.apply(o.Writes)
	}
	return decode(t, o.Now), decode(t, o.After), o.Writes
}

func publishes(t *testing.T, ps []codec.Packet) []*codec.Publish {
	t.Helper()
	var out []*codec.Publish
	for _, p := range ps {
		pub, ok := p.(*codec.Publish)
		if !ok {
			t.Fatalf("got %s, want PUBLISH", p.Type())
		}
		out = append(out, pub)
	}
	return out
}

func msg(payload string, qos byte) *message.Message {
	return &message.Message{Topic: "t", Payload: []byte(payload), QoS: qos}
}

var specOptions = Options{MaxInflight: 3, MaxQueuedMessages: 100, MemoryWindow: 2}

func newSpecSession(persistent bool) (*Session, *fakeOutlet) {
	opts := specOptions
	s := New("c", persistent, codec.Level311, &opts)
	o := &fakeOutlet{}
	s.Attach(Link{Level: codec.Level311}, o)
	return s, o
}

// commit queues m for a persistent session as the broker does: reserved, on disk, then applied
// and durable.
func commit(s *Session, d *disk, seq uint64, m *message.Message, qos byte) Outlet {
	s.Reserve(len(m.Payload))
	*d = append(*d, message.Entry{Seq: seq, QoS: qos, Message: m})
	return committed(s, seq, m, qos)
}

func TestSessionSpec(t *testing.T) {
	rows := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"MQTT-4.3.2-1 QoS 1 PUBLISH has an unused packet id and DUP 0, and is unacknowledged until PUBACK", func(t *testing.T) {
			s, _ := newSpecSession(false)
			for _, p := range []string{"a", "b"} {
				s.Reserve(1)
				s.Enqueue(msg(p, 1), 1)
			}
			now, _, ws := fill(t, s, nil)
			pubs := publishes(t, now)
			if len(pubs) != 2 || pubs[0].PacketID == 0 || pubs[0].PacketID == pubs[1].PacketID || pubs[0].Dup || pubs[0].QoS != 1 {
				t.Fatalf("sent %+v", pubs)
			}
			if len(ws) != 0 {
				t.Errorf("a clean session asked to store %v", ws)
			}
			if s.Inflight() != 2 {
				t.Errorf("in flight %d, want 2 until PUBACK", s.Inflight())
			}
			if _, ok := s.Ack(pubs[0].PacketID, codec.TypePubcomp); ok {
				t.Error("PUBCOMP accepted for a QoS 1 message")
			}
			if _, ok := s.Ack(pubs[0].PacketID, codec.TypePuback); !ok || s.Inflight() != 1 {
				t.Error("PUBACK did not acknowledge")
			}
			if _, ok := s.Ack(pubs[0].PacketID, codec.TypePuback); ok {
				t.Error("a second PUBACK for the same id acknowledged something")
			}
		}},
		{"MQTT-4.3.3-1 QoS 2: PUBLISH once its state is stored, PUBREL after PUBREC, never PUBLISH again after PUBREL", func(t *testing.T) {
			s, _ := newSpecSession(true)
			var d disk
			commit(s, &d, 1, msg("x", 2), 2)
			now, after, ws := fill(t, s, &d)
			if len(now) != 0 || len(after) != 1 {
				t.Fatalf("QoS 2 PUBLISH sent before its state is stored: now %d, after %d", len(now), len(after))
			}
			pid := after[0].(*codec.Publish).PacketID
			if len(ws) != 1 || ws[0] != (Write{Kind: WriteSent, Seq: 1, PacketID: pid}) {
				t.Fatalf("writes %v, want the sent state", ws)
			}
			w, ok := s.Pubrec(pid)
			if !ok || w != (Write{Kind: WriteReleased, Seq: 1, PacketID: pid}) {
				t.Fatalf("PUBREC: %v %v", w, ok)
			}
			d.apply([]Write{w})
			if _, ok := s.Ack(pid, codec.TypePuback); ok {
				t.Error("PUBACK accepted for a QoS 2 message")
			}
			// Reconnect: the message is past PUBREL, so PUBREL is sent again, not the PUBLISH.
			ws, _ = s.Detach(time.Now())
			d.apply(ws)
			s.Attach(Link{Level: codec.Level311}, &fakeOutlet{})
			now, _, _ = fill(t, s, &d)
			if len(now) != 1 {
				t.Fatalf("after reconnect sent %d packets, want one PUBREL", len(now))
			}
			if rel, ok := now[0].(*codec.Pubrel); !ok || rel.PacketID != pid {
				t.Fatalf("after reconnect sent %s, want PUBREL %d", now[0].Type(), pid)
			}
			w, ok = s.Ack(pid, codec.TypePubcomp)
			if !ok || w != (Write{Kind: WriteDone, Seq: 1}) {
				t.Fatalf("PUBCOMP: %v %v, want the entry removed", w, ok)
			}
		}},
		{"MQTT-4.4.0-1 MQTT-3.3.1-1 MQTT-2.3.1-3 on reconnect unacknowledged PUBLISH are sent again, DUP 1, same packet ids", func(t *testing.T) {
			s, _ := newSpecSession(true)
			var d disk
			commit(s, &d, 1, msg("a", 1), 1)
			commit(s, &d, 2, msg("b", 1), 1)
			now, _, ws := fill(t, s, &d)
			first := publishes(t, now)
			if len(first) != 2 || len(ws) != 0 {
				t.Fatalf("sent %d, writes %v: QoS 1 state of a connected client stays in memory", len(first), ws)
			}
			ws, _ = s.Detach(time.Now())
			if len(ws) != 2 || ws[0].Kind != WriteSent || ws[0].PacketID != first[0].PacketID {
				t.Fatalf("Detach writes %v, want the in-flight state of both", ws)
			}
			d.apply(ws)
			s.Attach(Link{Level: codec.Level311}, &fakeOutlet{})
			now, _, _ = fill(t, s, &d)
			again := publishes(t, now)
			if len(again) != 2 {
				t.Fatalf("re-sent %d, want 2", len(again))
			}
			for i, p := range again {
				if !p.Dup || p.PacketID != first[i].PacketID || string(p.Payload) != string(first[i].Payload) {
					t.Errorf("re-sent %+v, want %q again with DUP and packet id %d", p, first[i].Payload, first[i].PacketID)
				}
			}
		}},
		{"MQTT-3.1.2-5 messages for an offline persistent session are kept and sent when it comes back", func(t *testing.T) {
			s, _ := newSpecSession(true)
			var d disk
			s.Detach(time.Now())
			for i, p := range []string{"1", "2", "3", "4", "5"} {
				if o := commit(s, &d, uint64(i+1), msg(p, 1), 1); o != nil {
					t.Fatal("an offline session asked to wake an outlet")
				}
			}
			if n, _ := s.Queued(); n != 5 {
				t.Fatalf("queued %d, want 5", n)
			}
			s.Attach(Link{Level: codec.Level311}, &fakeOutlet{})
			now, _, _ := fill(t, s, &d)
			pubs := publishes(t, now)
			if len(pubs) != specOptions.MaxInflight {
				t.Fatalf("sent %d, want the in-flight window of %d", len(pubs), specOptions.MaxInflight)
			}
			var got []string
			for len(pubs) > 0 {
				for _, p := range pubs {
					got = append(got, string(p.Payload))
					w, _ := s.Ack(p.PacketID, codec.TypePuback)
					d.apply([]Write{w})
				}
				now, _, _ = fill(t, s, &d)
				pubs = publishes(t, now)
			}
			if !slices.Equal(got, []string{"1", "2", "3", "4", "5"}) {
				t.Errorf("delivered %v, want all five in order [MQTT-4.6.0-5]", got)
			}
		}},
		{"MQTT-3.3.1-2 a QoS 0 message queued for an offline session goes with DUP 0 and is done once sent", func(t *testing.T) {
			s, _ := newSpecSession(true)
			var d disk
			s.Detach(time.Now())
			commit(s, &d, 1, msg("q0", 0), 0)
			s.Attach(Link{Level: codec.Level311}, &fakeOutlet{})
			now, _, ws := fill(t, s, &d)
			pubs := publishes(t, now)
			if len(pubs) != 1 || pubs[0].Dup || pubs[0].QoS != 0 || pubs[0].PacketID != 0 {
				t.Fatalf("sent %+v", pubs)
			}
			if len(ws) != 1 || ws[0] != (Write{Kind: WriteDoneQueued, Seq: 1}) || len(d) != 0 {
				t.Errorf("writes %v, disk %v: the entry must go once sent", ws, d)
			}
		}},
		{"MQTT-2.3.1-4 a new PUBLISH never reuses a packet id still in flight", func(t *testing.T) {
			s, _ := newSpecSession(false)
			seen := map[uint16]bool{}
			for round := range 40 {
				s.Reserve(1)
				s.Enqueue(msg("m", 1), 1)
				now, _, _ := fill(t, s, nil)
				for _, p := range publishes(t, now) {
					if seen[p.PacketID] {
						t.Fatalf("round %d: packet id %d reused while in flight", round, p.PacketID)
					}
					seen[p.PacketID] = true
				}
				if s.Inflight() == specOptions.MaxInflight {
					// Acknowledge the oldest one only: the others stay in flight.
					for pid := range seen {
						if _, ok := s.Ack(pid, codec.TypePuback); ok {
							delete(seen, pid)
							break
						}
					}
				}
			}
		}},
		{"MQTT-4.3.3-2 a repeated QoS 2 packet id before PUBREL is not a new message", func(t *testing.T) {
			s, _ := newSpecSession(true)
			if !s.AddInbound(9) || s.AddInbound(9) {
				t.Fatal("the second PUBLISH with id 9 was reported new")
			}
			if !s.RemoveInbound(9) || s.RemoveInbound(9) {
				t.Fatal("PUBREL must release the id once")
			}
			if !s.AddInbound(9) {
				t.Fatal("after PUBREL the id is free for a new message")
			}
		}},
		{"MQTT-3.8.4-3 a SUBSCRIBE with an identical filter replaces the subscription; MQTT-3.10.4-1 UNSUBSCRIBE removes it", func(t *testing.T) {
			s, _ := newSpecSession(false)
			if !s.Subscribe("a/+", message.SubOptions{QoS: 1}) || s.Subscribe("a/+", message.SubOptions{QoS: 2}) {
				t.Fatal("Subscribe must report a new filter once")
			}
			if subs := s.Subscriptions(); len(subs) != 1 || subs["a/+"].QoS != 2 || s.NumSubscriptions() != 1 || !s.Has("a/+") {
				t.Fatalf("subscriptions %v", subs)
			}
			if !s.Unsubscribe("a/+") || s.Unsubscribe("a/+") || s.Has("a/+") {
				t.Fatal("Unsubscribe must remove the filter once")
			}
		}},
		{"in-flight window: at most max_inflight unacknowledged messages", func(t *testing.T) {
			s, _ := newSpecSession(false)
			for range 5 {
				s.Reserve(1)
				s.Enqueue(msg("m", 2), 2)
			}
			now, _, _ := fill(t, s, nil)
			if n := len(publishes(t, now)); n != specOptions.MaxInflight {
				t.Fatalf("sent %d, want %d", n, specOptions.MaxInflight)
			}
			if now, _, _ := fill(t, s, nil); len(now) != 0 {
				t.Fatalf("sent %d more with a full window", len(now))
			}
		}},
		{"a message is not sent before it is durable (entries past the committed seq wait)", func(t *testing.T) {
			s, _ := newSpecSession(true)
			var d disk
			s.Detach(time.Now())
			commit(s, &d, 1, msg("durable", 1), 1)
			// Applied to the store but not yet synced: on disk, not yet Committed.
			d = append(d, message.Entry{Seq: 2, QoS: 1, Message: msg("not yet", 1)})
			s.Attach(Link{Level: codec.Level311}, &fakeOutlet{})
			now, _, _ := fill(t, s, &d)
			if pubs := publishes(t, now); len(pubs) != 1 || string(pubs[0].Payload) != "durable" {
				t.Fatalf("sent %+v, want only the durable message", pubs)
			}
		}},
		{"a read that finds only entries not yet durable tells the caller to wait, not to read again", func(t *testing.T) {
			s, _ := newSpecSession(true)
			var d disk
			s.Detach(time.Now())
			commit(s, &d, 1, msg("gone", 1), 1)
			d = d[:0] // acknowledged meanwhile; the disk holds only entries not yet synced
			limit := specOptions.MemoryWindow + specOptions.MaxInflight
			for seq := 2; seq < 2+limit; seq++ {
				d = append(d, message.Entry{Seq: uint64(seq), QoS: 1, Message: msg("later", 1)})
			}
			s.Attach(Link{Level: codec.Level311}, &fakeOutlet{})
			var o Outgoing
			s.Fill(&o)
			if !o.NeedLoad {
				t.Fatal("Fill did not ask for the queue on disk")
			}
			if s.Loaded(&o, d.read(o.Load)) || len(o.Now) != 0 {
				t.Fatal("Loaded reported something to send from entries that are not durable")
			}
		}},
		{"a disk read answered after a reconnect is thrown away", func(t *testing.T) {
			s, _ := newSpecSession(true)
			var d disk
			s.Detach(time.Now())
			commit(s, &d, 1, msg("m", 1), 1)
			s.Attach(Link{Level: codec.Level311}, &fakeOutlet{})
			var o Outgoing
			s.Fill(&o)
			if !o.NeedLoad {
				t.Fatal("Fill did not ask for the queue on disk")
			}
			s.Detach(time.Now())
			s.Attach(Link{Level: codec.Level311}, &fakeOutlet{})
			s.Loaded(&o, d.read(o.Load))
			var again Outgoing
			if s.Fill(&again); !again.NeedLoad || len(o.Now) != 0 {
				t.Fatal("a stale read was used: the session did not ask for the queue again")
			}
			now, _, _ := fill(t, s, &d)
			if len(publishes(t, now)) != 1 {
				t.Fatal("the message was not sent after the fresh read")
			}
		}},
		{"a queued message the ACL no longer lets the client read is removed, not sent", func(t *testing.T) {
			s, _ := newSpecSession(true)
			var d disk
			commit(s, &d, 1, msg("secret", 1), 1)
			o := Outgoing{MayRead: func(string) bool { return false }}
			s.Fill(&o)
			if len(o.Now) != 0 || len(o.Writes) != 1 || o.Writes[0] != (Write{Kind: WriteDoneQueued, Seq: 1}) {
				t.Fatalf("sent %d bytes, writes %v", len(o.Now), o.Writes)
			}
			if n, _ := s.Queued(); n != 0 {
				t.Errorf("queued %d after the refusal, want 0", n)
			}
		}},
		{"MQTT-3.1.2-8 the will is returned once when the connection ends without DISCONNECT", func(t *testing.T) {
			s, _ := newSpecSession(true)
			w := &codec.Will{Topic: "gone", Payload: []byte("x"), QoS: 1}
			s.SetWill(w)
			s.Detach(time.Now())
			if got := s.TakeWill(0); got != w {
				t.Fatalf("will %v, want %v", got, w)
			}
			if s.TakeWill(0) != nil {
				t.Error("the will was returned twice")
			}
		}},
		{"MQTT-3.1.2-10 DISCONNECT discards the will", func(t *testing.T) {
			s, _ := newSpecSession(false)
			s.SetWill(&codec.Will{Topic: "gone"})
			s.Disconnected()
			s.Detach(time.Now())
			if w := s.TakeWill(0); w != nil {
				t.Fatalf("will %v after DISCONNECT", w)
			}
		}},
		{"MQTT-3.1.2-4 a persistent session is restored from what the store held", func(t *testing.T) {
			since := time.Now().Add(-time.Hour).Truncate(time.Second)
			owner := Identity{Username: "u", Known: true}
			s := Restore(Saved{ClientID: "c", Record: Record{ProtocolLevel: codec.Level31, Owner: owner, OfflineSince: since},
				QueuedCount: 3, QueuedBytes: 30, LastSeq: 7, InboundQoS2: []uint16{4}}, &specOptions, time.Now())
			if n, b := s.Queued(); n != 3 || b != 30 || s.AddInbound(4) || !s.OfflineSince().Equal(since) || s.Identity() != owner || s.Online() {
				t.Fatalf("restored %+v", s.Record())
			}
			if r := s.Record(); r.ProtocolLevel != codec.Level31 || r.Owner != owner || !r.OfflineSince.Equal(since) {
				t.Errorf("record %+v", r)
			}
			o := &fakeOutlet{}
			s.Attach(Link{Level: codec.Level311}, o)
			if r := s.Record(); !r.OfflineSince.IsZero() || s.Outlet() != o || !s.Online() {
				t.Errorf("online record %+v", r)
			}
			start := since.Add(time.Minute)
			if s := Restore(Saved{ClientID: "c", Record: Record{ProtocolLevel: codec.Level311}}, &specOptions, start); !s.OfflineSince().Equal(start) {
				t.Errorf("a session online when the broker stopped is offline since %v, want the restart %v", s.OfflineSince(), start)
			}
		}},
	}
	for _, r := range rows {
		t.Run(r.name, r.run)
	}
}

// A broker bridging in (Mosquitto's try_private) gets, on every subscription and whatever it
// asked, No Local and Retain As Published, at 3.x where the subscription options do not exist.
func TestBridgeLinkNoLocalAndRetainAsPublished(t *testing.T) {
	for _, level := range []byte{codec.Level31, codec.Level311} {
		opts := specOptions
		s := New("edge", false, level, &opts)
		s.Attach(Link{Level: level, Bridge: true}, &fakeOutlet{})
		s.Subscribe("t", message.SubOptions{QoS: 1})
		if _, ok := s.OwnQoS("t"); ok || !s.HasNoLocal() {
			t.Errorf("level %d: its own message would reach the bridge", level)
		}
		if ids, rap := s.Via("t", ""); ids != nil || !rap {
			t.Errorf("level %d: Via %v, %v; want no identifiers and retain as published", level, ids, rap)
		}
		kept, plain := msg("kept", 1), msg("plain", 1)
		kept.RetainPublished = true
		for _, m := range []*message.Message{kept, plain} {
			s.Reserve(len(m.Payload))
			s.Enqueue(m, 1)
		}
		now, _, _ := fill(t, s, nil)
		var got []string
		for _, p := range publishes(t, now) {
			got = append(got, fmt.Sprintf("%s retain %v", p.Payload, p.Retain))
		}
		if want := []string{"kept retain true", "plain retain false"}; !slices.Equal(got, want) {
			t.Errorf("level %d: sent %q, want %q", level, got, want)
		}
	}
}
