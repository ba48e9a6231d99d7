package codec

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// included returns p with the given properties marked present at their zero
// value, as a decoded Properties has them.
func included(p *Properties, ids ...PropertyID) *Properties {
	for _, id := range ids {
		p.Include(id)
	}
	return p
}

// fixtures5 are level-5 packets, written by hand from the specification.
// The first is a CONNECT, so a Reader that accepts level 5 learns the level
// from it when the fixtures arrive as one stream.
var fixtures5 = []fixture{
	{
		// The variable header is the example of §3.1.2.12 (Figure 3-6): flags
		// 0xCE are user name, password, will QoS 1, will and clean start;
		// keep alive 10; Session Expiry Interval (17) of 10 seconds.
		name: "CONNECT spec example",
		raw: raw(0x10, 38,
			0, 4, "MQTT", 5, 0xCE, 0, 10,
			5, 0x11, 0, 0, 0, 10,
			0, 2, "id",
			0, // will properties
			0, 3, "w/t",
			0, 3, "bye",
			0, 1, "u",
			0, 2, "pw"),
		pkt: &Connect{
			ProtocolName: "MQTT", ProtocolLevel: 5, CleanSession: true, KeepAlive: 10, ClientID: "id",
			Props:    &Properties{SessionExpiry: 10},
			Will:     &Will{Topic: "w/t", Payload: []byte("bye"), QoS: 1},
			Username: "u", HasUsername: true, Password: []byte("pw"), HasPassword: true,
		},
	},
	{
		name: "CONNECT minimal",
		raw:  raw(0x10, 14, 0, 4, "MQTT", 5, 0x02, 0, 60, 0, 0, 1, "c"),
		pkt:  &Connect{ProtocolName: "MQTT", ProtocolLevel: 5, CleanSession: true, KeepAlive: 60, ClientID: "c"},
	},
	{
		name: "CONNECT every CONNECT and will property, password without user name",
		raw: raw(0x10, 115,
			0, 4, "MQTT", 5,
			0x74, // password, will retain, will QoS 2, will; clean start 0
			0, 30,
			47,
			0x11, 0xFF, 0xFF, 0xFF, 0xFF, // Session Expiry Interval: never
			0x15, 0, 5, "SCRAM", // Authentication Method
			0x16, 0, 2, 0x00, 0xFF, // Authentication Data
			0x17, 0, // Request Problem Information 0
			0x19, 1, // Request Response Information 1
			0x21, 0, 10, // Receive Maximum 10
			0x22, 0, 5, // Topic Alias Maximum 5
			0x26, 0, 1, "k", 0, 1, "1", // User Property k=1
			0x26, 0, 1, "k", 0, 1, "2", // k again: names repeat, order kept
			0x27, 0, 0, 0x10, 0x00, // Maximum Packet Size 4096
			0, 3, "dev",
			36,
			0x01, 1, // Payload Format Indicator: UTF-8
			0x02, 0, 0, 0x0E, 0x10, // Message Expiry Interval 3600
			0x03, 0, 4, "text", // Content Type
			0x08, 0, 3, "r/t", // Response Topic
			0x09, 0, 2, 0xCA, 0xFE, // Correlation Data
			0x18, 0, 0, 0, 60, // Will Delay Interval 60
			0x26, 0, 1, "a", 0, 0, // User Property a=""
			0, 3, "w/t",
			0, 4, "gone",
			0, 2, "pw"),
		pkt: &Connect{
			ProtocolName: "MQTT", ProtocolLevel: 5, KeepAlive: 30, ClientID: "dev",
			Props: included(&Properties{
				SessionExpiry: 0xFFFFFFFF, AuthMethod: "SCRAM", AuthData: []byte{0, 0xFF},
				RequestResponseInfo: true, ReceiveMaximum: 10, TopicAliasMaximum: 5,
				User:              []UserProperty{{"k", "1"}, {"k", "2"}},
				MaximumPacketSize: 4096,
			}, PropRequestProblemInformation),
			Will: &Will{Topic: "w/t", Payload: []byte("gone"), QoS: 2, Retain: true, Props: &Properties{
				PayloadFormat: 1, MessageExpiry: 3600, ContentType: "text", ResponseTopic: "r/t",
				CorrelationData: []byte{0xCA, 0xFE}, WillDelay: 60, User: []UserProperty{{"a", ""}},
			}},
			Password: []byte("pw"), HasPassword: true,
		},
	},
	{name: "CONNACK success", raw: raw(0x20, 3, 0, 0, 0), pkt: &Connack{}},
	{
		name: "CONNACK session present, every CONNACK property",
		raw: raw(0x20, 68, 0x01, 0x00,
			65,
			0x11, 0, 0, 0x0E, 0x10, // Session Expiry Interval 3600
			0x12, 0, 3, "gen", // Assigned Client Identifier
			0x13, 0, 0, // Server Keep Alive 0
			0x15, 0, 1, "M", // Authentication Method
			0x16, 0, 1, "D", // Authentication Data
			0x1A, 0, 2, "ri", // Response Information
			0x1C, 0, 2, "sr", // Server Reference
			0x1F, 0, 2, "ok", // Reason String
			0x21, 0xFF, 0xFF, // Receive Maximum 65535
			0x22, 0, 10, // Topic Alias Maximum 10
			0x24, 1, // Maximum QoS 1
			0x25, 0, // Retain Available 0
			0x26, 0, 1, "x", 0, 1, "y", // User Property
			0x27, 0, 1, 0, 0, // Maximum Packet Size 65536
			0x28, 0, // Wildcard Subscription Available 0
			0x29, 1, // Subscription Identifier Available 1
			0x2A, 0), // Shared Subscription Available 0
		pkt: &Connack{SessionPresent: true, Props: included(&Properties{
			SessionExpiry: 3600, AssignedClientID: "gen", AuthMethod: "M", AuthData: []byte("D"),
			ResponseInfo: "ri", ServerReference: "sr", ReasonString: "ok", ReceiveMaximum: 65535,
			TopicAliasMaximum: 10, MaximumQoS: 1, User: []UserProperty{{"x", "y"}}, MaximumPacketSize: 65536,
			SubIDAvailable: true,
		}, PropServerKeepAlive, PropRetainAvailable, PropWildcardSubscriptionAvailable, PropSharedSubscriptionAvailable)},
	},
	{
		name: "CONNACK not authorized with reason string",
		raw:  raw(0x20, 9, 0, 0x87, 6, 0x1F, 0, 3, "acl"),
		pkt:  &Connack{Reason: ReasonNotAuthorized, Props: &Properties{ReasonString: "acl"}},
	},
	{
		name: "CONNACK maximum QoS 0",
		raw:  raw(0x20, 5, 0, 0, 2, 0x24, 0),
		pkt:  &Connack{Props: included(&Properties{}, PropMaximumQoS)},
	},
	{
		// The variable header of Figure 3-9 (§3.3.2.3): topic a/b, packet
		// identifier 10, no properties.
		name: "PUBLISH spec example",
		raw:  raw(0x32, 10, 0, 3, "a/b", 0, 10, 0, "hi"),
		pkt:  &Publish{QoS: 1, Topic: "a/b", PacketID: 10, Payload: []byte("hi")},
	},
	{
		name: "PUBLISH qos0 every PUBLISH property",
		raw: raw(0x30, 63, 0, 3, "a/b",
			55,
			0x01, 1, // Payload Format Indicator
			0x02, 0, 0, 0, 30, // Message Expiry Interval 30
			0x03, 0, 4, "json", // Content Type
			0x08, 0, 5, "reply", // Response Topic
			0x09, 0, 3, "cid", // Correlation Data
			0x0B, 1, // Subscription Identifier 1
			0x0B, 0xC8, 0x01, // 200
			0x0B, 0xFF, 0xFF, 0xFF, 0x7F, // 268,435,455
			0x23, 0, 3, // Topic Alias 3
			0x26, 0, 1, "a", 0, 1, "1",
			0x26, 0, 1, "b", 0, 1, "2",
			"{}"),
		pkt: &Publish{Topic: "a/b", Payload: []byte("{}"), Props: &Properties{
			PayloadFormat: 1, MessageExpiry: 30, ContentType: "json", ResponseTopic: "reply",
			CorrelationData: []byte("cid"), SubscriptionIDs: []uint32{1, 200, MaxRemainingLength},
			TopicAlias: 3, User: []UserProperty{{"a", "1"}, {"b", "2"}},
		}},
	},
	{
		name: "PUBLISH qos2 retain dup, empty topic name and a Topic Alias",
		raw:  raw(0x3D, 8, 0, 0, 0, 7, 3, 0x23, 0, 1),
		pkt:  &Publish{Dup: true, QoS: 2, Retain: true, PacketID: 7, Props: &Properties{TopicAlias: 1}},
	},
	{name: "PUBACK success, short form", raw: raw(0x40, 2, 0, 1), pkt: &Puback{PacketID: 1}},
	{
		name: "PUBACK no matching subscribers, no property length",
		raw:  raw(0x40, 3, 0, 1, 0x10),
		pkt:  &Puback{PacketID: 1, Reason: ReasonNoMatchingSubscribers},
	},
	{
		name: "PUBACK quota exceeded with reason string",
		raw:  raw(0x40, 10, 0, 2, 0x97, 6, 0x1F, 0, 3, "max"),
		pkt:  &Puback{PacketID: 2, Reason: ReasonQuotaExceeded, Props: &Properties{ReasonString: "max"}},
	},
	{
		name: "PUBREC success with user property",
		raw:  raw(0x50, 11, 0x12, 0x34, 0, 7, 0x26, 0, 1, "k", 0, 1, "v"),
		pkt:  &Pubrec{PacketID: 0x1234, Props: &Properties{User: []UserProperty{{"k", "v"}}}},
	},
	{name: "PUBREC unspecified error", raw: raw(0x50, 3, 0, 9, 0x80), pkt: &Pubrec{PacketID: 9, Reason: ReasonUnspecifiedError}},
	{name: "PUBREL packet identifier not found", raw: raw(0x62, 3, 0, 7, 0x92), pkt: &Pubrel{PacketID: 7, Reason: ReasonPacketIdentifierNotFound}},
	{name: "PUBREL success", raw: raw(0x62, 2, 0, 7), pkt: &Pubrel{PacketID: 7}},
	{
		name: "PUBCOMP with reason string",
		raw:  raw(0x70, 8, 0xFF, 0xFF, 0x92, 4, 0x1F, 0, 1, "?"),
		pkt:  &Pubcomp{PacketID: 0xFFFF, Reason: ReasonPacketIdentifierNotFound, Props: &Properties{ReasonString: "?"}},
	},
	{
		// The payload of Figure 3-21 (§3.8.3): a/b with options 1, c/d with
		// options 2.
		name: "SUBSCRIBE spec example",
		raw:  raw(0x82, 15, 0, 10, 0, 0, 3, "a/b", 1, 0, 3, "c/d", 2),
		pkt: &Subscribe{PacketID: 10, Subscriptions: []Subscription{
			{Filter: "a/b", QoS: 1}, {Filter: "c/d", QoS: 2},
		}},
	},
	{
		name: "SUBSCRIBE subscription identifier and every option",
		raw: raw(0x82, 25, 0, 1,
			3, 0x0B, 0x80, 0x01, // Subscription Identifier 128
			0, 3, "a/#", 0x2D, // retain handling 2, retain as published, no local, QoS 1
			0, 1, "+", 0x1A, // retain handling 1, retain as published, QoS 2
			0, 6, "$share", 0x04), // "$share" alone is no shared subscription
		pkt: &Subscribe{PacketID: 1, Props: &Properties{SubscriptionIDs: []uint32{128}}, Subscriptions: []Subscription{
			{Filter: "a/#", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
			{Filter: "+", QoS: 2, RetainAsPublished: true, RetainHandling: 1},
			{Filter: "$share", NoLocal: true},
		}},
	},
	{
		name: "SUBACK granted and refused",
		raw:  raw(0x90, 13, 0, 1, 4, 0x1F, 0, 1, "!", 0x00, 0x01, 0x02, 0x80, 0x87, 0xA2),
		pkt:  &Suback{PacketID: 1, Props: &Properties{ReasonString: "!"}, ReturnCodes: []byte{0, 1, 2, 0x80, 0x87, 0xA2}},
	},
	{
		// The payload example of §3.10.3: a/b and c/d.
		name: "UNSUBSCRIBE spec example with user property",
		raw:  raw(0xA2, 20, 0, 3, 7, 0x26, 0, 1, "k", 0, 1, "v", 0, 3, "a/b", 0, 3, "c/d"),
		pkt:  &Unsubscribe{PacketID: 3, Filters: []string{"a/b", "c/d"}, Props: &Properties{User: []UserProperty{{"k", "v"}}}},
	},
	{
		name: "UNSUBACK two reason codes",
		raw:  raw(0xB0, 5, 0, 3, 0, 0x00, 0x11),
		pkt:  &Unsuback{PacketID: 3, Reasons: []ReasonCode{ReasonSuccess, ReasonNoSubscriptionExisted}},
	},
	{name: "PINGREQ", raw: raw(0xC0, 0), pkt: &Pingreq{}},
	{name: "PINGRESP", raw: raw(0xD0, 0), pkt: &Pingresp{}},
	{name: "DISCONNECT normal, remaining length 0", raw: raw(0xE0, 0), pkt: &Disconnect{}},
	{name: "DISCONNECT with will message", raw: raw(0xE0, 1, 0x04), pkt: &Disconnect{Reason: ReasonDisconnectWithWill}},
	{
		name: "DISCONNECT session expiry 0, server reference",
		raw:  raw(0xE0, 13, 0x00, 11, 0x11, 0, 0, 0, 0, 0x1C, 0, 3, "srv"),
		pkt:  &Disconnect{Props: included(&Properties{ServerReference: "srv"}, PropSessionExpiryInterval)},
	},
	{
		name: "DISCONNECT session taken over with reason string",
		raw:  raw(0xE0, 9, 0x8E, 7, 0x1F, 0, 4, "take"),
		pkt:  &Disconnect{Reason: ReasonSessionTakenOver, Props: &Properties{ReasonString: "take"}},
	},
	{
		name: "AUTH continue authentication",
		raw:  raw(0xF0, 16, 0x18, 14, 0x15, 0, 5, "SCRAM", 0x16, 0, 3, "c=1"),
		pkt:  &Auth{Reason: ReasonContinueAuthentication, Props: &Properties{AuthMethod: "SCRAM", AuthData: []byte("c=1")}},
	},
	{name: "AUTH success, remaining length 0", raw: raw(0xF0, 0), pkt: &Auth{}},
}

// reader5 returns a Reader that decodes at level 5 from the start.
func reader5(src io.Reader, max int) *Reader {
	r := NewReader(src, max)
	r.AcceptLevel5()
	r.SetLevel(Level5)
	return r
}

func TestAppendLevel5Fixtures(t *testing.T) {
	for _, fx := range fixtures5 {
		t.Run(fx.name, func(t *testing.T) {
			if got := fx.pkt.AppendLevel(nil, Level5); !bytes.Equal(got, fx.raw) {
				t.Errorf("AppendLevel(nil, 5):\n got % x\nwant % x", got, fx.raw)
			}
			prefix := []byte{0xAA, 0xBB}
			got := fx.pkt.AppendLevel(prefix, Level5)
			if !bytes.Equal(got[:2], prefix) || !bytes.Equal(got[2:], fx.raw) {
				t.Errorf("AppendLevel(prefix, 5):\n got % x\nwant aa bb % x", got, fx.raw)
			}
			if got, want := fx.pkt.Type(), Type(fx.raw[0]>>4); got != want {
				t.Errorf("Type() = %v, first byte says %v", got, want)
			}
		})
	}
}

// Level 5 is never implied: below it, AppendLevel is Append, whatever the
// packet carries for level 5.
func TestAppendLevelBelow5IsAppend(t *testing.T) {
	for _, fx := range append(append([]fixture(nil), fixtures...), fixtures5...) {
		if fx.pkt.Type() == TypeAuth || fx.pkt.Type() == TypeConnect {
			continue // one form only; a CONNECT follows its ProtocolLevel
		}
		for _, level := range []byte{0, Level31, Level311} {
			if got, want := fx.pkt.AppendLevel(nil, level), fx.pkt.Append(nil); !bytes.Equal(got, want) {
				t.Errorf("%s: AppendLevel(nil, %d) = % x, Append = % x", fx.name, level, got, want)
			}
		}
	}
	for _, fx := range fixtures {
		if got := fx.pkt.AppendLevel(nil, Level311); !bytes.Equal(got, fx.raw) {
			t.Errorf("%s: AppendLevel(nil, 4) = % x, want % x", fx.name, got, fx.raw)
		}
	}
}

func TestAppendLevel5DoesNotAllocate(t *testing.T) {
	for _, fx := range fixtures5 {
		buf := make([]byte, 0, 1024)
		allocs := testing.AllocsPerRun(100, func() {
			buf = fx.pkt.AppendLevel(buf[:0], Level5)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per AppendLevel into a large enough buffer", fx.name, allocs)
		}
	}
}

func TestRead5Fixtures(t *testing.T) {
	for _, fx := range fixtures5 {
		t.Run(fx.name, func(t *testing.T) {
			for name, src := range map[string]io.Reader{
				"whole":   bytes.NewReader(fx.raw),
				"onebyte": iotest.OneByteReader(bytes.NewReader(fx.raw)),
			} {
				r := reader5(src, 0)
				got, err := r.ReadPacket()
				if err != nil {
					t.Fatalf("%s: ReadPacket: %v", name, err)
				}
				if !reflect.DeepEqual(got, fx.pkt) {
					t.Errorf("%s: ReadPacket:\n got %#v\nwant %#v", name, got, fx.pkt)
				}
				if p, err := r.ReadPacket(); err != io.EOF || p != nil {
					t.Errorf("%s: second ReadPacket = %v, %v; want nil, io.EOF", name, p, err)
				}
			}
		})
	}
}

// A broker's Reader knows no level until the CONNECT, and decodes all that
// follows at the level the CONNECT names.
func TestReaderLearnsLevel5FromConnect(t *testing.T) {
	var stream []byte
	for _, fx := range fixtures5 {
		stream = append(stream, fx.raw...)
	}
	for _, src := range []io.Reader{bytes.NewReader(stream), iotest.HalfReader(bytes.NewReader(stream))} {
		r := NewReader(src, 0)
		r.AcceptLevel5()
		if r.Level() != 0 {
			t.Fatalf("Level() before CONNECT = %d, want 0", r.Level())
		}
		for _, fx := range fixtures5 {
			got, err := r.ReadPacket()
			if err != nil {
				t.Fatalf("%s: ReadPacket: %v", fx.name, err)
			}
			if !reflect.DeepEqual(got, fx.pkt) {
				t.Errorf("%s:\n got %#v\nwant %#v", fx.name, got, fx.pkt)
			}
			if r.Level() != Level5 {
				t.Fatalf("%s: Level() = %d, want 5", fx.name, r.Level())
			}
		}
		if _, err := r.ReadPacket(); err != io.EOF {
			t.Errorf("after the last packet: %v, want io.EOF", err)
		}
	}
	// A 3.1.1 CONNECT sets level 4 even on a Reader that accepts 5, and the
	// same bytes then mean 3.1.1 packets.
	r := NewReader(bytes.NewReader(append(fixtures[0].raw, raw(0x40, 2, 0, 1)...)), 0)
	r.AcceptLevel5()
	if _, err := r.ReadPacket(); err != nil || r.Level() != Level311 {
		t.Fatalf("3.1.1 CONNECT: %v, Level() = %d", err, r.Level())
	}
	if p, err := r.ReadPacket(); err != nil || !reflect.DeepEqual(p, &Puback{PacketID: 1}) {
		t.Errorf("PUBACK after a 3.1.1 CONNECT: %#v, %v", p, err)
	}
}

// Until the broker serves MQTT 5 it does not call AcceptLevel5, and a
// level-5 CONNECT must still be refused as it was [MQTT-3.1.2-2].
func TestLevel5ConnectNeedsAcceptLevel5(t *testing.T) {
	wire := fixtures5[0].raw
	r := NewReader(bytes.NewReader(wire), 0)
	p, err := r.ReadPacket()
	if !errors.Is(err, ErrUnsupportedProtocol) {
		t.Fatalf("got %v, want ErrUnsupportedProtocol", err)
	}
	if want := (&Connect{ProtocolName: "MQTT", ProtocolLevel: 5}); !reflect.DeepEqual(p, want) {
		t.Errorf("packet %#v, want %#v", p, want)
	}
	if r.Level() != 0 {
		t.Errorf("Level() = %d after a refused CONNECT, want 0", r.Level())
	}
	if code, ok := ReasonOf(err); !ok || code != ReasonUnsupportedProtocolVersion {
		t.Errorf("ReasonOf = %v, %v; want Unsupported Protocol Version", code, ok)
	}
	// Level 6 stays unsupported with AcceptLevel5.
	six := bytes.Clone(wire)
	six[8] = 6
	r = NewReader(bytes.NewReader(six), 0)
	r.AcceptLevel5()
	if _, err := r.ReadPacket(); !errors.Is(err, ErrUnsupportedProtocol) {
		t.Errorf("level 6: %v, want ErrUnsupportedProtocol", err)
	}
}

// A level-5 CONNECT that is malformed after its level still sets the level,
// so that the broker can answer CONNACK 0x81 in the level-5 form.
func TestMalformedLevel5ConnectSetsLevel(t *testing.T) {
	r := NewReader(bytes.NewReader(pkt(0x10, 0, 4, "MQTT", 5, 0x03, 0, 60, 0, 0, 1, "c")), 0)
	r.AcceptLevel5()
	_, err := r.ReadPacket()
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("reserved flag: %v, want ErrMalformed", err)
	}
	if r.Level() != Level5 {
		t.Errorf("Level() = %d, want 5", r.Level())
	}
}

func TestRead5TruncatedIsUnexpectedEOF(t *testing.T) {
	for _, fx := range fixtures5 {
		for cut := 1; cut < len(fx.raw); cut++ {
			p, err := reader5(bytes.NewReader(fx.raw[:cut]), 0).ReadPacket()
			if !errors.Is(err, io.ErrUnexpectedEOF) || p != nil {
				t.Errorf("%s cut at %d: %v, %v; want nil, io.ErrUnexpectedEOF", fx.name, cut, p, err)
			}
		}
	}
}

func TestReasonCodeString(t *testing.T) {
	for _, tt := range []struct {
		c    ReasonCode
		want string
	}{
		{ReasonSuccess, "Success"},
		{ReasonNormalDisconnection, "Success"},
		{ReasonGrantedQoS2, "Granted QoS 2"},
		{ReasonMalformedPacket, "Malformed Packet"},
		{ReasonTopicAliasInvalid, "Topic Alias invalid"},
		{ReasonWildcardSubscriptionsNotSupported, "Wildcard Subscriptions not supported"},
		{0x03, "ReasonCode(3)"},
		{0xFF, "ReasonCode(255)"},
	} {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("ReasonCode(%#x).String() = %q, want %q", byte(tt.c), got, tt.want)
		}
	}
	if got := PropTopicAlias.String(); got != "Topic Alias" {
		t.Errorf("PropTopicAlias.String() = %q", got)
	}
	if got := PropertyID(0x04).String(); got != "PropertyID(4)" {
		t.Errorf("PropertyID(4).String() = %q", got)
	}
}

