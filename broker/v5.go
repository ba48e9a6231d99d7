package broker

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/session"
)

// MQTT 5.0 (config mqtt5): what a level-5 connection adds to the 3.1.1 paths. The session machine
// does the deliveries and keeps the session's MQTT 5 state (session.Link, expiry, will delay,
// subscription options); this file holds the connection's side: CONNACK's properties, reason
// codes and their counters, Receive Maximum, the DISCONNECT the server sends, and the topic
// aliases both ways. Enhanced authentication is in enhauth.go.

// level5 reports whether the connection speaks MQTT 5.
func (c *conn) level5() bool { return c.level == codec.Level5 }

// AppendPublish implements session.Outlet: a QoS 0 PUBLISH encoded for this connection, false
// (nothing appended) when it exceeds the client's Maximum Packet Size [MQTT-3.1.2-25]. A client
// that takes topic aliases is never staged (stagePublish): its packets are encoded here under
// c.omu as they go into obuf, so that the alias is chosen in the order they reach the wire.
func (c *conn) AppendPublish(dst []byte, p *codec.Publish) ([]byte, bool) {
	if b := c.bridge; b != nil {
		q := *p
		if q.Topic = b.remoteTopic(p.Topic); q.Topic == "" {
			return dst, false
		}
		p = &q
	}
	if !c.level5() {
		return p.Append(dst), true
	}
	var alias uint16
	var known bool
	if c.aliasing() {
		// obuf goes out with the writer's next round.
		alias, known = c.lookupAlias(p.Topic, c.rounds+1)
		if alias != 0 {
			q := *p
			props := codec.Properties{}
			if p.Props != nil {
				props = *p.Props
			}
			props.TopicAlias = alias
			q.Props = &props
			if known {
				q.Topic = "" // [MQTT-3.3.2-12]
			}
			p = &q
		}
	}
	before := len(dst)
	dst = p.AppendLevel(dst, codec.Level5)
	if lim := c.link.MaxPacketSize; lim > 0 && len(dst)-before > int(lim) {
		c.srv.stats.drop(DropTooLarge)
		return dst[:before], false
	}
	if alias != 0 && !known {
		c.definedAlias(p.Topic, c.rounds+1)
	}
	return dst, true
}

// aliasing reports whether the broker assigns topic aliases on this connection: the client
// allows some [MQTT-3.1.2-26].
func (c *conn) aliasing() bool { return c.link.TopicAliasMax > 0 }

// aliasDef is a topic alias the broker assigned on this connection, and the writer round from
// which the packet that defines it is on the wire (neverDefined while none has been written).
type aliasDef struct {
	alias uint16
	round uint64
}

const neverDefined = ^uint64(0)

// lookupAlias returns the alias of topic for a packet that goes out in writer round round,
// reserving a new one while the client allows more; known: it may stand alone. c.omu is held.
func (c *conn) lookupAlias(topic string, round uint64) (alias uint16, known bool) {
	if d, ok := c.aliasesOut[topic]; ok {
		return d.alias, d.round <= round
	}
	if len(c.aliasesOut) >= int(c.link.TopicAliasMax) {
		return 0, false
	}
	if c.aliasesOut == nil {
		c.aliasesOut = make(map[string]aliasDef)
	}
	alias = uint16(len(c.aliasesOut) + 1)
	c.aliasesOut[topic] = aliasDef{alias: alias, round: neverDefined}
	return alias, false
}

// definedAlias records that a packet of writer round round defines topic's alias. c.omu is held.
func (c *conn) definedAlias(topic string, round uint64) {
	if d := c.aliasesOut[topic]; round < d.round {
		d.round = round
		c.aliasesOut[topic] = d
	}
}

// roundAliases is the connection's alias table as one writer round's Fill sees it.
type roundAliases struct {
	c     *conn
	round uint64
}

func (a roundAliases) Lookup(topic string) (uint16, bool) {
	a.c.omu.Lock()
	defer a.c.omu.Unlock()
	return a.c.lookupAlias(topic, a.round)
}

func (a roundAliases) Defined(topic string) {
	a.c.omu.Lock()
	defer a.c.omu.Unlock()
	a.c.definedAlias(topic, a.round)
}

// linkOf is what a CONNECT sets for the broker's deliveries to its client.
func linkOf(cp *codec.Connect) session.Link {
	l := session.Link{Level: cp.ProtocolLevel, Bridge: cp.Bridge}
	if cp.ProtocolLevel == codec.Level5 && cp.Props != nil {
		l.ReceiveMaximum = cp.Props.ReceiveMaximum
		l.MaxPacketSize = cp.Props.MaximumPacketSize
		l.TopicAliasMax = cp.Props.TopicAliasMaximum
	}
	return l
}

