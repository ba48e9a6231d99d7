package codec

import "encoding/binary"

// Encoding at level 5. Each packet type's AppendLevel sends levels below 5 to
// Append, so that 3.x encoding stays exactly what it was; the level-5 forms
// are below. Like Append they write what they are given, except that
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

// AppendLevel implements Packet. At level 5 the properties follow the packet
// identifier (§3.3.2).
func (p *Publish) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return p.Append(dst)
	}
	flags := (p.QoS & 3) << publishQoSShift
	if p.Dup {
		flags |= publishDup
	}
	if p.Retain {
		flags |= publishRetain
	}
	pn := p.Props.size(TypePublish)
	n := 2 + len(p.Topic) + varintLen(pn) + pn + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	dst = appendFixedHeader(dst, TypePublish, flags, n)
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	}
	dst = p.Props.appendTo(dst, TypePublish, pn)
	return append(dst, p.Payload...)
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
	if level < Level5 {
		return s.Append(dst)
	}
	pn := s.Props.size(TypeSubscribe)
	n := 2 + varintLen(pn) + pn
	for _, sub := range s.Subscriptions {
		n += 2 + len(sub.Filter) + 1
	}
	dst = appendFixedHeader(dst, TypeSubscribe, flagsRequired, n)
	dst = binary.BigEndian.AppendUint16(dst, s.PacketID)
	dst = s.Props.appendTo(dst, TypeSubscribe, pn)
	for _, sub := range s.Subscriptions {
		dst = appendString(dst, sub.Filter)
		dst = append(dst, sub.options())
	}
	return dst
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

// AppendLevel implements Packet.
func (s *Suback) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return s.Append(dst)
	}
	pn := s.Props.size(TypeSuback)
	dst = appendFixedHeader(dst, TypeSuback, 0, 2+varintLen(pn)+pn+len(s.ReturnCodes))
	dst = binary.BigEndian.AppendUint16(dst, s.PacketID)
	dst = s.Props.appendTo(dst, TypeSuback, pn)
	return append(dst, s.ReturnCodes...)
}

// AppendLevel implements Packet.
func (u *Unsubscribe) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return u.Append(dst)
	}
	pn := u.Props.size(TypeUnsubscribe)
	n := 2 + varintLen(pn) + pn
	for _, f := range u.Filters {
		n += 2 + len(f)
	}
	dst = appendFixedHeader(dst, TypeUnsubscribe, flagsRequired, n)
	dst = binary.BigEndian.AppendUint16(dst, u.PacketID)
	dst = u.Props.appendTo(dst, TypeUnsubscribe, pn)
	for _, f := range u.Filters {
		dst = appendString(dst, f)
	}
	return dst
}

// AppendLevel implements Packet.
func (u *Unsuback) AppendLevel(dst []byte, level byte) []byte {
	if level < Level5 {
		return u.Append(dst)
	}
	pn := u.Props.size(TypeUnsuback)
	dst = appendFixedHeader(dst, TypeUnsuback, 0, 2+varintLen(pn)+pn+len(u.Reasons))
	dst = binary.BigEndian.AppendUint16(dst, u.PacketID)
	dst = u.Props.appendTo(dst, TypeUnsuback, pn)
	for _, r := range u.Reasons {
		dst = append(dst, byte(r))
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

// appendConnect5 writes a level-5 CONNECT: properties after the keep alive,
// will properties before the will topic (§3.1.2.11, §3.1.3.2).
func (c *Connect) appendConnect5(dst []byte) []byte {
	flags := byte(0)
	pn := c.Props.size(TypeConnect)
	n := 2 + len(c.ProtocolName) + 1 + 1 + 2 + varintLen(pn) + pn + 2 + len(c.ClientID)
	if c.CleanSession {
		flags |= connectCleanSession
	}
	wn := 0
	if w := c.Will; w != nil {
		flags |= connectWill | (w.QoS&3)<<connectWillQoSShift
		if w.Retain {
			flags |= connectWillRetain
		}
		wn = w.Props.size(willProps)
		n += varintLen(wn) + wn + 2 + len(w.Topic) + 2 + len(w.Payload)
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
	dst = append(dst, c.ProtocolLevel, flags)
	dst = binary.BigEndian.AppendUint16(dst, c.KeepAlive)
	dst = c.Props.appendTo(dst, TypeConnect, pn)
	dst = appendString(dst, c.ClientID)
	if w := c.Will; w != nil {
		dst = w.Props.appendTo(dst, willProps, wn)
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
