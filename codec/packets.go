package codec

import (
	"encoding/binary"
	"strconv"
)

// Type is the MQTT control packet type, the high nibble of the first byte.
type Type byte

// Value 0 is reserved. 15, AUTH, exists from MQTT 5 on: a Reader decodes it
// only at Level5, and at levels 3 and 4 refuses it as a reserved type.
const (
	TypeConnect Type = iota + 1
	TypeConnack
	TypePublish
	TypePuback
	TypePubrec
	TypePubrel
	TypePubcomp
	TypeSubscribe
	TypeSuback
	TypeUnsubscribe
	TypeUnsuback
	TypePingreq
	TypePingresp
	TypeDisconnect
	TypeAuth
)

var typeNames = [...]string{
	TypeConnect:     "CONNECT",
	TypeConnack:     "CONNACK",
	TypePublish:     "PUBLISH",
	TypePuback:      "PUBACK",
	TypePubrec:      "PUBREC",
	TypePubrel:      "PUBREL",
	TypePubcomp:     "PUBCOMP",
	TypeSubscribe:   "SUBSCRIBE",
	TypeSuback:      "SUBACK",
	TypeUnsubscribe: "UNSUBSCRIBE",
	TypeUnsuback:    "UNSUBACK",
	TypePingreq:     "PINGREQ",
	TypePingresp:    "PINGRESP",
	TypeDisconnect:  "DISCONNECT",
	TypeAuth:        "AUTH",
}

// String returns the name the specification uses, e.g. "PUBLISH".
func (t Type) String() string {
	if t >= TypeConnect && t <= TypeAuth {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Protocol levels and the protocol names that go with them.
const (
	Level31  byte = 3 // MQTT 3.1, protocol name "MQIsdp"
	Level311 byte = 4 // MQTT 3.1.1, protocol name "MQTT"
	Level5   byte = 5 // MQTT 5.0, protocol name "MQTT"

	ProtocolName31  = "MQIsdp"
	ProtocolName311 = "MQTT"

	// BridgeBit set in a 3.1 or 3.1.1 CONNECT's protocol level (0x83, 0x84)
	// announces a broker bridging into this one, as Mosquitto's try_private
	// sends it; Connect.Bridge carries it apart from ProtocolLevel.
	BridgeBit byte = 0x80
)

const (
	// MaxRemainingLength is the largest value four bytes of remaining
	// length can carry.
	MaxRemainingLength = 268_435_455

	// MaxPacketSize is the largest packet the protocol can express: the
	// first byte, four bytes of remaining length and the body.
	MaxPacketSize = 1 + 4 + MaxRemainingLength

	// maxStringLen bounds every length-prefixed field (§1.5.3).
	maxStringLen = 65535
)

// Packet is any decoded or to-be-encoded control packet.
type Packet interface {
	Type() Type
	// Append encodes the whole packet (fixed header included) onto dst and
	// returns the extended slice, in the wire form of levels 3 and 4, which
	// is the same for both. A Connect follows its own ProtocolLevel, and an
	// Auth, which only exists at level 5, is written in that form.
	Append(dst []byte) []byte
	// AppendLevel encodes the packet in the wire form of level: at Level5
	// with its reason code and properties, below it as Append does. A
	// Connect ignores level and follows its ProtocolLevel.
	AppendLevel(dst []byte, level byte) []byte
}

// Connect is the first packet a client sends on a connection.
type Connect struct {
	ProtocolName  string
	ProtocolLevel byte
	Bridge        bool   // the level was sent with BridgeBit (3.1 and 3.1.1 only)
	CleanSession  bool   // Clean Start at level 5
	KeepAlive     uint16 // seconds
	ClientID      string
	Will          *Will // nil when the will flag is 0
	Username      string
	HasUsername   bool
	Password      []byte
	HasPassword   bool // at level 5 also without a user name
	Props         *Properties
}

// Will is the message the broker publishes when a client vanishes without
// a DISCONNECT.
type Will struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	Props   *Properties // the will properties, level 5 (§3.1.3.2)
}

// ConnackCode is the return code of a CONNACK.
type ConnackCode byte

// Codes 6-255 are reserved in 3.x.
const (
	Accepted                     ConnackCode = 0
	RefusedProtocolVersion       ConnackCode = 1
	RefusedIdentifierRejected    ConnackCode = 2
	RefusedServerUnavailable     ConnackCode = 3
	RefusedBadUsernameOrPassword ConnackCode = 4
	RefusedNotAuthorized         ConnackCode = 5
)

var connackNames = [...]string{
	Accepted:                     "accepted",
	RefusedProtocolVersion:       "unacceptable protocol version",
	RefusedIdentifierRejected:    "identifier rejected",
	RefusedServerUnavailable:     "server unavailable",
	RefusedBadUsernameOrPassword: "bad user name or password",
	RefusedNotAuthorized:         "not authorized",
}

// String returns the meaning of the code for log lines.
func (c ConnackCode) String() string {
	if int(c) < len(connackNames) {
		return connackNames[c]
	}
	return "ConnackCode(" + strconv.Itoa(int(c)) + ")"
}

// Connack answers a CONNECT. SessionPresent exists from 3.1.1 on; a broker
// must leave it false when answering a 3.1 client, where the bit is reserved.
// ReturnCode is the answer at levels 3 and 4, Reason the one at level 5.
type Connack struct {
	SessionPresent bool
	ReturnCode     ConnackCode
	Reason         ReasonCode
	Props          *Properties
}

// Publish carries an application message in either direction. At level 5
// Topic may be empty when Props carries a Topic Alias.
type Publish struct {
	Dup      bool
	QoS      byte
	Retain   bool
	Topic    string
	PacketID uint16 // only when QoS > 0
	Payload  []byte
	Props    *Properties
}

// Puback acknowledges a QoS 1 PUBLISH. Reason and Props exist at level 5.
type Puback struct {
	PacketID uint16
	Reason   ReasonCode
	Props    *Properties
}

// Pubrec is the first acknowledgement of a QoS 2 PUBLISH.
type Pubrec struct {
	PacketID uint16
	Reason   ReasonCode
	Props    *Properties
}

// Pubrel answers a PUBREC.
type Pubrel struct {
	PacketID uint16
	Reason   ReasonCode
	Props    *Properties
}

// Pubcomp answers a PUBREL and ends a QoS 2 exchange.
type Pubcomp struct {
	PacketID uint16
	Reason   ReasonCode
	Props    *Properties
}

// Subscription is one topic filter of a SUBSCRIBE and its requested QoS,
// the Maximum QoS of level 5. The other options exist at level 5 only
// (§3.8.3.1).
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte // 0: send retained messages, 1: only for a new subscription, 2: never
}