// connackProps are a level-5 CONNACK's properties: the broker's limits and what it does not
// support yet, so that clients do not use it (§3.2.2.3).
func (s *Server) connackProps(assignedID string) *codec.Properties {
	p := &codec.Properties{
		AssignedClientID:  assignedID,
		TopicAliasMaximum: uint16(s.cfg.Limits.TopicAliasMaximum),
	}
	if rm := s.cfg.Limits.ReceiveMaximum; rm < 65535 {
		p.ReceiveMaximum = uint16(rm) // absent: 65,535 (§3.2.2.3.3)
	}
	if lim := s.cfg.Limits.MaxPacketSize; lim < 268435455 {
		p.MaximumPacketSize = uint32(lim)
	}
	return p
}

// reasonOfConnack maps a 3.x CONNACK return code to its level-5 reason code.
func reasonOfConnack(code codec.ConnackCode) codec.ReasonCode {
	switch code {
	case codec.RefusedProtocolVersion:
		return codec.ReasonUnsupportedProtocolVersion
	case codec.RefusedIdentifierRejected:
		return codec.ReasonClientIdentifierNotValid
	case codec.RefusedServerUnavailable:
		return codec.ReasonServerUnavailable
	case codec.RefusedBadUsernameOrPassword:
		return codec.ReasonBadUserNameOrPassword
	case codec.RefusedNotAuthorized:
		return codec.ReasonNotAuthorized
	}
	return codec.ReasonUnspecifiedError
}

// reasonOfReadError is the reason a level-5 client is told when the broker closes its connection
// because of what it read: a malformed packet, a protocol error, silence past the keep-alive.
func reasonOfReadError(err error) (codec.ReasonCode, bool) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return codec.ReasonKeepAliveTimeout, true
	}
	if errors.Is(err, codec.ErrPacketTooLarge) {
		return codec.ReasonPacketTooLarge, true
	}
	return codec.ReasonOf(err)
}

// reasonOfHandleError is the reason a level-5 client is told when handling its packet ended the
// connection.
func reasonOfHandleError(err error) codec.ReasonCode {
	switch {
	case errors.Is(err, errTopicAlias):
		return codec.ReasonTopicAliasInvalid
	case errors.Is(err, errProtocol):
		return codec.ReasonProtocolError
	case errors.Is(err, errReceiveMaximum):
		return codec.ReasonReceiveMaximumExceeded
	case errors.Is(err, errNotAuthorized):
		return codec.ReasonNotAuthorized
	}
	return codec.ReasonUnspecifiedError
}

// errReceiveMaximum: the client sent more QoS 1/2 PUBLISH packets than the broker's Receive
// Maximum without waiting for their acknowledgements [MQTT-3.3.4-8].
var errReceiveMaximum = errors.New("receive maximum exceeded")

// withinReceiveMaximum counts a QoS 1/2 PUBLISH against the broker's Receive Maximum and reports
// whether it fits. A QoS 2 retransmission of a message the session already holds is not counted:
// its PUBLISH may date from an earlier connection, so counting it could only punish a client
// that did nothing wrong, and sent (below) never lets the count go negative either.
func (c *conn) withinReceiveMaximum(p *codec.Publish) bool {
	if p.QoS == 2 && p.Dup {
		m := c.sess.lock()
		known := m.HasInbound(p.PacketID)
		c.sess.unlock()
		if known {
			return true
		}
	}
	return c.unacked.Add(1) <= int32(c.srv.cfg.Limits.ReceiveMaximum)
}

// sent accounts for a packet the broker sends a level-5 client: its reason codes are counted, and
// an acknowledgement that finishes a PUBLISH of the client's (PUBACK, PUBCOMP, or a PUBREC that
// refuses it, §4.9) gives its place back under the Receive Maximum.
func (c *conn) sent(p codec.Packet) {
	st := &c.srv.stats
	finished := false
	switch a := p.(type) {
	case *codec.Puback:
		st.reason(codec.TypePuback, a.Reason)
		finished = true
	case *codec.Pubcomp:
		st.reason(codec.TypePubcomp, a.Reason)
		finished = true
	case *codec.Pubrec:
		st.reason(codec.TypePubrec, a.Reason)
		finished = a.Reason >= 0x80
	case *codec.Pubrel:
		st.reason(codec.TypePubrel, a.Reason)
	case *codec.Suback:
		for _, code := range a.ReturnCodes {
			if code >= 0x80 {
				st.reason(codec.TypeSuback, codec.ReasonCode(code))
			}
		}
	case *codec.Unsuback:
		for _, code := range a.Reasons {
			st.reason(codec.TypeUnsuback, code)
		}
	case *codec.Disconnect:
		st.reason(codec.TypeDisconnect, a.Reason)
	case *codec.Connack:
		st.reason(codec.TypeConnack, a.Reason)
	case *codec.Auth:
		st.reason(codec.TypeAuth, a.Reason)
	}
	for finished {
		n := c.unacked.Load()
		if n <= 0 || c.unacked.CompareAndSwap(n, n-1) {
			return
		}
	}
}

// errProtocol marks a packet that breaks the protocol's rules where it arrived.
var errProtocol = errors.New("protocol error")

