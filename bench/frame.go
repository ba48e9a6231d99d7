package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// frameReader splits a stream into MQTT packets without allocating: each
// packet's body is a slice of one reused buffer, valid until the next call
// to next. It does only what the hot path needs (find the packet, read a
// PUBLISH or an acknowledgement); every other packet goes through
// codec.Reader by way of decodeFrame, which validates it fully.
//
// codec.Reader gives every packet its own memory, which is what a broker
// wants and a load tool receiving a million messages a second does not.
type frameReader struct {
	r          io.Reader
	buf        []byte
	start, end int
	readAt     time.Time // when the last read returned data
}

func newFrameReader(r io.Reader, size int) *frameReader {
	return &frameReader{r: r, buf: make([]byte, size)}
}

// buffered reports how many received bytes are waiting to be split.
func (f *frameReader) buffered() int { return f.end - f.start }

// hasPacket reports whether a whole packet is buffered, so that next will
// not block.
func (f *frameReader) hasPacket() bool {
	if f.buffered() < 2 {
		return false
	}
	n, hlen, err := codec.DecodeRemainingLength(f.buf[f.start+1 : f.end])
	return err != nil || hlen > 0 && f.buffered() >= 1+hlen+n
}

// errFrameTooLarge guards against a peer announcing an absurd packet.
var errFrameTooLarge = errors.New("packet larger than 16 MiB")

const maxFrame = 16 << 20

// next returns the first byte of the next packet and its body.
func (f *frameReader) next() (first byte, body []byte, err error) {
	for {
		if f.buffered() >= 2 {
			n, hlen, err := codec.DecodeRemainingLength(f.buf[f.start+1 : f.end])
			if err != nil {
				return 0, nil, err
			}
			if hlen > 0 {
				total := 1 + hlen + n
				if total > maxFrame {
					return 0, nil, errFrameTooLarge
				}
				if f.buffered() >= total {
					first = f.buf[f.start]
					body = f.buf[f.start+1+hlen : f.start+total]
					f.start += total
					return first, body, nil
				}
				f.room(total)
			}
		}
		if err := f.fill(); err != nil {
			return 0, nil, err
		}
	}
}

// room makes the buffer able to hold a packet of total bytes from start.
func (f *frameReader) room(total int) {
	if total > len(f.buf) {
		grown := make([]byte, max(total, 2*len(f.buf)))
		f.end = copy(grown, f.buf[f.start:f.end])
		f.start = 0
		f.buf = grown
		return
	}
	if f.start+total > len(f.buf) {
		f.end = copy(f.buf, f.buf[f.start:f.end])
		f.start = 0
	}
}

