package codec

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// raw builds wire bytes from ints (one byte each), strings and byte slices,
// so that fixtures read like the figures of the specification.
func raw(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case int:
			if v < 0 || v > 0xff {
				panic(fmt.Sprintf("raw: %d is not a byte", v))
			}
			b = append(b, byte(v))
		case string:
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		default:
			panic(fmt.Sprintf("raw: unsupported %T", p))
		}
	}
	return b
}

// fixture pairs wire bytes, written by hand from the specification, with
// the packet they mean. Every row is checked in both directions.
type fixture struct {
	name string
	raw  []byte
	pkt  Packet
}

var payload200 = bytes.Repeat([]byte{0xA5}, 200)

var fixtures = []fixture{
	{
		name: "CONNECT 3.1.1 minimal",
		raw: raw(0x10, 14,
			0, 4, "MQTT", 4, 0x02, 0, 60, // name, level, clean session, keep alive 60
			0, 2, "c1"),
		pkt: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: "c1"},
	},
	{
		name: "CONNECT 3.1 minimal",
		raw: raw(0x10, 16,
			0, 6, "MQIsdp", 3, 0x02, 0, 60,
			0, 2, "c1"),
		pkt: &Connect{ProtocolName: "MQIsdp", ProtocolLevel: 3, CleanSession: true, KeepAlive: 60, ClientID: "c1"},
	},
	{
		name: "CONNECT 3.1.1 bridge (level 0x84)",
		raw: raw(0x10, 14,
			0, 4, "MQTT", 0x84, 0x00, 0, 60,
			0, 2, "b1"),
		pkt: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, Bridge: true, KeepAlive: 60, ClientID: "b1"},
	},
	{
		name: "CONNECT 3.1 bridge (level 0x83)",
		raw: raw(0x10, 16,
			0, 6, "MQIsdp", 0x83, 0x02, 0, 60,
			0, 2, "b1"),
		pkt: &Connect{ProtocolName: "MQIsdp", ProtocolLevel: 3, Bridge: true, CleanSession: true, KeepAlive: 60, ClientID: "b1"},
	},
	{
		name: "CONNECT 3.1 will qos1 retain, username, password",
		raw: raw(0x10, 33,
			0, 6, "MQIsdp", 3,
			0xEE,  // user, password, will retain, will QoS 1, will, clean session
			0, 10, // keep alive
			0, 2, "id",
			0, 3, "w/t",
			0, 3, "bye",
			0, 1, "u",
			0, 2, "pw"),
		pkt: &Connect{
			ProtocolName: "MQIsdp", ProtocolLevel: 3, CleanSession: true, KeepAlive: 10, ClientID: "id",
			Will:     &Will{Topic: "w/t", Payload: []byte("bye"), QoS: 1, Retain: true},
			Username: "u", HasUsername: true, Password: []byte("pw"), HasPassword: true,
		},
	},
	{
		name: "CONNECT 3.1.1 username only, persistent session, empty client id",
		raw: raw(0x10, 19,
			0, 4, "MQTT", 4, 0x80, 0, 0,
			0, 0,
			0, 5, "alice"),
		pkt: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, Username: "alice", HasUsername: true},
	},
	{
		name: "CONNECT 3.1.1 will qos2 empty message, username, empty password",
		raw: raw(0x10, 23,
			0, 4, "MQTT", 4,
			0xD6, // user, password, will QoS 2, will, clean session
			0, 60,
			0, 1, "c",
			0, 1, "t",
			0, 0,
			0, 1, "u",
			0, 0),
		pkt: &Connect{
			ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: "c",
			Will:     &Will{Topic: "t", QoS: 2},
			Username: "u", HasUsername: true, HasPassword: true,
		},
	},
	{
		name: "CONNECT 3.1.1 will qos0, binary password",
		raw: raw(0x10, 33,
			0, 4, "MQTT", 4,
			0xC4, // user, password, will QoS 0, will
			0xFF, 0xFF,
			0, 3, "dev",
			0, 4, "a/b/", // empty last level is a valid topic name
			0, 2, 0x00, 0xFF,
			0, 1, "u",
			0, 3, 0x00, 0x01, 0x02),
		pkt: &Connect{
			ProtocolName: "MQTT", ProtocolLevel: 4, KeepAlive: 65535, ClientID: "dev",
			Will:     &Will{Topic: "a/b/", Payload: []byte{0, 0xFF}},
			Username: "u", HasUsername: true, Password: []byte{0, 1, 2}, HasPassword: true,
		},
	},
	{name: "CONNACK accepted, session present", raw: raw(0x20, 2, 0x01, 0x00), pkt: &Connack{SessionPresent: true}},
	{name: "CONNACK refused protocol version", raw: raw(0x20, 2, 0x00, 0x01), pkt: &Connack{ReturnCode: RefusedProtocolVersion}},
	{name: "CONNACK not authorized", raw: raw(0x20, 2, 0x00, 0x05), pkt: &Connack{ReturnCode: RefusedNotAuthorized}},
	{
		name: "PUBLISH qos0",
		raw:  raw(0x30, 7, 0, 3, "a/b", "hi"),
		pkt:  &Publish{Topic: "a/b", Payload: []byte("hi")},
	},
	{
		name: "PUBLISH qos0 retain, empty payload",
		raw:  raw(0x31, 5, 0, 3, "a/b"),
		pkt:  &Publish{Retain: true, Topic: "a/b"},
	},
	{
		name: "PUBLISH qos1",
		raw:  raw(0x32, 8, 0, 3, "a/b", 0, 10, "x"),
		pkt:  &Publish{QoS: 1, Topic: "a/b", PacketID: 10, Payload: []byte("x")},
	},
	{
		name: "PUBLISH qos1 dup",
		raw:  raw(0x3A, 8, 0, 3, "a/b", 0x01, 0x00, "x"),
		pkt:  &Publish{Dup: true, QoS: 1, Topic: "a/b", PacketID: 256, Payload: []byte("x")},
	},
	{
		name: "PUBLISH qos2 dup retain",
		raw:  raw(0x3D, 10, 0, 3, "a/b", 0xBE, 0xEF, "xyz"),
		pkt:  &Publish{Dup: true, QoS: 2, Retain: true, Topic: "a/b", PacketID: 0xBEEF, Payload: []byte("xyz")},
	},
	{
		name: "PUBLISH qos2 empty payload",
		raw:  raw(0x34, 7, 0, 3, "a/b", 0, 1),
		pkt:  &Publish{QoS: 2, Topic: "a/b", PacketID: 1},
	},
	{
		name: "PUBLISH UTF-8 topic with $ and empty levels",
		raw:  raw(0x30, 9, 0, 6, "$/", 0xC3, 0xBC, "//", 0xFF),
		pkt:  &Publish{Topic: "$/\u00fc//", Payload: []byte{0xFF}},
	},
	{
		// 205 = 0xCD = 0x4D | 0x80 then 0x01: two bytes of remaining length.
		name: "PUBLISH 200-byte payload",
		raw:  raw(0x30, 0xCD, 0x01, 0, 3, "a/b", payload200),
		pkt:  &Publish{Topic: "a/b", Payload: payload200},
	},
	{name: "PUBACK", raw: raw(0x40, 2, 0, 1), pkt: &Puback{PacketID: 1}},
	{name: "PUBREC", raw: raw(0x50, 2, 0x12, 0x34), pkt: &Pubrec{PacketID: 0x1234}},
	{name: "PUBREL", raw: raw(0x62, 2, 0, 7), pkt: &Pubrel{PacketID: 7}},
	{name: "PUBCOMP", raw: raw(0x70, 2, 0xFF, 0xFF), pkt: &Pubcomp{PacketID: 0xFFFF}},
	{
		name: "SUBSCRIBE three filters",
		raw: raw(0x82, 20, 0, 1,
			0, 3, "a/+", 1,
			0, 1, "#", 0,
			0, 5, "x/y/#", 2),
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{
			{Filter: "a/+", QoS: 1}, {Filter: "#", QoS: 0}, {Filter: "x/y/#", QoS: 2},
		}},
	},
	{
		name: "SUBSCRIBE $SYS",
		raw:  raw(0x82, 11, 0, 2, 0, 6, "$SYS/#", 0),
		pkt:  &Subscribe{PacketID: 2, Subscriptions: []Subscription{{Filter: "$SYS/#"}}},
	},
	{
		name: "SUBSCRIBE + levels",
		raw:  raw(0x82, 10, 0x01, 0x00, 0, 5, "+/+/+", 1),
		pkt:  &Subscribe{PacketID: 256, Subscriptions: []Subscription{{Filter: "+/+/+", QoS: 1}}},
	},
	{
		name: "SUBACK with failure",
		raw:  raw(0x90, 6, 0, 1, 0x01, 0x00, 0x02, 0x80),
		pkt:  &Suback{PacketID: 1, ReturnCodes: []byte{1, 0, 2, SubackFailure}},
	},
	{
		name: "SUBACK single failure",
		raw:  raw(0x90, 3, 0, 5, 0x80),
		pkt:  &Suback{PacketID: 5, ReturnCodes: []byte{SubackFailure}},
	},
	{
		name: "UNSUBSCRIBE two filters",
		raw:  raw(0xA2, 10, 0, 2, 0, 3, "a/+", 0, 1, "#"),
		pkt:  &Unsubscribe{PacketID: 2, Filters: []string{"a/+", "#"}},
	},
	{name: "UNSUBACK", raw: raw(0xB0, 2, 0, 2), pkt: &Unsuback{PacketID: 2}},
	{name: "PINGREQ", raw: raw(0xC0, 0), pkt: &Pingreq{}},
	{name: "PINGRESP", raw: raw(0xD0, 0), pkt: &Pingresp{}},
	{name: "DISCONNECT", raw: raw(0xE0, 0), pkt: &Disconnect{}},
}

func TestAppendFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			if got := fx.pkt.Append(nil); !bytes.Equal(got, fx.raw) {
				t.Errorf("Append(nil):\n got % x\nwant % x", got, fx.raw)
			}
			// Append must extend dst, not overwrite it.
			prefix := []byte{0xAA, 0xBB}
			got := fx.pkt.Append(prefix)
			if !bytes.Equal(got[:2], prefix) || !bytes.Equal(got[2:], fx.raw) {
				t.Errorf("Append(prefix):\n got % x\nwant aa bb % x", got, fx.raw)
			}
		})
	}
}

func TestAppendDoesNotAllocate(t *testing.T) {
	for _, fx := range fixtures {
		buf := make([]byte, 0, 1024)
		allocs := testing.AllocsPerRun(100, func() {
			buf = fx.pkt.Append(buf[:0])
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Append into a large enough buffer", fx.name, allocs)
		}
	}
}

func TestPacketType(t *testing.T) {
	for _, fx := range fixtures {
		if got, want := fx.pkt.Type(), Type(fx.raw[0]>>4); got != want {
			t.Errorf("%s: Type() = %v, first byte says %v", fx.name, got, want)
		}
	}
}

func TestTypeString(t *testing.T) {
	want := []string{"Type(0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
		"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH", "Type(16)"}
	for i, w := range want {
		if got := Type(i).String(); got != w {
			t.Errorf("Type(%d).String() = %q, want %q", i, got, w)
		}
	}
	if got := RefusedNotAuthorized.String(); got != "not authorized" {
		t.Errorf("RefusedNotAuthorized.String() = %q", got)
	}
	if got := ConnackCode(6).String(); got != "ConnackCode(6)" {
		t.Errorf("ConnackCode(6).String() = %q", got)
	}
}

// remainingLengths are the boundaries of each encoded width, from the table in §2.2.3.
var remainingLengths = []struct {
	n    int
	want []byte
}{
	{0, raw(0x00)},
	{127, raw(0x7F)},
	{128, raw(0x80, 0x01)},
	{16_383, raw(0xFF, 0x7F)},
	{16_384, raw(0x80, 0x80, 0x01)},
	{2_097_151, raw(0xFF, 0xFF, 0x7F)},
	{2_097_152, raw(0x80, 0x80, 0x80, 0x01)},
	{MaxRemainingLength, raw(0xFF, 0xFF, 0xFF, 0x7F)},
}

func TestAppendRemainingLength(t *testing.T) {
	for _, tt := range remainingLengths {
		if got := AppendRemainingLength([]byte{9}, tt.n); !bytes.Equal(got, append([]byte{9}, tt.want...)) {
			t.Errorf("AppendRemainingLength(%d) = % x, want 09 % x", tt.n, got, tt.want)
		}
	}
	for _, n := range []int{-1, MaxRemainingLength + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AppendRemainingLength(%d) did not panic", n)
				}
			}()
			AppendRemainingLength(nil, n)
		}()
	}
}