// Subscribe asks for one or more subscriptions.
type Subscribe struct {
	PacketID      uint16
	Subscriptions []Subscription
	Props         *Properties
}

// SubackFailure is the SUBACK return code for a refused subscription
// (3.1.1 only; a 3.1 client does not know it).
const SubackFailure byte = 0x80

// Suback answers a SUBSCRIBE with one return code per filter, in order
// [MQTT-3.9.3-1]: the granted QoS or SubackFailure. At level 5 each is a
// ReasonCode; the four values of 3.1.1 keep their meaning there.
type Suback struct {
	PacketID    uint16
	ReturnCodes []byte
	Props       *Properties
}

// Unsubscribe removes one or more subscriptions.
type Unsubscribe struct {
	PacketID uint16
	Filters  []string
	Props    *Properties
}

// Unsuback answers an UNSUBSCRIBE. At level 5 it carries one reason code
// per filter, in order [MQTT-3.11.3-1]; at levels 3 and 4 Reasons is unused.
type Unsuback struct {
	PacketID uint16
	Reasons  []ReasonCode
	Props    *Properties
}

// Pingreq is a client's keep-alive probe.
type Pingreq struct{}

// Pingresp answers a PINGREQ.
type Pingresp struct{}

// Disconnect is a client's clean goodbye; the will is discarded. At level 5
// either side may send it, with a reason (ReasonNormalDisconnection keeps
// the will from being published, ReasonDisconnectWithWill does not).
type Disconnect struct {
	Reason ReasonCode
	Props  *Properties
}

// Auth carries a step of enhanced authentication, level 5 only (§3.15).
type Auth struct {
	Reason ReasonCode
	Props  *Properties
}

func (*Connect) Type() Type     { return TypeConnect }
func (*Connack) Type() Type     { return TypeConnack }
func (*Publish) Type() Type     { return TypePublish }
func (*Puback) Type() Type      { return TypePuback }
func (*Pubrec) Type() Type      { return TypePubrec }
func (*Pubrel) Type() Type      { return TypePubrel }
func (*Pubcomp) Type() Type     { return TypePubcomp }
func (*Subscribe) Type() Type   { return TypeSubscribe }
func (*Suback) Type() Type      { return TypeSuback }
func (*Unsubscribe) Type() Type { return TypeUnsubscribe }
func (*Unsuback) Type() Type    { return TypeUnsuback }
func (*Pingreq) Type() Type     { return TypePingreq }
func (*Pingresp) Type() Type    { return TypePingresp }
func (*Disconnect) Type() Type  { return TypeDisconnect }
func (*Auth) Type() Type        { return TypeAuth }

