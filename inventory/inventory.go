// Package inventory is what a broker holds, one row per session, as operators see it: the admin
// API and its console, and holdfast inspect. It owns the rows' JSON shape and the filters, sort
// orders and paging that the console and the command line share, so that both answer the same
// question the same way.
package inventory

import (
	"time"

	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/router"
	"github.com/holdfast/holdfast/session"
)

// Kinds of session.
const (
	KindClient = "client"
	KindShared = "shared" // a shared subscription group's queue
	KindBridge = "bridge" // one of this broker's bridges
)

// Session is one session's row.
type Session struct {
	ClientID   string `json:"client_id"`
	Kind       string `json:"kind"`
	Username   string `json:"username,omitempty"`
	Online     bool   `json:"online"`
	Protocol   string `json:"protocol"` // "3.1", "3.1.1", "5"; "" when not known
	Persistent bool   `json:"persistent"`
	Listener   string `json:"listener,omitempty"` // online: the listener it came through
	Remote     string `json:"remote,omitempty"`   // online: the client's address

	Subscriptions int        `json:"subscriptions"`
	Queued        int        `json:"queued"` // unacknowledged messages, in flight included
	QueuedBytes   int64      `json:"queued_bytes"`
	OldestQueued  *time.Time `json:"oldest_queued,omitempty"` // when the oldest queued message arrived
	Inflight      int        `json:"inflight"`
	// LastSeen is now for an online session, else when its last connection went away.
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// Detail is one session with what it holds.
type Detail struct {
	Session
	SubscriptionList []Subscription    `json:"subscriptions_list"`
	QueueHead        []QueueEntry      `json:"queue_head"`
	Will             *persist.WillInfo `json:"will"`
	ExpirySeconds    *uint32           `json:"expiry_seconds,omitempty"`
}

// Subscription is one of a session's subscriptions.
type Subscription = persist.SubscriptionInfo

// QueueEntry is one queued message, without its payload.
type QueueEntry struct {
	Seq      uint64     `json:"seq"`
	Topic    string     `json:"topic"`
	QoS      byte       `json:"qos"`
	Bytes    int        `json:"bytes"`
	Arrived  *time.Time `json:"arrived,omitempty"`
	State    string     `json:"state"` // queued, sent, released
	PacketID uint16     `json:"packet_id"`
}

// ProtocolName names an MQTT protocol level as people know it; "" for 0 (not known).
func ProtocolName(level byte) string {
	switch level {
	case 3:
		return "3.1"
	case 4:
		return "3.1.1"
	case 5:
		return "5"
	}
	return ""
}

// KindOf tells a session's kind from its id.
func KindOf(id string) string {
	if _, _, ok := session.ParseGroupID(id); ok {
		return KindShared
	}
	if len(id) > 0 && id[0] == 0 {
		return KindBridge
	}
	return KindClient
}

// DisplayID is a session's id as people read it: a shared group's queue by its subscription.
func DisplayID(id string) string {
	if name, filter, ok := session.ParseGroupID(id); ok {
		return router.SharePrefix + name + "/" + filter
	}
	return id
}

// FromStore is the row of a session as a stopped broker's store holds it.
func FromStore(si persist.SessionInfo) Session {
	row := Session{
		ClientID:      si.ClientID,
		Kind:          KindOf(si.ClientID),
		Username:      si.Username,
		Online:        si.Connected,
		Protocol:      ProtocolName(si.ProtocolLevel),
		Persistent:    true,
		Subscriptions: len(si.Subscriptions),
		Queued:        si.QueueDepth,
		QueuedBytes:   si.QueueBytes,
		Inflight:      si.Inflight,
		OldestQueued:  si.OldestQueued,
		LastSeen:      si.DisconnectedAt,
	}
	return row
}
