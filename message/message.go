// Package message holds what the broker keeps of a routed PUBLISH and of its place in a session's
// queue. The session machine works on these and the store records them; neither depends on the
// other for them.
package message

import (
	"strconv"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// Message is a PUBLISH as the broker keeps it: routed, queued, retained, stored. The store's
// Batch methods copy Topic and Payload, so the caller may reuse the buffers once such a method
// returns; Messages the store returns own their memory.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte // the published QoS
	Retain  bool // sent with RETAIN set: a retained message sent for a new subscription
	// RetainPublished: the publisher set RETAIN. A live copy carries it only to subscriptions with
	// Retain As Published [MQTT-3.3.1-12]; 3.x and the others get it cleared [MQTT-3.3.1-9].
	RetainPublished bool

	// MQTT 5: the publisher's properties that travel with the message to its subscribers (Payload
	// Format Indicator, Content Type, Response Topic, Correlation Data, User Properties), nil
	// when it has none; shared by every copy, never changed.
	Props *codec.Properties
	// Expires is when the Message Expiry Interval the publisher set runs out; zero: never.
	Expires time.Time
	// Arrived is when the broker received the PUBLISH (or published the will), kept on disk with
	// a queued copy so that a queue's age outlives a restart; zero: not known (a message stored
	// by an older version, a retained message).
	Arrived time.Time
}

// PropsAt returns the properties that m goes out with at t: a copy of the publisher's, and what
// remains of its Message Expiry Interval, in whole seconds rounded up [MQTT-3.3.2-6].
func (m *Message) PropsAt(t time.Time) codec.Properties {
	var p codec.Properties
	if m.Props != nil {
		p = *m.Props
	}
	if !m.Expires.IsZero() {
		p.MessageExpiry = uint32(max(0, (m.Expires.Sub(t)+time.Second-1)/time.Second))
		p.Include(codec.PropMessageExpiryInterval)
	}
	return p
}

// ExpiredAt reports whether the message expired at t.
func (m *Message) ExpiredAt(t time.Time) bool {
	return !m.Expires.IsZero() && !t.Before(m.Expires)
}

// State is the outbound delivery state of a queue entry.
type State uint8

const (
	// Queued: not sent yet.
	Queued State = iota
	// Sent: PUBLISH sent with PacketID, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
	Sent
	// Released: QoS 2, PUBREC received and PUBREL sent, waiting for PUBCOMP.
	Released
)

func (q State) String() string {
	switch q {
	case Queued:
		return "queued"
	case Sent:
		return "sent"
	case Released:
		return "released"
	}
	return "State(" + strconv.Itoa(int(q)) + ")"
}

// Entry is one message in a session's queue.
type Entry struct {
	Seq      uint64 // assigned by the store in commit order; 0 for a clean session's entry
	QoS      byte   // delivery QoS for this session (min of published and granted)
	State    State
	PacketID uint16 // when State != Queued
	Message  *Message

	// Group is, for an entry of a shared subscription group's queue handed to a member session,
	// the group queue's store id: the entry is the group's, not the session's. Memory only.
	Group string

	// Holder is, for an entry of a shared subscription group's queue, the member it is in flight
	// to; empty otherwise. The store keeps it only once the member has answered PUBREC, when the
	// message stays with that member (exactly once within the group).
	Holder string
}

// SubOptions are what a session asked for with one topic filter: the maximum QoS granted and, at
// MQTT 5, the subscription options and identifier (§3.8.3.1). Retain Handling is not kept: it
// matters only while the SUBSCRIBE is handled.
type SubOptions struct {
	QoS               byte
	NoLocal           bool   // not sent messages this client published [MQTT-3.8.3-3]
	RetainAsPublished bool   // RETAIN kept as published on delivery [MQTT-3.3.1-12]
	ID                uint32 // Subscription Identifier, sent with matching messages; 0: none
}
