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
// when the level-5 paths change.

func benchLevels(b *testing.B, run func(b *testing.B, level byte)) {
	for _, level := range []byte{codec.Level311, codec.Level5} {
		b.Run("v"+strconv.Itoa(int(level)), func(b *testing.B) { run(b, level) })
	}
}

// BenchmarkPublishPath stamps, encodes and buffers one QoS 1 PUBLISH.
func BenchmarkPublishPath(b *testing.B) {
	benchLevels(b, func(b *testing.B, level byte) {
		payload := newPayload(64)
		pk := codec.Publish{QoS: 1, Topic: "bench/00000000/fanin", Payload: payload}
		bw := bufio.NewWriterSize(io.Discard, writeBufSize)
		var scratch []byte
		for i := range b.N {
			putStamp(payload, stamp{run: 1, seq: uint64(i), sent: int64(i)})
			pk.PacketID = uint16(i%16 + 1)
			scratch = pk.AppendLevel(scratch[:0], level)
			bw.Write(scratch)
		}
	})
}

// BenchmarkReceivePath splits, parses and tracks one QoS 1 PUBLISH and
// encodes its PUBACK.
func BenchmarkReceivePath(b *testing.B) {
	benchLevels(b, func(b *testing.B, level byte) {
		payload := newPayload(64)
		pk := codec.Publish{QoS: 1, Topic: "bench/00000000/fanin", Payload: payload}
		const n = 4096
		var stream []byte
		for seq := range uint64(n) {
			putStamp(payload, stamp{run: 1, seq: seq})
			pk.PacketID = uint16(seq%16 + 1)
			stream = pk.AppendLevel(stream, level)
		}
		r := bytes.NewReader(stream)
		fr := newFrameReader(r, readBufSize)
		tr := newTracker(1, 1)
		v5 := level == codec.Level5
		var ack []byte
		b.ResetTimer()
		for i := range b.N {
			if i%n == 0 {
				r.Reset(stream)
			}
			first, body, err := fr.next()
			if err != nil {
				b.Fatal(err)
			}
			p, err := parsePublish(first, body, v5)
			if err != nil {
				b.Fatal(err)
			}
			tr.add(p.payload, 1)
			ack = appendAck(ack[:0], codec.TypePuback, p.packetID, level)
		}
	})
}

// BenchmarkAckPath splits and parses one PUBACK.
func BenchmarkAckPath(b *testing.B) {
	benchLevels(b, func(b *testing.B, level byte) {
		const n = 4096
		var stream []byte
		for i := range n {
			stream = (&codec.Puback{PacketID: uint16(i%16 + 1)}).AppendLevel(stream, level)
		}
		r := bytes.NewReader(stream)
		fr := newFrameReader(r, readBufSize)
		v5 := level == codec.Level5
		b.ResetTimer()
		for i := range b.N {
			if i%n == 0 {
				r.Reset(stream)
			}
			first, body, err := fr.next()
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := parseAck(first, body, v5); err != nil {
				b.Fatal(err)
			}
		}
	})
}
