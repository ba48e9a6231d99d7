package session

import (
	"fmt"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/message"
)

// The rows below are the rules of a shared subscription group (MQTT 5.0 §4.8.2 and what holdfast
// adds: nothing stranded with a member that went away), as events into a Group and its member
// Sessions and the effects that come out. The broker's part (locks, the store) is played by
// groupRig.

type groupRig struct {
	t       *testing.T
	g       *Group[string]
	members map[string]*Session
	disk    disk // the group's queue as the store holds it
	seq     uint64
}

func newGroupRig(t *testing.T, strategy Strategy, ids ...string) *groupRig {
	opts := Options{MaxInflight: 2, MaxQueuedMessages: 100, MemoryWindow: 4}
	gopts := GroupOptions{Strategy: strategy, MaxRedeliveries: 2, Rand: func(n int) int { return n - 1 }}
	r := &groupRig{t: t, g: NewGroup[string]("g", "t/#", &opts, &gopts), members: make(map[string]*Session)}
	for _, id := range ids {
		s := New(id, true, codec.Level311, &opts)
		r.members[id] = s
		r.g.Join(id, id, 2)
	}
	return r
}

// online attaches member id and tells the group, as the broker does after Attach.
func (r *groupRig) online(id string) {
	s := r.members[id]
	s.Attach(Link{Level: codec.Level311}, &fakeOutlet{})
	r.g.Online(id, s.Conn(), s.Window())
	r.dispatch()
}

// offline detaches member id and gives back what it held.
func (r *groupRig) offline(id string) {
	_, back := r.members[id].Detach(time.Now())
	r.g.Offline(id)
	_, pw := r.g.Return(back)
	r.settle(pw)
	r.dispatch()
}

// publish queues a message on topic for the group and dispatches.
func (r *groupRig) publish(topic string, qos byte) uint64 {
	r.seq++
	m := &message.Message{Topic: topic, Payload: fmt.Appendf(nil, "m%d", r.seq), QoS: qos}
	if !r.g.Reserve(len(m.Payload)) {
		r.t.Fatalf("group queue full at seq %d", r.seq)
	}
	r.disk = append(r.disk, message.Entry{Seq: r.seq, QoS: qos, Message: m})
	r.g.Committed(r.seq, m, qos)
	r.dispatch()
	return r.seq
}

// dispatch hands out what the group may, answering its reads from r.disk.
func (r *groupRig) dispatch() {
	for {
		hand, load := r.g.Dispatch(nil)
		for _, h := range hand {
			if !r.members[h.Member].Lease(h.Entry, h.Conn) {
				r.g.Refused(h.Member, h.Conn, h.Entry)
			}
		}
		if load == nil {
			return
		}
		r.g.Loaded(load, r.disk.read(*load))
	}
}

// fill returns the PUBLISH packets member id sends, settling what it finished or stored.
func (r *groupRig) fill(id string) []*codec.Publish {
	var o Outgoing
	r.members[id].Fill(&o)
	r.settle(o.Writes) // before After goes out, as the broker does
	return publishes(r.t, append(decode(r.t, o.Now), decode(r.t, o.After)...))
}

// settle applies to the group what a member finished (the broker's settle) and to the disk.
func (r *groupRig) settle(ws []Write) {
	for i, w := range ws {
		if w.Group != r.g.ID {
			r.t.Fatalf("write %+v is not the group's", w)
		}
		ws[i] = r.g.Settled(w)
	}
	r.disk.apply(ws)
}

func (r *groupRig) ack(id string, pid uint16, kind codec.Type) {
	w, ok := r.members[id].Ack(pid, kind)
	if !ok {
		r.t.Fatalf("%s: %s %d not accepted", id, kind, pid)
	}
	r.settle([]Write{w})
	r.dispatch()
}

func payloads(ps []*codec.Publish) []string {
	var out []string
	for _, p := range ps {
		out = append(out, string(p.Payload))
	}
	return out
}

