package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	// bodyChunk is the most a body buffer holds before bytes have arrived to
	// fill it; bodies larger than this grow as they are received.
	bodyChunk = 64 << 10

	// MaxConnectSize is the largest CONNECT either protocol level allows,
	// fixed header included: 327,701 bytes.
	//
	//   - variable header: the protocol name with its length, 2+6 for 3.1's
	//     "MQIsdp" (3.1.1's "MQTT" is 2 bytes shorter), then level, connect
	//     flags and keep alive, 1+1+2: 12 bytes;
	//   - payload: client identifier, will topic, will message, user name
	//     and password, each a 2-byte length and at most 65,535 bytes:
	//     5 x 65,537 = 327,685 bytes;
	//   - fixed header: the type byte, and the remaining length 327,697,
	//     which takes 3 bytes (it is between 2^14 and 2^21).
	//
	// A first packet declaring more cannot be a CONNECT that decodes, so a
	// broker can refuse it from its fixed header before it knows who sent it.
	MaxConnectSize = 1 + 3 + (2 + len(ProtocolName31) + 1 + 1 + 2) + 5*(2+maxStringLen)
)

// Reader decodes packets from a byte stream such as a net.Conn. It is not
// safe for concurrent use; a connection has one reading goroutine.
type Reader struct {
	br      *adaptiveReader
	max     int
	scratch [2]byte // body of the fixed-size packets, which keep nothing of it
}

// NewReader returns a Reader on r that refuses packets larger than
// maxPacketSize bytes (fixed header included) with ErrPacketTooLarge.
// A maxPacketSize <= 0 means only the protocol's own limit, MaxPacketSize.
func NewReader(r io.Reader, maxPacketSize int) *Reader {
	rd := &Reader{br: &adaptiveReader{src: r}}
	rd.SetMaxPacketSize(maxPacketSize)
	return rd
}

// SetMaxPacketSize changes the limit for the packets read from now on, with
// NewReader's meaning of maxPacketSize. A broker reads CONNECT under
// MaxConnectSize, before it knows who the client is, and raises the limit
// to its configured one after CONNACK.
func (r *Reader) SetMaxPacketSize(maxPacketSize int) {
	if maxPacketSize <= 0 || maxPacketSize > MaxPacketSize {
		maxPacketSize = MaxPacketSize
	}
	r.max = maxPacketSize
}

// Buffered returns how many bytes have been received but not yet decoded.
// A connection can use it to hold back a flush while pipelined packets are
// still waiting to be read.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadPacket decodes the next packet.
//
// The packet owns its memory and stays valid after the next call: Payload,
// Password, a will's message and a SUBACK's return codes are slices of one
// allocation made for this packet alone, and strings are copied out of it.
//
// At the end of the stream before the first byte of a packet it returns
// io.EOF itself; an end anywhere else is io.ErrUnexpectedEOF. Rule
// violations are ErrMalformed; a CONNECT asking for another protocol level
// returns both a *Connect and ErrUnsupportedProtocol. After any error the
// position in the stream is unreliable and the connection should be closed.
func (r *Reader) ReadPacket() (Packet, error) {
	first, err := r.br.ReadByte()
	if err != nil {
		return nil, err // io.EOF here is a clean close, so it stays unwrapped
	}
	t, flags := Type(first>>4), first&0x0f
	n, lenBytes, err := r.readRemainingLength()
	if err != nil {
		return nil, err
	}
	if err := checkFixedHeader(t, flags, n); err != nil {
		return nil, err
	}
	// Checked before a single body byte is read, so an oversized packet
	// costs nothing but its header.
	if size := 1 + lenBytes + n; size > r.max {
		return nil, fmt.Errorf("%w: %s of %d bytes exceeds the limit of %d", ErrPacketTooLarge, t, size, r.max)
	}

	switch t {
	case TypeConnack, TypePuback, TypePubrec, TypePubrel, TypePubcomp, TypeUnsuback,
		TypePingreq, TypePingresp, TypeDisconnect:
		// checkFixedHeader pinned n to 0 or 2, and these decoders copy out
		// what they need, so the scratch array saves an allocation.
		body := r.scratch[:n]
		if _, err := io.ReadFull(r.br, body); err != nil {
			return nil, bodyError(t, err)
		}
		return decodeFixed(t, body)
	}

	body, err := r.readBody(n)
	if err != nil {
		return nil, bodyError(t, err)
	}
	switch t {
	case TypeConnect:
		return decodeConnect(body)
	case TypePublish:
		return decodePublish(flags, body)
	case TypeSubscribe:
		return decodeSubscribe(body)
	case TypeSuback:
		return decodeSuback(body)
	default: // TypeUnsubscribe: checkFixedHeader refused every other type
		return decodeUnsubscribe(body)
	}
}

