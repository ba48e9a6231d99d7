package codec

import "encoding/binary"

// Encoding at level 5. Below level 5 each packet type's AppendLevel writes
// what Append writes. Where the level-5 form only adds to the 3.x one
// (CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE) one function in packets.go
// writes both; the others are here. Like Append they write what they are given, except that
// properties the packet type may not carry are left out (Properties).

// AppendLevel implements Packet: a CONNECT carries its own level.
func (c *Connect) AppendLevel(dst []byte, _ byte) []byte { return c.Append(dst) }

// AppendLevel implements Packet.
func (c *Connack) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return c.Append(dst)
	}
	var ack byte
	if c.SessionPresent {
		ack = 1
	}
	pn := c.Props.size(TypeConnack)
	dst = appendFixedHeader(dst, TypeConnack, 0, 2+varintLen(pn)+pn)
	dst = append(dst, ack, byte(c.Reason))
	return c.Props.appendTo(dst, TypeConnack, pn)
}

// AppendLevel implements Packet.
func (p *Publish) AppendLevel(dst []byte, level byte) []byte {
	return p.append(dst, level >= Level5)
}

// AppendLevel implements Packet.
func (p *Puback) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return p.Append(dst)
	}
	return appendAck5(dst, TypePuback, 0, p.PacketID, p.Reason, p.Props)
}

// AppendLevel implements Packet.
func (p *Pubrec) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return p.Append(dst)
	}
	return appendAck5(dst, TypePubrec, 0, p.PacketID, p.Reason, p.Props)
}

// AppendLevel implements Packet.
func (p *Pubrel) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return p.Append(dst)
	}
	return appendAck5(dst, TypePubrel, flagsRequired, p.PacketID, p.Reason, p.Props)
}

// AppendLevel implements Packet.
func (p *Pubcomp) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return p.Append(dst)
	}
	return appendAck5(dst, TypePubcomp, 0, p.PacketID, p.Reason, p.Props)
}

// AppendLevel implements Packet.
func (s *Subscribe) AppendLevel(dst []byte, level byte) []byte {
	return s.append(dst, level >= Level5)
}

// Bits of the subscription options byte (§3.8.3.1); bits 0-1 are the QoS.
const (
	subNoLocal             = 0x04
	subRetainAsPublished   = 0x08
	subRetainHandlingShift = 4
	subReserved            = 0xC0
)

func (s *Subscription) options() byte {
	o := s.QoS&3 | (s.RetainHandling&3)<<subRetainHandlingShift
	if s.NoLocal {
		o |= subNoLocal
	}
	if s.RetainAsPublished {
		o |= subRetainAsPublished
	}
	return o
}

// AppendLevel implements Packet. At level 5 each return code is a ReasonCode.
func (s *Suback) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return s.Append(dst)
	}
	return appendCodes5(dst, TypeSuback, s.PacketID, s.Props, s.ReturnCodes)
}

// AppendLevel implements Packet.
func (u *Unsubscribe) AppendLevel(dst []byte, level byte) []byte {
	return u.append(dst, level >= Level5)
}

// AppendLevel implements Packet.
func (u *Unsuback) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return u.Append(dst)
	}
	return appendCodes5(dst, TypeUnsuback, u.PacketID, u.Props, u.Reasons)
}

// appendCodes5 writes a level-5 SUBACK or UNSUBACK: packet identifier,
// properties, one reason code per topic filter (§3.9, §3.11).
func appendCodes5[C ~byte](dst []byte, t Type, id uint16, props *Properties, codes []C) []byte {
	pn := props.size(t)
	dst = appendFixedHeader(dst, t, 0, 2+varintLen(pn)+pn+len(codes))
	dst = binary.BigEndian.AppendUint16(dst, id)
	dst = props.appendTo(dst, t, pn)
	for _, c := range codes {
		dst = append(dst, byte(c))
	}
	return dst
}

// AppendLevel implements Packet.
func (p *Pingreq) AppendLevel(dst []byte, _ byte) []byte { return p.Append(dst) }

// AppendLevel implements Packet.
func (p *Pingresp) AppendLevel(dst []byte, _ byte) []byte { return p.Append(dst) }

// AppendLevel implements Packet. At level 5 a normal disconnection without
// properties is the two bytes of 3.x (§3.14.2.1).
func (d *Disconnect) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return d.Append(dst)
	}
	return appendReason5(dst, TypeDisconnect, d.Reason, d.Props)
}

// Append implements Packet: AUTH exists at level 5 only, so this is its one
// form (§3.15).
func (a *Auth) Append(dst []byte) []byte { return appendReason5(dst, TypeAuth, a.Reason, a.Props) }

// AppendLevel implements Packet.
func (a *Auth) AppendLevel(dst []byte, _ byte) []byte { return a.Append(dst) }

// appendAck5 writes PUBACK, PUBREC, PUBREL or PUBCOMP at level 5 in its
// shortest form: the reason code is left out when it is Success and there
// are no properties, the property length when there are none (§3.4.2.1).
func appendAck5(dst []byte, t Type, flags byte, id uint16, reason ReasonCode, props *Properties) []byte {
	pn := props.size(t)
	switch {
	case pn > 0:
		dst = appendFixedHeader(dst, t, flags, 3+varintLen(pn)+pn)
		dst = append(dst, byte(id>>8), byte(id), byte(reason))
		return props.appendTo(dst, t, pn)
	case reason != ReasonSuccess:
		return append(dst, byte(t)<<4|flags, 3, byte(id>>8), byte(id), byte(reason))
	}
	return appendAck(dst, t, flags, id)
}

// appendReason5 writes DISCONNECT or AUTH, whose body is a reason code and
// properties, in the same shortest form as appendAck5 (§3.14.2.1, §3.15.2.1).
func appendReason5(dst []byte, t Type, reason ReasonCode, props *Properties) []byte {
	pn := props.size(t)
	switch {
	case pn > 0:
		dst = appendFixedHeader(dst, t, 0, 1+varintLen(pn)+pn)
		dst = append(dst, byte(reason))
		return props.appendTo(dst, t, pn)
	case reason != ReasonSuccess:
		return append(dst, byte(t)<<4, 1, byte(reason))
	}
	return append(dst, byte(t)<<4, 0)
}

// varintLen is the size of n in the variable byte integer encoding (§1.5.5).
func varintLen(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	}
	return 4
}
