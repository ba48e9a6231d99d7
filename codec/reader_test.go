package codec

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"testing"
	"testing/iotest"
)

// pkt prefixes body with a first byte and a one-byte remaining length, for
// rows whose point is a bad field rather than a bad length.
func pkt(first int, body ...any) []byte {
	b := raw(body...)
	if len(b) > 127 {
		panic("pkt: body too long for a one-byte remaining length")
	}
	return append([]byte{byte(first), byte(len(b))}, b...)
}

func TestReadFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(fx.raw), 0)
			got, err := r.ReadPacket()
			if err != nil {
				t.Fatalf("ReadPacket: %v", err)
			}
			if !reflect.DeepEqual(got, fx.pkt) {
				t.Errorf("ReadPacket:\n got %#v\nwant %#v", got, fx.pkt)
			}
			// The packet consumed exactly its bytes, and a close between
			// packets is a clean io.EOF, not wrapped.
			if p, err := r.ReadPacket(); err != io.EOF || p != nil {
				t.Errorf("second ReadPacket = %v, %v; want nil, io.EOF", p, err)
			}
		})
	}
}

func TestReadFixturesOneByteAtATime(t *testing.T) {
	for _, fx := range fixtures {
		r := NewReader(iotest.OneByteReader(bytes.NewReader(fx.raw)), 0)
		got, err := r.ReadPacket()
		if err != nil {
			t.Errorf("%s: ReadPacket: %v", fx.name, err)
			continue
		}
		if !reflect.DeepEqual(got, fx.pkt) {
			t.Errorf("%s:\n got %#v\nwant %#v", fx.name, got, fx.pkt)
		}
	}
}

// A client may pipeline packets; every one comes out, in order.
func TestReadStreamOfAllFixtures(t *testing.T) {
	var stream []byte
	for _, fx := range fixtures {
		stream = append(stream, fx.raw...)
	}
	for _, src := range []io.Reader{bytes.NewReader(stream), iotest.HalfReader(bytes.NewReader(stream))} {
		r := NewReader(src, 0)
		for _, fx := range fixtures {
			got, err := r.ReadPacket()
			if err != nil {
				t.Fatalf("%s: ReadPacket: %v", fx.name, err)
			}
			if !reflect.DeepEqual(got, fx.pkt) {
				t.Errorf("%s:\n got %#v\nwant %#v", fx.name, got, fx.pkt)
			}
		}
		if _, err := r.ReadPacket(); err != io.EOF {
			t.Errorf("after the last packet: %v, want io.EOF", err)
		}
	}
}

func TestReadTruncatedIsUnexpectedEOF(t *testing.T) {
	for _, fx := range fixtures {
		for cut := 1; cut < len(fx.raw); cut++ {
			r := NewReader(bytes.NewReader(fx.raw[:cut]), 0)
			p, err := r.ReadPacket()
			if !errors.Is(err, io.ErrUnexpectedEOF) || p != nil {
				t.Errorf("%s cut at %d: %v, %v; want nil, io.ErrUnexpectedEOF", fx.name, cut, p, err)
			}
		}
	}
}

func TestReadEmptyStreamIsEOF(t *testing.T) {
	_, err := NewReader(bytes.NewReader(nil), 0).ReadPacket()
	if err != io.EOF {
		t.Errorf("got %v, want io.EOF itself", err)
	}
}

func TestReadPassesThroughReadErrors(t *testing.T) {
	boom := errors.New("connection reset")
	for _, prefix := range [][]byte{nil, raw(0x30), raw(0x30, 7, 0, 3)} {
		src := io.MultiReader(bytes.NewReader(prefix), iotest.ErrReader(boom))
		if _, err := NewReader(src, 0).ReadPacket(); !errors.Is(err, boom) {
			t.Errorf("after % x: got %v, want %v", prefix, err, boom)
		}
	}
}

// Packets are queued after the next ReadPacket, so nothing of one may live
// in memory that the Reader reuses.
func TestReadPacketOwnsItsMemory(t *testing.T) {
	first := pkt(0x32, 0, 3, "a/b", 0, 1, "first")
	var stream []byte
	stream = append(stream, first...)
	for range 100 {
		stream = append(stream, pkt(0x30, 0, 3, "x/y", "SECOND")...)
	}
	r := NewReader(bytes.NewReader(stream), 0)
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
	want := &Publish{QoS: 1, Topic: "a/b", PacketID: 1, Payload: []byte("first")}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("first packet changed under later reads: %#v", p)
	}
}

func TestReadLargeBodyGrowsToExactSize(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 20_000) // 320,000 bytes, past bodyChunk
	want := &Publish{QoS: 1, Topic: "big", PacketID: 3, Payload: payload}
	wire := want.Append(nil)
	for name, src := range map[string]io.Reader{
		"whole":   bytes.NewReader(wire),
		"onebyte": iotest.OneByteReader(bytes.NewReader(wire)),
	} {
		got, err := NewReader(src, 0).ReadPacket()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: payload differs", name)
		}
		if p := got.(*Publish).Payload; cap(p) != len(p) {
			t.Errorf("%s: body capacity %d exceeds what it holds (%d)", name, cap(p), len(p))
		}
	}
}

