package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// withProps builds a valid level-5 packet of type t (willProps: a CONNECT
// with a will) around props, an encoded property list without its length.
func withProps(t Type, props []byte) []byte {
	list := append(AppendRemainingLength(nil, len(props)), props...)
	var first byte = byte(t) << 4
	var body []byte
	switch t {
	case TypeConnect:
		body = raw(0, 4, "MQTT", 5, 0x02, 0, 60, list, 0, 1, "c")
	case willProps:
		first = byte(TypeConnect) << 4
		body = raw(0, 4, "MQTT", 5, 0x06, 0, 60, 0, 0, 1, "c", list, 0, 1, "t", 0, 0)
	case TypeConnack:
		body = raw(0, 0, list)
	case TypePublish:
		body = raw(0, 1, "t", list, "p")
	case TypePuback, TypePubrec, TypePubcomp:
		body = raw(0, 1, 0, list)
	case TypePubrel:
		first |= flagsRequired
		body = raw(0, 1, 0, list)
	case TypeSubscribe:
		first |= flagsRequired
		body = raw(0, 1, list, 0, 1, "t", 0)
	case TypeSuback, TypeUnsuback:
		body = raw(0, 1, list, 0)
	case TypeUnsubscribe:
		first |= flagsRequired
		body = raw(0, 1, list, 0, 1, "t")
	case TypeDisconnect:
		body = raw(0, list)
	case TypeAuth:
		body = raw(0x18, list)
	default:
		panic("withProps: " + t.String())
	}
	return append(AppendRemainingLength([]byte{first}, len(body)), body...)
}

// sampleProp encodes property id with a valid value of its type.
func sampleProp(id PropertyID) []byte {
	b := []byte{byte(id)}
	switch (&Properties{}).ref(id).(type) {
	case *byte, *bool:
		return append(b, 1)
	case *uint16:
		return append(b, 0, 1)
	case *uint32:
		return append(b, 0, 0, 0, 1)
	case *[]uint32:
		return append(b, 1)
	case *string:
		return append(b, 0, 1, 'x')
	case *[]byte:
		return append(b, 0, 1, 0xFF)
	case *[]UserProperty:
		return append(b, 0, 1, 'k', 0, 1, 'v')
	}
	panic(fmt.Sprintf("sampleProp: %#x", id))
}

var propTargets = []Type{willProps, TypeConnect, TypeConnack, TypePublish, TypePuback, TypePubrec, TypePubrel,
	TypePubcomp, TypeSubscribe, TypeSuback, TypeUnsubscribe, TypeUnsuback, TypeDisconnect, TypeAuth}

func targetName(t Type) string {
	if t == willProps {
		return "will properties"
	}
	return t.String()
}

// needs adds what a packet must carry besides the property under test: an
// AUTH names its method (§3.15.2.2.2), and Authentication Data comes with its
// method everywhere (§3.1.2.11.10).
func needs(t Type, id PropertyID, list []byte) []byte {
	if id == PropAuthenticationMethod || (t != TypeAuth && id != PropAuthenticationData) {
		return list
	}
	return append(sampleProp(PropAuthenticationMethod), list...)
}

func readOne5(wire []byte) (Packet, error) {
	return reader5(bytes.NewReader(wire), 0).ReadPacket()
}

// §2.2.2.2, table 2-4: each property in each packet that may carry it is
// accepted; in any other it is a Malformed Packet ("A Control Packet which
// contains an Identifier which is not valid for its packet type ... is a
// Malformed Packet").
func TestPropertyAllowedInPacket(t *testing.T) {
	for id := range PropertyID(len(propInfos)) {
		if !id.known() {
			continue
		}
		for _, pt := range propTargets {
			allowed := propInfos[id].in&(1<<pt) != 0
			name := fmt.Sprintf("[§2.2.2.2] %v in %s", id, targetName(pt))
			if !allowed {
				name += " is malformed"
			}
			t.Run(name, func(t *testing.T) {
				wire := withProps(pt, needs(pt, id, sampleProp(id)))
				p, err := readOne5(wire)
				if allowed {
					if err != nil {
						t.Fatalf("% x: %v", wire, err)
					}
					props := propsOf(p, pt)
					if !props.Has(id) {
						t.Errorf("% x: decoded %+v lacks the property", wire, props)
					}
					// Encoding writes it back where it came from.
					if enc := p.AppendLevel(nil, Level5); !bytes.Equal(enc, wire) {
						t.Errorf("re-encoded % x, want % x", enc, wire)
					}
					return
				}
				if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrProtocol) {
					t.Errorf("% x: %v, want only ErrMalformed", wire, err)
				}
			})
		}
	}
}