func TestGroupSpec(t *testing.T) {
	rows := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"MQTT-4.8.2-3 each message goes to one member, in turn, online members only", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a", "b", "c")
			r.online("a")
			r.online("b")
			for range 4 {
				r.publish("t/1", 1)
			}
			a, b, c := payloads(r.fill("a")), payloads(r.fill("b")), payloads(r.fill("c"))
			if fmt.Sprint(a) != "[m1 m3]" || fmt.Sprint(b) != "[m2 m4]" || len(c) != 0 {
				t.Fatalf("a %v, b %v, offline c %v", a, b, c)
			}
		}},
		{"a member gets no more than its window; the rest waits in the group", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a")
			r.online("a")
			for range 5 {
				r.publish("t/1", 1)
			}
			pubs := r.fill("a")
			if len(pubs) != 2 {
				t.Fatalf("sent %d, want the window of 2", len(pubs))
			}
			if q, out := r.g.Queued(); q != 5 || out != 2 {
				t.Fatalf("group holds %d, %d out; want 5, 2", q, out)
			}
			r.ack("a", pubs[0].PacketID, codec.TypePuback)
			if next := payloads(r.fill("a")); fmt.Sprint(next) != "[m3]" {
				t.Fatalf("after one PUBACK sent %v, want [m3]", next)
			}
			if q, _ := r.g.Queued(); q != 4 || len(r.disk) != 4 {
				t.Fatalf("group holds %d, disk %d; want 4 after the PUBACK", q, len(r.disk))
			}
		}},
		{"with every member offline the group keeps its messages, and hands them out on the first connect", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a", "b")
			for range 6 { // beyond the memory window of 4: the rest is read back from disk
				r.publish("t/1", 1)
			}
			if q, out := r.g.Queued(); q != 6 || out != 0 {
				t.Fatalf("group holds %d, %d out; want 6, 0", q, out)
			}
			r.online("b")
			var got []string
			for len(got) < 6 {
				pubs := r.fill("b")
				if len(pubs) == 0 {
					t.Fatalf("stalled after %v", got)
				}
				got = append(got, payloads(pubs)...)
				for _, p := range pubs {
					r.ack("b", p.PacketID, codec.TypePuback)
				}
			}
			if fmt.Sprint(got) != "[m1 m2 m3 m4 m5 m6]" {
				t.Fatalf("b got %v", got)
			}
		}},
		{"what a member that went away held goes to another member, and is counted", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a", "b")
			r.online("a")
			r.online("b")
			for range 4 {
				r.publish("t/1", 1)
			}
			a := r.fill("a") // m1 m3, both unacknowledged
			r.fill("b")      // m2 m4
			r.offline("a")
			if len(r.fill("b")) != 0 {
				t.Fatal("b's window is full: nothing more may go to it yet")
			}
			for _, pid := range []uint16{1, 2} {
				r.ack("b", pid, codec.TypePuback)
			}
			got := payloads(r.fill("b"))
			if fmt.Sprint(got) != fmt.Sprint(payloads(a)) || r.g.Redelivered != 2 {
				t.Fatalf("b got %v, want a's %v; redelivered %d", got, payloads(a), r.g.Redelivered)
			}
			if r.fill("a") != nil {
				t.Fatal("an offline member was sent something")
			}
		}},
		{"a member that comes back gets new messages, not what was moved away", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a", "b")
			r.online("a")
			r.online("b")
			r.publish("t/1", 1)
			r.fill("a") // m1
			r.offline("a")
			r.online("a")
			if got := r.fill("a"); len(got) != 0 {
				t.Fatalf("a got %v again after its comeback", payloads(got))
			}
			if got := payloads(r.fill("b")); fmt.Sprint(got) != "[m1]" {
				t.Fatalf("b got %v", got)
			}
		}},
		{"MQTT-4.3.3 a QoS 2 message PUBREC'd by a member stays with it; one not PUBREC'd moves", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a", "b")
			r.online("a")
			r.online("b")
			r.publish("t/1", 2)
			r.publish("t/1", 2)
			r.publish("t/1", 2)
			var o Outgoing
			r.members["a"].Fill(&o)
			if len(o.Now) != 0 || len(o.After) == 0 || len(o.Writes) != 2 || o.Writes[0].Kind != WriteSent || o.Writes[0].Holder != "a" {
				t.Fatalf("now %d bytes, after %d, writes %+v: a QoS 2 PUBLISH waits until the store names its member", len(o.Now), len(o.After), o.Writes)
			}
			r.settle(o.Writes)
			a := publishes(t, decode(t, o.After)) // m1 m3
			w, ok := r.members["a"].Pubrec(a[0].PacketID)
			if !ok || w.Kind != WriteReleased || w.Holder != "a" || w.Group != r.g.ID || w.Seq != 1 {
				t.Fatalf("PUBREC: %+v %v, want m1 held by a", w, ok)
			}
			r.settle([]Write{w})
			if r.disk[0].State != message.Released {
				t.Fatalf("the disk holds m1 as %v", r.disk[0].State)
			}
			r.offline("a")
			if got := payloads(r.fill("b")); fmt.Sprint(got) != "[m2 m3]" {
				t.Fatalf("b got %v, want m2 and a's m3, which it had not PUBREC'd", got)
			}
			// a comes back: PUBREL again for m1, which is finished only by its PUBCOMP.
			r.online("a")
			o = Outgoing{}
			r.members["a"].Fill(&o)
			now := decode(t, o.Now)
			if len(now) != 1 || now[0].Type() != codec.TypePubrel {
				t.Fatalf("a got %v, want one PUBREL", now)
			}
			r.ack("a", a[0].PacketID, codec.TypePubcomp)
			if len(r.disk) != 2 || r.disk[0].Seq != 2 {
				t.Fatalf("disk %v after m1's PUBCOMP", r.disk)
			}
		}},
		{"a member's session that ends finishes the messages it held PUBREC'd", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a")
			r.online("a")
			r.publish("t/1", 2)
			p := r.fill("a")[0]
			w, _ := r.members["a"].Pubrec(p.PacketID)
			r.settle([]Write{w})
			r.offline("a") // persistent: it keeps the message
			if q, out := r.g.Queued(); q != 1 || out != 1 {
				t.Fatalf("group holds %d, %d out, while a is offline; want 1, 1", q, out)
			}
			ws := r.members["a"].Discard()
			if len(ws) != 1 || ws[0].Group != r.g.ID {
				t.Fatalf("Discard: %+v", ws)
			}
			r.settle(ws)
			if q, out := r.g.Queued(); q != 0 || out != 0 || len(r.disk) != 0 {
				t.Fatalf("group holds %d, %d out, disk %d; want nothing", q, out, len(r.disk))
			}
		}},
		{"MQTT-4.3.3-9 a QoS 2 packet id moved away before PUBREC is not reused until the client answers for it", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a", "b")
			r.online("a")
			r.publish("t/1", 2)
			first := r.fill("a")[0].PacketID
			r.offline("a") // a's client may still hold first awaiting PUBREL
			r.online("b")
			r.fill("b") // m1
			r.online("a")
			r.members["a"].nextPID = first - 1 // as after a wrap: first would be next
			r.publish("t/1", 2)
			r.publish("t/1", 2)
			next := r.fill("a")
			if len(next) != 1 || next[0].PacketID == first {
				t.Fatalf("a got %+v; packet id %d may not be reused yet", next, first)
			}
			if _, ok := r.members["a"].Pubrec(first); ok {
				t.Fatal("a PUBREC for the moved message was taken for a live exchange")
			}
			if _, ok := r.members["a"].burnt[first]; ok {
				t.Fatal("the client answered for the id: it is free again")
			}
		}},
		{"MQTT-3.3.4-5 a group's message carries the group's subscription identifier only", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a")
			a := r.members["a"]
			a.Subscribe("$share/g/t/#", message.SubOptions{QoS: 1, ID: 7})
			a.Subscribe("t/#", message.SubOptions{QoS: 1, ID: 8})
			a.Subscribe("$share/other/t/#", message.SubOptions{QoS: 1, ID: 9})
			a.Attach(Link{Level: codec.Level5}, &fakeOutlet{})
			r.g.Online("a", a.Conn(), a.Window())
			r.publish("t/1", 1)
			var o Outgoing
			a.Fill(&o)
			p := decode5(t, o.Now)
			if len(p) != 1 || p[0].Props == nil || fmt.Sprint(p[0].Props.SubscriptionIDs) != "[7]" {
				t.Fatalf("sent %+v", p)
			}
			if ids, _ := a.Via("t/1", ""); fmt.Sprint(ids) != "[8]" {
				t.Fatalf("the ordinary copy carries %v, want [8]", ids)
			}
		}},
		{"a message that comes back has the group's QoS again, not the lower one of the member it was with", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a", "b")
			r.g.Join("a", "a", 1) // a now takes QoS 1
			r.online("a")
			r.publish("t/1", 2)
			if p := r.fill("a"); len(p) != 1 || p[0].QoS != 1 {
				t.Fatalf("a got %+v, want it at QoS 1", p)
			}
			r.offline("a")
			r.online("b")
			if p := r.fill("b"); len(p) != 1 || p[0].QoS != 2 {
				t.Fatalf("b got %+v, want it at QoS 2", p)
			}
		}},
		{"poison: a message back too often is dropped and counted", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a")
			r.publish("t/1", 1)
			for i := range 3 {
				r.online("a")
				if got := r.fill("a"); len(got) != 1 {
					t.Fatalf("round %d: a got %d", i, len(got))
				}
				r.offline("a")
			}
			if r.g.Poisoned != 1 || r.g.Redelivered != 2 || len(r.disk) != 0 {
				t.Fatalf("poisoned %d, redelivered %d, disk %d; want 1, 2, 0", r.g.Poisoned, r.g.Redelivered, len(r.disk))
			}
			if q, out := r.g.Queued(); q != 0 || out != 0 {
				t.Fatalf("group holds %d, %d out", q, out)
			}
		}},
		{"sticky: one topic's messages go to one member, in order", func(t *testing.T) {
			r := newGroupRig(t, Sticky, "a", "b", "c")
			for _, id := range []string{"a", "b", "c"} {
				r.online(id)
			}
			owner := map[string]string{}
			for i := range 12 {
				topic := fmt.Sprintf("t/%d", i%4)
				r.publish(topic, 1)
				for id := range r.members {
					for _, p := range r.fill(id) {
						if prev, ok := owner[p.Topic]; ok && prev != id {
							t.Fatalf("%s went to %s and %s", p.Topic, prev, id)
						}
						owner[p.Topic] = id
						r.ack(id, p.PacketID, codec.TypePuback)
					}
				}
			}
			if len(owner) != 4 {
				t.Fatalf("topics delivered: %v", owner)
			}
		}},
		{"least-inflight: the member with the most free window", func(t *testing.T) {
			r := newGroupRig(t, LeastInflight, "a", "b")
			r.online("a")
			r.publish("t/1", 1) // to a, the only one online
			r.online("b")
			r.publish("t/1", 1) // b has 2 free, a 1
			r.publish("t/1", 1) // 1 and 1: in turn
			a, b := payloads(r.fill("a")), payloads(r.fill("b"))
			if fmt.Sprint(b) != "[m2 m3]" && fmt.Sprint(b) != "[m2]" || len(a)+len(b) != 3 {
				t.Fatalf("a %v, b %v", a, b)
			}
		}},
		{"a hand-off to a connection that has gone is refused and goes to another member", func(t *testing.T) {
			r := newGroupRig(t, RoundRobin, "a", "b")
			r.online("a")
			r.online("b")
			r.members["a"].Detach(time.Now()) // the group has not heard yet
			r.publish("t/1", 1)
			r.publish("t/1", 1)
			if got := payloads(r.fill("b")); fmt.Sprint(got) != "[m1 m2]" {
				t.Fatalf("b got %v", got)
			}
		}},
	}
	for _, row := range rows {
		t.Run(row.name, row.run)
	}
}