// readRemainingLength reads the remaining length (§2.2.3) and reports how
// many bytes it took, reading no byte past it.
func (r *Reader) readRemainingLength() (n, size int, err error) {
	var b [4]byte
	for k := 0; ; k++ {
		if b[k], err = r.br.ReadByte(); err != nil {
			return 0, 0, bodyError(0, err)
		}
		// DecodeRemainingLength settles it by the fourth byte at the latest.
		if n, size, err = DecodeRemainingLength(b[:k+1]); err != nil || size > 0 {
			return n, size, err
		}
	}
}

// DecodeRemainingLength decodes the variable-length remaining length
// (§2.2.3) at the start of b: its value n and the number of bytes it took.
// size is 0 (with a nil error) while b ends before the encoding does; a
// continuation bit in the fourth byte is ErrMalformed. This is the one
// decoder of the encoding; everything that splits a stream into packets
// uses it.
func DecodeRemainingLength(b []byte) (n, size int, err error) {
	for i := 0; i < 4; i++ {
		if i == len(b) {
			return 0, 0, nil
		}
		n |= int(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			// Non-minimal encodings (0x80 0x00 for 0) are accepted: 3.1.1
			// does not forbid them and they cost nothing to decode.
			return n, i + 1, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: remaining length: continuation bit set in the fourth byte", ErrMalformed)
}

// readBody reads n bytes into a buffer of their own. Up to bodyChunk it
// allocates exactly n. Past that the buffer doubles only once the bytes
// already received fill it, so memory follows what the peer actually sent,
// never what it declared: a client announcing 256 MB and trickling bytes
// gets a buffer of 64 KiB or at most twice what it delivered.
func (r *Reader) readBody(n int) ([]byte, error) {
	if n <= bodyChunk {
		body := make([]byte, n)
		_, err := io.ReadFull(r.br, body)
		return body, err
	}
	body := make([]byte, 0, bodyChunk)
	for {
		m, err := io.ReadFull(r.br, body[len(body):cap(body)])
		body = body[:len(body)+m]
		if err != nil {
			return nil, err
		}
		if len(body) == n {
			return body, nil
		}
		grown := make([]byte, len(body), min(2*cap(body), n))
		copy(grown, body)
		body = grown
	}
}

// bodyError turns an end of stream inside a packet into
// io.ErrUnexpectedEOF, naming the packet when its type is known. Other read
// errors (timeouts, resets) pass through untouched.
func bodyError(t Type, err error) error {
	if err != io.EOF && err != io.ErrUnexpectedEOF {
		return err
	}
	if t == 0 {
		return fmt.Errorf("fixed header: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("%s body: %w", t, io.ErrUnexpectedEOF)
}

// checkFixedHeader applies every rule that the first byte and the remaining
// length settle on their own, so that a bad packet is refused before its
// body is read.
func checkFixedHeader(t Type, flags byte, n int) error {
	switch t {
	case TypePublish:
		qos := flags >> publishQoSShift & 3
		if qos == 3 {
			return malformed(t, "fixed header", "QoS 3") // [MQTT-3.3.1-4]
		}
		if qos == 0 && flags&publishDup != 0 {
			return malformed(t, "fixed header", "DUP set with QoS 0") // [MQTT-3.3.1-2]
		}
	case TypePubrel, TypeSubscribe, TypeUnsubscribe:
		// [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]
		if flags != flagsRequired {
			return malformed(t, "fixed header", "flags %#x, want 0x2", flags)
		}
	case TypeConnect, TypeConnack, TypePuback, TypePubrec, TypePubcomp, TypeSuback,
		TypeUnsuback, TypePingreq, TypePingresp, TypeDisconnect:
		if flags != 0 {
			return malformed(t, "fixed header", "flags %#x, want 0", flags) // [MQTT-2.2.2-1], [MQTT-2.2.2-2]
		}
	default:
		return fmt.Errorf("%w: fixed header: reserved packet type %d", ErrMalformed, byte(t))
	}

	want := -1
	switch t {
	case TypeConnack, TypePuback, TypePubrec, TypePubrel, TypePubcomp, TypeUnsuback:
		want = 2
	case TypePingreq, TypePingresp, TypeDisconnect:
		want = 0
	}
	if want >= 0 && n != want {
		return malformed(t, "remaining length", "%d, want %d", n, want)
	}
	return nil
}

// cursor walks a packet body. Each read names its field so that the error
// says exactly what was wrong, and none can run past the end of the body.
type cursor struct {
	t   Type
	buf []byte
	off int
}

func (c *cursor) remaining() int { return len(c.buf) - c.off }

func (c *cursor) byte(field string) (byte, error) {
	if c.remaining() < 1 {
		return 0, malformed(c.t, field, "missing")
	}
	b := c.buf[c.off]
	c.off++
	return b, nil
}

func (c *cursor) uint16(field string) (uint16, error) {
	if c.remaining() < 2 {
		return 0, malformed(c.t, field, "missing")
	}
	v := binary.BigEndian.Uint16(c.buf[c.off:])
	c.off += 2
	return v, nil
}

// packetID reads a packet identifier, which is never 0 [MQTT-2.3.1-1].
func (c *cursor) packetID() (uint16, error) {
	id, err := c.uint16("packet identifier")
	if err == nil && id == 0 {
		err = malformed(c.t, "packet identifier", "0")
	}
	return id, err
}

// field reads a length-prefixed field (§1.5.3). The result aliases the
// body; its capacity is clipped so that an append by the owner cannot spill
// into the next field.
func (c *cursor) field(field string) ([]byte, error) {
	// The length check is inline rather than through c.uint16: composing
	// its field name would cost an allocation per field.
	if c.remaining() < 2 {
		return nil, malformed(c.t, field, "length missing")
	}
	n := binary.BigEndian.Uint16(c.buf[c.off:])
	c.off += 2
	if int(n) > c.remaining() {
		return nil, malformed(c.t, field, "length %d runs past the end of the packet (%d bytes left)", n, c.remaining())
	}
	b := c.buf[c.off : c.off+int(n) : c.off+int(n)]
	c.off += int(n)
	return b, nil
}

// string reads a length-prefixed field and checks it with validate.
func (c *cursor) string(field string, validate func(string) error) (string, error) {
	b, err := c.field(field)
	if err != nil {
		return "", err
	}
	s := string(b)
	if err := validate(s); err != nil {
		return "", malformedBy(c.t, field, err)
	}
	return s, nil
}

// rest returns what is left of the body, nil if nothing, so that an empty
// payload compares equal however it was produced.
func (c *cursor) rest() []byte {
	if c.remaining() == 0 {
		return nil
	}
	b := c.buf[c.off:]
	c.off = len(c.buf)
	return b
}

// end insists that the fields account for the whole body.
func (c *cursor) end() error {
	if n := c.remaining(); n != 0 {
		return malformed(c.t, "body", "%d unexpected bytes after the last field", n)
	}
	return nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func decodeConnect(body []byte) (Packet, error) {
	c := cursor{t: TypeConnect, buf: body}
	name, err := c.field("protocol name")
	if err != nil {
		return nil, err
	}
	level, err := c.byte("protocol level")
	if err != nil {
		return nil, err
	}
	p := &Connect{ProtocolLevel: level}
	// Switching on string(name) does not allocate, and the constants give
	// ProtocolName without a copy.
	switch string(name) {
	case ProtocolName311:
		p.ProtocolName = ProtocolName311
	case ProtocolName31:
		p.ProtocolName = ProtocolName31
	default:
		// [MQTT-3.1.2-1]: not MQTT at all, so not even a CONNACK is owed.
		return nil, malformed(c.t, "protocol name", "unknown protocol %q", name)
	}
	if !(p.ProtocolName == ProtocolName311 && level == Level311 ||
		p.ProtocolName == ProtocolName31 && level == Level31) {
		// The rest of the packet may follow rules we do not know, so it is
		// not decoded; the broker only needs enough to refuse [MQTT-3.1.2-2].
		return p, fmt.Errorf("%w: CONNECT protocol %q level %d", ErrUnsupportedProtocol, p.ProtocolName, level)
	}

	flags, err := c.byte("connect flags")
	if err != nil {
		return nil, err
	}
	if flags&connectReserved != 0 {
		return nil, malformed(c.t, "connect flags", "reserved bit 0 set") // [MQTT-3.1.2-3]
	}
	willQoS := flags >> connectWillQoSShift & 3
	willRetain := flags&connectWillRetain != 0
	hasWill := flags&connectWill != 0
	switch {
	case hasWill && willQoS == 3:
		return nil, malformed(c.t, "connect flags", "will QoS 3") // [MQTT-3.1.2-14]
	case !hasWill && willQoS != 0:
		return nil, malformed(c.t, "connect flags", "will QoS %d without will flag", willQoS) // [MQTT-3.1.2-11], [MQTT-3.1.2-13]
	case !hasWill && willRetain:
		return nil, malformed(c.t, "connect flags", "will retain without will flag") // [MQTT-3.1.2-11], [MQTT-3.1.2-15]
	}
	p.CleanSession = flags&connectCleanSession != 0
	p.HasUsername = flags&connectUsername != 0
	p.HasPassword = flags&connectPassword != 0
	if p.HasPassword && !p.HasUsername {
		return nil, malformed(c.t, "connect flags", "password flag without user name flag") // [MQTT-3.1.2-22]
	}
	if p.KeepAlive, err = c.uint16("keep alive"); err != nil {
		return nil, err
	}

	// Whether the identifier's length suits the protocol level is the
	// broker's decision (3.1 said 23 bytes; brokers are lenient).
	if p.ClientID, err = c.string("client identifier", ValidateUTF8); err != nil { // [MQTT-3.1.3-4]
		return nil, err
	}
	if hasWill {
		w := &Will{QoS: willQoS, Retain: willRetain}
		// A will is published like any message, so its topic obeys the
		// PUBLISH rules [MQTT-3.1.3-10], [MQTT-3.3.2-2].
		if w.Topic, err = c.string("will topic", ValidateTopicName); err != nil {
			return nil, err
		}
		payload, err := c.field("will message")
		if err != nil {
			return nil, err
		}
		w.Payload = nilIfEmpty(payload)
		p.Will = w
	}
	if p.HasUsername {
		if p.Username, err = c.string("user name", ValidateUTF8); err != nil { // [MQTT-3.1.3-11]
			return nil, err
		}
	}
	if p.HasPassword {
		password, err := c.field("password")
		if err != nil {
			return nil, err
		}
		p.Password = nilIfEmpty(password)
	}
	// [MQTT-3.1.4-1]: a CONNECT that does not end where its fields end does
	// not conform.
	if err := c.end(); err != nil {
		return nil, err
	}
	return p, nil
}

func decodePublish(flags byte, body []byte) (Packet, error) {
	c := cursor{t: TypePublish, buf: body}
	p := &Publish{
		Dup:    flags&publishDup != 0,
		QoS:    flags >> publishQoSShift & 3, // 3 was refused with the fixed header
		Retain: flags&publishRetain != 0,
	}
	var err error
	if p.Topic, err = c.string("topic name", ValidateTopicName); err != nil { // [MQTT-3.3.2-1], [MQTT-3.3.2-2]
		return nil, err
	}
	if p.QoS > 0 {
		if p.PacketID, err = c.packetID(); err != nil {
			return nil, err
		}
	}
	p.Payload = c.rest() // zero length is a valid message (§3.3.3)
	return p, nil
}

func decodeSubscribe(body []byte) (Packet, error) {
	c := cursor{t: TypeSubscribe, buf: body}
	p := &Subscribe{}
	var err error
	if p.PacketID, err = c.packetID(); err != nil {
		return nil, err
	}
	for c.remaining() > 0 {
		var sub Subscription
		if sub.Filter, err = c.string("topic filter", ValidateTopicFilter); err != nil { // [MQTT-3.8.3-1]
			return nil, err
		}
		if sub.QoS, err = c.byte("requested QoS"); err != nil {
			return nil, err
		}
		if sub.QoS > 2 { // also catches the reserved upper bits [MQTT-3.8.3-4]
			return nil, malformed(c.t, "requested QoS", "%#x for %q", sub.QoS, sub.Filter)
		}
		p.Subscriptions = append(p.Subscriptions, sub)
	}
	if len(p.Subscriptions) == 0 {
		return nil, malformed(c.t, "payload", "no topic filters") // [MQTT-3.8.3-3]
	}
	return p, nil
}

func decodeSuback(body []byte) (Packet, error) {
	c := cursor{t: TypeSuback, buf: body}
	p := &Suback{}
	var err error
	if p.PacketID, err = c.packetID(); err != nil {
		return nil, err
	}
	// A SUBSCRIBE carries at least one filter and each gets a code, so an
	// empty list cannot answer anything.
	if p.ReturnCodes = c.rest(); p.ReturnCodes == nil {
		return nil, malformed(c.t, "payload", "no return codes")
	}
	for i, rc := range p.ReturnCodes {
		if rc > 2 && rc != SubackFailure {
			return nil, malformed(c.t, "return code", "%#x at index %d", rc, i) // [MQTT-3.9.3-2]
		}
	}
	return p, nil
}

func decodeUnsubscribe(body []byte) (Packet, error) {
	c := cursor{t: TypeUnsubscribe, buf: body}
	p := &Unsubscribe{}
	var err error
	if p.PacketID, err = c.packetID(); err != nil {
		return nil, err
	}
	for c.remaining() > 0 {
		f, err := c.string("topic filter", ValidateTopicFilter) // [MQTT-3.10.3-1]
		if err != nil {
			return nil, err
		}
		p.Filters = append(p.Filters, f)
	}
	if len(p.Filters) == 0 {
		return nil, malformed(c.t, "payload", "no topic filters") // [MQTT-3.10.3-2]
	}
	return p, nil
}

// decodeFixed decodes the packets whose remaining length checkFixedHeader
// already pinned. body is the Reader's scratch space and must not be kept.
func decodeFixed(t Type, body []byte) (Packet, error) {
	switch t {
	case TypePingreq:
		return &Pingreq{}, nil
	case TypePingresp:
		return &Pingresp{}, nil
	case TypeDisconnect:
		return &Disconnect{}, nil
	case TypeConnack:
		// Bits 7-1 of the acknowledge flags are reserved (3.1.1 section
		// 3.2.2.1); 3.1 reserves the whole byte, and a 3.1 broker sends 0.
		if body[0]&^1 != 0 {
			return nil, malformed(t, "acknowledge flags", "reserved bits set in %#x", body[0])
		}
		code := ConnackCode(body[1])
		if code > RefusedNotAuthorized {
			return nil, malformed(t, "return code", "reserved value %d", body[1])
		}
		return &Connack{SessionPresent: body[0]&1 != 0, ReturnCode: code}, nil
	}
	c := cursor{t: t, buf: body}
	id, err := c.packetID()
	if err != nil {
		return nil, err
	}
	switch t {
	case TypePuback:
		return &Puback{PacketID: id}, nil
	case TypePubrec:
		return &Pubrec{PacketID: id}, nil
	case TypePubrel:
		return &Pubrel{PacketID: id}, nil
	case TypePubcomp:
		return &Pubcomp{PacketID: id}, nil
	case TypeUnsuback:
		return &Unsuback{PacketID: id}, nil
	}
	return nil, errors.New("codec: decodeFixed called for " + t.String())
}
