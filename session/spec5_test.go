package session

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/message"
)

// The rows below are statements of MQTT 5.0 about what a server sends a client, checked like
// spec_test.go's: events into one session, packets and writes out.

// decode5 decodes level-5 packets, failing on anything but a clean end.
func decode5(t *testing.T, b []byte) []*codec.Publish {
	t.Helper()
	r := codec.NewReader(bytes.NewReader(b), 0)
	r.SetLevel(codec.Level5)
	var out []*codec.Publish
	for {
		p, err := r.ReadPacket()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decoding what the session sent: %v", err)
		}
		pub, ok := p.(*codec.Publish)
		if !ok {
			t.Fatalf("got %s, want PUBLISH", p.Type())
		}
		out = append(out, pub)
	}
}

// aliasTable is a connection's alias table whose packets reach the wire in the order Fill writes
// them.
type aliasTable struct {
	max     int
	aliases map[string]uint16
	defined map[string]bool
}

func (a *aliasTable) Lookup(topic string) (uint16, bool) {
	if n, ok := a.aliases[topic]; ok {
		return n, a.defined[topic]
	}
	if len(a.aliases) >= a.max {
		return 0, false
	}
	if a.aliases == nil {
		a.aliases, a.defined = map[string]uint16{}, map[string]bool{}
	}
	a.aliases[topic] = uint16(len(a.aliases) + 1)
	return a.aliases[topic], false
}

func (a *aliasTable) Defined(topic string) { a.defined[topic] = true }

func newSpec5Session(persistent bool, l Link) *Session {
	opts := specOptions
	s := New("c", persistent, codec.Level5, &opts)
	l.Level = codec.Level5
	s.Attach(l, &fakeOutlet{})
	return s
}

// queue5 queues m at qos in a clean session, as the broker does.
func queue5(s *Session, m *message.Message, qos byte) {
	s.Reserve(len(m.Payload))
	s.Enqueue(m, qos)
}

