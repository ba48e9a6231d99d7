package broker

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/inventory"
	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/session"
)

// What the operator's actions on one session can answer besides success.
var (
	ErrNoSession    = errors.New("no such session")
	ErrNotConnected = errors.New("the session has no connection")
	ErrNotClient    = errors.New("not a client's session: a shared subscription group's queue ends with its last member, a bridge's with its [[bridge]] entry")
)

// liveConn is what the operator sees of a connection.
type liveConn struct{ listener, remote string }

func (c *conn) live() liveConn { return liveConn{c.listener, c.nc.RemoteAddr().String()} }

// liveConns returns the connections holding a session, by client id.
func (s *Server) liveConns() map[string]liveConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]liveConn, len(s.owners))
	for id, c := range s.owners {
		out[id] = c.live()
	}
	return out
}

// liveConnOf returns the connection holding id's session, if any.
func (s *Server) liveConnOf(id string) (lc liveConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.owners[id]; c != nil {
		lc = c.live()
	}
	return lc
}

// Sessions returns a row for every session and shared subscription group, from memory.
func (s *Server) Sessions() []inventory.Session {
	conns := s.liveConns()
	now := time.Now()
	all := s.sessions.snapshot()
	rows := make([]inventory.Session, 0, len(all))
	for _, sess := range all {
		m := sess.lock()
		rows = append(rows, sessionRow(sess, m, conns[sess.ID], now))
		sess.unlock()
	}
	return append(rows, s.groupRows()...)
}

// sessionRow is the row of a session; the caller holds its lock.
func sessionRow(sess *sessionHandle, m *session.Session, lc liveConn, now time.Time) inventory.Session {
	rec := m.Record()
	row := inventory.Session{
		ClientID:      sess.ID,
		Kind:          inventory.KindClient,
		Username:      rec.Owner.Username,
		Online:        m.Online(),
		Protocol:      inventory.ProtocolName(rec.ProtocolLevel),
		Persistent:    sess.Persistent,
		Subscriptions: m.NumSubscriptions(),
		Inflight:      m.Inflight(),
	}
	if sess.bridge != nil {
		row.Kind = inventory.KindBridge
	}
	row.Queued, row.QueuedBytes = m.Queued()
	if t := m.OldestQueued(); !t.IsZero() {
		row.OldestQueued = &t
	}
	seen := now
	if row.Online {
		row.Listener, row.Remote = lc.listener, lc.remote
	} else if seen = m.OfflineSince(); seen.IsZero() {
		return row
	}
	row.LastSeen = &seen
	return row
}

// groupRows returns a row for every shared subscription group's queue: its members are its
// subscriptions, and it is online while one of them is.
func (s *Server) groupRows() []inventory.Session {
	var rows []inventory.Session
	for _, g := range s.Groups() {
		rows = append(rows, inventory.Session{
			ClientID:      session.GroupID(g.Name, g.Filter),
			Kind:          inventory.KindShared,
			Online:        g.Online > 0,
			Persistent:    true,
			Subscriptions: g.Members,
			Queued:        g.Queued,
			Inflight:      g.Inflight,
		})
	}
	return rows
}

// Session returns one session with its subscriptions, the first head messages of its queue
// (from memory, and from disk for a persistent session's entries memory does not hold) and its
// will.
func (s *Server) Session(id string, head int) (inventory.Detail, error) {
	if _, _, ok := session.ParseGroupID(id); ok {
		for _, row := range s.groupRows() {
			if row.ClientID == id {
				d := inventory.Detail{Session: row, SubscriptionList: []inventory.Subscription{}}
				entries, err := s.store.ReadQueue(id, 0, head)
				d.QueueHead = queueRows(entries)
				return d, err
			}
		}
		return inventory.Detail{}, ErrNoSession
	}
	sess := s.sessions.get(id)
	if sess == nil {
		return inventory.Detail{}, ErrNoSession
	}
	lc := s.liveConnOf(id)
	m := sess.lock()
	d := inventory.Detail{Session: sessionRow(sess, m, lc, time.Now())}
	for filter, o := range m.Subscriptions() {
		d.SubscriptionList = append(d.SubscriptionList, inventory.Subscription{
			Filter: filter, QoS: o.QoS, NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished, ID: o.ID,
		})
	}
	mem := m.Head(head)
	if w := m.Will(); w != nil {
		d.Will = &persist.WillInfo{Topic: w.Topic, QoS: w.QoS, Retain: w.Retain, PayloadBytes: len(w.Payload)}
		if w.Props != nil {
			d.Will.Delay = w.Props.WillDelay
		}
	}
	if secs, set := m.Expiry(); set {
		d.ExpirySeconds = &secs
	}
	sess.unlock()
	slices.SortFunc(d.SubscriptionList, func(a, b inventory.Subscription) int { return strings.Compare(a.Filter, b.Filter) })
	if sess.Persistent && len(mem) < min(head, d.Queued) {
		disk, err := s.store.ReadQueue(id, 0, head)
		if err != nil {
			return d, err
		}
		mem = mergeHead(disk, mem, head)
	}
	d.QueueHead = queueRows(mem)
	return d, nil
}

