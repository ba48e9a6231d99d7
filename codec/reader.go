package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
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
	br      adaptiveReader
	max     int
	level   byte    // the protocol level packets are decoded at; see Level
	accept5 bool    // a level-5 CONNECT is decoded rather than refused
	scratch [2]byte // body of the fixed-size packets, which keep nothing of it
}

// NewReader returns a Reader on r that refuses packets larger than
// maxPacketSize bytes (fixed header included) with ErrPacketTooLarge.
// A maxPacketSize <= 0 means only the protocol's own limit, MaxPacketSize.
func NewReader(r io.Reader, maxPacketSize int) *Reader {
	rd := &Reader{br: adaptiveReader{src: r}}
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

// Level returns the protocol level the Reader decodes at: the level of the
// last CONNECT it read (from the moment its protocol name and level were
// read, so also after a level-5 CONNECT that turns out malformed), or the one
// given to SetLevel, or 0 for neither. Every level but Level5 decodes the
// wire form of 3.1 and 3.1.1.
func (r *Reader) Level() byte { return r.level }

// SetLevel makes the Reader decode what follows at level: a client sets the
// level of the CONNECT it sent, since its Reader never sees that CONNECT.
func (r *Reader) SetLevel(level byte) { r.level = level }

// AcceptLevel5 makes the Reader decode a CONNECT of protocol level 5, and
// then what follows it, at level 5. Without it such a CONNECT is refused with
// ErrUnsupportedProtocol, as a broker that does not serve MQTT 5 must
// [MQTT-3.1.2-2].
func (r *Reader) AcceptLevel5() { r.accept5 = true }

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
	v5 := r.level == Level5 && t != TypeConnect // a CONNECT has a level of its own
	if err := checkFixedHeader(t, flags, n, v5); err != nil {
		return nil, err
	}
	// Checked before a single body byte is read, so an oversized packet
	// costs nothing but its header.
	if size := 1 + lenBytes + n; size > r.max {
		return nil, fmt.Errorf("%w: %s of %d bytes exceeds the limit of %d", ErrPacketTooLarge, t, size, r.max)
	}

	switch t {
	case TypeConnack, TypePuback, TypePubrec, TypePubrel, TypePubcomp, TypeUnsuback,
		TypePingreq, TypePingresp, TypeDisconnect, TypeAuth:
		// Below level 5 checkFixedHeader pinned n to 0 or 2. A body that
		// small carries no property that could keep a slice of it, so the
		// scratch array saves an allocation.
		if n <= len(r.scratch) {
			body := r.scratch[:n]
			if _, err := io.ReadFull(&r.br, body); err != nil {
				return nil, bodyError(t, err)
			}
			return decodeFixed(t, body, v5)
		}
	}

	body, err := r.readBody(n)
	if err != nil {
		return nil, bodyError(t, err)
	}
	switch t {
	case TypeConnect:
		return r.decodeConnect(body)
	case TypePublish:
		return decodePublish(flags, body, v5)
	case TypeSubscribe:
		return decodeSubscribe(body, v5)
	case TypeSuback:
		return decodeSuback(body, v5)
	case TypeUnsubscribe:
		return decodeUnsubscribe(body, v5)
	default: // a level-5 reply longer than the scratch array
		return decodeFixed(t, body, v5)
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
		_, err := io.ReadFull(&r.br, body)
		return body, err
	}
	body := make([]byte, 0, bodyChunk)
	for {
		m, err := io.ReadFull(&r.br, body[len(body):cap(body)])
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
// body is read. The flags are the same at every level [MQTT-2.1.3-1]; at
// level 5 only PINGREQ and PINGRESP keep a fixed length.
func checkFixedHeader(t Type, flags byte, n int, v5 bool) error {
	if t == TypeAuth && v5 {
		if flags != 0 {
			return malformed(t, "fixed header", "flags %#x, want 0", flags) // [MQTT-3.15.1-1]
		}
		return nil
	}
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
		if !v5 {
			want = 2
		}
	case TypeDisconnect:
		if !v5 {
			want = 0
		}
	case TypePingreq, TypePingresp:
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
	v5  bool // level 5: some rules are Protocol Errors rather than malformed
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

func (c *cursor) uint32(field string) (uint32, error) {
	if c.remaining() < 4 {
		return 0, malformed(c.t, field, "missing")
	}
	v := binary.BigEndian.Uint32(c.buf[c.off:])
	c.off += 4
	return v, nil
}

// varint reads a Variable Byte Integer (§1.5.5). Like the remaining length,
// a longer encoding than needed is accepted [MQTT-1.5.5-1].
func (c *cursor) varint(field string) (int, error) {
	n, size, err := DecodeRemainingLength(c.buf[c.off:])
	if err != nil {
		return 0, malformed(c.t, field, "continuation bit set in the fourth byte")
	}
	if size == 0 {
		return 0, malformed(c.t, field, "missing")
	}
	c.off += size
	return n, nil
}

// violation builds the error for a rule that 3.1.1 calls malformed and 5.0,
// since the packet parses, a Protocol Error.
func (c *cursor) violation(field, format string, args ...any) error {
	if c.v5 {
		return protocolErr(c.t, field, format, args...)
	}
	return malformed(c.t, field, format, args...)
}

// packetID reads a packet identifier, which is never 0 ([MQTT-2.3.1-1]; at
// level 5 [MQTT-2.2.1-3]).
func (c *cursor) packetID() (uint16, error) {
	id, err := c.uint16("packet identifier")
	if err == nil && id == 0 {
		err = c.violation("packet identifier", "0")
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

func (r *Reader) decodeConnect(body []byte) (Packet, error) {
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
	if level&BridgeBit != 0 && levels3x(p.ProtocolName, level&^BridgeBit) {
		// Only 3.x has the bridge form: 0x85 stays an unknown level.
		level &^= BridgeBit
		p.ProtocolLevel, p.Bridge = level, true
	}
	c.v5 = p.ProtocolName == ProtocolName311 && level == Level5 && r.accept5
	if !levels3x(p.ProtocolName, level) && !c.v5 {
		// The rest of the packet may follow rules we do not know, so it is
		// not decoded; the broker only needs enough to refuse [MQTT-3.1.2-2].
		return p, fmt.Errorf("%w: CONNECT protocol %q level %d", ErrUnsupportedProtocol, p.ProtocolName, level)
	}
	// Known before the rest is checked, so that a level-5 CONNECT refused as
	// malformed can be answered in its own form.
	r.level = level

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
	// 5.0 allows a password without a user name (§3.1.2.9).
	if p.HasPassword && !p.HasUsername && !c.v5 {
		return nil, malformed(c.t, "connect flags", "password flag without user name flag") // [MQTT-3.1.2-22]
	}
	if p.KeepAlive, err = c.uint16("keep alive"); err != nil {
		return nil, err
	}
	if c.v5 {
		if p.Props, err = c.properties(TypeConnect); err != nil { // §3.1.2.11
			return nil, err
		}
	}

	// Whether the identifier's length suits the protocol level is the
	// broker's decision (3.1 said 23 bytes; brokers are lenient).
	if p.ClientID, err = c.string("client identifier", ValidateUTF8); err != nil { // [MQTT-3.1.3-4]
		return nil, err
	}
	if hasWill {
		w := &Will{QoS: willQoS, Retain: willRetain}
		if c.v5 {
			if w.Props, err = c.properties(willProps); err != nil { // §3.1.3.2
				return nil, err
			}
		}
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

// levels3x reports whether name and level are MQTT 3.1's or 3.1.1's pair.
func levels3x(name string, level byte) bool {
	return name == ProtocolName311 && level == Level311 || name == ProtocolName31 && level == Level31
}

// topicOrAlias checks a level-5 PUBLISH topic, which may be empty when a
// Topic Alias stands for it (§3.3.2.1); decodePublish checks the alias.
func topicOrAlias(s string) error {
	if s == "" {
		return nil
	}
	return ValidateTopicName(s)
}

func decodePublish(flags byte, body []byte, v5 bool) (Packet, error) {
	c := cursor{t: TypePublish, buf: body, v5: v5}
	p := &Publish{
		Dup:    flags&publishDup != 0,
		QoS:    flags >> publishQoSShift & 3, // 3 was refused with the fixed header
		Retain: flags&publishRetain != 0,
	}
	validate := ValidateTopicName
	if v5 {
		validate = topicOrAlias
	}
	var err error
	if p.Topic, err = c.string("topic name", validate); err != nil { // [MQTT-3.3.2-1], [MQTT-3.3.2-2]
		return nil, err
	}
	if p.QoS > 0 {
		if p.PacketID, err = c.packetID(); err != nil {
			return nil, err
		}
	}
	if v5 {
		if p.Props, err = c.properties(TypePublish); err != nil {
			return nil, err
		}
		if p.Topic == "" && !p.Props.Has(PropTopicAlias) {
			return nil, protocolErr(c.t, "topic name", "empty without a Topic Alias") // §3.3.2.3.4
		}
	}
	p.Payload = c.rest() // zero length is a valid message (§3.3.3)
	return p, nil
}

// sharePrefix starts the filter of a shared subscription (§4.8.2).
const sharePrefix = "$share/"

func decodeSubscribe(body []byte, v5 bool) (Packet, error) {
	c := cursor{t: TypeSubscribe, buf: body, v5: v5}
	p := &Subscribe{}
	var err error
	if p.PacketID, err = c.packetID(); err != nil {
		return nil, err
	}
	if v5 {
		if p.Props, err = c.properties(TypeSubscribe); err != nil {
			return nil, err
		}
	}
	for c.remaining() > 0 {
		var sub Subscription
		if sub.Filter, err = c.string("topic filter", ValidateTopicFilter); err != nil { // [MQTT-3.8.3-1]
			return nil, err
		}
		if v5 {
			if err := c.subscriptionOptions(&sub); err != nil {
				return nil, err
			}
		} else {
			if sub.QoS, err = c.byte("requested QoS"); err != nil {
				return nil, err
			}
			if sub.QoS > 2 { // also catches the reserved upper bits [MQTT-3.8.3-4]
				return nil, malformed(c.t, "requested QoS", "%#x for %q", sub.QoS, sub.Filter)
			}
		}
		p.Subscriptions = append(p.Subscriptions, sub)
	}
	if len(p.Subscriptions) == 0 {
		return nil, c.violation("payload", "no topic filters") // [MQTT-3.8.3-3]; at level 5 [MQTT-3.8.3-2]
	}
	return p, nil
}

// subscriptionOptions reads the options byte of a level-5 subscription
// (§3.8.3.1).
func (c *cursor) subscriptionOptions(sub *Subscription) error {
	o, err := c.byte("subscription options")
	if err != nil {
		return err
	}
	if o&subReserved != 0 {
		return malformed(c.t, "subscription options", "reserved bits set in %#x for %q", o, sub.Filter) // [MQTT-3.8.3-5]
	}
	sub.QoS = o & 3
	sub.NoLocal = o&subNoLocal != 0
	sub.RetainAsPublished = o&subRetainAsPublished != 0
	sub.RetainHandling = o >> subRetainHandlingShift & 3
	switch {
	case sub.QoS == 3:
		return protocolErr(c.t, "subscription options", "maximum QoS 3 for %q", sub.Filter) // §3.8.3.1
	case sub.RetainHandling == 3:
		return protocolErr(c.t, "subscription options", "retain handling 3 for %q", sub.Filter) // §3.8.3.1
	case sub.NoLocal && strings.HasPrefix(sub.Filter, sharePrefix):
		return protocolErr(c.t, "subscription options", "no local on shared subscription %q", sub.Filter) // [MQTT-3.8.3-4]
	}
	return nil
}

func decodeSuback(body []byte, v5 bool) (Packet, error) {
	c := cursor{t: TypeSuback, buf: body, v5: v5}
	p := &Suback{}
	var err error
	if p.PacketID, err = c.packetID(); err != nil {
		return nil, err
	}
	if v5 {
		if p.Props, err = c.properties(TypeSuback); err != nil {
			return nil, err
		}
	}
	// A SUBSCRIBE carries at least one filter and each gets a code, so an
	// empty list cannot answer anything.
	if p.ReturnCodes = c.rest(); p.ReturnCodes == nil {
		return nil, c.violation("payload", "no return codes")
	}
	for i, rc := range p.ReturnCodes {
		switch {
		case v5 && !ReasonCode(rc).ValidFor(TypeSuback):
			return nil, protocolErr(c.t, "reason code", "%#x at index %d", rc, i) // [MQTT-3.9.3-2]
		case !v5 && rc > 2 && rc != SubackFailure:
			return nil, malformed(c.t, "return code", "%#x at index %d", rc, i) // [MQTT-3.9.3-2]
		}
	}
	return p, nil
}

func decodeUnsubscribe(body []byte, v5 bool) (Packet, error) {
	c := cursor{t: TypeUnsubscribe, buf: body, v5: v5}
	p := &Unsubscribe{}
	var err error
	if p.PacketID, err = c.packetID(); err != nil {
		return nil, err
	}
	if v5 {
		if p.Props, err = c.properties(TypeUnsubscribe); err != nil {
			return nil, err
		}
	}
	for c.remaining() > 0 {
		f, err := c.string("topic filter", ValidateTopicFilter) // [MQTT-3.10.3-1]
		if err != nil {
			return nil, err
		}
		p.Filters = append(p.Filters, f)
	}
	if len(p.Filters) == 0 {
		return nil, c.violation("payload", "no topic filters") // [MQTT-3.10.3-2]
	}
	return p, nil
}

// decodeFixed decodes the packets that answer or end something: CONNACK, the
// publish acknowledgements, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT and AUTH.
// Below level 5 checkFixedHeader pinned their length and body is the
// Reader's scratch space, which must not be kept.
func decodeFixed(t Type, body []byte, v5 bool) (Packet, error) {
	switch t {
	case TypePingreq:
		return &Pingreq{}, nil
	case TypePingresp:
		return &Pingresp{}, nil
	case TypeConnack:
		if v5 {
			return decodeConnack5(body)
		}
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
	case TypeDisconnect, TypeAuth:
		if !v5 {
			return &Disconnect{}, nil // AUTH below level 5 was refused with the fixed header
		}
		return decodeReason5(t, body)
	}
	c := cursor{t: t, buf: body, v5: v5}
	id, err := c.packetID()
	if err != nil {
		return nil, err
	}
	if t == TypeUnsuback {
		if v5 {
			return decodeUnsuback5(&c, id)
		}
		return &Unsuback{PacketID: id}, nil
	}
	var reason ReasonCode
	var props *Properties
	if v5 {
		// §3.4.2.1: the reason code may be left out when it is Success, the
		// property length when there are no properties.
		if c.remaining() > 0 {
			if reason, err = c.reasonCode(); err != nil {
				return nil, err
			}
		}
		if c.remaining() > 0 {
			if props, err = c.properties(t); err != nil {
				return nil, err
			}
		}
		if err := c.end(); err != nil {
			return nil, err
		}
	}
	switch t {
	case TypePuback:
		return &Puback{PacketID: id, Reason: reason, Props: props}, nil
	case TypePubrec:
		return &Pubrec{PacketID: id, Reason: reason, Props: props}, nil
	case TypePubrel:
		return &Pubrel{PacketID: id, Reason: reason, Props: props}, nil
	case TypePubcomp:
		return &Pubcomp{PacketID: id, Reason: reason, Props: props}, nil
	}
	return nil, errors.New("codec: decodeFixed called for " + t.String())
}

// reasonCode reads a reason code that the cursor's packet type must allow:
// [MQTT-3.2.2-8], [MQTT-3.4.2-1], [MQTT-3.5.2-1], [MQTT-3.6.2-1],
// [MQTT-3.7.2-1], [MQTT-3.11.3-2], [MQTT-3.14.2-1], [MQTT-3.15.2-1].
func (c *cursor) reasonCode() (ReasonCode, error) {
	b, err := c.byte("reason code")
	if err != nil {
		return 0, err
	}
	if rc := ReasonCode(b); !rc.ValidFor(c.t) {
		return 0, protocolErr(c.t, "reason code", "%#x is not one of the %s reason codes", b, c.t)
	}
	return ReasonCode(b), nil
}

func decodeConnack5(body []byte) (Packet, error) {
	c := cursor{t: TypeConnack, buf: body, v5: true}
	flags, err := c.byte("acknowledge flags")
	if err != nil {
		return nil, err
	}
	if flags&^1 != 0 {
		return nil, malformed(c.t, "acknowledge flags", "reserved bits set in %#x", flags) // [MQTT-3.2.2-1]
	}
	p := &Connack{SessionPresent: flags&1 != 0}
	if p.Reason, err = c.reasonCode(); err != nil {
		return nil, err
	}
	if p.SessionPresent && p.Reason != ReasonSuccess {
		return nil, protocolErr(c.t, "acknowledge flags", "session present with reason code %#x", byte(p.Reason)) // [MQTT-3.2.2-6]
	}
	if p.Props, err = c.properties(TypeConnack); err != nil { // §3.2.2.3: the property length is not optional
		return nil, err
	}
	if err := c.end(); err != nil {
		return nil, err
	}
	return p, nil
}

func decodeUnsuback5(c *cursor, id uint16) (Packet, error) {
	p := &Unsuback{PacketID: id}
	var err error
	if p.Props, err = c.properties(TypeUnsuback); err != nil {
		return nil, err
	}
	if c.remaining() == 0 {
		return nil, protocolErr(c.t, "payload", "no reason codes") // [MQTT-3.11.3-1]
	}
	p.Reasons = make([]ReasonCode, 0, c.remaining())
	for c.remaining() > 0 {
		rc, err := c.reasonCode()
		if err != nil {
			return nil, err
		}
		p.Reasons = append(p.Reasons, rc)
	}
	return p, nil
}

// decodeReason5 decodes DISCONNECT or AUTH at level 5: a reason code and
// properties, either of which may be left out (§3.14.2.1, §3.15.2.1).
func decodeReason5(t Type, body []byte) (Packet, error) {
	c := cursor{t: t, buf: body, v5: true}
	var reason ReasonCode
	var props *Properties
	var err error
	if c.remaining() > 0 {
		if reason, err = c.reasonCode(); err != nil {
			return nil, err
		}
	}
	if c.remaining() > 0 {
		if props, err = c.properties(t); err != nil {
			return nil, err
		}
	}
	if err := c.end(); err != nil {
		return nil, err
	}
	if t == TypeDisconnect {
		return &Disconnect{Reason: reason, Props: props}, nil
	}
	// §3.15.2.2.2: an AUTH names its method; only the empty form, which
	// means Success and carries nothing, goes without (§3.15.2.1).
	if len(body) > 0 && !props.Has(PropAuthenticationMethod) {
		return nil, protocolErr(t, "Authentication Method", "missing")
	}
	return &Auth{Reason: reason, Props: props}, nil
}