func TestSessionSpec5(t *testing.T) {
	at := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	rows := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"MQTT-3.3.4-9 no more unacknowledged QoS 1/2 PUBLISH packets than the client's Receive Maximum", func(t *testing.T) {
			s := newSpec5Session(false, Link{ReceiveMaximum: 2})
			for range 3 {
				queue5(s, msg("x", 1), 1)
			}
			o := Outgoing{At: at}
			s.Fill(&o)
			if n := len(decode5(t, o.Now)); n != 2 || s.Inflight() != 2 {
				t.Fatalf("sent %d, in flight %d; want 2 (Receive Maximum) below max_inflight %d", n, s.Inflight(), specOptions.MaxInflight)
			}
		}},
		{"MQTT-3.3.2-5 a message whose expiry interval has passed is not sent, and leaves the queue", func(t *testing.T) {
			s := New("c", true, codec.Level5, &specOptions)
			s.Attach(Link{Level: codec.Level5}, &fakeOutlet{})
			var d disk
			old := &message.Message{Topic: "t", Payload: []byte("old"), QoS: 1, Expires: at.Add(-time.Second)}
			fresh := &message.Message{Topic: "t", Payload: []byte("new"), QoS: 1, Expires: at.Add(time.Minute)}
			commit(s, &d, 1, old, 1)
			commit(s, &d, 2, fresh, 1)
			o := Outgoing{At: at}
			s.Fill(&o)
			pubs := decode5(t, o.Now)
			if len(pubs) != 1 || string(pubs[0].Payload) != "new" || o.Expired != 1 {
				t.Fatalf("sent %v, expired %d; want only the fresh one, one expired", pubs, o.Expired)
			}
			if !slices.Contains(o.Writes, Write{Kind: WriteDoneQueued, Seq: 1}) {
				t.Errorf("writes %v: the expired entry is not removed from the store", o.Writes)
			}
			if n, _ := s.Queued(); n != 1 {
				t.Errorf("queued %d, want 1", n)
			}
		}},
		{"MQTT-3.3.2-6 the Message Expiry Interval sent is what remains of the publisher's", func(t *testing.T) {
			s := newSpec5Session(false, Link{})
			queue5(s, &message.Message{Topic: "t", QoS: 1, Expires: at.Add(10*time.Second + 500*time.Millisecond)}, 1)
			queue5(s, msg("never", 1), 1)
			o := Outgoing{At: at}
			s.Fill(&o)
			pubs := decode5(t, o.Now)
			if len(pubs) != 2 || pubs[0].Props == nil || pubs[0].Props.MessageExpiry != 11 {
				t.Fatalf("sent %+v, want a Message Expiry Interval of 11 s", pubs)
			}
			if pubs[1].Props != nil && pubs[1].Props.Has(codec.PropMessageExpiryInterval) {
				t.Errorf("a message without expiry got %d", pubs[1].Props.MessageExpiry)
			}
		}},
		{"MQTT-3.3.2-17/18 the publisher's properties reach the subscriber, user properties in order", func(t *testing.T) {
			props := &codec.Properties{PayloadFormat: 1, ContentType: "text/plain", ResponseTopic: "reply/here",
				CorrelationData: []byte{7}, User: []codec.UserProperty{{Name: "b", Value: "2"}, {Name: "a", Value: "1"}, {Name: "b", Value: "3"}}}
			s := newSpec5Session(false, Link{})
			queue5(s, &message.Message{Topic: "t", Payload: []byte("p"), QoS: 1, Props: props}, 1)
			o := Outgoing{At: at}
			s.Fill(&o)
			pubs := decode5(t, o.Now)
			if len(pubs) != 1 || pubs[0].Props == nil {
				t.Fatalf("sent %+v", pubs)
			}
			got := pubs[0].Props
			if got.PayloadFormat != 1 || got.ContentType != "text/plain" || got.ResponseTopic != "reply/here" ||
				!bytes.Equal(got.CorrelationData, []byte{7}) || !slices.Equal(got.User, props.User) {
				t.Errorf("properties %+v, want %+v", got, props)
			}
		}},
		{"MQTT-3.1.2-25 a PUBLISH larger than the client's Maximum Packet Size is dropped as if sent", func(t *testing.T) {
			s := newSpec5Session(false, Link{MaxPacketSize: 64})
			queue5(s, &message.Message{Topic: "t", Payload: make([]byte, 100), QoS: 1}, 1)
			queue5(s, msg("small", 1), 1)
			o := Outgoing{At: at}
			s.Fill(&o)
			pubs := decode5(t, o.Now)
			if len(pubs) != 1 || string(pubs[0].Payload) != "small" || o.TooLarge != 1 {
				t.Fatalf("sent %+v, too large %d; want only the small one", pubs, o.TooLarge)
			}
			if n, _ := s.Queued(); n != 1 || s.Inflight() != 1 {
				t.Errorf("queued %d, in flight %d; the dropped message must leave the queue", n, s.Inflight())
			}
		}},
		{"MQTT-3.3.2-7/12 topic aliases: the first PUBLISH of a topic names it, the next ones only carry the alias, up to the connection's table", func(t *testing.T) {
			s := newSpec5Session(false, Link{TopicAliasMax: 1})
			for _, topic := range []string{"a/1", "a/1", "b/2", "a/1"} {
				queue5(s, &message.Message{Topic: topic, QoS: 0}, 0)
			}
			o := Outgoing{At: at, Aliases: &aliasTable{max: 1}}
			s.Fill(&o)
			pubs := decode5(t, o.Now)
			type seen struct {
				topic string
				alias uint16
			}
			var got []seen
			for _, p := range pubs {
				var a uint16
				if p.Props != nil {
					a = p.Props.TopicAlias
				}
				got = append(got, seen{p.Topic, a})
			}
			want := []seen{{"a/1", 1}, {"", 1}, {"b/2", 0}, {"", 1}}
			if !slices.Equal(got, want) {
				t.Fatalf("sent %v, want %v", got, want)
			}
		}},
		{"3.1.1 clients get the message without properties", func(t *testing.T) {
			s, _ := newSpecSession(false)
			queue5(s, &message.Message{Topic: "t", QoS: 1, Props: &codec.Properties{ContentType: "x"}, Expires: at.Add(time.Hour)}, 1)
			now, _, _ := fill(t, s, nil)
			if pubs := publishes(t, now); len(pubs) != 1 || pubs[0].Props != nil {
				t.Fatalf("sent %+v", pubs)
			}
		}},
	}
	for _, r := range rows {
		t.Run(r.name, r.run)
	}
}

