package codec

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// malformed5Tests are the rules of level-5 packets outside their properties
// (propTests has those), each read by a Reader at level 5.
var malformed5Tests = []struct {
	name string
	wire []byte
	max  int
	want error
}{
	// Fixed header.
	{"[MQTT-3.15.1-1] AUTH flags 0x1", raw(0xF1, 0), 0, ErrMalformed},
	{"[MQTT-3.14.1-1] DISCONNECT flags 0x2", raw(0xE2, 0), 0, ErrMalformed},
	{"[MQTT-2.1.3-1] PUBACK flags 0x2", raw(0x42, 2, 0, 1), 0, ErrMalformed},
	{"[MQTT-3.6.1-1] PUBREL flags 0x0", raw(0x60, 2, 0, 1), 0, ErrMalformed},
	{"[§3.12.1] PINGREQ remaining length 1", raw(0xC0, 1, 0), 0, ErrMalformed},
	{"[§2.1.2] reserved type 0", raw(0x00, 0), 0, ErrMalformed},
	{"[MQTT-3.2.2-15] packet over the limit", withProps(TypePublish, raw(0x03, 0, 8, "too long")), 16, ErrPacketTooLarge},

	// CONNECT.
	{"[MQTT-3.1.2-3] CONNECT reserved flag", pkt(0x10, 0, 4, "MQTT", 5, 0x03, 0, 60, 0, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-14] CONNECT will QoS 3", pkt(0x10, 0, 4, "MQTT", 5, 0x1E, 0, 60, 0, 0, 1, "c", 0, 0, 1, "t", 0, 0), 0, ErrMalformed},
	{"[MQTT-3.1.2-13] CONNECT will QoS without will flag", pkt(0x10, 0, 4, "MQTT", 5, 0x0A, 0, 60, 0, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-15] CONNECT will retain without will flag", pkt(0x10, 0, 4, "MQTT", 5, 0x22, 0, 60, 0, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-9] CONNECT will flag without will topic", pkt(0x10, 0, 4, "MQTT", 5, 0x06, 0, 60, 0, 0, 1, "c", 0), 0, ErrMalformed},
	{"[MQTT-3.3.2-2] CONNECT will topic with wildcard", pkt(0x10, 0, 4, "MQTT", 5, 0x06, 0, 60, 0, 0, 1, "c", 0, 0, 1, "+", 0, 0), 0, ErrMalformed},
	{"[MQTT-3.1.3-4] CONNECT client identifier ill-formed", pkt(0x10, 0, 4, "MQTT", 5, 0x02, 0, 60, 0, 0, 1, 0xFF), 0, ErrMalformed},
	{"[MQTT-3.1.2-19] CONNECT user name flag without user name", pkt(0x10, 0, 4, "MQTT", 5, 0x82, 0, 60, 0, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-18] CONNECT user name without its flag", pkt(0x10, 0, 4, "MQTT", 5, 0x02, 0, 60, 0, 0, 1, "c", 0, 1, "u"), 0, ErrMalformed},
	{"[MQTT-3.1.4-1] CONNECT trailing byte", pkt(0x10, 0, 4, "MQTT", 5, 0x02, 0, 60, 0, 0, 1, "c", 0), 0, ErrMalformed},

	// CONNACK.
	{"[MQTT-3.2.2-1] CONNACK reserved acknowledge flags", raw(0x20, 3, 0x02, 0, 0), 0, ErrMalformed},
	{"[MQTT-3.2.2-6] CONNACK session present with a failure", raw(0x20, 3, 0x01, 0x87, 0), 0, ErrProtocol},
	{"[MQTT-3.2.2-8] CONNACK reason code 0x10", raw(0x20, 3, 0, 0x10, 0), 0, ErrProtocol},
	{"[MQTT-3.2.2-8] CONNACK 3.1.1 return code 5", raw(0x20, 3, 0, 0x05, 0), 0, ErrProtocol},
	{"[§3.2.2] CONNACK trailing byte", raw(0x20, 4, 0, 0, 0, 0), 0, ErrMalformed},
	{"[§3.2.2] CONNACK without reason code", raw(0x20, 1, 0), 0, ErrMalformed},

	// PUBLISH.
	{"[§3.3.2.3.4] PUBLISH empty topic without a Topic Alias", pkt(0x30, 0, 0, 0, "p"), 0, ErrProtocol},
	{"[§3.3.2.3.4] PUBLISH empty topic with other properties", pkt(0x30, 0, 0, 2, 0x01, 1, "p"), 0, ErrProtocol},
	{"[MQTT-3.3.2-2] PUBLISH topic with wildcard", pkt(0x30, 0, 3, "a/+", 0), 0, ErrMalformed},
	{"[MQTT-3.3.2-1] PUBLISH topic ill-formed UTF-8", pkt(0x30, 0, 1, 0xFF, 0), 0, ErrMalformed},
	{"[MQTT-2.2.1-3] PUBLISH qos 1 packet id 0", pkt(0x32, 0, 1, "t", 0, 0, 0), 0, ErrProtocol},
	{"[MQTT-3.3.1-4] PUBLISH qos 3", pkt(0x36, 0, 1, "t", 0, 1, 0), 0, ErrMalformed},
	{"[MQTT-3.3.1-2] PUBLISH dup with qos 0", pkt(0x38, 0, 1, "t", 0), 0, ErrMalformed},

	// PUBACK, PUBREC, PUBREL, PUBCOMP.
	{"[MQTT-3.4.2-1] PUBACK reason code 0x92", raw(0x40, 3, 0, 1, 0x92), 0, ErrProtocol},
	{"[MQTT-3.5.2-1] PUBREC reason code 0x01", raw(0x50, 3, 0, 1, 0x01), 0, ErrProtocol},
	{"[MQTT-3.6.2-1] PUBREL reason code 0x10", raw(0x62, 3, 0, 1, 0x10), 0, ErrProtocol},
	{"[MQTT-3.7.2-1] PUBCOMP reason code 0x80", raw(0x70, 3, 0, 1, 0x80), 0, ErrProtocol},
	{"[§2.2.1] PUBACK packet id 0", raw(0x40, 2, 0, 0), 0, ErrProtocol},
	{"[§3.4.2] PUBACK remaining length 1", raw(0x40, 1, 0), 0, ErrMalformed},
	{"[§3.4.2] PUBACK remaining length 0", raw(0x40, 0), 0, ErrMalformed},
	{"[§3.4.2.2] PUBACK trailing byte after the properties", raw(0x40, 5, 0, 1, 0, 0, 0), 0, ErrMalformed},
	{"[§3.5.2.2] PUBREC property length past the end", raw(0x50, 4, 0, 1, 0, 3), 0, ErrMalformed},

	// SUBSCRIBE.
	{"[MQTT-3.8.3-5] SUBSCRIBE reserved option bits", pkt(0x82, 0, 1, 0, 0, 1, "t", 0x40), 0, ErrMalformed},
	{"[§3.8.3.1] SUBSCRIBE maximum QoS 3", pkt(0x82, 0, 1, 0, 0, 1, "t", 0x03), 0, ErrProtocol},
	{"[§3.8.3.1] SUBSCRIBE retain handling 3", pkt(0x82, 0, 1, 0, 0, 1, "t", 0x30), 0, ErrProtocol},
	{"[MQTT-3.8.3-4] SUBSCRIBE no local on $share/g/#", pkt(0x82, 0, 1, 0, 0, 10, "$share/g/#", 0x04), 0, ErrProtocol},
	{"[MQTT-3.8.3-4] SUBSCRIBE no local on $share/g/t", pkt(0x82, 0, 1, 0, 0, 10, "$share/g/t", 0x04), 0, ErrProtocol},
	{"[MQTT-3.8.3-2] SUBSCRIBE without filters", pkt(0x82, 0, 1, 0), 0, ErrProtocol},
	{"[MQTT-2.2.1-3] SUBSCRIBE packet id 0", pkt(0x82, 0, 0, 0, 0, 1, "t", 0), 0, ErrProtocol},
	{"[§3.8.3] SUBSCRIBE filter without options", pkt(0x82, 0, 1, 0, 0, 1, "t"), 0, ErrMalformed},
	{"[MQTT-3.8.3-1] SUBSCRIBE filter with # not last", pkt(0x82, 0, 1, 0, 0, 3, "#/a", 0), 0, ErrMalformed},

	// SUBACK.
	{"[MQTT-3.9.3-2] SUBACK reason code 0x11", pkt(0x90, 0, 1, 0, 0x11), 0, ErrProtocol},
	{"[MQTT-3.8.4-6] SUBACK without reason codes", pkt(0x90, 0, 1, 0), 0, ErrProtocol},

	// UNSUBSCRIBE, UNSUBACK.
	{"[MQTT-3.10.3-2] UNSUBSCRIBE without filters", pkt(0xA2, 0, 1, 0), 0, ErrProtocol},
	{"[MQTT-3.10.3-1] UNSUBSCRIBE filter with U+0000", pkt(0xA2, 0, 1, 0, 0, 1, 0), 0, ErrMalformed},
	{"[MQTT-3.11.3-2] UNSUBACK reason code 0x01", pkt(0xB0, 0, 1, 0, 0x01), 0, ErrProtocol},
	{"[MQTT-3.11.3-1] UNSUBACK without reason codes", pkt(0xB0, 0, 1, 0), 0, ErrProtocol},

	// DISCONNECT, AUTH.
	{"[MQTT-3.14.2-1] DISCONNECT reason code 0x01", raw(0xE0, 1, 0x01), 0, ErrProtocol},
	{"[MQTT-3.14.2-1] DISCONNECT reason code 0x18", raw(0xE0, 1, 0x18), 0, ErrProtocol},
	{"[§3.14.2] DISCONNECT trailing byte", raw(0xE0, 3, 0, 0, 0), 0, ErrMalformed},
	{"[§3.14.2.2] DISCONNECT property length past the end", raw(0xE0, 2, 0, 1), 0, ErrMalformed},
	{"[MQTT-3.15.2-1] AUTH reason code 0x80", raw(0xF0, 1, 0x80), 0, ErrProtocol},
}

func TestRead5Malformed(t *testing.T) {
	sentinels := []error{ErrMalformed, ErrProtocol, ErrPacketTooLarge, ErrUnsupportedProtocol}
	for _, tt := range malformed5Tests {
		t.Run(tt.name, func(t *testing.T) { expectMalformed(t, reader5, tt.wire, tt.max, tt.want, sentinels) })
	}
}

// The rules that 5.0 calls Protocol Errors stay malformed at level 4, where
// ErrProtocol does not exist.
func TestLevel4NeverProtocolError(t *testing.T) {
	for _, wire := range [][]byte{
		raw(0x40, 2, 0, 0),                  // packet identifier 0
		pkt(0x82, 0, 1),                     // SUBSCRIBE without filters
		pkt(0xA2, 0, 1),                     // UNSUBSCRIBE without filters
		pkt(0x82, 0, 1, 0, 1, "t", 3),       // QoS 3
		pkt(0x10, 0, 4, "MQTT", 4, 0x42, 0), // password without user name
	} {
		_, err := NewReader(bytes.NewReader(wire), 0).ReadPacket()
		if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrProtocol) {
			t.Errorf("% x at level 4: %v, want only ErrMalformed", wire, err)
		}
	}
}

// readAll5 decodes like readAll with a Reader that starts at level 5 and
// accepts level-5 CONNECTs, and records the level each packet was read at.
func readAll5(src io.Reader, max int) ([]Packet, []byte, error) {
	r := reader5(src, max)
	var pkts []Packet
	var levels []byte
	for {
		p, err := r.ReadPacket()
		if p != nil {
			pkts = append(pkts, p)
			levels = append(levels, r.Level())
		}
		if err != nil {
			return pkts, levels, err
		}
	}
}

func FuzzReadPacket5(f *testing.F) {
	for i, fx := range fixtures5 {
		f.Add(fx.raw, uint(i))
	}
	for i, tt := range malformed5Tests {
		f.Add(tt.wire, uint(i))
	}
	for i, tt := range propTests {
		f.Add(tt.wire, uint(i))
	}
	var stream []byte
	for _, fx := range fixtures5 {
		stream = append(stream, fx.raw...)
	}
	f.Add(stream, uint(len(stream)/2))
	// A 3.1.1 CONNECT turns the same Reader to level 4.
	f.Add(append(bytes.Clone(fixtures[0].raw), stream[len(fixtures5[0].raw):]...), uint(3))

	f.Fuzz(func(t *testing.T, data []byte, cut uint) {
		const max = 1 << 16
		whole, levels, errWhole := readAll5(bytes.NewReader(data), max)

		k := int(cut % uint(len(data)+1))
		split, _, errSplit := readAll5(io.MultiReader(bytes.NewReader(data[:k]), bytes.NewReader(data[k:])), max)
		if !reflect.DeepEqual(whole, split) {
			t.Fatalf("split at %d: packets differ:\nwhole %#v\nsplit %#v", k, whole, split)
		}
		if errWhole.Error() != errSplit.Error() {
			t.Fatalf("split at %d: errors differ: %v / %v", k, errWhole, errSplit)
		}
		if _, ok := ReasonOf(errWhole); !ok && errWhole != io.EOF && !errors.Is(errWhole, io.ErrUnexpectedEOF) {
			t.Fatalf("error %v is neither the end of the data nor has a reason code", errWhole)
		}

		for i, p := range whole {
			if i == len(whole)-1 && errors.Is(errWhole, ErrUnsupportedProtocol) {
				continue // a partial CONNECT, not meant to round-trip
			}
			enc := p.AppendLevel(nil, levels[i])
			r := NewReader(bytes.NewReader(enc), 0)
			r.AcceptLevel5()
			r.SetLevel(levels[i])
			again, err := r.ReadPacket()
			if err != nil {
				t.Fatalf("re-decoding %#v at level %d from % x: %v", p, levels[i], enc, err)
			}
			if !reflect.DeepEqual(p, again) {
				t.Fatalf("round trip at level %d changed the packet:\n was %#v\n now %#v", levels[i], p, again)
			}
			if enc2 := again.AppendLevel(nil, levels[i]); !bytes.Equal(enc, enc2) {
				t.Fatalf("second encoding differs:\n% x\n% x", enc, enc2)
			}
		}
	})
}

// Every level-5 decoding error maps to a reason code the peer can send: in
// CONNACK when the packet was a CONNECT, in DISCONNECT otherwise (§4.13).
func TestReasonOfEveryLevel5ErrorIsSendable(t *testing.T) {
	type row struct {
		wire []byte
		max  int
	}
	var rows []row
	for _, tt := range malformed5Tests {
		rows = append(rows, row{tt.wire, tt.max})
	}
	for _, tt := range propTests {
		rows = append(rows, row{tt.wire, 0})
	}
	for _, r := range rows {
		_, err := reader5(bytes.NewReader(r.wire), r.max).ReadPacket()
		code, ok := ReasonOf(err)
		if !ok {
			t.Errorf("% x: %v has no reason code", r.wire, err)
			continue
		}
		in := TypeDisconnect
		if Type(r.wire[0]>>4) == TypeConnect {
			in = TypeConnack
		}
		if !code.ValidFor(in) {
			t.Errorf("% x: %v gives %v, which %v cannot carry", r.wire, err, code, in)
		}
	}
}

// Correlation Data and Authentication Data are slices of the packet's own
// body, like Payload: later reads must not change them.
func TestRead5PacketOwnsItsMemory(t *testing.T) {
	var first fixture
	for _, fx := range fixtures5 {
		if p, ok := fx.pkt.(*Publish); ok && p.Props != nil && p.Props.CorrelationData != nil {
			first = fx
		}
	}
	stream := bytes.Clone(first.raw)
	for range 100 {
		stream = append(stream, withProps(TypePublish, raw(0x09, 0, 3, "XYZ"))...)
		stream = append(stream, raw(0xE0, 2, 0x04, 0)...) // DISCONNECT in the scratch array
	}
	r := reader5(bytes.NewReader(stream), 0)
	p, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := r.ReadPacket(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(p, first.pkt) {
		t.Errorf("first packet changed under later reads: %#v", p)
	}
}