// Bits of the CONNECT flags byte (§3.1.2).
const (
	connectReserved     = 0x01
	connectCleanSession = 0x02
	connectWill         = 0x04
	connectWillQoSShift = 3
	connectWillRetain   = 0x20
	connectPassword     = 0x40
	connectUsername     = 0x80
)

// Bits of the PUBLISH fixed-header flags (§3.3.1).
const (
	publishRetain   = 0x01
	publishQoSShift = 1
	publishDup      = 0x08
)

// flagsRequired is the fixed-header flags nibble of PUBREL, SUBSCRIBE and
// UNSUBSCRIBE [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1].
const flagsRequired = 0x02

// Append implements Packet. Fields are written as given: a broker answering
// or a client connecting is trusted to fill them in, the Reader is not.
// Like every Append here it panics if a string or binary field exceeds
// 65,535 bytes or the packet exceeds MaxRemainingLength, since that can only
// be a programming error: nothing decoded by a Reader is that large.
func (c *Connect) Append(dst []byte) []byte {
	v5 := c.ProtocolLevel == Level5
	flags := byte(0)
	n := 2 + len(c.ProtocolName) + 1 + 1 + 2 + 2 + len(c.ClientID)
	pn, wn := 0, 0 // level 5: the lengths of the properties and will properties
	if v5 {
		pn = c.Props.size(TypeConnect)
		n += varintLen(pn) + pn
	}
	if c.CleanSession {
		flags |= connectCleanSession
	}
	if w := c.Will; w != nil {
		flags |= connectWill | (w.QoS&3)<<connectWillQoSShift
		if w.Retain {
			flags |= connectWillRetain
		}
		n += 2 + len(w.Topic) + 2 + len(w.Payload)
		if v5 {
			wn = w.Props.size(willProps)
			n += varintLen(wn) + wn
		}
	}
	if c.HasUsername {
		flags |= connectUsername
		n += 2 + len(c.Username)
	}
	if c.HasPassword {
		flags |= connectPassword
		n += 2 + len(c.Password)
	}
	dst = appendFixedHeader(dst, TypeConnect, 0, n)
	dst = appendString(dst, c.ProtocolName)
	level := c.ProtocolLevel
	if c.Bridge {
		level |= BridgeBit
	}
	dst = append(dst, level, flags)
	dst = binary.BigEndian.AppendUint16(dst, c.KeepAlive)
	if v5 {
		dst = c.Props.appendTo(dst, TypeConnect, pn) // §3.1.2.11
	}
	dst = appendString(dst, c.ClientID)
	if w := c.Will; w != nil {
		if v5 {
			dst = w.Props.appendTo(dst, willProps, wn) // §3.1.3.2
		}
		dst = appendString(dst, w.Topic)
		dst = appendString(dst, w.Payload)
	}
	if c.HasUsername {
		dst = appendString(dst, c.Username)
	}
	if c.HasPassword {
		dst = appendString(dst, c.Password)
	}
	return dst
}

// Append implements Packet.
func (c *Connack) Append(dst []byte) []byte {
	var ack byte
	if c.SessionPresent {
		ack = 1
	}
	return append(dst, byte(TypeConnack)<<4, 2, ack, byte(c.ReturnCode))
}

// Append implements Packet. With QoS 0 no packet identifier is written
// [MQTT-2.3.1-5].
func (p *Publish) Append(dst []byte) []byte { return p.append(dst, false) }

// append writes the PUBLISH; at level 5 the properties follow the packet
// identifier (§3.3.2).
func (p *Publish) append(dst []byte, v5 bool) []byte {
	flags := (p.QoS & 3) << publishQoSShift
	if p.Dup {
		flags |= publishDup
	}
	if p.Retain {
		flags |= publishRetain
	}
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	if v5 {
		return p.append5(dst, flags, n)
	}
	dst = appendFixedHeader(dst, TypePublish, flags, n)
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	}
	return append(dst, p.Payload...)
}

func (p *Publish) append5(dst []byte, flags byte, n int) []byte {
	pn := p.Props.size(TypePublish)
	dst = appendFixedHeader(dst, TypePublish, flags, n+varintLen(pn)+pn)
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	}
	dst = p.Props.appendTo(dst, TypePublish, pn)
	return append(dst, p.Payload...)
}

// Append implements Packet.
func (p *Puback) Append(dst []byte) []byte { return appendAck(dst, TypePuback, 0, p.PacketID) }