// mergeHead takes the disk's entries in seq order, with memory's state for those it holds (a
// QoS 1 message in flight is not on disk as such).
func mergeHead(disk, mem []message.Entry, n int) []message.Entry {
	bySeq := make(map[uint64]message.Entry, len(mem))
	for _, e := range mem {
		bySeq[e.Seq] = e
	}
	out := disk[:0]
	for _, e := range disk {
		if m, ok := bySeq[e.Seq]; ok {
			e = m
		}
		out = append(out, e)
	}
	return out[:min(len(out), n)]
}

var stateNames = [...]string{message.Queued: "queued", message.Sent: "sent", message.Released: "released"}

func queueRows(entries []message.Entry) []inventory.QueueEntry {
	rows := make([]inventory.QueueEntry, 0, len(entries))
	for _, e := range entries {
		r := inventory.QueueEntry{Seq: e.Seq, Topic: e.Message.Topic, QoS: e.QoS, Bytes: len(e.Message.Payload), PacketID: e.PacketID}
		if int(e.State) < len(stateNames) {
			r.State = stateNames[e.State]
		}
		if t := e.Message.Arrived; !t.IsZero() {
			r.Arrived = &t
		}
		rows = append(rows, r)
	}
	return rows
}

// Disconnect closes the connection of a client's session, as the operator's action (MQTT 5:
// DISCONNECT with Administrative action), and returns once it is gone. The will is published
// as for any connection the server closes.
func (s *Server) Disconnect(ctx context.Context, id string) error {
	s.mu.Lock()
	c := s.owners[id]
	s.mu.Unlock()
	if c == nil {
		if s.sessions.get(id) == nil {
			return ErrNoSession
		}
		return ErrNotConnected
	}
	c.log.Info().Msg("closing: the operator disconnected the client")
	c.farewell(codec.ReasonAdministrativeAction, "disconnected by the operator")
	c.close()
	select {
	case <-c.ended:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// DeleteSession ends a client's session as the operator's action: its connection, if any, is
// closed first, then its subscriptions, queue and will leave the store, durably before it
// returns. A will still pending (MQTT 5 Will Delay Interval) is published now, as when a session
// expires [MQTT-3.1.3-9].
func (s *Server) DeleteSession(ctx context.Context, id string) error {
	if inventory.KindOf(id) != inventory.KindClient {
		return ErrNotClient
	}
	disconnected := false
	for {
		s.mu.Lock()
		c := s.owners[id]
		if c == nil {
			break // with s.mu held: no client can connect now
		}
		s.mu.Unlock()
		if err := s.Disconnect(ctx, id); err != nil && !errors.Is(err, ErrNotConnected) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err // the client keeps coming back faster than we can close it
		}
		disconnected = true
	}
	sess := s.sessions.get(id)
	if sess == nil {
		s.mu.Unlock()
		if disconnected {
			return nil // a clean session, which ended with its connection
		}
		return ErrNoSession
	}
	m := sess.lock()
	will, owner := m.WillDue(time.Now(), true), readerOf(m)
	sess.unlock()
	var d delivery
	s.discardSession(sess, &d.batch)
	s.mu.Unlock()
	log := s.log.With().Str("client_id", id).Logger()
	log.Info().Msg("session deleted by the operator")
	s.publishWill(&d, will, owner, log)
	return s.store.Err()
}

// RetainedUnder sums the retained messages at and under prefix ("" for all but $ topics), by
// the next topic level.
func (s *Server) RetainedUnder(prefix string) inventory.Retained {
	filter := "#"
	if prefix != "" {
		filter = prefix + "/#"
	}
	var sum inventory.RetainedSum
	for _, m := range s.retained.Match(filter, nil) {
		sum.Add(m.Topic, len(m.Payload))
	}
	return sum.Under(prefix)
}

// ConnectionCount is the number of connections of one listener at one protocol level.
type ConnectionCount struct {
	Listener string `json:"listener"`
	Protocol string `json:"protocol"` // "" for connections that have not finished CONNECT
	Count    int    `json:"count"`
}

// Connections counts the open connections by listener and protocol level.
func (s *Server) Connections() []ConnectionCount {
	type key struct{ listener, protocol string }
	counts := make(map[key]int)
	s.mu.Lock()
	// A connection's level is known once it holds a client id (claim, under s.mu).
	held := make(map[*conn]bool, len(s.owners))
	for _, c := range s.owners {
		held[c] = true
		counts[key{c.listener, inventory.ProtocolName(c.level)}]++
	}
	for c := range s.conns {
		if !held[c] {
			counts[key{c.listener, ""}]++
		}
	}
	s.mu.Unlock()
	out := make([]ConnectionCount, 0, len(counts))
	for k, n := range counts {
		out = append(out, ConnectionCount{k.listener, k.protocol, n})
	}
	slices.SortFunc(out, func(a, b ConnectionCount) int {
		return cmp.Or(strings.Compare(a.Listener, b.Listener), strings.Compare(a.Protocol, b.Protocol))
	})
	return out
}

// Version is what the broker says it is ($SYS/broker/version).
func (s *Server) Version() string { return s.version }
