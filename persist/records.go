package persist

import (
	"encoding/binary"
	"time"
)

// Record versions: the first byte of every value except the schema value.
const recordV1 byte = 1

// Queue entry flags.
const (
	qfShared byte = 1 << 0 // body under 0x06 seq, not inline
	qfRetain byte = 1 << 1 // inline message has RETAIN set
	qfKnown       = qfShared | qfRetain
)

// Body flags.
const (
	bfRetain byte = 1 << 0
	bfKnown       = bfRetain
)

// Session record flags.
const (
	sfDisconnected byte = 1 << 0
	sfOwner        byte = 1 << 1 // followed by the owner: uint16 length + username
	sfAnonymous    byte = 1 << 2
)

const queueHeaderLen = 1 + 1 + 1 + 4 // version, qos, flags, payload size

// --- schema (0x00 "schema"): format version uint32 + writer version string

func encodeSchema(format uint32, writer string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, format), writer...)
}

func decodeSchema(v []byte) (format uint32, writer string, err error) {
	if len(v) < 4 {
		return 0, "", corruptf(schemaKey, "value of %d bytes, want at least 4", len(v))
	}
	return binary.BigEndian.Uint32(v), string(v[4:]), nil
}

// --- session (0x01): v1 | protocol level | flags | disconnected-at unix nanos int64

func encodeSession(r SessionRecord) []byte {
	v := make([]byte, 0, 11)
	v = append(v, recordV1, r.ProtocolLevel)
	var flags byte
	var nanos int64
	if !r.DisconnectedAt.IsZero() {
		flags |= sfDisconnected
		nanos = r.DisconnectedAt.UnixNano()
	}
	if r.HasOwner {
		flags |= sfOwner
		if r.Anonymous {
			flags |= sfAnonymous
		}
	}
	v = append(v, flags)
	v = binary.BigEndian.AppendUint64(v, uint64(nanos))
	if r.HasOwner {
		v = binary.BigEndian.AppendUint16(v, uint16(len(r.Username)))
		v = append(v, r.Username...)
	}
	return v
}

func decodeSession(key, v []byte) (SessionRecord, error) {
	var r SessionRecord
	if err := checkVersion(key, v, 11); err != nil {
		return r, err
	}
	r.ProtocolLevel = v[1]
	flags := v[2]
	if flags&^(sfDisconnected|sfOwner|sfAnonymous) != 0 || (flags&sfAnonymous != 0 && flags&sfOwner == 0) {
		return r, corruptf(key, "unknown flags %#x", flags)
	}
	if flags&sfDisconnected != 0 {
		r.DisconnectedAt = time.Unix(0, int64(binary.BigEndian.Uint64(v[3:11]))).UTC()
	}
	rest := v[11:]
	if flags&sfOwner != 0 {
		if len(rest) < 2 || len(rest) != 2+int(binary.BigEndian.Uint16(rest)) {
			return r, corruptf(key, "owner of %d bytes does not match its length", len(rest))
		}
		r.HasOwner, r.Anonymous, r.Username = true, flags&sfAnonymous != 0, string(rest[2:])
		rest = nil
	}
	if len(rest) != 0 {
		return r, corruptf(key, "value of %d bytes, want 11", len(v))
	}
	return r, nil
}

// --- subscription (0x02): v1 | granted QoS

func encodeSub(qos byte) []byte { return []byte{recordV1, qos} }

func decodeSub(key, v []byte) (byte, error) {
	if err := checkVersion(key, v, 2); err != nil {
		return 0, err
	}
	if len(v) != 2 || v[1] > 2 {
		return 0, corruptf(key, "bad subscription value %x", shorten(v))
	}
	return v[1], nil
}

// --- retained (0x03): v1 | QoS | payload

func encodeRetained(m *Message) []byte {
	v := make([]byte, 0, 2+len(m.Payload))
	return append(append(v, recordV1, m.QoS), m.Payload...)
}

func decodeRetained(key, v []byte) (Message, error) {
	if err := checkVersion(key, v, 2); err != nil {
		return Message{}, err
	}
	if v[1] > 2 {
		return Message{}, corruptf(key, "QoS %d", v[1])
	}
	return Message{Topic: string(key[1:]), QoS: v[1], Retain: true, Payload: cloneBytes(v[2:])}, nil
}

// --- queue entry (0x04):
//   v1 | delivery QoS | flags | payload size uint32
//   inline (flags&qfShared == 0): published QoS | topic length uint16 | topic | payload

func encodeQueueInline(qos byte, m *Message) []byte {
	v := make([]byte, 0, queueHeaderLen+3+len(m.Topic)+len(m.Payload))
	var flags byte
	if m.Retain {
		flags |= qfRetain
	}
	v = append(v, recordV1, qos, flags)
	v = binary.BigEndian.AppendUint32(v, uint32(len(m.Payload)))
	v = append(v, m.QoS)
	v = binary.BigEndian.AppendUint16(v, uint16(len(m.Topic)))
	v = append(v, m.Topic...)
	return append(v, m.Payload...)
}