// Every name in reasonNames is a code some packet type carries, and every
// code a packet type carries has a name: the two tables agree.
func TestReasonTablesAgree(t *testing.T) {
	for c := range 256 {
		rc := ReasonCode(c)
		valid := false
		for pt := TypeConnect; pt <= TypeAuth; pt++ {
			valid = valid || rc.ValidFor(pt)
		}
		if named := reasonNames[rc] != ""; named != valid {
			t.Errorf("%#x: named %v, valid for some packet %v", c, named, valid)
		}
	}
	for _, tt := range []struct {
		c  ReasonCode
		t  Type
		ok bool
	}{
		{ReasonNoMatchingSubscribers, TypePuback, true},
		{ReasonNoMatchingSubscribers, TypePubrel, false},
		{ReasonPacketIdentifierNotFound, TypePubcomp, true},
		{ReasonPacketIdentifierNotFound, TypePuback, false},
		{ReasonDisconnectWithWill, TypeDisconnect, true},
		{ReasonDisconnectWithWill, TypeConnack, false},
		{ReasonReAuthenticate, TypeAuth, true},
		{ReasonGrantedQoS1, TypeSuback, true},
		{ReasonGrantedQoS1, TypeUnsuback, false},
		{ReasonSuccess, TypePublish, false},
		{ReasonSuccess, Type(16), false},
	} {
		if got := tt.c.ValidFor(tt.t); got != tt.ok {
			t.Errorf("%v.ValidFor(%v) = %v, want %v", tt.c, tt.t, got, tt.ok)
		}
	}
}

