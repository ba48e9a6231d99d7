package persist

import (
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/message"
)

// SessionRecord is the 0x01 record of a persistent session.
type SessionRecord struct {
	ProtocolLevel  byte
	DisconnectedAt time.Time // zero while connected

	// Who owns the session, so that after a restart another user still cannot take it over.
	HasOwner  bool
	Username  string
	Anonymous bool

	// The MQTT 5 Session Expiry Interval in seconds (0xFFFFFFFF: never), when HasSessionExpiry.
	// Without it (a 3.x session, or a record of format 1) the broker's configured limit applies.
	HasSessionExpiry bool
	SessionExpiry    uint32
}

// Subscription is a persistent session's subscription (0x02): its filter and what was asked for
// with it. A subscription of format 1 comes back with its QoS and no MQTT 5 options.
type Subscription struct {
	Filter string
	SubOptions
}

// SubOptions, Message, QueueState and QueueEntry are the broker's own (package message): persist stores them
// as they are; QueueState's values have their 0x05 records (none for Queued).
type (
	SubOptions = message.SubOptions
	Message    = message.Message
	QueueState = message.State
	QueueEntry = message.Entry
)

const (
	Queued   = message.Queued
	Sent     = message.Sent
	Released = message.Released
)

// Target is one persistent session a message is queued for.
type Target struct {
	ClientID string
	QoS      byte // delivery QoS
}

// State is what Recover reads for the broker to rebuild at start.
type State struct {
	Sessions []SessionState // sorted by client id
	Retained []Message      // sorted by topic

	// Bound, from RecoverSessions (0 from Recover), is the sequence counter at Open: every
	// queue entry on disk then has a lower seq, every later one this or a higher.
	Bound uint64
}

// SessionState is one session's recovered state.
type SessionState struct {
	ClientID      string
	Record        SessionRecord
	Subscriptions []Subscription // sorted by filter
	QueuedCount   int            // entries in 0x04 for this session
	QueuedBytes   int64          // sum of their payload sizes
	Inflight      int            // of them sent and not acknowledged: in-flight states (0x05)
	LastSeq       uint64         // highest seq queued for it (0 if none)
	OldestQueued  time.Time      // when the first entry of its queue arrived (zero: none, or not known)
	InboundQoS2   []uint16       // sorted
	Will          *codec.Will    // stored by PutWill; nil: none

	// Uncounted (RecoverSessions): the queue is not counted yet; CountQueues will say what
	// it holds, QueuedCount and QueuedBytes are 0 and LastSeq is State.Bound-1 meanwhile.
	Uncounted bool

	// Orphan is true when the store holds subscriptions, queue entries,
	// inbound packet ids or a will for this client but no session record (0x01).
	// persist does not create queue entries for such a client (Enqueue skips
	// targets without a record, so a publish racing a DeleteSession leaves
	// nothing), but subscriptions and inbound packet ids are blind writes a
	// session layer can submit after the DeleteSession, and a store written
	// before that rule, or restored from an incremental backup that missed a
	// delete, can hold any of them. Recover neither drops the data nor
	// refuses to start; it reports the client with Orphan set and a zero
	// Record, logs a warning, and lets the session layer decide (typically
	// DeleteSession).
	Orphan bool
}
