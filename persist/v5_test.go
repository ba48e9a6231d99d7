package persist

import (
	"encoding/binary"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// v5Message is a message with every MQTT 5 part the store keeps.
func v5Message(topic, payload string) *Message {
	p := &codec.Properties{ContentType: "application/json", ResponseTopic: "reply/" + topic,
		CorrelationData: []byte{0, 1, 0xff}, User: []codec.UserProperty{{Name: "z", Value: "1"}, {Name: "a", Value: "2"}, {Name: "z", Value: "3"}}}
	p.Include(codec.PropPayloadFormatIndicator) // 0, present: "unspecified bytes" said out loud
	return &Message{Topic: topic, Payload: []byte(payload), QoS: 2, Retain: true, Props: p,
		Expires: time.Unix(1893456000, 123456789).UTC()}
}

// sameMessage reports whether got is want, the MQTT 5 parts included.
func sameMessage(got, want *Message) bool {
	return msgEqual(got, want) && reflect.DeepEqual(got.Props, want.Props) && got.Expires.Equal(want.Expires)
}

func v5Will() *codec.Will {
	return &codec.Will{Topic: "wills/c", Payload: []byte("gone"), QoS: 1, Retain: true,
		Props: &codec.Properties{WillDelay: 30, MessageExpiry: 600, ContentType: "text/plain", User: []codec.UserProperty{{Name: "k", Value: "v"}}}}
}

func TestRecordRoundTripV5(t *testing.T) {
	k := queueKey("c", 1)
	m := v5Message("a/b", "payload")
	if _, got, err := decodeQueue(k, encodeQueueInline(1, m), true); err != nil || !sameMessage(got, m) {
		t.Errorf("inline: %+v, %v", got, err)
	}
	if got, err := decodeBody(k, encodeBody(m), true); err != nil || !sameMessage(got, m) {
		t.Errorf("body: %+v, %v", got, err)
	}
	if got, err := decodeRetained(retainedKey("a/b"), encodeRetained(m)); err != nil || !sameMessage(&got, m) {
		t.Errorf("retained: %+v, %v", got, err)
	}
	// Each part alone.
	onlyExpiry := &Message{Topic: "t", Payload: []byte("p"), QoS: 1, Expires: time.Unix(5, 6).UTC()}
	onlyProps := &Message{Topic: "t", Payload: []byte("p"), QoS: 1, Props: &codec.Properties{PayloadFormat: 1}}
	for _, m := range []*Message{onlyExpiry, onlyProps} {
		if _, got, err := decodeQueue(k, encodeQueueInline(1, m), true); err != nil || !sameMessage(got, m) {
			t.Errorf("inline %+v: %+v, %v", m, got, err)
		}
	}

	sk := sessionKey("c")
	for _, r := range []SessionRecord{
		{ProtocolLevel: 5, HasSessionExpiry: true},
		{ProtocolLevel: 5, HasSessionExpiry: true, SessionExpiry: 0xFFFFFFFF, HasOwner: true, Username: "u"},
		{ProtocolLevel: 5, HasSessionExpiry: true, SessionExpiry: 3600, DisconnectedAt: time.Unix(9, 9).UTC(), HasOwner: true, Anonymous: true},
		{ProtocolLevel: 4},
	} {
		if got, err := decodeSession(sk, encodeSession(r)); err != nil || got != r {
			t.Errorf("session %+v: %+v, %v", r, got, err)
		}
	}

	subk := subKey("c", "f")
	for _, o := range []SubOptions{{QoS: 2}, {QoS: 1, NoLocal: true}, {RetainAsPublished: true, ID: 1}, {QoS: 2, NoLocal: true, RetainAsPublished: true, ID: maxSubID}} {
		if got, err := decodeSub(subk, encodeSub(o)); err != nil || got != o {
			t.Errorf("subscription %+v: %+v, %v", o, got, err)
		}
	}

	wk := willKey("c")
	for _, w := range []*codec.Will{v5Will(), {Topic: "t", QoS: 0}, {Topic: "t", Payload: []byte("x"), QoS: 2, Props: &codec.Properties{}}} {
		want := *w
		if want.Props != nil && reflect.DeepEqual(*want.Props, codec.Properties{}) {
			want.Props = nil // nothing a will carries: stored as none
		}
		got, err := decodeWill(wk, encodeWill(w))
		if want.Payload == nil {
			want.Payload = []byte{}
		}
		if err != nil || !reflect.DeepEqual(got, &want) {
			t.Errorf("will %+v: %+v, %v", w, got, err)
		}
	}
}

// A message without MQTT 5 parts costs what it cost in format 1, and comes back without them.
func TestRecordWithoutPropertiesCostsNothing(t *testing.T) {
	m := &Message{Topic: "bench/topic", Payload: make([]byte, 100), QoS: 1}
	empty := &Message{Topic: m.Topic, Payload: m.Payload, QoS: 1, Props: &codec.Properties{}}
	for _, m := range []*Message{m, empty} {
		v := encodeQueueInline(1, m)
		if len(v) != queueHeaderLen+3+len(m.Topic)+len(m.Payload) {
			t.Errorf("inline entry of %d bytes, want %d", len(v), queueHeaderLen+3+len(m.Topic)+len(m.Payload))
		}
		if _, got, err := decodeQueue(queueKey("c", 1), v, true); err != nil || got.Props != nil || !got.Expires.IsZero() {
			t.Errorf("decoded %+v, %v; want no properties, no expiry", got, err)
		}
	}
}

// Records of format 1, as that format's encoders wrote them, still decode.
func TestRecordVersion1StillRead(t *testing.T) {
	k := queueKey("c", 1)
	inline := []byte{1, 1, qfRetain, 0, 0, 0, 2, 2, 0, 3, 'a', '/', 'b', 'h', 'i'}
	_, m, err := decodeQueue(k, inline, true)
	if want := (&Message{Topic: "a/b", Payload: []byte("hi"), QoS: 2, Retain: true}); err != nil || !sameMessage(m, want) {
		t.Errorf("inline v1: %+v, %v", m, err)
	}
	if h, _, err := decodeQueue(k, []byte{1, 2, qfShared, 0, 0, 0, 9}, false); err != nil || !h.shared() || h.payloadSize != 9 {
		t.Errorf("shared v1: %+v, %v", h, err)
	}
	body := []byte{1, 1, bfRetain, 0, 1, 't', 'x'}
	if m, err := decodeBody(k, body, true); err != nil || !sameMessage(m, &Message{Topic: "t", Payload: []byte("x"), QoS: 1, Retain: true}) {
		t.Errorf("body v1: %+v, %v", m, err)
	}
	if m, err := decodeRetained(retainedKey("r"), []byte{1, 2, 'p'}); err != nil || !sameMessage(&m, &Message{Topic: "r", Payload: []byte("p"), QoS: 2, Retain: true}) {
		t.Errorf("retained v1: %+v, %v", m, err)
	}
	if o, err := decodeSub(subKey("c", "f"), []byte{1, 2}); err != nil || o != (SubOptions{QoS: 2}) {
		t.Errorf("subscription v1: %+v, %v", o, err)
	}
	sess := binary.BigEndian.AppendUint64([]byte{1, 4, sfDisconnected | sfOwner}, 7)
	sess = append(binary.BigEndian.AppendUint16(sess, 1), 'u')
	if r, err := decodeSession(sessionKey("c"), sess); err != nil || r.HasSessionExpiry ||
		r != (SessionRecord{ProtocolLevel: 4, DisconnectedAt: time.Unix(0, 7).UTC(), HasOwner: true, Username: "u"}) {
		t.Errorf("session v1: %+v, %v", r, err)
	}
}

func TestRecordV5DamageIsCorrupt(t *testing.T) {
	k := queueKey("c", 1)
	m := v5Message("t", "p")
	inline := encodeQueueInline(1, m)
	body := encodeBody(m)
	retained := encodeRetained(m)
	sub := encodeSub(SubOptions{QoS: 1, ID: 5})
	sess := encodeSession(SessionRecord{ProtocolLevel: 5, HasSessionExpiry: true, SessionExpiry: 60})
	will := encodeWill(v5Will())
	propsAt := queueHeaderLen + 3 + 1 + 8 // header, QoS, topic length, "t", expiry
	set := func(v []byte, i int, b byte) []byte { v = slices.Clone(v); v[i] = b; return v }
	for name, dec := range map[string]func() error{
		"v1 entry with v2 flags": func() error { _, _, err := decodeQueue(k, set(set(inline, 0, 1), 2, mfExpires), true); return err },
		"entry unknown flag":     func() error { _, _, err := decodeQueue(k, set(inline, 2, 1<<6), true); return err },
		"entry bad properties":   func() error { _, _, err := decodeQueue(k, set(inline, propsAt+1, 0x7f), true); return err },
		"entry property length past the end": func() error {
			_, _, err := decodeQueue(k, set(inline, propsAt, 0x7f), true)
			return err
		},
		"entry expiry truncated": func() error { _, _, err := decodeQueue(k, inline[:queueHeaderLen+3+1+4], true); return err },
		"entry record version 3": func() error { _, _, err := decodeQueue(k, set(inline, 0, 3), true); return err },
		"shared entry with flags": func() error {
			_, _, err := decodeQueue(k, set(encodeQueueShared(1, 1), 2, qfShared|mfProps), true)
			return err
		},
		"body unknown flag":   func() error { _, err := decodeBody(k, set(body, 2, 1<<6), true); return err },
		"body bad properties": func() error { _, err := decodeBody(k, set(body, 5+1+8+1, 0x11), true); return err },
		"body v1 with expiry": func() error { _, err := decodeBody(k, set(body, 0, 1), true); return err },
		"retained bad flags":  func() error { _, err := decodeRetained(retainedKey("t"), set(retained, 2, 1)); return err },
		"retained bad payload format": func() error {
			v := encodeRetained(&Message{Topic: "t", Props: &codec.Properties{PayloadFormat: 1}})
			_, err := decodeRetained(retainedKey("t"), set(v, 5, 2))
			return err
		},
		"subscription unknown flag": func() error { _, err := decodeSub(k, set(sub, 2, 1<<7)); return err },
		"subscription id 0":         func() error { _, err := decodeSub(k, append(sub[:3:3], 0, 0, 0, 0)); return err },
		"subscription id too big": func() error {
			_, err := decodeSub(k, binary.BigEndian.AppendUint32(slices.Clone(sub[:3]), maxSubID+1))
			return err
		},
		"subscription id truncated":    func() error { _, err := decodeSub(k, sub[:5]); return err },
		"subscription v1 with options": func() error { _, err := decodeSub(k, []byte{1, 1, subNoLocal}); return err },
		"session v1 with expiry":       func() error { _, err := decodeSession(k, set(sess, 0, 1)); return err },
		"session expiry truncated":     func() error { _, err := decodeSession(k, sess[:13]); return err },
		"will unknown flag":            func() error { _, err := decodeWill(k, set(will, 2, mfExpires)); return err },
		"will QoS 3":                   func() error { _, err := decodeWill(k, set(will, 1, 3)); return err },
		"will record version 2":        func() error { _, err := decodeWill(k, set(will, 0, 2)); return err },
		"will bad properties":          func() error { _, err := decodeWill(k, set(will, 5+len("wills/c")+1, 0x23)); return err },
		"will topic past the end":      func() error { _, err := decodeWill(k, will[:8]); return err },
	} {
		if err := dec(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// Every MQTT 5 field through a real store: Commit, Close, Open, Recover and ReadQueue.
func TestStoreV5RoundTrip(t *testing.T) {
	ts := openTest(t)
	b := &Batch{}
	rec := SessionRecord{ProtocolLevel: 5, HasSessionExpiry: true, SessionExpiry: 0xFFFFFFFF, HasOwner: true, Username: "u"}
	b.PutSession("a", rec)
	b.PutSession("b", SessionRecord{ProtocolLevel: 5, HasSessionExpiry: true}) // 0: ends at disconnect, yet stored
	b.PutSession("old", SessionRecord{ProtocolLevel: 4})
	subA := Subscription{Filter: "t/#", SubOptions: SubOptions{QoS: 2, NoLocal: true, RetainAsPublished: true, ID: 42}}
	b.PutSubscription("a", subA)
	b.PutWill("a", v5Will())
	b.PutWill("b", &codec.Will{Topic: "b/gone", QoS: 0})
	retained := v5Message("r/1", "kept")
	b.PutRetained(retained)
	ts.commit(b)

	inline, shared := v5Message("t/1", "for a only"), v5Message("t/2", "for a and b")
	shared.Props = &codec.Properties{CorrelationData: []byte("c")}
	b = &Batch{}
	b.Enqueue(inline, []Target{{"a", 1}})
	seq1 := ts.commit(b)
	b = &Batch{}
	b.Enqueue(shared, []Target{{"a", 2}, {"b", 1}})
	seq2 := ts.commit(b)
	b = &Batch{}
	b.Enqueue(&Message{Topic: "t/3", Payload: []byte("plain"), QoS: 1}, []Target{{"b", 1}})
	ts.commit(b)

	check := func(when string) {
		t.Helper()
		st := ts.recover()
		a, bs, old := session(st, "a"), session(st, "b"), session(st, "old")
		if a == nil || a.Record != rec || !slices.Equal(a.Subscriptions, []Subscription{subA}) || !reflect.DeepEqual(a.Will, v5Will()) {
			t.Errorf("%s: session a = %+v", when, a)
		}
		if bs == nil || !bs.Record.HasSessionExpiry || bs.Record.SessionExpiry != 0 ||
			!reflect.DeepEqual(bs.Will, &codec.Will{Topic: "b/gone", Payload: []byte{}}) {
			t.Errorf("%s: session b = %+v", when, bs)
		}
		if old == nil || old.Record.HasSessionExpiry || old.Will != nil {
			t.Errorf("%s: session old = %+v", when, old)
		}
		if len(st.Retained) != 1 || !sameMessage(&st.Retained[0], retained) {
			t.Errorf("%s: retained = %+v", when, st.Retained)
		}
		q := ts.readQueue("a", 0, 10)
		if len(q) != 2 || q[0].Seq != seq1 || !sameMessage(q[0].Message, inline) || q[1].Seq != seq2 || !sameMessage(q[1].Message, shared) {
			t.Errorf("%s: queue of a = %+v", when, q)
		}
		q = ts.readQueue("b", 0, 10)
		if len(q) != 2 || !sameMessage(q[0].Message, shared) || q[1].Message.Props != nil || !q[1].Message.Expires.IsZero() {
			t.Errorf("%s: queue of b = %+v", when, q)
		}
	}
	check("live")
	ts.reopen()
	check("after reopen")

	// DeleteWill, and DeleteSession takes the will with it.
	b = &Batch{}
	b.DeleteWill("b")
	b.DeleteSession("a")
	ts.commit(b)
	ts.reopen()
	st := ts.recover()
	if session(st, "a") != nil || session(st, "b").Will != nil || len(rawKeys(t, ts.db, famWill)) != 0 {
		t.Errorf("after DeleteWill and DeleteSession: %+v, will keys %x", st.Sessions, rawKeys(t, ts.db, famWill))
	}
}

func TestPutWillAndSubscriptionRefuseBadInput(t *testing.T) {
	ts := openTest(t)
	for name, f := range map[string]func(*Batch){
		"will QoS 3": func(b *Batch) { b.PutWill("c", &codec.Will{Topic: "t", QoS: 3}) },
		"subscription id": func(b *Batch) {
			b.PutSubscription("c", Subscription{Filter: "f", SubOptions: SubOptions{ID: maxSubID + 1}})
		},
		"will topic > 64 k": func(b *Batch) { b.PutWill("c", &codec.Will{Topic: string(make([]byte, 0x10000))}) },
	} {
		b := &Batch{}
		f(b)
		if _, err := ts.Commit(b); err == nil {
			t.Errorf("%s: committed", name)
		}
	}
}

// A will without a session record is an orphan's, like its other data.
func TestWillOrphanReported(t *testing.T) {
	ts := openTest(t)
	b := &Batch{}
	b.PutWill("ghost", &codec.Will{Topic: "t"})
	ts.commit(b)
	if ss := session(ts.recover(), "ghost"); ss == nil || !ss.Orphan || ss.Will == nil {
		t.Errorf("ghost = %+v", ss)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ts.dir)
	if err != nil || rep.Wills != 1 || len(rep.Problems) != 1 || !containsAll(rep.Problems[0], `will key (client "ghost")`, "no session record") {
		t.Errorf("Verify = %+v, %v", rep, err)
	}
	s, err := Open(ts.opt)
	if err != nil {
		t.Fatal(err)
	}
	ts.Store = s
}

// Recover checks every queue entry and body without keeping the message: that costs no
// allocation for a message without properties, as it did before format 2.
func TestCheckingEntriesDoesNotAllocate(t *testing.T) {
	k := queueKey("c", 1)
	m := &Message{Topic: "t", Payload: []byte("p"), QoS: 1, Expires: time.Unix(1, 0)}
	inline, body := encodeQueueInline(1, m), encodeBody(m)
	if n := testing.AllocsPerRun(100, func() {
		if _, _, err := decodeQueue(k, inline, false); err != nil {
			t.Fatal(err)
		}
		if _, err := decodeBody(k, body, false); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