func TestDecodeRemainingLength(t *testing.T) {
	for _, tt := range remainingLengths {
		// Bytes after the encoding are the body: not read.
		if n, size, err := DecodeRemainingLength(append(slices.Clone(tt.want), 0x80, 0x80)); n != tt.n || size != len(tt.want) || err != nil {
			t.Errorf("DecodeRemainingLength(% x) = %d, %d, %v; want %d, %d, nil", tt.want, n, size, err, tt.n, len(tt.want))
		}
		for k := range len(tt.want) {
			if n, size, err := DecodeRemainingLength(tt.want[:k]); n != 0 || size != 0 || err != nil {
				t.Errorf("DecodeRemainingLength(% x), a prefix = %d, %d, %v; want 0, 0, nil (incomplete)", tt.want[:k], n, size, err)
			}
		}
	}
	if n, size, err := DecodeRemainingLength(raw(0x80, 0x00)); n != 0 || size != 2 || err != nil {
		t.Errorf("non-minimal 80 00 = %d, %d, %v; want 0, 2, nil", n, size, err)
	}
	if _, size, err := DecodeRemainingLength(raw(0x80, 0x80, 0x80, 0x80, 0x01)); size != 0 || !errors.Is(err, ErrMalformed) {
		t.Errorf("five bytes: size %d, %v; want ErrMalformed", size, err)
	}
}

func TestAppendOverlongFieldPanics(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), "65535") {
			t.Errorf("recover() = %v, want a panic about 65535", r)
		}
	}()
	p := &Publish{Topic: strings.Repeat("a", 65536)}
	p.Append(nil)
}

func TestAppendPublishQoS0OmitsPacketID(t *testing.T) {
	// A stray PacketID on a QoS 0 message must not reach the wire
	// [MQTT-2.3.1-5].
	p := &Publish{Topic: "t", PacketID: 99, Payload: []byte("p")}
	if got, want := p.Append(nil), raw(0x30, 4, 0, 1, "t", "p"); !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
}
