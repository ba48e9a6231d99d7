package persist

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	k := sessionKey("c")
	for _, r := range []SessionRecord{{}, {ProtocolLevel: 3}, {ProtocolLevel: 4, DisconnectedAt: time.Unix(1700000000, 123).UTC()}} {
		got, err := decodeSession(k, encodeSession(r))
		if err != nil || got != r {
			t.Errorf("session %+v -> %+v, %v", r, got, err)
		}
	}
	m := &Message{Topic: "a/b", Payload: []byte("payload"), QoS: 2, Retain: true}
	h, got, err := decodeQueue(k, encodeQueueInline(1, m), true)
	if err != nil || h.shared() || h.qos != 1 || h.payloadSize != 7 || !msgEqual(got, m) {
		t.Errorf("inline: %+v %+v %v", h, got, err)
	}
	h, got, err = decodeQueue(k, encodeQueueShared(2, 99), true)
	if err != nil || !h.shared() || h.qos != 2 || h.payloadSize != 99 || got != nil {
		t.Errorf("shared: %+v %+v %v", h, got, err)
	}
	got, err = decodeBody(k, encodeBody(m), true)
	if err != nil || !msgEqual(got, m) {
		t.Errorf("body: %+v %v", got, err)
	}
	for _, want := range []inflight{{Released, 65535, ""}, {Sent, 1, ""}, {Released, 7, "member"}, {Released, 8, strings.Repeat("h", 0xFFFF)}} {
		got, err := decodeInflight(k, encodeInflight(want.state, want.pid, want.holder))
		if err != nil || got != want {
			t.Errorf("inflight %v %d %.10q: %v %d %.10q, %v", want.state, want.pid, want.holder, got.state, got.pid, got.holder, err)
		}
	}
	if v := encodeInflight(Sent, 3, ""); v[0] != recordV1 {
		t.Errorf("in-flight state without a holder written as version %d, want 1", v[0])
	}
	// An empty topic and payload round-trip too.
	empty := &Message{}
	if _, got, err := decodeQueue(k, encodeQueueInline(0, empty), true); err != nil || !msgEqual(got, empty) {
		t.Errorf("empty inline: %+v %v", got, err)
	}
}

func msgEqual(a, b *Message) bool {
	return a != nil && b != nil && a.Topic == b.Topic && bytes.Equal(a.Payload, b.Payload) && a.QoS == b.QoS && a.Retain == b.Retain
}

func TestDescribeKey(t *testing.T) {
	cases := map[string][]byte{
		`session key (client "c1")`:                    sessionKey("c1"),
		`subscription key (client "c1", filter "a/#")`: subKey("c1", "a/#"),
		`retained key (topic "x/y")`:                   retainedKey("x/y"),
		`queue entry key (client "c1", seq 42)`:        queueKey("c1", 42),
		`in-flight state key (client "c1", seq 42)`:    inflightKey("c1", 42),
		`shared body key (seq 7)`:                      bodyKey(7),
		`inbound QoS 2 key (client "c1", packet id 9)`: inboundKey("c1", 9),
		`will key (client "c1")`:                       willKey("c1"),
		`meta key "schema"`:                            schemaKey,
		`queue entry key 0400ff (malformed)`:           {famQueue, 0, 0xff},
		`unknown family 0x9 key 09 (malformed)`:        {9},
		`empty key`:                                    nil,
	}
	for want, k := range cases {
		if got := describeKey(k); got != want {
			t.Errorf("describeKey(%x) = %q, want %q", k, got, want)
		}
	}
}

// FuzzDecode: no decoder panics or accepts garbage silently; everything they
// reject is ErrCorrupt.
func FuzzDecode(f *testing.F) {
	m := &Message{Topic: "t", Payload: []byte("p"), QoS: 1, Retain: true}
	for _, seed := range [][]byte{
		encodeSession(SessionRecord{ProtocolLevel: 4, DisconnectedAt: time.Unix(1, 0)}),
		encodeSub(SubOptions{QoS: 2}), encodeRetained(m), encodeQueueInline(1, m), encodeQueueShared(1, 5),
		encodeInflight(Sent, 3, ""), encodeInflight(Released, 4, "member"), encodeBody(m), inboundValue, {}, {1}, {2, 0, 0},
		queueKey("c", 1), {famQueue, 0xff, 0xff},
		encodeQueueInline(1, v5Message("t", "p")), encodeBody(v5Message("t", "p")), encodeRetained(v5Message("t", "p")),
		encodeSub(SubOptions{QoS: 1, NoLocal: true, ID: 7}), encodeWill(v5Will()),
		encodeSession(SessionRecord{ProtocolLevel: 5, HasSessionExpiry: true, SessionExpiry: 9, HasOwner: true, Username: "u"}),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		k := queueKey("c", 1)
		check := func(err error) {
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
		}
		_, err := decodeSession(k, v)
		check(err)
		_, err = decodeSub(k, v)
		check(err)
		_, err = decodeRetained(retainedKey("t"), v)
		check(err)
		h, msg, err := decodeQueue(k, v, true)
		check(err)
		if err == nil && !h.shared() && int(h.payloadSize) != len(msg.Payload) {
			t.Fatalf("payload size %d, payload %d bytes", h.payloadSize, len(msg.Payload))
		}
		_, err = decodeInflight(k, v)
		check(err)
		_, err = decodeBody(k, v, true)
		check(err)
		check(decodeInbound(k, v))
		_, err = decodeWill(k, v)
		check(err)
		_, _, err = decodeSchema(v)
		check(err)
		_ = describeKey(v)
		_, _, _ = splitCID(v)
		_, _, err = parseSeqKey(v)
		check(err)
	})
}

func TestSessionRecordOwnerRoundTrip(t *testing.T) {
	key := sessionKey("c")
	for _, r := range []SessionRecord{
		{ProtocolLevel: 4},
		{ProtocolLevel: 3, DisconnectedAt: time.Unix(0, 12345).UTC()},
		{ProtocolLevel: 4, HasOwner: true, Username: "alice"},
		{ProtocolLevel: 4, HasOwner: true, Anonymous: true, DisconnectedAt: time.Unix(7, 0).UTC()},
	} {
		got, err := decodeSession(key, encodeSession(r))
		if err != nil || got != r {
			t.Fatalf("round trip of %+v gave %+v, %v", r, got, err)
		}
	}
	v := encodeSession(SessionRecord{HasOwner: true, Username: "bob"})
	if _, err := decodeSession(key, v[:len(v)-1]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated owner: %v, want ErrCorrupt", err)
	}
}
