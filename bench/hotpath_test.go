package bench

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"testing"

	"github.com/holdfast/holdfast/codec"
)

// The tool's own cost per message on its hot paths, at each protocol level:
// `go test -run XXX -bench Path ./bench/`. The 3.1.1 numbers must not grow
// when the level-5 paths change. TestNoAllocationPerMessage runs the same
// steps.

const benchTopic = "bench/00000000/fanin"

// sendOne is a publisher's work per message: stamp, encode and buffer one
// QoS 1 PUBLISH.
func sendOne(bw *bufio.Writer, pk *codec.Publish, scratch []byte, seq uint64, level byte) []byte {
	putStamp(pk.Payload, stamp{run: 1, seq: seq, sent: int64(seq)})
	pk.PacketID = uint16(seq%16 + 1)
	scratch = pk.AppendLevel(scratch[:0], level)
	bw.Write(scratch)
	return scratch
}

// publishStream is n stamped QoS 1 PUBLISH packets of publisher 0.
func publishStream(n int, level byte) []byte {
	pk := codec.Publish{QoS: 1, Topic: benchTopic, Payload: newPayload(64)}
	var stream []byte
	for seq := range uint64(n) {
		putStamp(pk.Payload, stamp{run: 1, seq: seq})
		pk.PacketID = uint16(seq%16 + 1)
		stream = pk.AppendLevel(stream, level)
	}
	return stream
}

// ackStream is n PUBACK packets.
func ackStream(n int, level byte) []byte {
	var stream []byte
	for i := range n {
		stream = (&codec.Puback{PacketID: uint16(i%16 + 1)}).AppendLevel(stream, level)
	}
	return stream
}

// receiveOne is a subscriber's work per message: split one PUBLISH, parse
// and track it, and encode its PUBACK into ack.
func receiveOne(fr *frameReader, tr *tracker, ack []byte, level byte) ([]byte, error) {
	first, body, err := fr.next()
	if err != nil {
		return ack, err
	}
	p, err := parsePublish(first, body, level == codec.Level5)
	if err != nil {
		return ack, err
	}
	tr.add(p.payload, 1)
	return appendAck(ack[:0], codec.TypePuback, p.packetID, level), nil
}

// takeAck is a publisher's work per acknowledgement: split and parse it.
func takeAck(fr *frameReader, level byte) error {
	first, body, err := fr.next()
	if err == nil {
		_, _, err = parseAck(first, body, level == codec.Level5)
	}
	return err
}

func benchLevels(b *testing.B, run func(b *testing.B, level byte)) {
	for _, level := range []byte{codec.Level311, codec.Level5} {
		b.Run("v"+strconv.Itoa(int(level)), func(b *testing.B) { run(b, level) })
	}
}

// replay runs step b.N times on a frameReader that reads stream, n packets,
// over and over.
func replay(b *testing.B, stream []byte, n int, step func(fr *frameReader) error) {
	r := bytes.NewReader(stream)
	fr := newFrameReader(r, readBufSize)
	b.ResetTimer()
	for i := range b.N {
		if i%n == 0 {
			r.Reset(stream)
		}
		if err := step(fr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublishPath(b *testing.B) {
	benchLevels(b, func(b *testing.B, level byte) {
		pk := codec.Publish{QoS: 1, Topic: benchTopic, Payload: newPayload(64)}
		bw := bufio.NewWriterSize(io.Discard, writeBufSize)
		var scratch []byte
		for i := range b.N {
			scratch = sendOne(bw, &pk, scratch, uint64(i), level)
		}
	})
}

func BenchmarkReceivePath(b *testing.B) {
	benchLevels(b, func(b *testing.B, level byte) {
		const n = 4096
		tr := newTracker(1, 1)
		var ack []byte
		replay(b, publishStream(n, level), n, func(fr *frameReader) (err error) {
			ack, err = receiveOne(fr, tr, ack, level)
			return err
		})
	})
}

func BenchmarkAckPath(b *testing.B) {
	benchLevels(b, func(b *testing.B, level byte) {
		const n = 4096
		replay(b, ackStream(n, level), n, func(fr *frameReader) error { return takeAck(fr, level) })
	})
}