// propsOf returns the properties decoded for target t of packet p.
func propsOf(p Packet, t Type) *Properties {
	if t == willProps {
		return p.(*Connect).Will.Props
	}
	return reflect.ValueOf(p).Elem().FieldByName("Props").Interface().(*Properties)
}

// Only User Property repeats everywhere and Subscription Identifier in a
// PUBLISH; any other property given twice is a Protocol Error. The
// specification says so property by property, e.g. §3.1.2.11.3 "It is a
// Protocol Error to include the Receive Maximum value more than once", and
// §3.8.2.1.2 for a Subscription Identifier in SUBSCRIBE.
func TestPropertyDuplicates(t *testing.T) {
	for id := range PropertyID(len(propInfos)) {
		if !id.known() {
			continue
		}
		for _, pt := range propTargets {
			if propInfos[id].in&(1<<pt) == 0 {
				continue
			}
			repeats := id == PropUserProperty || id == PropSubscriptionIdentifier && pt == TypePublish
			name := fmt.Sprintf("[§2.2.2.2] %v twice in %s", id, targetName(pt))
			if !repeats {
				name += " is a protocol error"
			}
			t.Run(name, func(t *testing.T) {
				one := sampleProp(id)
				wire := withProps(pt, needs(pt, id, append(bytes.Clone(one), one...)))
				p, err := readOne5(wire)
				if !repeats {
					if !errors.Is(err, ErrProtocol) || errors.Is(err, ErrMalformed) {
						t.Errorf("% x: %v, want only ErrProtocol", wire, err)
					}
					if code, _ := ReasonOf(err); code != ReasonProtocolError {
						t.Errorf("ReasonOf = %v, want Protocol Error", code)
					}
					return
				}
				if err != nil {
					t.Fatalf("% x: %v", wire, err)
				}
				props := propsOf(p, pt)
				if n := len(props.User) + len(props.SubscriptionIDs); n != 2 {
					t.Errorf("decoded %d values, want 2: %+v", n, props)
				}
			})
		}
	}
}