// TestWillDelayAndSessionExpiry: the timing rows of a level-5 session that outlives its
// connection, with the clock passed in.
func TestWillDelayAndSessionExpiry(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	delayed := func(s *Session, delay uint32) *codec.Will {
		w := &codec.Will{Topic: "gone", Props: &codec.Properties{WillDelay: delay}}
		s.SetWill(w)
		s.Detach(t0)
		return w
	}
	t.Run("MQTT-3.1.3-9 a delayed will is not sent when the session resumes in time", func(t *testing.T) {
		s := newSpec5Session(true, Link{Level: codec.Level5})
		s.SetExpiry(60, true)
		delayed(s, 5)
		if s.TakeWill(0) != nil || s.WillDue(t0.Add(4*time.Second), false) != nil {
			t.Fatal("a will with a 5 s delay was due at once")
		}
		if at, ok := s.NextEvent(0); !ok || !at.Equal(t0.Add(5*time.Second)) {
			t.Fatalf("next event %v %v, want the will at +5 s", at, ok)
		}
		s.SetWill(nil) // the client is back
		s.Attach(Link{Level: codec.Level5}, &fakeOutlet{})
		s.Detach(t0.Add(10 * time.Second))
		if w := s.WillDue(t0.Add(time.Hour), true); w != nil {
			t.Fatalf("the resumed session still sent the old will %v", w)
		}
	})
	t.Run("MQTT-3.1.3-9 a delayed will is due when the session ends, if that is earlier", func(t *testing.T) {
		s := newSpec5Session(true, Link{Level: codec.Level5})
		s.SetExpiry(2, true)
		w := delayed(s, 5)
		if s.TakeWill(0) != nil {
			t.Fatal("due at once")
		}
		if at, ok := s.NextEvent(0); !ok || !at.Equal(t0.Add(2*time.Second)) {
			t.Fatalf("next event %v %v, want the session end at +2 s", at, ok)
		}
		if got := s.WillDue(t0.Add(2*time.Second), false); got != w {
			t.Fatalf("at the session end: will %v", got)
		}
		if s.WillDue(t0.Add(time.Hour), true) != nil {
			t.Fatal("the will was returned twice")
		}
	})
	t.Run("a session that ends with its connection sends a delayed will at once", func(t *testing.T) {
		s := newSpec5Session(true, Link{Level: codec.Level5})
		s.SetExpiry(0, true)
		w := delayed(s, 5)
		if got := s.TakeWill(0); got != w {
			t.Fatalf("will %v, want it at once", got)
		}
	})
	t.Run("MQTT-3.1.2-23 expiry: the session's own interval, never, or the broker's default", func(t *testing.T) {
		s := newSpec5Session(true, Link{Level: codec.Level5})
		if _, ok := s.ExpiresAt(time.Hour); ok {
			t.Fatal("an online session expires")
		}
		s.Detach(t0)
		for _, c := range []struct {
			seconds uint32
			set     bool
			def     time.Duration
			want    time.Duration // -1: never
		}{{10, true, time.Hour, 10 * time.Second}, {0, true, time.Hour, 0}, {0xFFFFFFFF, true, time.Hour, -1},
			{0, false, time.Hour, time.Hour}, {0, false, 0, -1}} {
			s.SetExpiry(c.seconds, c.set)
			at, ok := s.ExpiresAt(c.def)
			if c.want < 0 && ok || c.want >= 0 && (!ok || !at.Equal(t0.Add(c.want))) {
				t.Errorf("interval %d set %v default %v: expires %v %v, want +%v", c.seconds, c.set, c.def, at, ok, c.want)
			}
		}
	})
}