// A group's queue restored before the store counted it: the limits see what is reserved since,
// and the count, once it arrives, what the disk held; it counts once, and not for a group that
// was not restored uncounted.
func TestGroupRestoredUncounted(t *testing.T) {
	opts := Options{MaxInflight: 10, MaxQueuedMessages: 3, MemoryWindow: 256}
	g := NewGroup[string]("g", "t/#", &opts, &GroupOptions{})
	g.RestoreUncounted(41)
	if n, _ := g.Queued(); n != 0 {
		t.Fatalf("before the count: queued %d, want 0", n)
	}
	if !g.Reserve(1) {
		t.Fatal("reservation before the count refused")
	}
	g.Counted(2, 20)
	if n, _ := g.Queued(); n != 3 {
		t.Fatalf("counted: queued %d, want 3", n)
	}
	if g.Reserve(1) {
		t.Fatal("reservation past max_queued_messages accepted once counted")
	}
	g.Counted(2, 20)
	if n, _ := g.Queued(); n != 3 {
		t.Fatalf("counted twice: queued %d, want 3", n)
	}
	fresh := NewGroup[string]("g", "t/#", &opts, &GroupOptions{})
	fresh.Counted(2, 20)
	if n, _ := fresh.Queued(); n != 0 {
		t.Fatalf("a group not restored uncounted took a count: queued %d", n)
	}
}