func TestReadPacketSizeLimit(t *testing.T) {
	wire := pkt(0x30, 0, 3, "a/b", "hello") // 2 + 10 bytes
	if _, err := NewReader(bytes.NewReader(wire), len(wire)).ReadPacket(); err != nil {
		t.Errorf("packet of exactly the limit: %v", err)
	}
	if _, err := NewReader(bytes.NewReader(wire), len(wire)-1).ReadPacket(); !errors.Is(err, ErrPacketTooLarge) {
		t.Errorf("packet one byte over the limit: %v, want ErrPacketTooLarge", err)
	}
	// Only a header arrives: the limit must be judged from it alone, or this
	// would be io.ErrUnexpectedEOF.
	header := raw(0x30, 0xFF, 0xFF, 0xFF, 0x7F)
	if _, err := NewReader(bytes.NewReader(header), 1<<20).ReadPacket(); !errors.Is(err, ErrPacketTooLarge) {
		t.Errorf("declared 256 MB against a 1 MB limit: %v, want ErrPacketTooLarge", err)
	}
}

// A hostile client declares the largest remaining length there is and
// trickles bytes. What the Reader allocates must follow what arrived.
func TestReadHugeDeclaredLengthAllocatesWhatArrives(t *testing.T) {
	header := raw(0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0, 3, "a/b") // 268,435,455 declared
	for _, tt := range []struct {
		name      string
		delivered int
		maxAlloc  uint64
	}{
		{"few bytes", 0, 1 << 20},
		{"1 MiB", 1 << 20, 8 << 20},
	} {
		src := io.MultiReader(bytes.NewReader(header), bytes.NewReader(make([]byte, tt.delivered)))
		r := NewReader(iotest.HalfReader(src), 0)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := r.ReadPacket()
		runtime.ReadMemStats(&after)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %v, want io.ErrUnexpectedEOF", tt.name, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > tt.maxAlloc {
			t.Errorf("%s delivered: allocated %d bytes, want at most %d", tt.name, got, tt.maxAlloc)
		}
	}
}

func TestReadUnsupportedProtocolReturnsConnect(t *testing.T) {
	tests := []struct {
		wire []byte
		want *Connect
	}{
		// A 5.0 CONNECT: what follows the level is not ours to judge.
		{pkt(0x10, 0, 4, "MQTT", 5, 0x02, 0, 60, 0, 0, 1, "c"), &Connect{ProtocolName: "MQTT", ProtocolLevel: 5}},
		{pkt(0x10, 0, 4, "MQTT", 3, 0x02, 0, 60, 0, 1, "c"), &Connect{ProtocolName: "MQTT", ProtocolLevel: 3}},
		{pkt(0x10, 0, 6, "MQIsdp", 4, 0x02, 0, 60, 0, 1, "c"), &Connect{ProtocolName: "MQIsdp", ProtocolLevel: 4}},
		// The bridge bit exists for 3.1 and 3.1.1 only, each with its own name.
		{pkt(0x10, 0, 4, "MQTT", 0x85, 0x02, 0, 60, 0, 0, 1, "c"), &Connect{ProtocolName: "MQTT", ProtocolLevel: 0x85}},
		{pkt(0x10, 0, 4, "MQTT", 0x83, 0x02, 0, 60, 0, 1, "c"), &Connect{ProtocolName: "MQTT", ProtocolLevel: 0x83}},
		{pkt(0x10, 0, 6, "MQIsdp", 0x84, 0x02, 0, 60, 0, 1, "c"), &Connect{ProtocolName: "MQIsdp", ProtocolLevel: 0x84}},
	}
	for _, tt := range tests {
		r := NewReader(bytes.NewReader(tt.wire), 0)
		p, err := r.ReadPacket()
		if !errors.Is(err, ErrUnsupportedProtocol) || errors.Is(err, ErrMalformed) {
			t.Errorf("% x: error %v, want only ErrUnsupportedProtocol", tt.wire, err)
		}
		if !reflect.DeepEqual(p, tt.want) {
			t.Errorf("% x: packet %#v, want %#v", tt.wire, p, tt.want)
		}
		// The body was consumed, so the stream is still in step.
		if _, err := r.ReadPacket(); err != io.EOF {
			t.Errorf("% x: next read %v, want io.EOF", tt.wire, err)
		}
	}
}