// propTests are the value, length and combination rules of properties, each
// named after the statement or section that makes it.
var propTests = []struct {
	name string
	wire []byte
	want error
}{
	// Values.
	{"[§3.3.2.3.2] Payload Format Indicator 2", withProps(TypePublish, raw(0x01, 2)), ErrProtocol},
	{"[§3.1.3.2.3] will Payload Format Indicator 2", withProps(willProps, raw(0x01, 2)), ErrProtocol},
	{"[§3.1.2.11.3] Receive Maximum 0 in CONNECT", withProps(TypeConnect, raw(0x21, 0, 0)), ErrProtocol},
	{"[§3.2.2.3.3] Receive Maximum 0 in CONNACK", withProps(TypeConnack, raw(0x21, 0, 0)), ErrProtocol},
	{"[§3.1.2.11.4] Maximum Packet Size 0 in CONNECT", withProps(TypeConnect, raw(0x27, 0, 0, 0, 0)), ErrProtocol},
	{"[§3.2.2.3.6] Maximum Packet Size 0 in CONNACK", withProps(TypeConnack, raw(0x27, 0, 0, 0, 0)), ErrProtocol},
	{"[§3.3.2.3.8] Subscription Identifier 0 in PUBLISH", withProps(TypePublish, raw(0x0B, 0)), ErrProtocol},
	{"[§3.8.2.1.2] Subscription Identifier 0 in SUBSCRIBE", withProps(TypeSubscribe, raw(0x0B, 0)), ErrProtocol},
	{"[§3.8.2.1.2] Subscription Identifier 0 in two bytes", withProps(TypeSubscribe, raw(0x0B, 0x80, 0x00)), ErrProtocol},
	{"[MQTT-3.3.2-8] Topic Alias 0", withProps(TypePublish, raw(0x23, 0, 0)), ErrTopicAliasInvalid},
	{"[§3.1.2.11.6] Request Response Information 2", withProps(TypeConnect, raw(0x19, 2)), ErrProtocol},
	{"[§3.1.2.11.7] Request Problem Information 2", withProps(TypeConnect, raw(0x17, 2)), ErrProtocol},
	{"[§3.2.2.3.4] Maximum QoS 2", withProps(TypeConnack, raw(0x24, 2)), ErrProtocol},
	{"[§3.2.2.3.5] Retain Available 2", withProps(TypeConnack, raw(0x25, 2)), ErrProtocol},
	{"[§3.2.2.3.11] Wildcard Subscription Available 2", withProps(TypeConnack, raw(0x28, 2)), ErrProtocol},
	{"[§3.2.2.3.12] Subscription Identifiers Available 0xFF", withProps(TypeConnack, raw(0x29, 0xFF)), ErrProtocol},
	{"[§3.2.2.3.13] Shared Subscription Available 2", withProps(TypeConnack, raw(0x2A, 2)), ErrProtocol},
	{"[§3.1.2.11.10] Authentication Data without Authentication Method in CONNECT", withProps(TypeConnect, raw(0x16, 0, 1, "d")), ErrProtocol},
	{"[§3.2.2.3.18] Authentication Data without Authentication Method in CONNACK", withProps(TypeConnack, raw(0x16, 0, 1, "d")), ErrProtocol},
	{"[§3.15.2.2.2] AUTH without Authentication Method", withProps(TypeAuth, raw(0x1F, 0, 1, "r")), ErrProtocol},
	{"[§3.15.2.2.2] AUTH with a reason code only", raw(0xF0, 1, 0x18), ErrProtocol},

	// Strings.
	{"[MQTT-3.3.2-14] Response Topic with wildcard", withProps(TypePublish, raw(0x08, 0, 3, "a/#")), ErrMalformed},
	{"[MQTT-3.3.2-13] Response Topic ill-formed UTF-8", withProps(TypePublish, raw(0x08, 0, 1, 0xFF)), ErrMalformed},
	{"[MQTT-3.3.2-13] will Response Topic empty", withProps(willProps, raw(0x08, 0, 0)), ErrMalformed},
	{"[MQTT-3.3.2-19] Content Type with U+0000", withProps(TypePublish, raw(0x03, 0, 1, 0)), ErrMalformed},
	{"[MQTT-1.5.4-1] Reason String with encoded surrogate", withProps(TypePuback, raw(0x1F, 0, 3, 0xED, 0xA0, 0x80)), ErrMalformed},
	{"[MQTT-1.5.7-1] User Property name ill-formed", withProps(TypeConnect, raw(0x26, 0, 1, 0xC0, 0, 0)), ErrMalformed},
	{"[MQTT-1.5.7-1] User Property value with U+0000", withProps(TypeConnect, raw(0x26, 0, 1, "k", 0, 1, 0)), ErrMalformed},
	{"[MQTT-1.5.4-2] Assigned Client Identifier with U+0000", withProps(TypeConnack, raw(0x12, 0, 1, 0)), ErrMalformed},

	// Identifiers.
	{"[§2.2.2.2] unknown property identifier 0x04", withProps(TypePublish, raw(0x04, 0)), ErrMalformed},
	{"[§2.2.2.2] unknown property identifier 0x00", withProps(TypeDisconnect, raw(0x00)), ErrMalformed},
	{"[§2.2.2.2] property identifier in two bytes beyond the table", withProps(TypePublish, raw(0x80, 0x01)), ErrMalformed},
	{"[§1.5.5] property identifier without its last byte", withProps(TypePublish, raw(0x80)), ErrMalformed},

	// Lengths.
	{"[§2.2.2.1] string runs past the property length", withProps(TypePublish, raw(0x03, 0, 5, "ab")), ErrMalformed},
	{"[§2.2.2.1] Two Byte Integer cut by the property length", withProps(TypePublish, raw(0x23, 0)), ErrMalformed},
	{"[§2.2.2.1] Four Byte Integer cut by the property length", withProps(TypePublish, raw(0x02, 0, 0, 0)), ErrMalformed},
	{"[§2.2.2.1] Byte cut by the property length", withProps(TypePublish, raw(0x01)), ErrMalformed},
	{"[§2.2.2.1] User Property without its value", withProps(TypePublish, raw(0x26, 0, 1, "k")), ErrMalformed},
	{"[§1.5.5] Subscription Identifier of five bytes", withProps(TypePublish, raw(0x0B, 0x80, 0x80, 0x80, 0x80, 0x01)), ErrMalformed},
	{"[§2.2.2.1] property length runs past the packet", pkt(0x30, 0, 1, "t", 9, 0x01, 1), ErrMalformed},
	{"[§2.2.2.1] property length of five bytes", pkt(0x30, 0, 1, "t", 0x80, 0x80, 0x80, 0x80, 0x01), ErrMalformed},
	{"[MQTT-2.2.2-1] PUBLISH without property length", pkt(0x32, 0, 1, "t", 0, 1), ErrMalformed},
	{"[MQTT-2.2.2-1] CONNACK without property length", raw(0x20, 2, 0, 0), ErrMalformed},
	{"[MQTT-2.2.2-1] SUBSCRIBE without property length", pkt(0x82, 0, 1), ErrMalformed},
	{"[MQTT-2.2.2-1] UNSUBACK without property length", raw(0xB0, 2, 0, 1), ErrMalformed},
	{"[MQTT-2.2.2-1] CONNECT without property length", pkt(0x10, 0, 4, "MQTT", 5, 0x02, 0, 60), ErrMalformed},
	{"[MQTT-2.2.2-1] CONNECT will without will property length", pkt(0x10, 0, 4, "MQTT", 5, 0x06, 0, 60, 0, 0, 0), ErrMalformed},
}