// farewell sends a level-5 client a DISCONNECT saying why the server closes the connection
// [MQTT-4.13.2-1], after what is already queued for it; the caller then closes the connection.
// Nothing is queued after it.
func (c *conn) farewell(reason codec.ReasonCode, why string) {
	if !c.connected5.Load() {
		return
	}
	c.omu.Lock()
	if c.oclosed {
		c.omu.Unlock()
		return
	}
	c.oclosed = true // the writer stops after its current write
	c.releaseWaitersLocked()
	c.omu.Unlock()
	c.writers.Wait()
	c.omu.Lock()
	d := &codec.Disconnect{Reason: reason}
	if why != "" {
		d.Props = &codec.Properties{ReasonString: why} // DISCONNECT may carry one whatever the client asked
	}
	c.sent(d)
	buf := d.AppendLevel(c.obuf, codec.Level5)
	c.obuf = nil
	c.omu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.nc.Write(buf)
}

// errTopicAlias closes a connection that used a topic alias above the maximum: DISCONNECT 0x94.
var errTopicAlias = errors.New("topic alias above limits.topic_alias_maximum [MQTT-3.3.2-9]")

// resolveAlias applies a level-5 PUBLISH's Topic Alias: with a topic it sets the alias, without
// one it names the topic set before [MQTT-3.3.2-12].
func (c *conn) resolveAlias(p *codec.Publish) error {
	if p.Props == nil || p.Props.TopicAlias == 0 {
		return nil
	}
	a := p.Props.TopicAlias
	if int(a) > c.srv.cfg.Limits.TopicAliasMaximum {
		return errTopicAlias
	}
	if p.Topic != "" {
		if c.aliasesIn == nil {
			c.aliasesIn = make(map[uint16]string)
		}
		c.aliasesIn[a] = p.Topic
		return nil
	}
	topic, ok := c.aliasesIn[a]
	if !ok {
		return fmt.Errorf("%w: topic alias %d used before it was set (§3.3.2.3.4)", errProtocol, a)
	}
	p.Topic = topic
	return nil
}

// forwardProps returns what of a PUBLISH's properties travels with the message to subscribers,
// or nil: the Topic Alias and Subscription Identifiers are the connection's; the Message Expiry
// Interval only when the copy goes out at once (withExpiry), since a queued message keeps it as
// message.Message.Expires.
func forwardProps(p *codec.Properties, withExpiry bool) *codec.Properties {
	expiry := withExpiry && p != nil && p.Has(codec.PropMessageExpiryInterval)
	if p == nil || (!expiry && p.PayloadFormat == 0 && p.ContentType == "" && p.ResponseTopic == "" && p.CorrelationData == nil && len(p.User) == 0) {
		return nil
	}
	out := &codec.Properties{PayloadFormat: p.PayloadFormat, ContentType: p.ContentType, ResponseTopic: p.ResponseTopic,
		CorrelationData: p.CorrelationData, User: p.User}
	if expiry {
		out.MessageExpiry = p.MessageExpiry
		out.Include(codec.PropMessageExpiryInterval)
	}
	return out
}

// publishOf is the QoS 0 PUBLISH of m sent at now, with its properties and what remains of its
// expiry interval.
func publishOf(m *message.Message, now time.Time) codec.Publish {
	p := codec.Publish{Topic: m.Topic, Payload: m.Payload, Props: m.Props}
	if !m.Expires.IsZero() {
		props := m.PropsAt(now)
		p.Props = &props
	}
	return p
}

// ackFor is the acknowledgement of a QoS 1 or 2 p with reason (level 5 only; 3.x encodes none),
// and why as its Reason String if the client asked for problem information.
func (c *conn) ackFor(p *codec.Publish, reason codec.ReasonCode, why string) codec.Packet {
	props := c.problem(why)
	if p.QoS == 2 {
		return &codec.Pubrec{PacketID: p.PacketID, Reason: reason, Props: props}
	}
	return &codec.Puback{PacketID: p.PacketID, Reason: reason, Props: props}
}

// problem returns why as a Reason String for an acknowledgement, or nil when the client set
// Request Problem Information to 0: then only CONNACK, PUBLISH and DISCONNECT may carry one
// [MQTT-3.1.2-29].
func (c *conn) problem(why string) *codec.Properties {
	if c.noProblemInfo || why == "" {
		return nil
	}
	return &codec.Properties{ReasonString: why}
}

// wantsProblemInfo reports the Request Problem Information of a level-5 CONNECT: 1 unless it says
// 0 (§3.1.2.11.7).
func wantsProblemInfo(cp *codec.Connect) bool {
	return cp.Props == nil || !cp.Props.Has(codec.PropRequestProblemInformation) || cp.Props.RequestProblemInfo
}

// expiresAt is when a PUBLISH received now expires, zero for never (the clock is read only then).
func expiresAt(p *codec.Publish) time.Time {
	if p.Props == nil || !p.Props.Has(codec.PropMessageExpiryInterval) {
		return time.Time{}
	}
	return time.Now().Add(time.Duration(p.Props.MessageExpiry) * time.Second)
}
