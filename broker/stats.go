package broker

import (
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// DropReason says why a message was not delivered to one subscriber.
type DropReason int

// Why messages are dropped.
const (
	DropQueueFull     DropReason = iota // the session held limits.max_queued_messages / max_queued_bytes
	DropSlow                            // QoS 0 for a subscriber that stopped reading
	DropOfflineQoS0                     // QoS 0 for an offline session (limits.queue_qos0_offline = false)
	DropNotAuthorized                   // the ACL refused the publish or the delivery
	DropTopicLevels                     // the topic has more levels than limits.max_topic_levels
	DropSysTopic                        // a client published to $SYS without an ACL grant
	DropRetainLimit                     // a retained message was delivered but not stored: limits.max_retained_*
	DropDiskLow                         // a publish that needed disk while free space was below store.min_free_bytes
	DropExpired                         // MQTT 5: its Message Expiry Interval ran out before it was sent
	DropTooLarge                        // MQTT 5: larger than the subscriber's Maximum Packet Size
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{"queue_full", "slow_subscriber", "offline_qos0", "not_authorized", "topic_levels", "sys_topic", "retain_limit", "disk_low", "expired", "too_large"}

func (r DropReason) String() string { return dropReasonNames[r] }

// RefuseReason says why a connection was refused.
type RefuseReason int

// Why connections are refused.
const (
	RefuseProtocolVersion RefuseReason = iota
	RefuseIdentifier
	RefuseServerUnavailable
	RefuseBadCredentials
	RefuseNotAuthorized
	RefuseMaxConnections
	RefusePendingAddress // limits.max_pending_connects_per_address: closed at accept
	RefuseEvictedPending // limits.max_pending_connects: the oldest socket without CONNECT, closed
	RefusePasswordQueue  // the password check queue was full: CONNACK 0x03
	numRefuseReasons
)

var refuseReasonNames = [numRefuseReasons]string{"protocol_version", "identifier_rejected", "server_unavailable", "bad_credentials", "not_authorized", "max_connections", "pending_per_address", "pending_evicted", "password_queue_full"}

func (r RefuseReason) String() string { return refuseReasonNames[r] }

// refuseReasonOf maps a CONNACK code to its reason.
func refuseReasonOf(code codec.ConnackCode) RefuseReason {
	switch code {
	case codec.RefusedProtocolVersion:
		return RefuseProtocolVersion
	case codec.RefusedIdentifierRejected:
		return RefuseIdentifier
	case codec.RefusedBadUsernameOrPassword:
		return RefuseBadCredentials
	case codec.RefusedNotAuthorized:
		return RefuseNotAuthorized
	default:
		return RefuseServerUnavailable
	}
}

// Stats are the broker's counters, updated atomically; metrics and $SYS read them.
type Stats struct {
	Started          time.Time
	RecoveryTime     time.Duration
	Connections      atomic.Int64 // currently open sockets
	ConnectionsTotal atomic.Int64
	Refused          [numRefuseReasons]atomic.Int64
	MessagesIn       [3]atomic.Int64 // PUBLISH received, by QoS
	BytesIn          [3]atomic.Int64 // their payload bytes
	MessagesOut      [3]atomic.Int64 // PUBLISH sent (redeliveries included), by delivery QoS
	BytesOut         [3]atomic.Int64 // their payload bytes
	WireBytesIn      atomic.Int64    // everything read from sockets
	WireBytesOut     atomic.Int64    // everything written to sockets
	Dropped          [numDropReasons]atomic.Int64
	// Reasons counts the MQTT 5 reason codes the broker sent, other than success, by packet type
	// and code: every refusal a level-5 client was told about.
	Reasons [codec.TypeAuth + 1][256]atomic.Int64
}

// reason counts a reason code sent in a packet of type t.
func (st *Stats) reason(t codec.Type, code codec.ReasonCode) {
	if code != codec.ReasonSuccess {
		st.Reasons[t][code].Add(1)
	}
}

func (st *Stats) drop(r DropReason) { st.Dropped[r].Add(1) }

// drops counts *n drops of reason r and resets *n.
func (st *Stats) drops(r DropReason, n *int) {
	if *n > 0 {
		st.Dropped[r].Add(int64(*n))
		*n = 0
	}
}

func (st *Stats) received(qos byte, payload int) {
	st.MessagesIn[qos].Add(1)
	st.BytesIn[qos].Add(int64(payload))
}

func (st *Stats) sent(qos byte, payload int) {
	st.MessagesOut[qos].Add(1)
	st.BytesOut[qos].Add(int64(payload))
}

// Gauges are the broker's current totals, computed on demand (a walk over the sessions).
type Gauges struct {
	ClientsConnected    int   // sessions with a connection
	ClientsDisconnected int   // persistent sessions without one
	Subscriptions       int   // (client, filter) pairs
	Retained            int   // retained messages
	QueuedMessages      int64 // unacknowledged messages over all sessions, in flight included
	QueuedBytes         int64
	Inflight            int64 // sent, awaiting acknowledgement
}

// Gauges computes the current totals.
func (s *Server) Gauges() Gauges {
	g := Gauges{Subscriptions: s.trie.Count(), Retained: s.retained.Len()}
	for _, sess := range s.sessions.snapshot() {
		m := sess.lock()
		if m.Online() {
			g.ClientsConnected++
		} else {
			g.ClientsDisconnected++
		}
		n, b := m.Queued()
		g.QueuedMessages += int64(n)
		g.QueuedBytes += b
		g.Inflight += int64(m.Inflight())
		sess.unlock()
	}
	return g
}

// Uptime is the time since the broker started serving.
func (s *Server) Uptime() time.Duration { return time.Since(s.stats.Started) }

// Live reports, from memory, whether the client of a session is connected and how many messages
// it has in flight (a connected client's QoS 1 in-flight state is not on disk). ok is false when
// there is no such session.
func (s *Server) Live(clientID string) (connected bool, inflight int, ok bool) {
	sess := s.sessions.get(clientID)
	if sess == nil {
		return false, 0, false
	}
	m := sess.lock()
	defer sess.unlock()
	return m.Online(), m.Inflight(), true
}
