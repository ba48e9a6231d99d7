// Package message holds what the broker keeps of a routed PUBLISH and of its place in a session's
// queue. The session machine works on these and the store records them; neither depends on the
// other for them.
package message

import "strconv"

// Message is a PUBLISH as the broker keeps it: routed, queued, retained, stored. The store's
// Batch methods copy Topic and Payload, so the caller may reuse the buffers once such a method
// returns; Messages the store returns own their memory.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte // the published QoS
	Retain  bool
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
}