func TestPropertiesHasAndInclude(t *testing.T) {
	var nilProps *Properties
	if nilProps.Has(PropSessionExpiryInterval) {
		t.Error("a nil *Properties has Session Expiry Interval")
	}
	p := &Properties{ReceiveMaximum: 5, User: []UserProperty{{"a", "b"}}}
	for id, want := range map[PropertyID]bool{
		PropReceiveMaximum: true, PropUserProperty: true, PropSessionExpiryInterval: false,
		PropSubscriptionIdentifier: false, PropertyID(0x04): false, PropertyID(0xFF): false,
	} {
		if got := p.Has(id); got != want {
			t.Errorf("Has(%v) = %v, want %v", id, got, want)
		}
	}
	p.Include(PropSessionExpiryInterval)
	p.Include(PropSubscriptionIdentifier) // a list: no effect
	p.Include(PropertyID(0x04))           // unknown: no effect
	if !p.Has(PropSessionExpiryInterval) || p.Has(PropSubscriptionIdentifier) || p.Has(PropertyID(0x04)) {
		t.Errorf("after Include: %+v", p)
	}
	// Included and written for DISCONNECT, left out of PUBLISH, which may
	// not carry it.
	if got, want := (&Disconnect{Props: p}).AppendLevel(nil, Level5), raw(0xE0, 14, 0, 12, 0x11, 0, 0, 0, 0, 0x26, 0, 1, "a", 0, 1, "b"); !bytes.Equal(got, want) {
		t.Errorf("DISCONNECT: % x, want % x", got, want)
	}
	if got, want := (&Publish{Topic: "t", Props: p}).AppendLevel(nil, Level5), raw(0x30, 11, 0, 1, "t", 7, 0x26, 0, 1, "a", 0, 1, "b"); !bytes.Equal(got, want) {
		t.Errorf("PUBLISH: % x, want % x", got, want)
	}
	if !PropTopicAlias.CarriedBy(TypePublish) || PropTopicAlias.CarriedBy(TypeConnect) || PropWillDelayInterval.CarriedBy(TypeConnect) {
		t.Error("CarriedBy disagrees with table 2-4")
	}
}

