package persist

import (
	"encoding/binary"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// Record versions: the first byte of every value except the schema value. Version 2 is MQTT 5's
// layout of the families that changed (session, subscription, retained, queue entry, body), and
// (format 3) an in-flight state with a holder; their decoders read version 1 too, so that a
// store of an older format needs no rewriting.
const (
	recordV1 byte = 1
	recordV2 byte = 2
)

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

// Flags of a message's MQTT 5 parts, the same bits in a queue entry, a body, a retained message
// and a will (version 2 and the will only). What is absent costs nothing but its flag.
const (
	mfExpires byte = 1 << 2 // after the topic: expiry, unix nanoseconds int64
	mfProps   byte = 1 << 3 // then the property block of a PUBLISH (a will: of its will properties)
	mfKnown        = mfExpires | mfProps
	// A queue entry's or body's message was published with RETAIN: a Retain As Published
	// subscription gets it set [MQTT-3.3.1-12].
	mfRetainPublished byte = 1 << 4
	// A queue entry's or body's message (format 4): after the expiry, when the broker received
	// it, unix nanoseconds int64.
	mfArrived byte = 1 << 5
	// What a queue entry's or body's flags may hold beside their own (version 2).
	mfQueued = mfKnown | mfRetainPublished | mfArrived
)

// Session record flags.
const (
	sfDisconnected byte = 1 << 0
	sfOwner        byte = 1 << 1 // followed by the owner: uint16 length + username
	sfAnonymous    byte = 1 << 2
	sfExpiry       byte = 1 << 3 // version 2: the session expiry interval follows the time
)

// Subscription option flags (version 2).
const (
	subNoLocal           byte = 1 << 0
	subRetainAsPublished byte = 1 << 1
	subID                byte = 1 << 2 // the subscription identifier follows, uint32
	subKnown                  = subNoLocal | subRetainAsPublished | subID
)

// maxSubID is the largest Subscription Identifier, a Variable Byte Integer (§3.8.2.1.2).
const maxSubID = 268435455

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

// --- session (0x01): v2 | protocol level | flags | disconnected-at unix nanos int64
//   [| session expiry interval uint32] [| owner]

func encodeSession(r SessionRecord) []byte {
	v := make([]byte, 0, 15)
	v = append(v, recordV2, r.ProtocolLevel)
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
	if r.HasSessionExpiry {
		flags |= sfExpiry
	}
	v = append(v, flags)
	v = binary.BigEndian.AppendUint64(v, uint64(nanos))
	if r.HasSessionExpiry {
		v = binary.BigEndian.AppendUint32(v, r.SessionExpiry)
	}
	if r.HasOwner {
		v = binary.BigEndian.AppendUint16(v, uint16(len(r.Username)))
		v = append(v, r.Username...)
	}
	return v
}

func decodeSession(key, v []byte) (SessionRecord, error) {
	var r SessionRecord
	ver, err := checkVersion(key, v, 11, recordV2)
	if err != nil {
		return r, err
	}
	r.ProtocolLevel = v[1]
	flags := v[2]
	known := sfDisconnected | sfOwner | sfAnonymous
	if ver >= recordV2 {
		known |= sfExpiry
	}
	if flags&^known != 0 || (flags&sfAnonymous != 0 && flags&sfOwner == 0) {
		return r, corruptf(key, "unknown flags %#x", flags)
	}
	if flags&sfDisconnected != 0 {
		r.DisconnectedAt = time.Unix(0, int64(binary.BigEndian.Uint64(v[3:11]))).UTC()
	}
	rest := v[11:]
	if flags&sfExpiry != 0 {
		if len(rest) < 4 {
			return r, corruptf(key, "session expiry interval truncated")
		}
		r.HasSessionExpiry, r.SessionExpiry = true, binary.BigEndian.Uint32(rest)
		rest = rest[4:]
	}
	if flags&sfOwner != 0 {
		if len(rest) < 2 || len(rest) != 2+int(binary.BigEndian.Uint16(rest)) {
			return r, corruptf(key, "owner of %d bytes does not match its length", len(rest))
		}
		r.HasOwner, r.Anonymous, r.Username = true, flags&sfAnonymous != 0, string(rest[2:])
		rest = nil
	}
	if len(rest) != 0 {
		return r, corruptf(key, "value of %d bytes: %d unexpected at the end", len(v), len(rest))
	}
	return r, nil
}

// --- subscription (0x02): v2 | granted QoS | option flags [| subscription identifier uint32]
//   (v1: v1 | granted QoS)

func encodeSub(o SubOptions) []byte {
	var flags byte
	if o.NoLocal {
		flags |= subNoLocal
	}
	if o.RetainAsPublished {
		flags |= subRetainAsPublished
	}
	v := []byte{recordV2, o.QoS, flags}
	if o.ID != 0 {
		v[2] |= subID
		v = binary.BigEndian.AppendUint32(v, o.ID)
	}
	return v
}

func decodeSub(key, v []byte) (SubOptions, error) {
	var o SubOptions
	ver, err := checkVersion(key, v, 2, recordV2)
	if err != nil {
		return o, err
	}
	o.QoS = v[1]
	if ver == recordV1 {
		if len(v) != 2 || o.QoS > 2 {
			return SubOptions{}, corruptf(key, "bad subscription value %x", shorten(v))
		}
		return o, nil
	}
	if len(v) < 3 || o.QoS > 2 || v[2]&^subKnown != 0 {
		return SubOptions{}, corruptf(key, "bad subscription value %x", shorten(v))
	}
	flags := v[2]
	o.NoLocal, o.RetainAsPublished = flags&subNoLocal != 0, flags&subRetainAsPublished != 0
	want := 3
	if flags&subID != 0 {
		want = 7
		if len(v) == want {
			o.ID = binary.BigEndian.Uint32(v[3:])
		}
		if o.ID == 0 || o.ID > maxSubID {
			return SubOptions{}, corruptf(key, "bad subscription identifier in %x", shorten(v))
		}
	}
	if len(v) != want {
		return SubOptions{}, corruptf(key, "subscription value of %d bytes, want %d", len(v), want)
	}
	return o, nil
}

// --- retained (0x03): v2 | QoS | flags | [expiry] [properties] | payload  (v1: v1 | QoS | payload)

func encodeRetained(m *Message) []byte {
	v := make([]byte, 0, 3+len(m.Payload))
	v = append(v, recordV2, m.QoS, 0)
	v = appendExtras(v, 2, m, false)
	return append(v, m.Payload...)
}

func decodeRetained(key, v []byte) (Message, error) {
	ver, err := checkVersion(key, v, 2, recordV2)
	if err != nil {
		return Message{}, err
	}
	if v[1] > 2 {
		return Message{}, corruptf(key, "QoS %d", v[1])
	}
	m := Message{Topic: string(key[1:]), QoS: v[1], Retain: true}
	rest := v[2:]
	if ver >= recordV2 {
		if len(v) < 3 {
			return Message{}, corruptf(key, "value of %d bytes, want at least 3", len(v))
		}
		if v[2]&^mfKnown != 0 {
			return Message{}, corruptf(key, "unknown flags %#x", v[2])
		}
		if rest, err = readExtras(key, v[3:], v[2], &m); err != nil {
			return Message{}, err
		}
	}
	m.Payload = cloneBytes(rest)
	return m, nil
}

// --- queue entry (0x04):
//   v2 | delivery QoS | flags | payload size uint32
//   inline (flags&qfShared == 0): published QoS | topic length uint16 | topic | [expiry] [arrival] [properties] | payload
//   (v1: no expiry, arrival or properties)

func encodeQueueInline(qos byte, m *Message) []byte {
	return appendQueueInline(make([]byte, 0, queueInlineLen(m)), qos, m)
}

// queueInlineLen is the size of m's inline queue entry without its MQTT 5 parts but the
// arrival time.
func queueInlineLen(m *Message) int {
	return queueHeaderLen + 3 + len(m.Topic) + arrivalLen(m) + len(m.Payload)
}

// appendQueueInline appends m's inline queue entry to v.
func appendQueueInline(v []byte, qos byte, m *Message) []byte {
	start := len(v)
	var flags byte
	if m.Retain {
		flags |= qfRetain
	}
	if m.RetainPublished {
		flags |= mfRetainPublished
	}
	v = append(v, recordV2, qos, flags)
	v = binary.BigEndian.AppendUint32(v, uint32(len(m.Payload)))
	v = append(v, m.QoS)
	v = binary.BigEndian.AppendUint16(v, uint16(len(m.Topic)))
	v = append(v, m.Topic...)
	v = appendExtras(v, start+2, m, true)
	return append(v, m.Payload...)
}

func encodeQueueShared(qos byte, payloadSize int) []byte {
	return appendQueueShared(make([]byte, 0, queueHeaderLen), qos, payloadSize)
}

// appendQueueShared appends a shared queue entry to v.
func appendQueueShared(v []byte, qos byte, payloadSize int) []byte {
	v = append(v, recordV2, qos, qfShared)
	return binary.BigEndian.AppendUint32(v, uint32(payloadSize))
}

// queueHeader is the fixed part of a queue entry.
type queueHeader struct {
	qos         byte
	flags       byte
	payloadSize uint32
	arrived     time.Time // an inline message's arrival time, zero if not stored
}

func (h queueHeader) shared() bool { return h.flags&qfShared != 0 }

// decodeQueue checks the whole value, a property block included, and returns the header and,
// for an inline entry when withMsg is set, the message (copied).
func decodeQueue(key, v []byte, withMsg bool) (queueHeader, *Message, error) {
	var h queueHeader
	ver, err := checkVersion(key, v, queueHeaderLen, recordV2)
	if err != nil {
		return h, nil, err
	}
	h.qos, h.flags, h.payloadSize = v[1], v[2], binary.BigEndian.Uint32(v[3:7])
	if h.qos > 2 {
		return h, nil, corruptf(key, "delivery QoS %d", h.qos)
	}
	known := qfKnown
	if ver >= recordV2 {
		known |= mfQueued
	}
	if h.flags&^known != 0 {
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
	if len(rest) < 3+tl {
		return h, nil, corruptf(key, "inline message of %d bytes, topic of %d", len(rest), tl)
	}
	// On the stack unless withMsg: Recover checks every entry this way.
	m := Message{QoS: rest[0], Retain: h.flags&qfRetain != 0, RetainPublished: h.flags&mfRetainPublished != 0}
	topic := rest[3 : 3+tl]
	if rest, err = readExtras(key, rest[3+tl:], h.flags, &m); err != nil {
		return h, nil, err
	}
	if len(rest) != int(h.payloadSize) {
		return h, nil, corruptf(key, "inline payload of %d bytes, want %d", len(rest), h.payloadSize)
	}
	h.arrived = m.Arrived
	if !withMsg {
		return h, nil, nil
	}
	out := m
	out.Topic, out.Payload = string(topic), cloneBytes(rest)
	return h, &out, nil
}

// --- in-flight state (0x05): v1 | state | packet id uint16
//   v2 | state | packet id uint16 | holder length uint16 | holder  (only with a holder)

// inflight is a decoded 0x05 value.
type inflight struct {
	state  QueueState
	pid    uint16
	holder string // the shared subscription member holding a group's entry; "" none
}

// encodeInflight writes version 1 without a holder, so that only a group's held entries need
// version 2.
func encodeInflight(state QueueState, pid uint16, holder string) []byte {
	if holder == "" {
		return binary.BigEndian.AppendUint16([]byte{recordV1, byte(state)}, pid)
	}
	v := make([]byte, 0, 6+len(holder))
	v = append(v, recordV2, byte(state))
	v = binary.BigEndian.AppendUint16(v, pid)
	v = binary.BigEndian.AppendUint16(v, uint16(len(holder)))
	return append(v, holder...)
}

func decodeInflight(key, v []byte) (inflight, error) {
	ver, err := checkVersion(key, v, 4, recordV2)
	if err != nil {
		return inflight{}, err
	}
	f := inflight{state: QueueState(v[1]), pid: binary.BigEndian.Uint16(v[2:])}
	want := 4
	if ver >= recordV2 {
		// Version 2 exists for its holder: one of length 0 was never written.
		if len(v) < 6 || binary.BigEndian.Uint16(v[4:]) == 0 {
			return inflight{}, corruptf(key, "in-flight value %x without a holder", shorten(v))
		}
		want = 6 + int(binary.BigEndian.Uint16(v[4:]))
	}
	if len(v) != want || (f.state != Sent && f.state != Released) {
		return inflight{}, corruptf(key, "bad in-flight value %x", shorten(v))
	}
	if ver >= recordV2 {
		f.holder = string(v[6:])
	}
	return f, nil
}

// --- shared body (0x06): v2 | published QoS | flags | topic length uint16 | topic | [expiry] [arrival] [properties] | payload
//   (v1: no expiry, arrival or properties)

func encodeBody(m *Message) []byte {
	v := make([]byte, 0, 5+len(m.Topic)+arrivalLen(m)+len(m.Payload))
	var flags byte
	if m.Retain {
		flags |= bfRetain
	}
	if m.RetainPublished {
		flags |= mfRetainPublished
	}
	v = append(v, recordV2, m.QoS, flags)
	v = binary.BigEndian.AppendUint16(v, uint16(len(m.Topic)))
	v = append(v, m.Topic...)
	v = appendExtras(v, 2, m, true)
	return append(v, m.Payload...)
}

func decodeBody(key, v []byte, withMsg bool) (*Message, error) {
	ver, err := checkVersion(key, v, 5, recordV2)
	if err != nil {
		return nil, err
	}
	known := bfKnown
	if ver >= recordV2 {
		known |= mfQueued
	}
	if v[1] > 2 || v[2]&^known != 0 {
		return nil, corruptf(key, "bad QoS %d or flags %#x", v[1], v[2])
	}
	tl := int(binary.BigEndian.Uint16(v[3:5]))
	if len(v) < 5+tl {
		return nil, corruptf(key, "topic of %d bytes in a value of %d", tl, len(v))
	}
	m := Message{QoS: v[1], Retain: v[2]&bfRetain != 0, RetainPublished: v[2]&mfRetainPublished != 0}
	rest, err := readExtras(key, v[5+tl:], v[2], &m)
	if err != nil || !withMsg {
		return nil, err
	}
	out := m
	out.Topic, out.Payload = string(v[5:5+tl]), cloneBytes(rest)
	return &out, nil
}

// --- inbound QoS 2 (0x07): v1

var inboundValue = []byte{recordV1}

func decodeInbound(key, v []byte) error {
	if _, err := checkVersion(key, v, 1, recordV1); err != nil {
		return err
	}
	if len(v) != 1 {
		return corruptf(key, "value of %d bytes, want 1", len(v))
	}
	return nil
}

// --- will (0x08): v1 | QoS | flags (bit 0: retain; mfProps) | topic length uint16 | topic
//   [| will property block] | payload

func encodeWill(w *codec.Will) []byte {
	v := make([]byte, 0, 5+len(w.Topic)+len(w.Payload))
	var flags byte
	if w.Retain {
		flags |= bfRetain
	}
	v = append(v, recordV1, w.QoS, flags)
	v = binary.BigEndian.AppendUint16(v, uint16(len(w.Topic)))
	v = append(v, w.Topic...)
	if w.Props != nil {
		n := len(v)
		if v = codec.AppendWillProperties(v, w.Props); len(v) == n+1 {
			v = v[:n] // nothing a will carries: no block
		} else {
			v[2] |= mfProps
		}
	}
	return append(v, w.Payload...)
}

func decodeWill(key, v []byte) (*codec.Will, error) {
	if _, err := checkVersion(key, v, 5, recordV1); err != nil {
		return nil, err
	}
	flags := v[2]
	if v[1] > 2 || flags&^(bfRetain|mfProps) != 0 {
		return nil, corruptf(key, "bad QoS %d or flags %#x", v[1], flags)
	}
	tl := int(binary.BigEndian.Uint16(v[3:5]))
	if len(v) < 5+tl {
		return nil, corruptf(key, "topic of %d bytes in a value of %d", tl, len(v))
	}
	w := &codec.Will{QoS: v[1], Retain: flags&bfRetain != 0, Topic: string(v[5 : 5+tl])}
	rest := v[5+tl:]
	if flags&mfProps != 0 {
		p, n, err := codec.ReadWillProperties(rest)
		if err != nil {
			return nil, corruptf(key, "will properties: %v", err)
		}
		w.Props, rest = ownProps(p), rest[n:]
	}
	w.Payload = cloneBytes(rest)
	return w, nil
}

// appendExtras appends m's expiry, its arrival time when arrival is set (queue entries and
// bodies), and its property block, those it has, and sets their flags in the byte of v at flagsAt.
func appendExtras(v []byte, flagsAt int, m *Message, arrival bool) []byte {
	if !m.Expires.IsZero() {
		v[flagsAt] |= mfExpires
		v = binary.BigEndian.AppendUint64(v, uint64(m.Expires.UnixNano()))
	}
	if arrival && !m.Arrived.IsZero() {
		v[flagsAt] |= mfArrived
		v = binary.BigEndian.AppendUint64(v, uint64(m.Arrived.UnixNano()))
	}
	if m.Props != nil {
		n := len(v)
		if v = codec.AppendPublishProperties(v, m.Props); len(v) == n+1 {
			return v[:n] // properties with nothing a PUBLISH carries: no block
		}
		v[flagsAt] |= mfProps
	}
	return v
}

// readExtras reads into m the expiry, arrival time and property block that flags say start rest,
// and returns what follows them.
func readExtras(key, rest []byte, flags byte, m *Message) ([]byte, error) {
	if flags&mfExpires != 0 {
		if len(rest) < 8 {
			return nil, corruptf(key, "expiry truncated")
		}
		m.Expires = time.Unix(0, int64(binary.BigEndian.Uint64(rest))).UTC()
		rest = rest[8:]
	}
	if flags&mfArrived != 0 {
		if len(rest) < 8 {
			return nil, corruptf(key, "arrival time truncated")
		}
		m.Arrived = time.Unix(0, int64(binary.BigEndian.Uint64(rest))).UTC()
		rest = rest[8:]
	}
	if flags&mfProps != 0 {
		p, n, err := codec.ReadPublishProperties(rest)
		if err != nil {
			return nil, corruptf(key, "message properties: %v", err)
		}
		m.Props, rest = ownProps(p), rest[n:]
	}
	return rest, nil
}

// arrivalLen is the room m's arrival time takes in a queue entry or body.
func arrivalLen(m *Message) int {
	if m.Arrived.IsZero() {
		return 0
	}
	return 8
}

// ownProps copies what a decoded property block shares with the value it was read from.
func ownProps(p *codec.Properties) *codec.Properties {
	if p != nil && p.CorrelationData != nil {
		p.CorrelationData = cloneBytes(p.CorrelationData)
	}
	return p
}

// checkRecord decodes the value v of key k with its family's decoder.
func checkRecord(k, v []byte) error {
	var err error
	switch k[0] {
	case famSession:
		_, err = decodeSession(k, v)
	case famSub:
		_, err = decodeSub(k, v)
	case famRetained:
		_, err = decodeRetained(k, v)
	case famQueue:
		_, _, err = decodeQueue(k, v, false)
	case famInflight:
		_, err = decodeInflight(k, v)
	case famBody:
		_, err = decodeBody(k, v, false)
	case famInbound:
		err = decodeInbound(k, v)
	case famWill:
		_, err = decodeWill(k, v)
	default:
		err = corruptf(k, "unknown key family")
	}
	return err
}

// checkVersion checks the record-version byte (1 to newest) and a minimum length, and returns
// the version.
func checkVersion(key, v []byte, min int, newest byte) (byte, error) {
	if len(v) == 0 {
		return 0, corruptf(key, "empty value")
	}
	if v[0] < recordV1 || v[0] > newest {
		return 0, corruptf(key, "unknown record version %d", v[0])
	}
	if len(v) < min {
		return 0, corruptf(key, "value of %d bytes, want at least %d", len(v), min)
	}
	return v[0], nil
}

func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return []byte{}
	}
	return append([]byte(nil), b...)
}