func encodeQueueShared(qos byte, payloadSize int) []byte {
	v := make([]byte, 0, queueHeaderLen)
	v = append(v, recordV1, qos, qfShared)
	return binary.BigEndian.AppendUint32(v, uint32(payloadSize))
}

// queueHeader is the fixed part of a queue entry.
type queueHeader struct {
	qos         byte
	flags       byte
	payloadSize uint32
}

func (h queueHeader) shared() bool { return h.flags&qfShared != 0 }

// decodeQueue checks the whole value and returns the header and, for an
// inline entry when withMsg is set, the message (copied).
func decodeQueue(key, v []byte, withMsg bool) (queueHeader, *Message, error) {
	var h queueHeader
	if err := checkVersion(key, v, queueHeaderLen); err != nil {
		return h, nil, err
	}
	h.qos, h.flags, h.payloadSize = v[1], v[2], binary.BigEndian.Uint32(v[3:7])
	if h.qos > 2 {
		return h, nil, corruptf(key, "delivery QoS %d", h.qos)
	}
	if h.flags&^qfKnown != 0 {
		return h, nil, corruptf(key, "unknown flags %#x", h.flags)
	}
	if h.shared() {
		if len(v) != queueHeaderLen || h.flags != qfShared {
			return h, nil, corruptf(key, "shared entry of %d bytes with flags %#x", len(v), h.flags)
		}
		return h, nil, nil
	}
	rest := v[queueHeaderLen:]
	if len(rest) < 3 || rest[0] > 2 {
		return h, nil, corruptf(key, "inline message header truncated or bad QoS")
	}
	tl := int(binary.BigEndian.Uint16(rest[1:3]))
	if len(rest) != 3+tl+int(h.payloadSize) {
		return h, nil, corruptf(key, "inline message of %d bytes, want %d", len(rest), 3+tl+int(h.payloadSize))
	}
	if !withMsg {
		return h, nil, nil
	}
	m := &Message{
		QoS:     rest[0],
		Topic:   string(rest[3 : 3+tl]),
		Payload: cloneBytes(rest[3+tl:]),
		Retain:  h.flags&qfRetain != 0,
	}
	return h, m, nil
}

// --- in-flight state (0x05): v1 | state | packet id uint16

func encodeInflight(state QueueState, pid uint16) []byte {
	return binary.BigEndian.AppendUint16([]byte{recordV1, byte(state)}, pid)
}

func decodeInflight(key, v []byte) (QueueState, uint16, error) {
	if err := checkVersion(key, v, 4); err != nil {
		return 0, 0, err
	}
	st := QueueState(v[1])
	if len(v) != 4 || (st != Sent && st != Released) {
		return 0, 0, corruptf(key, "bad in-flight value %x", shorten(v))
	}
	return st, binary.BigEndian.Uint16(v[2:]), nil
}

// --- shared body (0x06): v1 | published QoS | flags | topic length uint16 | topic | payload

func encodeBody(m *Message) []byte {
	v := make([]byte, 0, 5+len(m.Topic)+len(m.Payload))
	var flags byte
	if m.Retain {
		flags |= bfRetain
	}
	v = append(v, recordV1, m.QoS, flags)
	v = binary.BigEndian.AppendUint16(v, uint16(len(m.Topic)))
	v = append(v, m.Topic...)
	return append(v, m.Payload...)
}

func decodeBody(key, v []byte, withMsg bool) (*Message, error) {
	if err := checkVersion(key, v, 5); err != nil {
		return nil, err
	}
	if v[1] > 2 || v[2]&^bfKnown != 0 {
		return nil, corruptf(key, "bad QoS %d or flags %#x", v[1], v[2])
	}
	tl := int(binary.BigEndian.Uint16(v[3:5]))
	if len(v) < 5+tl {
		return nil, corruptf(key, "topic of %d bytes in a value of %d", tl, len(v))
	}
	if !withMsg {
		return nil, nil
	}
	return &Message{
		QoS:     v[1],
		Retain:  v[2]&bfRetain != 0,
		Topic:   string(v[5 : 5+tl]),
		Payload: cloneBytes(v[5+tl:]),
	}, nil
}

// --- inbound QoS 2 (0x07): v1

var inboundValue = []byte{recordV1}

func decodeInbound(key, v []byte) error {
	if err := checkVersion(key, v, 1); err != nil {
		return err
	}
	if len(v) != 1 {
		return corruptf(key, "value of %d bytes, want 1", len(v))
	}
	return nil
}

// checkVersion checks the record-version byte and a minimum length.
func checkVersion(key, v []byte, min int) error {
	if len(v) == 0 {
		return corruptf(key, "empty value")
	}
	if v[0] != recordV1 {
		return corruptf(key, "unknown record version %d", v[0])
	}
	if len(v) < min {
		return corruptf(key, "value of %d bytes, want at least %d", len(v), min)
	}
	return nil
}

func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return []byte{}
	}
	return append([]byte(nil), b...)
}