// Append implements Packet.
func (p *Pubrec) Append(dst []byte) []byte { return appendAck(dst, TypePubrec, 0, p.PacketID) }

// Append implements Packet.
func (p *Pubrel) Append(dst []byte) []byte {
	return appendAck(dst, TypePubrel, flagsRequired, p.PacketID)
}

// Append implements Packet.
func (p *Pubcomp) Append(dst []byte) []byte { return appendAck(dst, TypePubcomp, 0, p.PacketID) }

// Append implements Packet.
func (p *Unsuback) Append(dst []byte) []byte { return appendAck(dst, TypeUnsuback, 0, p.PacketID) }

// Append implements Packet.
func (s *Subscribe) Append(dst []byte) []byte { return s.append(dst, false) }

// append writes the SUBSCRIBE; at level 5 with properties and the options
// byte in place of the requested QoS (§3.8.3.1).
func (s *Subscribe) append(dst []byte, v5 bool) []byte {
	n, pn := 2, 0
	if v5 {
		pn = s.Props.size(TypeSubscribe)
		n += varintLen(pn) + pn
	}
	for _, sub := range s.Subscriptions {
		n += 2 + len(sub.Filter) + 1
	}
	dst = appendFixedHeader(dst, TypeSubscribe, flagsRequired, n)
	dst = binary.BigEndian.AppendUint16(dst, s.PacketID)
	if v5 {
		dst = s.Props.appendTo(dst, TypeSubscribe, pn)
	}
	for _, sub := range s.Subscriptions {
		dst = appendString(dst, sub.Filter)
		if v5 {
			dst = append(dst, sub.options())
		} else {
			dst = append(dst, sub.QoS)
		}
	}
	return dst
}

// Append implements Packet.
func (s *Suback) Append(dst []byte) []byte {
	dst = appendFixedHeader(dst, TypeSuback, 0, 2+len(s.ReturnCodes))
	dst = binary.BigEndian.AppendUint16(dst, s.PacketID)
	return append(dst, s.ReturnCodes...)
}

// Append implements Packet.
func (u *Unsubscribe) Append(dst []byte) []byte { return u.append(dst, false) }

func (u *Unsubscribe) append(dst []byte, v5 bool) []byte {
	n, pn := 2, 0
	if v5 {
		pn = u.Props.size(TypeUnsubscribe)
		n += varintLen(pn) + pn
	}
	for _, f := range u.Filters {
		n += 2 + len(f)
	}
	dst = appendFixedHeader(dst, TypeUnsubscribe, flagsRequired, n)
	dst = binary.BigEndian.AppendUint16(dst, u.PacketID)
	if v5 {
		dst = u.Props.appendTo(dst, TypeUnsubscribe, pn)
	}
	for _, f := range u.Filters {
		dst = appendString(dst, f)
	}
	return dst
}

// Append implements Packet.
func (*Pingreq) Append(dst []byte) []byte { return append(dst, byte(TypePingreq)<<4, 0) }

// Append implements Packet.
func (*Pingresp) Append(dst []byte) []byte { return append(dst, byte(TypePingresp)<<4, 0) }

// Append implements Packet.
func (*Disconnect) Append(dst []byte) []byte { return append(dst, byte(TypeDisconnect)<<4, 0) }

// AppendRemainingLength appends n in the variable-length encoding of the
// fixed header (§2.2.3): seven bits a byte, least significant first, the
// top bit meaning "more follows". It panics if n is negative or larger than
// MaxRemainingLength, which no valid packet can be.
func AppendRemainingLength(dst []byte, n int) []byte {
	if n < 0 || n > MaxRemainingLength {
		panic("codec: remaining length " + strconv.Itoa(n) + " out of range")
	}
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	return append(dst, byte(n))
}

// The remaining length is computed before writing rather than backfilled, so
// that the header never has to be shifted when it needs more than one byte.
func appendFixedHeader(dst []byte, t Type, flags byte, remaining int) []byte {
	dst = append(dst, byte(t)<<4|flags)
	return AppendRemainingLength(dst, remaining)
}

func appendAck(dst []byte, t Type, flags byte, id uint16) []byte {
	return append(dst, byte(t)<<4|flags, 2, byte(id>>8), byte(id))
}

// appendString writes a length-prefixed UTF-8 string or binary field; the
// two share one wire form (§1.5.3).
func appendString[S string | []byte](dst []byte, s S) []byte {
	if len(s) > maxStringLen {
		panic("codec: field of " + strconv.Itoa(len(s)) + " bytes exceeds 65535")
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}