// A PUBACK with Success and nothing else takes the two-byte form; any other
// reason code takes three bytes; properties bring the property length.
func TestAppendAck5ShortForms(t *testing.T) {
	for _, tt := range []struct {
		p    Packet
		want []byte
	}{
		{&Puback{PacketID: 1}, raw(0x40, 2, 0, 1)},
		{&Puback{PacketID: 1, Props: &Properties{}}, raw(0x40, 2, 0, 1)},
		{&Puback{PacketID: 1, Props: &Properties{TopicAlias: 3}}, raw(0x40, 2, 0, 1)}, // not a PUBACK property
		{&Pubrel{PacketID: 1, Reason: ReasonPacketIdentifierNotFound}, raw(0x62, 3, 0, 1, 0x92)},
		{&Disconnect{Reason: ReasonNormalDisconnection}, raw(0xE0, 0)},
		{&Disconnect{Reason: ReasonServerShuttingDown}, raw(0xE0, 1, 0x8B)},
		{&Auth{Reason: ReasonSuccess}, raw(0xF0, 0)},
	} {
		if got := tt.p.AppendLevel(nil, Level5); !bytes.Equal(got, tt.want) {
			t.Errorf("%#v: % x, want % x", tt.p, got, tt.want)
		}
	}
}

// The QoS 0 path of 3.1.1 must not pay for level 5: decoding a PUBLISH at
// level 4 costs what it cost before properties existed (TestReadAllocations),
// and at level 5 a PUBLISH without properties costs the same.
func TestRead5PublishWithoutPropertiesAllocations(t *testing.T) {
	p := &Publish{Topic: "a/b/c", Payload: []byte("payload")}
	r := reader5(&loopReader{data: p.AppendLevel(nil, Level5)}, 0)
	got := testing.AllocsPerRun(200, func() {
		if _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	})
	if got > 3 {
		t.Errorf("%v allocations per level-5 ReadPacket, want at most 3", got)
	}
}

func BenchmarkReadPublish5(b *testing.B) {
	p := &Publish{QoS: 1, Topic: "sensors/building-7/floor-3/temperature", PacketID: 42, Payload: bytes.Repeat([]byte{'x'}, 64),
		Props: &Properties{MessageExpiry: 60, ContentType: "text/plain", User: []UserProperty{{"site", "7"}}}}
	wire := p.AppendLevel(nil, Level5)
	r := reader5(&loopReader{data: wire}, 0)
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadPacket(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPublish5(b *testing.B) {
	p := &Publish{QoS: 1, Topic: "sensors/building-7/floor-3/temperature", PacketID: 42, Payload: bytes.Repeat([]byte{'x'}, 64),
		Props: &Properties{MessageExpiry: 60, ContentType: "text/plain", User: []UserProperty{{"site", "7"}}}}
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(p.AppendLevel(nil, Level5))))
	b.ReportAllocs()
	for b.Loop() {
		buf = p.AppendLevel(buf[:0], Level5)
	}
}