func TestMalformedErrorNamesPacketAndField(t *testing.T) {
	_, err := NewReader(bytes.NewReader(pkt(0x30, 0, 3, "a/+")), 0).ReadPacket()
	const want = "malformed packet: PUBLISH topic name: contains wildcard '+'"
	if err == nil || err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

var malformedTests = []struct {
	name string
	wire []byte
	max  int // 0: no limit
	want error
}{
	// Fixed header.
	{"[MQTT-2.2.2-1] reserved type 0", raw(0x00, 0), 0, ErrMalformed},
	{"[MQTT-2.2.2-1] reserved type 15", raw(0xF0, 0), 0, ErrMalformed},
	{"[§2.2.3] remaining length of five bytes", raw(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F), 0, ErrMalformed},
	{"[MQTT-2.2.2-2] CONNECT flags 0x1", pkt(0x11, 0, 4, "MQTT", 4, 2, 0, 60, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-2.2.2-2] CONNACK flags 0x8", raw(0x28, 2, 0, 0), 0, ErrMalformed},
	{"[MQTT-2.2.2-2] PUBACK flags 0x2", raw(0x42, 2, 0, 1), 0, ErrMalformed},
	{"[MQTT-2.2.2-2] PUBREC flags 0x1", raw(0x51, 2, 0, 1), 0, ErrMalformed},
	{"[MQTT-2.2.2-2] PUBCOMP flags 0x2", raw(0x72, 2, 0, 1), 0, ErrMalformed},
	{"[MQTT-2.2.2-2] SUBACK flags 0x2", raw(0x92, 3, 0, 1, 0), 0, ErrMalformed},
	{"[MQTT-2.2.2-2] UNSUBACK flags 0x2", raw(0xB2, 2, 0, 1), 0, ErrMalformed},
	{"[MQTT-2.2.2-2] PINGREQ flags 0x1", raw(0xC1, 0), 0, ErrMalformed},
	{"[MQTT-2.2.2-2] PINGRESP flags 0x8", raw(0xD8, 0), 0, ErrMalformed},
	{"[MQTT-2.2.2-2] DISCONNECT flags 0x2", raw(0xE2, 0), 0, ErrMalformed},
	{"[MQTT-3.6.1-1] PUBREL flags 0x0", raw(0x60, 2, 0, 1), 0, ErrMalformed},
	{"[MQTT-3.6.1-1] PUBREL flags 0x3", raw(0x63, 2, 0, 1), 0, ErrMalformed},
	{"[MQTT-3.8.1-1] SUBSCRIBE flags 0x0", pkt(0x80, 0, 1, 0, 1, "#", 0), 0, ErrMalformed},
	{"[MQTT-3.8.1-1] SUBSCRIBE flags 0xa", pkt(0x8A, 0, 1, 0, 1, "#", 0), 0, ErrMalformed},
	{"[MQTT-3.10.1-1] UNSUBSCRIBE flags 0x0", pkt(0xA0, 0, 1, 0, 1, "#"), 0, ErrMalformed},

	// Size limit.
	{"packet one byte over the limit", pkt(0x30, 0, 3, "a/b", "hello"), 11, ErrPacketTooLarge},
	{"declared 256 MB, limit 1 MB", raw(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 1 << 20, ErrPacketTooLarge},

	// PUBLISH.
	{"[MQTT-3.3.1-4] PUBLISH qos 3", pkt(0x36, 0, 3, "a/b", 0, 1), 0, ErrMalformed},
	{"[MQTT-3.3.1-2] PUBLISH dup with qos 0", pkt(0x38, 0, 3, "a/b"), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] PUBLISH qos 1 packet id 0", pkt(0x32, 0, 3, "a/b", 0, 0, "x"), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] PUBLISH qos 2 packet id 0", pkt(0x34, 0, 3, "a/b", 0, 0), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] PUBLISH qos 1 without packet id", pkt(0x32, 0, 3, "a/b"), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] PUBLISH qos 1 with half a packet id", pkt(0x32, 0, 3, "a/b", 0), 0, ErrMalformed},
	{"[MQTT-3.3.2-1] PUBLISH empty body", raw(0x30, 0), 0, ErrMalformed},
	{"[MQTT-3.3.2-1] PUBLISH half a topic length", pkt(0x30, 0), 0, ErrMalformed},
	{"[§1.5.3] PUBLISH topic length past the end", pkt(0x30, 0, 5, "a/b"), 0, ErrMalformed},
	{"[§1.5.3] PUBLISH topic length 65535 past the end", pkt(0x30, 0xFF, 0xFF, "a/b"), 0, ErrMalformed},
	{"[MQTT-3.3.2-2] PUBLISH topic with +", pkt(0x30, 0, 3, "a/+"), 0, ErrMalformed},
	{"[MQTT-3.3.2-2] PUBLISH topic with #", pkt(0x30, 0, 3, "a/#"), 0, ErrMalformed},
	{"[MQTT-4.7.3-1] PUBLISH empty topic", pkt(0x30, 0, 0, "x"), 0, ErrMalformed},
	{"[MQTT-1.5.3-2] PUBLISH topic with U+0000", pkt(0x30, 0, 3, "a", 0, "b"), 0, ErrMalformed},
	{"[MQTT-1.5.3-1] PUBLISH topic with encoded surrogate", pkt(0x30, 0, 3, 0xED, 0xA0, 0x80), 0, ErrMalformed},
	{"[MQTT-1.5.3-1] PUBLISH topic ill-formed UTF-8", pkt(0x30, 0, 2, 0xC3, 0x28), 0, ErrMalformed},
	{"[MQTT-1.5.3-1] PUBLISH topic overlong UTF-8", pkt(0x30, 0, 2, 0xC0, 0xAF), 0, ErrMalformed},
	{"[MQTT-1.5.3-1] PUBLISH topic cut inside a rune", pkt(0x30, 0, 2, "a", 0xE2), 0, ErrMalformed},

	// CONNECT.
	{"[MQTT-3.1.2-1] CONNECT unknown protocol name", pkt(0x10, 0, 4, "MQTX", 4, 2, 0, 60, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-1] CONNECT lower-case protocol name", pkt(0x10, 0, 4, "mqtt", 4, 2, 0, 60, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-1] CONNECT empty protocol name", pkt(0x10, 0, 0, 4, 2, 0, 60, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-2] CONNECT MQTT level 5", pkt(0x10, 0, 4, "MQTT", 5, 2, 0, 60, 0, 0, 1, "c"), 0, ErrUnsupportedProtocol},
	{"[MQTT-3.1.2-2] CONNECT MQTT level 3", pkt(0x10, 0, 4, "MQTT", 3, 2, 0, 60, 0, 1, "c"), 0, ErrUnsupportedProtocol},
	{"[MQTT-3.1.2-2] CONNECT MQIsdp level 4", pkt(0x10, 0, 6, "MQIsdp", 4, 2, 0, 60, 0, 1, "c"), 0, ErrUnsupportedProtocol},
	{"[MQTT-3.1.2-2] CONNECT MQTT level 0", pkt(0x10, 0, 4, "MQTT", 0), 0, ErrUnsupportedProtocol},
	{"[MQTT-3.1.2-2] CONNECT without protocol level", pkt(0x10, 0, 4, "MQTT"), 0, ErrMalformed},
	{"[MQTT-3.1.2-3] CONNECT without connect flags", pkt(0x10, 0, 4, "MQTT", 4), 0, ErrMalformed},
	{"[MQTT-3.1.2-3] CONNECT reserved flag set", pkt(0x10, 0, 4, "MQTT", 4, 0x03, 0, 60, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-3] MQIsdp reserved flag set", pkt(0x10, 0, 6, "MQIsdp", 3, 0x01, 0, 60, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-14] CONNECT will qos 3", pkt(0x10, 0, 4, "MQTT", 4, 0x1E, 0, 60, 0, 1, "c", 0, 1, "t", 0, 0), 0, ErrMalformed},
	{"[MQTT-3.1.2-13] CONNECT will qos 1 without will flag", pkt(0x10, 0, 4, "MQTT", 4, 0x0A, 0, 60, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-13] CONNECT will qos 2 without will flag", pkt(0x10, 0, 4, "MQTT", 4, 0x12, 0, 60, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-15] CONNECT will retain without will flag", pkt(0x10, 0, 4, "MQTT", 4, 0x22, 0, 60, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-22] CONNECT password without user name", pkt(0x10, 0, 4, "MQTT", 4, 0x42, 0, 60, 0, 1, "c", 0, 2, "pw"), 0, ErrMalformed},
	{"[MQTT-3.1.2-22] MQIsdp password without user name", pkt(0x10, 0, 6, "MQIsdp", 3, 0x42, 0, 60, 0, 1, "c", 0, 2, "pw"), 0, ErrMalformed},
	{"[§3.1.2.10] CONNECT without keep alive", pkt(0x10, 0, 4, "MQTT", 4, 0x02, 0), 0, ErrMalformed},
	{"[MQTT-3.1.3-3] CONNECT without client identifier", pkt(0x10, 0, 4, "MQTT", 4, 0x02, 0, 60), 0, ErrMalformed},
	{"[§1.5.3] CONNECT client identifier past the end", pkt(0x10, 0, 4, "MQTT", 4, 0x02, 0, 60, 0, 9, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.3-4] CONNECT client identifier ill-formed UTF-8", pkt(0x10, 0, 4, "MQTT", 4, 0x02, 0, 60, 0, 1, 0xFF), 0, ErrMalformed},
	{"[MQTT-1.5.3-2] CONNECT client identifier with U+0000", pkt(0x10, 0, 4, "MQTT", 4, 0x02, 0, 60, 0, 2, "c", 0), 0, ErrMalformed},
	{"[MQTT-3.1.2-9] CONNECT will flag without will topic", pkt(0x10, 0, 4, "MQTT", 4, 0x06, 0, 60, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.2-9] CONNECT will flag without will message", pkt(0x10, 0, 4, "MQTT", 4, 0x06, 0, 60, 0, 1, "c", 0, 1, "t"), 0, ErrMalformed},
	{"[MQTT-3.1.3-10] CONNECT will topic with wildcard", pkt(0x10, 0, 4, "MQTT", 4, 0x06, 0, 60, 0, 1, "c", 0, 1, "#", 0, 0), 0, ErrMalformed},
	{"[MQTT-4.7.3-1] CONNECT empty will topic", pkt(0x10, 0, 4, "MQTT", 4, 0x06, 0, 60, 0, 1, "c", 0, 0, 0, 0), 0, ErrMalformed},
	{"[§1.5.3] CONNECT will message past the end", pkt(0x10, 0, 4, "MQTT", 4, 0x06, 0, 60, 0, 1, "c", 0, 1, "t", 0, 5, "x"), 0, ErrMalformed},
	{"[MQTT-3.1.2-19] CONNECT user name flag without user name", pkt(0x10, 0, 4, "MQTT", 4, 0x82, 0, 60, 0, 1, "c"), 0, ErrMalformed},
	{"[MQTT-3.1.3-11] CONNECT user name with U+0000", pkt(0x10, 0, 4, "MQTT", 4, 0x82, 0, 60, 0, 1, "c", 0, 2, "u", 0), 0, ErrMalformed},
	{"[MQTT-3.1.2-21] CONNECT password flag without password", pkt(0x10, 0, 4, "MQTT", 4, 0xC2, 0, 60, 0, 1, "c", 0, 1, "u"), 0, ErrMalformed},
	{"[§1.5.3] CONNECT password past the end", pkt(0x10, 0, 4, "MQTT", 4, 0xC2, 0, 60, 0, 1, "c", 0, 1, "u", 0, 3, "p"), 0, ErrMalformed},
	{"[MQTT-3.1.2-18] CONNECT user name without its flag", pkt(0x10, 0, 4, "MQTT", 4, 0x02, 0, 60, 0, 1, "c", 0, 1, "u"), 0, ErrMalformed},
	{"[MQTT-3.1.2-20] CONNECT password without its flag", pkt(0x10, 0, 4, "MQTT", 4, 0x82, 0, 60, 0, 1, "c", 0, 1, "u", 0, 1, "p"), 0, ErrMalformed},
	{"[MQTT-3.1.4-1] CONNECT trailing byte", pkt(0x10, 0, 4, "MQTT", 4, 0x02, 0, 60, 0, 1, "c", 0), 0, ErrMalformed},

	// CONNACK.
	{"[§3.2.2] CONNACK reserved acknowledge flags", raw(0x20, 2, 0x02, 0), 0, ErrMalformed},
	{"[§3.2.2] CONNACK reserved return code 6", raw(0x20, 2, 0, 6), 0, ErrMalformed},
	{"[§3.2.1] CONNACK remaining length 3", raw(0x20, 3, 0, 0, 0), 0, ErrMalformed},
	{"[§3.2.1] CONNACK remaining length 1", raw(0x20, 1, 0), 0, ErrMalformed},

	// Acknowledgements with a packet identifier only.
	{"[§3.4.1] PUBACK remaining length 3", raw(0x40, 3, 0, 1, 0), 0, ErrMalformed},
	{"[§3.4.1] PUBACK remaining length 0", raw(0x40, 0), 0, ErrMalformed},
	{"[§3.5.1] PUBREC remaining length 1", raw(0x50, 1, 1), 0, ErrMalformed},
	{"[§3.6.1] PUBREL remaining length 4", raw(0x62, 4, 0, 1, 0, 1), 0, ErrMalformed},
	{"[§3.7.1] PUBCOMP remaining length 3", raw(0x70, 3, 0, 1, 0), 0, ErrMalformed},
	{"[§3.11.1] UNSUBACK remaining length 3", raw(0xB0, 3, 0, 1, 0), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] PUBACK packet id 0", raw(0x40, 2, 0, 0), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] PUBREC packet id 0", raw(0x50, 2, 0, 0), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] PUBREL packet id 0", raw(0x62, 2, 0, 0), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] PUBCOMP packet id 0", raw(0x70, 2, 0, 0), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] UNSUBACK packet id 0", raw(0xB0, 2, 0, 0), 0, ErrMalformed},
	{"[§3.12.1] PINGREQ remaining length 1", raw(0xC0, 1, 0), 0, ErrMalformed},
	{"[§3.13.1] PINGRESP remaining length 1", raw(0xD0, 1, 0), 0, ErrMalformed},
	{"[§3.14.1] DISCONNECT remaining length 1", raw(0xE0, 1, 0), 0, ErrMalformed},

	// SUBSCRIBE.
	{"[MQTT-3.8.3-3] SUBSCRIBE without filters", pkt(0x82, 0, 1), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] SUBSCRIBE packet id 0", pkt(0x82, 0, 0, 0, 1, "#", 0), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] SUBSCRIBE half a packet id", pkt(0x82, 0), 0, ErrMalformed},
	{"[MQTT-3.8.3-4] SUBSCRIBE qos 3", pkt(0x82, 0, 1, 0, 1, "#", 3), 0, ErrMalformed},
	{"[MQTT-3.8.3-4] SUBSCRIBE reserved qos bit 6", pkt(0x82, 0, 1, 0, 1, "#", 0x41), 0, ErrMalformed},
	{"[MQTT-3.8.3-4] SUBSCRIBE reserved qos bit 2", pkt(0x82, 0, 1, 0, 1, "#", 0x04), 0, ErrMalformed},
	{"[§3.8.3] SUBSCRIBE without requested qos", pkt(0x82, 0, 1, 0, 1, "#"), 0, ErrMalformed},
	{"[§3.8.3] SUBSCRIBE second filter without qos", pkt(0x82, 0, 1, 0, 1, "#", 0, 0, 1, "a"), 0, ErrMalformed},
	{"[MQTT-4.7.1-2] SUBSCRIBE # not last", pkt(0x82, 0, 1, 0, 5, "a/#/b", 0), 0, ErrMalformed},
	{"[MQTT-4.7.1-2] SUBSCRIBE # not a whole level", pkt(0x82, 0, 1, 0, 3, "a/b#", 0), 0, ErrMalformed},
	{"[MQTT-4.7.1-3] SUBSCRIBE + not a whole level", pkt(0x82, 0, 1, 0, 4, "a/b+", 0), 0, ErrMalformed},
	{"[MQTT-4.7.3-1] SUBSCRIBE empty filter", pkt(0x82, 0, 1, 0, 0, 0), 0, ErrMalformed},
	{"[MQTT-3.8.3-1] SUBSCRIBE filter ill-formed UTF-8", pkt(0x82, 0, 1, 0, 1, 0x80, 0), 0, ErrMalformed},
	{"[§1.5.3] SUBSCRIBE filter past the end", pkt(0x82, 0, 1, 0, 7, "a/b", 0), 0, ErrMalformed},

	// SUBACK.
	{"[MQTT-3.9.3-2] SUBACK return code 3", pkt(0x90, 0, 1, 3), 0, ErrMalformed},
	{"[MQTT-3.9.3-2] SUBACK return code 0x81", pkt(0x90, 0, 1, 0, 0x81), 0, ErrMalformed},
	{"[§3.9.3] SUBACK without return codes", pkt(0x90, 0, 1), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] SUBACK packet id 0", pkt(0x90, 0, 0, 0), 0, ErrMalformed},

	// UNSUBSCRIBE.
	{"[MQTT-3.10.3-2] UNSUBSCRIBE without filters", pkt(0xA2, 0, 1), 0, ErrMalformed},
	{"[MQTT-2.3.1-1] UNSUBSCRIBE packet id 0", pkt(0xA2, 0, 0, 0, 1, "#"), 0, ErrMalformed},
	{"[MQTT-4.7.1-3] UNSUBSCRIBE + not a whole level", pkt(0xA2, 0, 1, 0, 2, "+a"), 0, ErrMalformed},
	{"[MQTT-3.10.3-1] UNSUBSCRIBE filter with U+0000", pkt(0xA2, 0, 1, 0, 1, 0), 0, ErrMalformed},
	{"[§1.5.3] UNSUBSCRIBE half a filter length", pkt(0xA2, 0, 1, 0, 1, "#", 0), 0, ErrMalformed},
}

func TestReadMalformed(t *testing.T) {
	sentinels := []error{ErrMalformed, ErrPacketTooLarge, ErrUnsupportedProtocol}
	for _, tt := range malformedTests {
		t.Run(tt.name, func(t *testing.T) { expectMalformed(t, NewReader, tt.wire, tt.max, tt.want, sentinels) })
	}
}

// expectMalformed checks that a reader from newReader fails on wire with want and with none of
// the other sentinels, and fails the same way when the bytes come one at a time.
func expectMalformed(t *testing.T, newReader func(io.Reader, int) *Reader, wire []byte, max int, want error, sentinels []error) {
	t.Helper()
	_, err := newReader(bytes.NewReader(wire), max).ReadPacket()
	if !errors.Is(err, want) {
		t.Fatalf("% x: got %v, want %v", wire, err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Errorf("% x: %v is also %v", wire, err, s)
		}
	}
	_, err2 := newReader(iotest.OneByteReader(bytes.NewReader(wire)), max).ReadPacket()
	if err2 == nil || err2.Error() != err.Error() {
		t.Errorf("one byte at a time: %v, whole: %v", err2, err)
	}
}

// readAll decodes packets until the first error, keeping a packet that
// arrives with its error (ErrUnsupportedProtocol).
func readAll(src io.Reader, max int) ([]Packet, error) {
	r := NewReader(src, max)
	var pkts []Packet
	for {
		p, err := r.ReadPacket()
		if p != nil {
			pkts = append(pkts, p)
		}
		if err != nil {
			return pkts, err
		}
	}
}

func FuzzReadPacket(f *testing.F) {
	for i, fx := range fixtures {
		f.Add(fx.raw, uint(i))
	}
	for i, tt := range malformedTests {
		f.Add(tt.wire, uint(i))
	}
	var stream []byte
	for _, fx := range fixtures {
		stream = append(stream, fx.raw...)
	}
	f.Add(stream, uint(len(stream)/2))

	f.Fuzz(func(t *testing.T, data []byte, cut uint) {
		// A modest limit keeps each run fast and lets the fuzzer reach
		// ErrPacketTooLarge as well.
		const max = 1 << 16
		whole, errWhole := readAll(bytes.NewReader(data), max)

		k := int(cut % uint(len(data)+1))
		split, errSplit := readAll(io.MultiReader(bytes.NewReader(data[:k]), bytes.NewReader(data[k:])), max)

		// Where the bytes arrive in two reads must not change a thing.
		if !reflect.DeepEqual(whole, split) {
			t.Fatalf("split at %d: packets differ:\nwhole %#v\nsplit %#v", k, whole, split)
		}
		if errWhole.Error() != errSplit.Error() {
			t.Fatalf("split at %d: errors differ: %v / %v", k, errWhole, errSplit)
		}

		for i, p := range whole {
			if i == len(whole)-1 && errors.Is(errWhole, ErrUnsupportedProtocol) {
				continue // a partial CONNECT, not meant to round-trip
			}
			enc := p.Append(nil)
			again, err := NewReader(bytes.NewReader(enc), 0).ReadPacket()
			if err != nil {
				t.Fatalf("re-decoding %#v from % x: %v", p, enc, err)
			}
			if !reflect.DeepEqual(p, again) {
				t.Fatalf("round trip changed the packet:\n was %#v\n now %#v", p, again)
			}
			if enc2 := again.Append(nil); !bytes.Equal(enc, enc2) {
				t.Fatalf("second encoding differs:\n% x\n% x", enc, enc2)
			}
		}
	})
}

// Decoding a PUBLISH costs the body, the topic string and the struct;
// an acknowledgement only its struct. More means a hidden allocation crept
// into the hot path.
func TestReadAllocations(t *testing.T) {
	for _, tt := range []struct {
		p    Packet
		want float64
	}{
		{&Publish{QoS: 1, Topic: "a/b/c", PacketID: 7, Payload: []byte("payload")}, 3},
		{&Publish{Topic: "a/b/c", Payload: []byte("payload")}, 3}, // QoS 0: level 5 must not cost it anything
		{&Puback{PacketID: 7}, 1},
		{&Pingreq{}, 0},
	} {
		r := NewReader(&loopReader{data: tt.p.Append(nil)}, 0)
		got := testing.AllocsPerRun(200, func() {
			if _, err := r.ReadPacket(); err != nil {
				t.Fatal(err)
			}
		})
		if got > tt.want {
			t.Errorf("%v: %v allocations per ReadPacket, want at most %v", tt.p.Type(), got, tt.want)
		}
	}
}

// loopReader serves the same bytes forever, so a benchmark measures the
// decoder and not the source.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

func BenchmarkReadPublish(b *testing.B) {
	p := &Publish{QoS: 1, Topic: "sensors/building-7/floor-3/temperature", PacketID: 42, Payload: bytes.Repeat([]byte{'x'}, 64)}
	wire := p.Append(nil)
	r := NewReader(&loopReader{data: wire}, 0)
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadPacket(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPublish(b *testing.B) {
	p := &Publish{QoS: 1, Topic: "sensors/building-7/floor-3/temperature", PacketID: 42, Payload: bytes.Repeat([]byte{'x'}, 64)}
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(p.Append(nil))))
	b.ReportAllocs()
	for b.Loop() {
		buf = p.Append(buf[:0])
	}
}

// largestConnect has every field at its 65,535-byte maximum.
func largestConnect(name string, level byte) *Connect {
	field := string(bytes.Repeat([]byte{'x'}, maxStringLen))
	return &Connect{
		ProtocolName: name, ProtocolLevel: level, KeepAlive: 60,
		ClientID:    field,
		Will:        &Will{Topic: field, Payload: []byte(field)},
		HasUsername: true, Username: field,
		HasPassword: true, Password: []byte(field),
	}
}

// Issue 11 item 6: MaxConnectSize is exactly the largest CONNECT, and a
// Reader limited to it reads that CONNECT and refuses one byte more.
func TestSecurity06_MaxConnectSize(t *testing.T) {
	wire31 := largestConnect(ProtocolName31, Level31).Append(nil)
	if len(wire31) != MaxConnectSize {
		t.Fatalf("largest 3.1 CONNECT is %d bytes, MaxConnectSize %d", len(wire31), MaxConnectSize)
	}
	wire311 := largestConnect(ProtocolName311, Level311).Append(nil)
	if len(wire311) >= MaxConnectSize {
		t.Fatalf("largest 3.1.1 CONNECT is %d bytes, not under MaxConnectSize %d", len(wire311), MaxConnectSize)
	}
	for _, wire := range [][]byte{wire31, wire311} {
		if _, err := NewReader(bytes.NewReader(wire), MaxConnectSize).ReadPacket(); err != nil {
			t.Errorf("%d-byte CONNECT under MaxConnectSize: %v", len(wire), err)
		}
	}
	// One byte over is judged from the header: the body never arrives.
	over := AppendRemainingLength([]byte{0x10}, len(wire31)-4+1)
	if _, err := NewReader(bytes.NewReader(over), MaxConnectSize).ReadPacket(); !errors.Is(err, ErrPacketTooLarge) {
		t.Errorf("CONNECT of MaxConnectSize+1: %v, want ErrPacketTooLarge", err)
	}
}

// A broker reads CONNECT under one limit and what follows under another;
// bytes already buffered behind the CONNECT get the new limit.
func TestSecurity06_SetMaxPacketSize(t *testing.T) {
	connect := (&Connect{ProtocolName: ProtocolName311, ProtocolLevel: Level311, ClientID: "c", CleanSession: true}).Append(nil)
	publish := (&Publish{Topic: "t", Payload: make([]byte, MaxConnectSize)}).Append(nil)
	wire := append(append([]byte(nil), connect...), publish...)

	r := NewReader(bytes.NewReader(wire), MaxConnectSize)
	if _, err := r.ReadPacket(); err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	r.SetMaxPacketSize(len(publish))
	if p, err := r.ReadPacket(); err != nil || len(p.(*Publish).Payload) != MaxConnectSize {
		t.Fatalf("PUBLISH of %d bytes after raising the limit: %v", len(publish), err)
	}

	r = NewReader(bytes.NewReader(wire), MaxConnectSize)
	r.ReadPacket()
	if _, err := r.ReadPacket(); !errors.Is(err, ErrPacketTooLarge) {
		t.Errorf("PUBLISH of %d bytes under MaxConnectSize: %v, want ErrPacketTooLarge", len(publish), err)
	}
	r = NewReader(bytes.NewReader(wire), MaxConnectSize)
	r.ReadPacket()
	r.SetMaxPacketSize(0) // 0: the protocol's own limit, as in NewReader
	if _, err := r.ReadPacket(); err != nil {
		t.Errorf("PUBLISH after SetMaxPacketSize(0): %v", err)
	}
}

// A bridge's CONNECT sets the Reader's level to the plain one, so what follows decodes as 3.x.
func TestReadBridgeConnectDecodesAtPlainLevel(t *testing.T) {
	for _, level := range []byte{Level31, Level311} {
		name := map[byte]string{Level31: ProtocolName31, Level311: ProtocolName311}[level]
		connect := (&Connect{ProtocolName: name, ProtocolLevel: level, Bridge: true, ClientID: "b"}).Append(nil)
		if connect[2+2+len(name)] != level|BridgeBit {
			t.Fatalf("level %d: encoded level byte %#x, want %#x", level, connect[2+2+len(name)], level|BridgeBit)
		}
		wire := append(connect, (&Publish{Topic: "t", Payload: []byte("p")}).Append(nil)...)
		r := NewReader(bytes.NewReader(wire), 0)
		r.AcceptLevel5()
		p, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("level %#x: %v", level|BridgeBit, err)
		}
		if cp := p.(*Connect); cp.ProtocolLevel != level || !cp.Bridge {
			t.Errorf("level %#x: decoded level %d bridge %v, want %d true", level|BridgeBit, cp.ProtocolLevel, cp.Bridge, level)
		}
		if r.Level() != level {
			t.Errorf("level %#x: Reader.Level() %d, want %d", level|BridgeBit, r.Level(), level)
		}
		if p, err := r.ReadPacket(); err != nil || string(p.(*Publish).Payload) != "p" {
			t.Errorf("level %#x: PUBLISH after CONNECT: %v %v", level|BridgeBit, p, err)
		}
	}
}

// 0x85 would be MQTT 5 with the bridge bit, which no one defines: refused even where 5 is served.
func TestReadBridgeBitLevel5Unsupported(t *testing.T) {
	r := NewReader(bytes.NewReader(pkt(0x10, 0, 4, "MQTT", 0x85, 0x02, 0, 60, 0, 0, 1, "c")), 0)
	r.AcceptLevel5()
	p, err := r.ReadPacket()
	if !errors.Is(err, ErrUnsupportedProtocol) {
		t.Fatalf("error %v, want ErrUnsupportedProtocol", err)
	}
	if cp := p.(*Connect); cp.ProtocolLevel != 0x85 || cp.Bridge {
		t.Errorf("packet %#v, want level 0x85 and no bridge", cp)
	}
}