// fill reads more bytes after those buffered.
func (f *frameReader) fill() error {
	if f.start == f.end {
		f.start, f.end = 0, 0
	} else if f.end == len(f.buf) {
		f.end = copy(f.buf, f.buf[f.start:f.end])
		f.start = 0
	}
	n, err := f.r.Read(f.buf[f.end:])
	if n > 0 {
		f.end += n
		f.readAt = time.Now()
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// packetType is the type in a packet's first byte.
func packetType(first byte) codec.Type { return codec.Type(first >> 4) }

// publishView is a received PUBLISH whose fields alias the frame reader's
// buffer.
type publishView struct {
	qos      byte
	dup      bool
	packetID uint16
	topic    []byte
	payload  []byte
}

// parsePublish reads a PUBLISH body; at level 5 (v5) its properties are
// skipped. Only what the tool needs is checked; the topic is not validated
// (the tool subscribes to its own topics and allows no topic aliases).
func parsePublish(first byte, body []byte, v5 bool) (publishView, error) {
	p := publishView{qos: first >> 1 & 3, dup: first&0x08 != 0}
	if p.qos == 3 {
		return p, fmt.Errorf("%w: PUBLISH with QoS 3", codec.ErrMalformed)
	}
	if len(body) < 2 {
		return p, fmt.Errorf("%w: PUBLISH topic length missing", codec.ErrMalformed)
	}
	tl := int(binary.BigEndian.Uint16(body))
	off := 2 + tl
	if p.qos > 0 {
		off += 2
	}
	if off > len(body) {
		return p, fmt.Errorf("%w: PUBLISH shorter than its topic and packet identifier", codec.ErrMalformed)
	}
	p.topic = body[2 : 2+tl]
	if p.qos > 0 {
		p.packetID = binary.BigEndian.Uint16(body[2+tl:])
		if p.packetID == 0 {
			return p, fmt.Errorf("%w: PUBLISH packet identifier 0", codec.ErrMalformed)
		}
	}
	if v5 {
		n, hlen, err := codec.DecodeRemainingLength(body[off:])
		if err != nil || hlen == 0 || off+hlen+n > len(body) {
			return p, fmt.Errorf("%w: PUBLISH properties run past its end", codec.ErrMalformed)
		}
		off += hlen + n
	}
	p.payload = body[off:]
	return p, nil
}

// parseAck reads the packet identifier of PUBACK, PUBREC, PUBREL and
// PUBCOMP and, at level 5 (v5), the reason code, which is Success when the
// body is the identifier alone (§3.4.2.1); properties are skipped.
func parseAck(first byte, body []byte, v5 bool) (uint16, codec.ReasonCode, error) {
	t := packetType(first)
	want := byte(0)
	if t == codec.TypePubrel {
		want = 2
	}
	if first&0x0f != want || len(body) < 2 || len(body) > 2 && !v5 {
		return 0, 0, fmt.Errorf("%w: %s with flags %#x and %d body bytes", codec.ErrMalformed, t, first&0x0f, len(body))
	}
	id := binary.BigEndian.Uint16(body)
	if id == 0 {
		return 0, 0, fmt.Errorf("%w: %s packet identifier 0", codec.ErrMalformed, t)
	}
	if len(body) == 2 {
		return id, codec.ReasonSuccess, nil
	}
	rc := codec.ReasonCode(body[2])
	if !rc.ValidFor(t) {
		return 0, 0, fmt.Errorf("%w: %s reason code %#x", codec.ErrProtocol, t, body[2])
	}
	if len(body) > 3 {
		n, hlen, err := codec.DecodeRemainingLength(body[3:])
		if err != nil || hlen == 0 || 3+hlen+n != len(body) {
			return 0, 0, fmt.Errorf("%w: %s properties do not end with the packet", codec.ErrMalformed, t)
		}
	}
	return id, rc, nil
}

// appendAck encodes PUBACK, PUBREC, PUBREL or PUBCOMP with reason code
// Success at the given protocol level through the concrete types, so that
// nothing escapes to the heap.
func appendAck(dst []byte, t codec.Type, id uint16, level byte) []byte {
	switch t {
	case codec.TypePuback:
		return (&codec.Puback{PacketID: id}).AppendLevel(dst, level)
	case codec.TypePubrec:
		return (&codec.Pubrec{PacketID: id}).AppendLevel(dst, level)
	case codec.TypePubrel:
		return (&codec.Pubrel{PacketID: id}).AppendLevel(dst, level)
	case codec.TypePubcomp:
		return (&codec.Pubcomp{PacketID: id}).AppendLevel(dst, level)
	}
	panic("bench: appendAck of " + t.String())
}

// decodeFrame decodes one packet split off by a frameReader with the
// project's codec at the given protocol level, for the packets off the hot
// path (CONNACK, SUBACK, ...).
func decodeFrame(first byte, body []byte, level byte) (codec.Packet, error) {
	frame := make([]byte, 0, 5+len(body))
	frame = append(frame, first)
	frame = codec.AppendRemainingLength(frame, len(body))
	frame = append(frame, body...)
	r := codec.NewReader(bytes.NewReader(frame), 0)
	r.SetLevel(level)
	return r.ReadPacket()
}
