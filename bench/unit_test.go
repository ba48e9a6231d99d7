package bench

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/holdfast/holdfast/codec"
)

func TestStampRoundTrip(t *testing.T) {
	for _, s := range []stamp{
		{},
		{run: 0xdeadbeef, pub: 3, seq: 1<<40 + 7, sent: 123456789},
		{run: 1, pub: math.MaxUint32, seq: math.MaxUint64, sent: math.MaxInt64},
		{sent: -5},
	} {
		b := newPayload(64)
		putStamp(b, s)
		got, ok := readStamp(b)
		if !ok || got != s {
			t.Errorf("readStamp(putStamp(%+v)) = %+v, %v", s, got, ok)
		}
		if b[63] != 'a'+63%26 {
			t.Errorf("filler overwritten: %q", b[headerSize:])
		}
	}
	if _, ok := readStamp(make([]byte, headerSize-1)); ok {
		t.Error("readStamp accepted a short payload")
	}
	if n := len(newPayload(headerSize)); n != headerSize {
		t.Errorf("newPayload(%d) has %d bytes", headerSize, n)
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Every value lies within its bucket's range, buckets are in order and
	// no wider than 1/128 of their values.
	var next uint64 // the value the next bucket must start at
	for i := range numBuckets {
		lo, hi := bucketRange(i)
		if lo != next || hi < lo {
			t.Fatalf("bucket %d is [%d, %d], want it to start at %d", i, lo, hi, next)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i || bucketOf(lo+(hi-lo)/2) != i {
			t.Fatalf("bucket %d: range [%d, %d] maps to %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if lo >= subCount && float64(hi-lo+1)/float64(lo) > 1.0/128 {
			t.Fatalf("bucket %d [%d, %d] too wide", i, lo, hi)
		}
		next = hi + 1
	}
	if next != 0 { // wrapped past math.MaxUint64: every value has a bucket
		t.Fatalf("the last bucket ends at %d", next-1)
	}
}

func TestQuantiles(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 || h.max != 0 {
		t.Error("empty histogram is not zero")
	}
	// 1..100000 microseconds, shuffled order does not matter.
	for v := int64(1); v <= 100000; v++ {
		h.record(v * 1000)
	}
	for _, c := range []struct {
		q    float64
		want float64
	}{{0.5, 50e6}, {0.99, 99e6}, {0.999, 99.9e6}, {0.01, 1e6}} {
		got := float64(h.quantile(c.q))
		if math.Abs(got-c.want)/c.want > 0.005 {
			t.Errorf("quantile(%v) = %v, want %v within 0.5%%", c.q, got, c.want)
		}
	}
	if h.quantile(1) != 100e6 || h.max != 100e6 {
		t.Errorf("max = %d, quantile(1) = %d, want 100e6", h.max, h.quantile(1))
	}

	// Small exact values, negatives as zero, and merge.
	var a, b histogram
	for _, v := range []int64{-3, 1, 2, 3} {
		a.record(v)
	}
	b.record(200)
	a.merge(&b)
	if a.n != 5 || a.quantile(0.2) != 0 || a.quantile(0.6) != 2 || a.quantile(0.99) != 200 || a.max != 200 {
		t.Errorf("n=%d q20=%d q60=%d q99=%d max=%d", a.n, a.quantile(0.2), a.quantile(0.6), a.quantile(0.99), a.max)
	}
	// A single sample: every quantile is that sample, never above max.
	var one histogram
	one.record(123_456_789)
	if q := one.quantile(0.5); q > 123_456_789 || float64(123_456_789-q)/123_456_789 > 0.008 {
		t.Errorf("single sample quantile = %d", q)
	}
}

func TestTracker(t *testing.T) {
	tr := newTracker(7, 2)
	msg := func(run, pub uint32, seq uint64, sent int64) []byte {
		b := newPayload(32)
		putStamp(b, stamp{run: run, pub: pub, seq: seq, sent: sent})
		return b
	}
	for seq := uint64(0); seq < 100; seq++ {
		if seq == 42 {
			continue
		}
		if !tr.add(msg(7, 0, seq, 1000), 3000) {
			t.Fatalf("seq %d not new", seq)
		}
	}
	tr.add(msg(7, 0, 5, 1000), 3000)    // duplicate
	tr.add(msg(8, 0, 100, 1000), 3000)  // another run
	tr.add(msg(7, 2, 1, 1000), 3000)    // no such publisher
	tr.add([]byte("short"), 3000)       // no stamp
	tr.add(msg(7, 1, 5000, 1000), 4000) // far ahead: the set grows
	if tr.uniq != 100 || tr.dup != 1 || tr.stray != 3 || tr.last != 4000 {
		t.Errorf("uniq=%d dup=%d stray=%d last=%d", tr.uniq, tr.dup, tr.stray, tr.last)
	}
	if got := tr.lost(0, 100); got != 1 {
		t.Errorf("lost(0, 100) = %d, want 1", got)
	}
	if got := tr.lost(0, 120); got != 21 {
		t.Errorf("lost(0, 120) = %d, want 21", got)
	}
	if got := tr.lost(1, 5001); got != 5000 {
		t.Errorf("lost(1, 5001) = %d, want 5000", got)
	}
	if p50 := tr.lat.quantile(0.5); p50 < 2000 || p50 > 2000*1.005 {
		t.Errorf("latency p50 = %d, want 2000 within 0.5%%", p50)
	}
}

func TestResultLine(t *testing.T) {
	var l line
	l.str("scenario", "fanin").int("qos", 1).uint("sent", 1234567).bool("clean", false).
		secs("elapsed", 10*time.Second+5*time.Millisecond).rate("recv_per_s", 1000, 4*time.Second).
		ms("p99_ms", 1_234_567).ms("max_ms", 0).rate("zero", 5, 0)
	want := "scenario=fanin qos=1 sent=1234567 clean=false elapsed=10.01s recv_per_s=250 p99_ms=1.235 max_ms=0.000 zero=0"
	if got := l.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var buf bytes.Buffer
	l.print(&buf)
	if buf.String() != want+"\n" {
		t.Errorf("print wrote %q", buf.String())
	}
}

func TestParseRSS(t *testing.T) {
	status := "Name:\tholdfast\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t8\n"
	if kb, err := parseRSS([]byte(status)); err != nil || kb != 12345 {
		t.Errorf("parseRSS = %d, %v", kb, err)
	}
	if _, err := parseRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("no VmRSS line accepted")
	}
}

// packets is a stream of every packet type the tool reads at the given
// protocol level, encoded by codec; at level 5 with properties and reason
// codes where the packet may carry them.
func packets(level byte) []codec.Packet {
	big := bytes.Repeat([]byte("x"), 200_000) // needs a 3-byte length and a bigger buffer
	if level < codec.Level5 {
		return []codec.Packet{
			&codec.Connack{SessionPresent: true},
			&codec.Suback{PacketID: 1, ReturnCodes: []byte{1}},
			&codec.Publish{Topic: "a/b", Payload: []byte("hello")},
			&codec.Publish{QoS: 1, Dup: true, Topic: "t", PacketID: 513, Payload: []byte{}},
			&codec.Publish{QoS: 2, Topic: "big", PacketID: 9, Payload: big},
			&codec.Puback{PacketID: 1},
			&codec.Pubrec{PacketID: 2},
			&codec.Pubrel{PacketID: 3},
			&codec.Pubcomp{PacketID: 65535},
			&codec.Pingresp{},
		}
	}
	user := []codec.UserProperty{{Name: "k", Value: "v"}}
	return []codec.Packet{
		&codec.Connack{SessionPresent: true, Props: &codec.Properties{ReceiveMaximum: 20, TopicAliasMaximum: 10}},
		&codec.Suback{PacketID: 1, ReturnCodes: []byte{1}},
		&codec.Publish{Topic: "a/b", Payload: []byte("hello")},
		&codec.Publish{QoS: 1, Dup: true, Topic: "t", PacketID: 513, Payload: []byte{},
			Props: &codec.Properties{MessageExpiry: 60, ContentType: "text/plain", User: user}},
		&codec.Publish{QoS: 2, Topic: "big", PacketID: 9, Payload: big, Props: &codec.Properties{SubscriptionIDs: []uint32{268435455}}},
		&codec.Puback{PacketID: 1},
		&codec.Puback{PacketID: 4, Reason: codec.ReasonNoMatchingSubscribers},
		&codec.Puback{PacketID: 5, Reason: codec.ReasonQuotaExceeded, Props: &codec.Properties{ReasonString: "full", User: user}},
		&codec.Pubrec{PacketID: 2},
		&codec.Pubrec{PacketID: 6, Reason: codec.ReasonNotAuthorized},
		&codec.Pubrel{PacketID: 3},
		&codec.Pubrel{PacketID: 7, Reason: codec.ReasonPacketIdentifierNotFound, Props: &codec.Properties{ReasonString: "gone"}},
		&codec.Pubcomp{PacketID: 65535},
		&codec.Pingresp{},
	}
}

// ackFields are the packet identifier and reason code of PUBACK, PUBREC,
// PUBREL or PUBCOMP.
func ackFields(p codec.Packet) (uint16, codec.ReasonCode) {
	switch p := p.(type) {
	case *codec.Puback:
		return p.PacketID, p.Reason
	case *codec.Pubrec:
		return p.PacketID, p.Reason
	case *codec.Pubrel:
		return p.PacketID, p.Reason
	case *codec.Pubcomp:
		return p.PacketID, p.Reason
	}
	panic("ackFields of " + p.Type().String())
}

// TestFrameReader splits a stream delivered one byte at a time and checks
// each packet against codec's own decoder, at levels 4 and 5.
func TestFrameReader(t *testing.T) {
	for _, level := range []byte{codec.Level311, codec.Level5} {
		var stream []byte
		for _, p := range packets(level) {
			stream = p.AppendLevel(stream, level)
		}
		v5 := level == codec.Level5
		for _, r := range []io.Reader{bytes.NewReader(stream), iotest.OneByteReader(bytes.NewReader(stream))} {
			fr := newFrameReader(r, 16)
			want := codec.NewReader(bytes.NewReader(stream), 0)
			want.SetLevel(level)
			for i := range packets(level) {
				first, body, err := fr.next()
				if err != nil {
					t.Fatalf("level %d packet %d: %v", level, i, err)
				}
				wp, err := want.ReadPacket()
				if err != nil {
					t.Fatal(err)
				}
				got, err := decodeFrame(first, body, level)
				if err != nil || !reflect.DeepEqual(got, wp) {
					t.Fatalf("level %d packet %d: decodeFrame = %#v, %v; want %#v", level, i, got, err, wp)
				}
				switch wp := wp.(type) {
				case *codec.Publish:
					pv, err := parsePublish(first, body, v5)
					if err != nil || pv.qos != wp.QoS || pv.dup != wp.Dup || string(pv.topic) != wp.Topic ||
						pv.packetID != wp.PacketID || !bytes.Equal(pv.payload, wp.Payload) {
						t.Errorf("level %d packet %d: parsePublish = QoS %d dup %v id %d topic %q, %d payload bytes, %v; want %d %v %d %q, %d bytes",
							level, i, pv.qos, pv.dup, pv.packetID, pv.topic, len(pv.payload), err, wp.QoS, wp.Dup, wp.PacketID, wp.Topic, len(wp.Payload))
					}
				case *codec.Puback, *codec.Pubrec, *codec.Pubrel, *codec.Pubcomp:
					id, rc, err := parseAck(first, body, v5)
					wantID, wantRC := ackFields(wp)
					if err != nil || id != wantID || rc != wantRC {
						t.Errorf("level %d packet %d: parseAck = %d, %#x, %v; want %d, %#x", level, i, id, rc, err, wantID, wantRC)
					}
					if wantRC == codec.ReasonSuccess {
						if re := appendAck(nil, packetType(first), id, level); !bytes.Equal(re, wp.AppendLevel(nil, level)) {
							t.Errorf("level %d packet %d: appendAck = %x, want %x", level, i, re, wp.AppendLevel(nil, level))
						}
					}
				}
			}
			if _, _, err := fr.next(); err != io.EOF {
				t.Errorf("level %d: after the last packet: %v, want EOF", level, err)
			}
		}
	}
}

func TestFrameReaderRejects(t *testing.T) {
	for name, in := range map[string][]byte{
		"five length bytes": {0x30, 0x80, 0x80, 0x80, 0x80, 0x01},
		"too large":         {0x30, 0xff, 0xff, 0xff, 0x7f},
	} {
		if _, _, err := newFrameReader(bytes.NewReader(in), 64).next(); err == nil || err == io.EOF {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	for _, v5 := range []bool{false, true} {
		if _, err := parsePublish(0x32, []byte{0, 1, 'a', 0, 0, 0}, v5); err == nil {
			t.Errorf("v5 %v: PUBLISH with packet identifier 0 accepted", v5)
		}
		if _, err := parsePublish(0x30, []byte{0, 9, 'a'}, v5); err == nil {
			t.Errorf("v5 %v: PUBLISH with a topic running past the end accepted", v5)
		}
		if _, _, err := parseAck(0x62, []byte{0, 1}, v5); err != nil {
			t.Errorf("v5 %v: PUBREL with flags 2 refused: %v", v5, err)
		}
	}
	if _, _, err := parseAck(0x40, []byte{0, 1, 0x10}, false); err == nil {
		t.Error("PUBACK with 3 bytes accepted at 3.1.1")
	}
	for name, c := range map[string]struct {
		first byte
		body  []byte
	}{
		"PUBLISH properties past the end": {0x32, []byte{0, 1, 'a', 0, 1, 5, 0x02, 0, 0}},
		"PUBLISH without property length": {0x32, []byte{0, 1, 'a', 0, 1}},
		"PUBACK reason code of CONNACK":   {0x40, []byte{0, 1, 0x84}},
		"PUBREL reason code of PUBACK":    {0x62, []byte{0, 1, 0x10}},
		"PUBACK properties past the end":  {0x40, []byte{0, 1, 0x97, 3, 0x1f, 0}},
		"PUBACK bytes after properties":   {0x40, []byte{0, 1, 0x97, 0, 0}},
	} {
		var err error
		if packetType(c.first) == codec.TypePublish {
			_, err = parsePublish(c.first, c.body, true)
		} else {
			_, _, err = parseAck(c.first, c.body, true)
		}
		if err == nil {
			t.Errorf("level 5: %s accepted", name)
		}
	}
}

// TestDisconnectReasonReported checks that a level-5 broker's reason for
// closing the connection reaches the run's error.
func TestDisconnectReasonReported(t *testing.T) {
	frame := (&codec.Disconnect{Reason: codec.ReasonServerShuttingDown}).AppendLevel(nil, codec.Level5)
	err := unexpected(frame[0], frame[2:], codec.Level5)
	if err == nil || !strings.Contains(err.Error(), "Server shutting down (0x8b)") {
		t.Errorf("unexpected(DISCONNECT 0x8b) = %v", err)
	}
}

// TestNoAllocationPerMessage holds the message path to its promise at every
// level: encoding and writing a PUBLISH, splitting and parsing an
// acknowledgement, and splitting, parsing and tracking a PUBLISH allocate
// nothing once buffers have grown.
func TestNoAllocationPerMessage(t *testing.T) {
	for _, level := range []byte{codec.Level311, codec.Level5} {
		pk := codec.Publish{QoS: 1, Topic: benchTopic, Payload: newPayload(64)}
		bw := bufio.NewWriterSize(io.Discard, writeBufSize)
		var scratch []byte
		var seq uint64
		send := func() {
			scratch = sendOne(bw, &pk, scratch, seq, level)
			seq++
		}
		send()
		if n := testing.AllocsPerRun(1000, send); n != 0 {
			t.Errorf("level %d: publishing allocates %v times per message", level, n)
		}

		afr := newFrameReader(bytes.NewReader(ackStream(2000, level)), readBufSize)
		acked := func() {
			if err := takeAck(afr, level); err != nil {
				t.Fatal(err)
			}
		}
		acked()
		if n := testing.AllocsPerRun(1000, acked); n != 0 {
			t.Errorf("level %d: taking an acknowledgement allocates %v times per message", level, n)
		}

		fr := newFrameReader(bytes.NewReader(publishStream(2000, level)), readBufSize)
		tr := newTracker(1, 1)
		var ack []byte
		receive := func() {
			var err error
			if ack, err = receiveOne(fr, tr, ack, level); err != nil {
				t.Fatal(err)
			}
		}
		receive()
		if n := testing.AllocsPerRun(1000, receive); n != 0 {
			t.Errorf("level %d: receiving allocates %v times per message", level, n)
		}
	}
}