func TestPropertyRules(t *testing.T) {
	for _, tt := range propTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readOne5(tt.wire)
			if !errors.Is(err, tt.want) {
				t.Fatalf("% x: got %v, want %v", tt.wire, err, tt.want)
			}
			if tt.want == ErrMalformed && errors.Is(err, ErrProtocol) || tt.want != ErrMalformed && errors.Is(err, ErrMalformed) {
				t.Errorf("% x: %v is both malformed and a protocol error", tt.wire, err)
			}
			_, err2 := reader5(iotest.OneByteReader(bytes.NewReader(tt.wire)), 0).ReadPacket()
			if err2 == nil || err2.Error() != err.Error() {
				t.Errorf("one byte at a time: %v, whole: %v", err2, err)
			}
		})
	}
}

// The error names the packet, the field and the kind, so a log line says
// what the client did; ReasonOf gives the code to answer with.
func TestLevel5ErrorsNameFieldAndReason(t *testing.T) {
	for _, tt := range []struct {
		wire []byte
		msg  string
		code ReasonCode
	}{
		{withProps(TypeConnect, raw(0x21, 0, 0)), "protocol error: CONNECT Receive Maximum: 0", ReasonProtocolError},
		{withProps(TypeConnect, raw(0x23, 0, 1)), "malformed packet: CONNECT Topic Alias: not allowed here", ReasonMalformedPacket},
		{withProps(willProps, raw(0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 1)), "protocol error: CONNECT will Will Delay Interval: included more than once", ReasonProtocolError},
		{withProps(TypePublish, raw(0x23, 0, 0)), "protocol error: topic alias invalid: PUBLISH Topic Alias: 0", ReasonTopicAliasInvalid},
		{raw(0x40, 3, 0, 1, 0x92), "protocol error: PUBACK reason code: 0x92 is not one of the PUBACK reason codes", ReasonProtocolError},
	} {
		_, err := readOne5(tt.wire)
		if err == nil || err.Error() != tt.msg {
			t.Errorf("% x: %q, want %q", tt.wire, err, tt.msg)
		}
		if code, ok := ReasonOf(err); !ok || code != tt.code {
			t.Errorf("% x: ReasonOf = %v, %v; want %v", tt.wire, code, ok, tt.code)
		}
	}
	if _, ok := ReasonOf(io.ErrUnexpectedEOF); ok {
		t.Error("ReasonOf(io.ErrUnexpectedEOF) is a codec error")
	}
	_, err := reader5(bytes.NewReader(pkt(0x30, 0, 3, "a/b", 0, "hello")), 10).ReadPacket()
	if code, ok := ReasonOf(err); !ok || code != ReasonPacketTooLarge {
		t.Errorf("too large: ReasonOf(%v) = %v, %v", err, code, ok)
	}
}
