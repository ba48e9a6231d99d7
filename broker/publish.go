package broker

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/retain"
	"github.com/holdfast/holdfast/router"
	"github.com/holdfast/holdfast/session"
)

// delivery is one routed PUBLISH: what must be written before it is acknowledged, and who gets
// it once it is.
type delivery struct {
	msg        *persist.Message
	batch      persist.Batch    // queue entries for persistent sessions, retained update, inbound QoS 2 id
	durable    []*sessionHandle // persistent targets, handed the entry once applied, told once durable (commit order)
	durableQoS []byte
	applied    bool             // the durable targets hold their entries (set on persist's writer)
	memory     []*sessionHandle // clean-session targets at QoS 1/2, queued in memory after the commit
	memoryQoS  []byte
	outlets    []qos0Target   // online targets at QoS 0
	groups     []*groupHandle // shared groups that queue it, told in the commit callback
	groupQoS   []byte
	retain     *retain.Message // the retained store's update, applied when the batch is submitted

	// Room for the usual one persistent target, so that routing to it allocates nothing more
	// (route); a delivery is not copied once routed.
	oneDurable    [1]*sessionHandle
	oneDurableQoS [1]byte
}

// pubJob is a packet of one connection that completes after a commit: a routed PUBLISH, or a
// PUBREL or duplicate QoS 2 PUBLISH that must be answered in order behind earlier ones.
type pubJob struct {
	d          delivery
	ack        codec.Packet // PUBACK, PUBREC or PUBCOMP to send once done; nil for QoS 0
	puback     codec.Puback // ack's storage at QoS 1, in the job's allocation
	inboundPID uint16       // QoS 2: forgotten again if the commit fails, so the retry is routed
	ready      bool         // its commit has finished (under inOrder.jmu)
	err        error
}

// handlePublish routes an inbound PUBLISH. PUBACK/PUBREC go out only after every matching
// persistent session's queue entry is durable. Online persistent subscribers get a message
// published at QoS 0 or 1 as soon as its entry has its place in the queue, before it is durable:
// after a crash its publisher, not acknowledged, sends it again, and at least once allows the
// repeat. Everyone else gets it once it is durable, so that a crash can never deliver a QoS 2
// message whose publisher will send it again as new.
func (c *conn) handlePublish(p *codec.Publish) error {
	srv := c.srv
	srv.stats.received(p.QoS, len(p.Payload))
	if c.level5() {
		if err := c.resolveAlias(p); err != nil {
			return err
		}
		if p.QoS > 0 && !c.withinReceiveMaximum(p) {
			return fmt.Errorf("%w: more than %d QoS 1/2 PUBLISH packets unacknowledged", errReceiveMaximum, srv.cfg.Limits.ReceiveMaximum)
		}
	}
	if b := c.bridge; b != nil {
		local := b.localTopic(p.Topic)
		if local == "" {
			c.log.Warn().Str("topic", p.Topic).Msg("publish from the bridge's remote dropped: no in topic maps it")
			return c.acknowledgeOnly(p, codec.ReasonNoMatchingSubscribers, "no in topic of the bridge maps it")
		}
		p.Topic = local
	}
	if lim := srv.cfg.Limits.MaxTopicLevels; lim > 0 && topicLevels(p.Topic) > lim {
		// Acknowledged and dropped: the client is not punished for a topic the broker will not route.
		srv.stats.drop(DropTopicLevels)
		c.log.Debug().Str("topic", p.Topic).Msg("publish dropped: more levels than limits.max_topic_levels")
		return c.acknowledgeOnly(p, codec.ReasonTopicNameInvalid, "more topic levels than the broker routes (limits.max_topic_levels)")
	}
	srv.topicRates.count(p.Topic)
	if c.bridge == nil && !srv.canPublish(&c.ident, p.Topic) { // the operator configured what a bridge brings in
		// Acknowledged at its QoS and dropped, so the client has no reason to retry.
		if strings.HasPrefix(p.Topic, sysPrefix) {
			srv.stats.drop(DropSysTopic)
			srv.dropLog.Warn().Str("client_id", c.clientID).Str("topic", p.Topic).Msg("publish dropped: $SYS topics are the broker's (the ACL grants no write there)")
		} else {
			srv.stats.drop(DropNotAuthorized)
			c.log.Debug().Str("topic", p.Topic).Msg("publish dropped: not allowed by the ACL")
		}
		return c.acknowledgeOnly(p, codec.ReasonNotAuthorized, "the ACL does not let this client publish on the topic")
	}
	if p.QoS == 2 && !c.addInbound(p.PacketID) {
		// A retransmission of a message already routed: answer again, do not route twice
		// [MQTT-4.3.3-2].
		c.submit(&pubJob{ack: &codec.Pubrec{PacketID: p.PacketID}})
		return nil
	}
	if p.QoS == 0 && !p.Retain && c.pending.Load() == 0 && !srv.queueQoS0 {
		srv.fanOutQoS0(p, c.sess, c.stagePublish) // the fast path: nothing to store, nothing to wait for
		return nil
	}
	c.flushStaged() // staged QoS 0 messages go out before anything this publish causes
	j, err := c.accept(p)
	if j == nil {
		return err
	}
	c.awaitJobRoom()
	c.waitForSubscribers(&j.d)
	return nil
}

// accept routes p and starts its commit; it returns nil and why the connection must close (nil
// when it must not) if p is refused for lack of disk space. A retained p is routed and handed to
// the retained index under retainMu, so that a SUBSCRIBE that this routing's trie match missed
// finds it in the index (see sendRetained).
func (c *conn) accept(p *codec.Publish) (*pubJob, error) {
	srv := c.srv
	if p.Retain {
		srv.retainMu.Lock()
		defer srv.retainMu.Unlock()
	}
	j := &pubJob{}
	if why := srv.route(&j.d, p, c.clientID); why != "" && !c.retainRefused {
		c.retainRefused = true // once per connection: a client over its limit may keep trying
		c.log.Warn().Str("topic", p.Topic).Str("limit", why).Msg("retained message delivered but not stored: retained store limit reached")
	}
	switch p.QoS {
	case 1:
		j.puback.PacketID = p.PacketID
		j.ack = &j.puback // [MQTT-4.3.2-2]
	case 2:
		j.ack = &codec.Pubrec{PacketID: p.PacketID} // [MQTT-4.3.3-2]
		j.inboundPID = p.PacketID
		if c.sess.Persistent {
			j.d.batch.PutInbound(c.clientID, p.PacketID)
		}
	}
	if j.d.batch.Len() > 0 && srv.diskLow() {
		// Nothing that needs disk is taken while free space is low: a QoS 0 message is dropped,
		// a QoS 1 or 2 publisher is disconnected without an acknowledgement and sends it again
		// once it reconnects.
		j.d.abandon()
		if p.QoS == 2 {
			c.removeInbound(p.PacketID)
		}
		srv.stats.drop(DropDiskLow)
		if p.QoS == 0 {
			return nil, nil
		}
		if c.level5() {
			// MQTT 5 can say so: the publisher keeps its message and may try again later.
			c.start(&pubJob{ack: c.ackFor(p, codec.ReasonQuotaExceeded, "the broker's disk is nearly full: try again later")})
			return nil, nil
		}
		return nil, errDiskLow
	}
	c.start(j)
	return j, nil
}

// errDiskLow closes a connection whose publish needs disk while free space is low.
var errDiskLow = errors.New("publish refused, not acknowledged: free disk space below store.min_free_bytes")

// diskLow reports whether free disk space is below store.min_free_bytes (see persist.SpaceLow).
func (s *Server) diskLow() bool {
	low, _ := s.store.SpaceLow()
	return low
}

// waitForSubscribers holds the reader (so the publisher is read no faster than its subscribers
// take messages) while an online target's backlog is high: a session's, or a shared group's. A
// target that does not drain within stallWait is marked stuck and no longer waited for.
func (c *conn) waitForSubscribers(d *delivery) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	// wait reports false when the publisher waits no more for anyone.
	wait := func(t flowControlled) bool {
		ch := t.congested()
		if ch == nil {
			return true
		}
		if timer == nil {
			timer = time.NewTimer(stallWait)
		}
		select {
		case <-ch:
			return true
		case <-timer.C:
			t.markStuck()
			c.log.Warn().Stringer("subscriber", t).Msg("subscriber is not keeping up: its queue grows up to its limit")
		case <-c.closing:
		}
		return false
	}
	for _, targets := range [][]*sessionHandle{d.durable, d.memory} {
		for _, sess := range targets {
			if !wait(sess) {
				return
			}
		}
	}
	for _, gh := range d.groups {
		if !wait(gh) {
			return
		}
	}
}

// flowControlled is a queue publishers wait for: a session's or a shared group's.
type flowControlled interface {
	congested() <-chan struct{}
	markStuck()
	String() string
}

// addInbound records an inbound QoS 2 packet identifier awaiting PUBREL; false means the PUBLISH
// is a retransmission.
func (c *conn) addInbound(pid uint16) bool {
	defer c.sess.unlock()
	return c.sess.lock().AddInbound(pid)
}

// removeInbound forgets an inbound QoS 2 packet identifier and reports whether it was known.
func (c *conn) removeInbound(pid uint16) bool {
	defer c.sess.unlock()
	return c.sess.lock().RemoveInbound(pid)
}

// acknowledgeOnly answers a PUBLISH that is not routed, in order behind earlier ones: at level 5
// with reason and why, which tell the client why; 3.x has no way to, and gets success.
func (c *conn) acknowledgeOnly(p *codec.Publish, reason codec.ReasonCode, why string) error {
	if p.QoS == 0 {
		return nil
	}
	if p.QoS == 2 && !c.level5() {
		c.addInbound(p.PacketID) // so that the PUBREL finds it; a level-5 failure ends the exchange
	}
	c.submit(&pubJob{ack: c.ackFor(p, reason, why)})
	return nil
}

// fanOutQoS0 sends a QoS 0 message to every online subscriber through send (a publisher's
// staging, or straight into the outbound buffers).
func (s *Server) fanOutQoS0(p *codec.Publish, self *sessionHandle, send func(session.Outlet, *codec.Publish)) {
	mp := s.getMatches()
	matches := s.trie.Match(p.Topic, *mp)
	out := codec.Publish{Topic: p.Topic, Payload: p.Payload, Props: forwardProps(p.Props, true)}
	acl := s.auth.Load().acl
	for _, m := range matches {
		if t, _ := s.take(acl, m.Key, p.Topic, "", 0, 0, m.Key == self); t.o != nil {
			send(t.o, t.copyOf(&out, false))
		}
	}
	*mp = matches
	s.matchPool.Put(mp)
	s.groupsQoS0(p.Topic, 0, func(sess *sessionHandle, group string) {
		if t, _ := s.take(acl, sess, p.Topic, group, 0, 0, false); t.o != nil {
			send(t.o, t.copyOf(&out, false))
		}
	})
}

// groupsQoS0 calls fn with an online member of each shared subscription group that takes a
// message of QoS qos on topic at QoS 0, and the group's id (a group queues QoS 1/2 messages
// itself: see routeGroups).
func (s *Server) groupsQoS0(topic string, qos byte, fn func(sess *sessionHandle, group string)) {
	if s.groups.n.Load() == 0 {
		return
	}
	var buf [4]router.Subscriber[*groupHandle]
	for _, m := range s.groups.match(topic, buf[:0]) {
		gh := m.Key
		gh.mu.Lock()
		k, ok := (*sessionHandle)(nil), false
		if min(qos, gh.g.QoS()) == 0 {
			k, _, ok = gh.g.PickQoS0(topic)
		}
		gh.unlock()
		if ok {
			fn(k, gh.id)
		}
	}
}

// routeGroups reserves room in the queue of every shared group that takes a message of QoS qos
// and size bytes on topic at QoS 1 or 2, and adds the group as a target of d.
func (s *Server) routeGroups(d *delivery, topic string, qos byte, size int, targets []persist.Target) []persist.Target {
	if qos == 0 || s.groups.n.Load() == 0 {
		return targets
	}
	var buf [4]router.Subscriber[*groupHandle]
	for _, m := range s.groups.match(topic, buf[:0]) {
		gh := m.Key
		gh.mu.Lock()
		q := min(qos, gh.g.QoS())
		ok := q > 0 && gh.g.Reserve(size)
		full := q > 0 && !ok
		gh.unlock()
		if full {
			s.stats.drop(DropQueueFull)
			s.dropLog.Warn().Str("group", gh.label()).Str("topic", topic).
				Msg("shared group queue full (limits.max_queued_messages / max_queued_bytes): message dropped for the group")
		}
		if !ok {
			continue
		}
		targets = append(targets, persist.Target{ClientID: gh.id, QoS: q})
		d.groups = append(d.groups, gh)
		d.groupQoS = append(d.groupQoS, q)
	}
	return targets
}

func (s *Server) getMatches() *[]router.Subscriber[*sessionHandle] {
	if mp, ok := s.matchPool.Get().(*[]router.Subscriber[*sessionHandle]); ok {
		*mp = (*mp)[:0]
		return mp
	}
	mp := make([]router.Subscriber[*sessionHandle], 0, 16)
	return &mp
}

// route decides, for every matching session, how p (published by client id owner) reaches it,
// and reserves room in the queues of those that queue it. Forwarded copies carry the retain flag
// only to Retain As Published subscriptions [MQTT-3.3.1-9]. It returns which retained-store limit
// kept a retained p from being stored, or "".
func (s *Server) route(d *delivery, p *codec.Publish, owner string) (retainRefused string) {
	d.msg = &persist.Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, RetainPublished: p.Retain, Props: forwardProps(p.Props, false),
		Expires: expiresAt(p)}
	if p.Retain {
		// [MQTT-3.3.1-5] store (or, with an empty payload, clear [MQTT-3.3.1-10]) the retained message.
		m := &retain.Message{Message: *d.msg, Owner: owner}
		// Without an arrival time (set below, for queued copies only), as the store keeps it: a
		// copy queued for a later subscriber would otherwise date its queue back to this publish.
		m.Retain, m.RetainPublished = true, false
		switch ok, why := s.retained.Fits(m, s.retainLimits); {
		case len(p.Payload) == 0:
			d.batch.DeleteRetained(p.Topic)
			d.retain = m
		case !ok:
			s.stats.drop(DropRetainLimit)
			retainRefused = why
		default:
			d.batch.PutRetained(&m.Message)
			d.retain = m
		}
	}
	mp := s.getMatches()
	matches := s.trie.Match(p.Topic, *mp)
	var targets []persist.Target
	acl := s.auth.Load().acl
	for _, m := range matches {
		qos := min(p.QoS, m.QoS) // [MQTT-3.8.4-6]
		sess := m.Key
		t, queued := s.take(acl, sess, p.Topic, "", qos, len(p.Payload), sess.ID == owner)
		if t.o != nil {
			d.outlets = append(d.outlets, t)
		}
		if !queued {
			continue
		}
		if sess.Persistent {
			if d.durable == nil {
				d.durable, d.durableQoS = d.oneDurable[:0], d.oneDurableQoS[:0]
			}
			targets = append(targets, persist.Target{ClientID: sess.ID, QoS: qos})
			d.durable = append(d.durable, sess)
			d.durableQoS = append(d.durableQoS, qos)
		} else {
			d.memory = append(d.memory, sess)
			d.memoryQoS = append(d.memoryQoS, qos)
		}
	}
	*mp = matches
	s.matchPool.Put(mp)
	s.groupsQoS0(p.Topic, p.QoS, func(sess *sessionHandle, group string) {
		if t, _ := s.take(acl, sess, p.Topic, group, 0, 0, false); t.o != nil {
			d.outlets = append(d.outlets, t)
		}
	})
	targets = s.routeGroups(d, p.Topic, p.QoS, len(p.Payload), targets)
	if len(targets) > 0 || len(d.memory) > 0 {
		// Only a queued message's age is shown (the console): QoS 0 fan-out skips the clock.
		d.msg.Arrived = time.Now()
	}
	if len(targets) > 0 {
		d.batch.Enqueue(d.msg, targets)
	}
	return retainRefused
}

// qos0Target is an online session that gets a QoS 0 copy of a message straight away, and what
// its copy carries beyond the publisher's: the identifiers of the subscriptions it matched and
// whether one keeps RETAIN as published (MQTT 5).
type qos0Target struct {
	o                 session.Outlet
	ids               []uint32
	retainAsPublished bool
}

// copyOf returns p as t's client gets it: p itself, or a copy with t's identifiers and RETAIN as
// published (retainPublished: the publisher set it).
func (t *qos0Target) copyOf(p *codec.Publish, retainPublished bool) *codec.Publish {
	retain := p.Retain || t.retainAsPublished && retainPublished
	if len(t.ids) == 0 && retain == p.Retain {
		return p
	}
	c := *p
	c.Retain = retain
	if len(t.ids) > 0 {
		var props codec.Properties
		if p.Props != nil {
			props = *p.Props
		}
		props.SubscriptionIDs = t.ids
		c.Props = &props
	}
	return &c
}

// take decides how a message on topic reaches sess at qos: through t.o now (QoS 0 to an online
// session), queued (room for size bytes reserved), or not at all (the ACL, No Local when self is
// the publisher's own session, an offline session at QoS 0, a full queue; counted). group is the
// store id of the shared group whose subscription it comes through, or "" for the ordinary ones.
func (s *Server) take(acl *auth.ACL, sess *sessionHandle, topic, group string, qos byte, size int, self bool) (t qos0Target, queued bool) {
	m := sess.lock()
	defer sess.unlock()
	if !s.mayRead(acl, m, topic) {
		return t, false
	}
	if self && m.HasNoLocal() {
		own, ok := m.OwnQoS(topic)
		if !ok {
			return t, false // [MQTT-3.8.3-3]
		}
		qos = min(qos, own)
	}
	if qos == 0 {
		if t.o = m.Outlet(); t.o != nil {
			t.ids, t.retainAsPublished = m.Via(topic, group)
			return t, false
		}
		queue0 := s.cfg.Limits.QueueQoS0Offline
		if sess.bridge != nil {
			queue0 = sess.bridge.cfg.QueueQoS0
		}
		if !sess.Persistent || !queue0 {
			s.stats.drop(DropOfflineQoS0)
			return t, false
		}
	}
	if !m.Reserve(size) {
		s.stats.drop(DropQueueFull)
		s.dropLog.Warn().Str("client_id", sess.ID).Str("topic", topic).
			Msg("session queue full (limits.max_queued_messages / max_queued_bytes): message dropped for this session")
		return t, false
	}
	return t, true
}

// applied runs on persist's writer once d's batch has its place in the commit order: it hands
// the entry to each persistent session, whose in-memory window relies on that order (see
// session.Session.Applied for which entries may be sent before they are durable).
func (s *Server) applied(d *delivery, seq uint64) {
	for i, sess := range d.durable {
		sess.applied(seq, d.msg, d.durableQoS[i])
	}
	d.applied = true
}

// committed runs in persist's callback, in commit order, once d's batch is durable: each
// persistent session learns it, and each shared group gets the entry.
func (s *Server) committed(d *delivery, seq uint64) {
	for _, sess := range d.durable {
		sess.durable(seq)
	}
	for i, gh := range d.groups {
		gh.mu.Lock()
		gh.g.Committed(seq, d.msg, d.groupQoS[i])
		gh.unlock()
		s.dispatch(gh)
	}
}

// submitDelivery hands d's batch to persist. A retained update goes into the in-memory index at
// the same moment (the caller holds retainMu), so that memory and disk see concurrent updates of
// one topic in the same order; until it is durable it counts in retainPending, and SUBSCRIBE
// waits for it before it delivers retained messages.
func (s *Server) submitDelivery(d *delivery, done func(uint64, error)) {
	if len(d.durable) > 0 {
		d.batch.OnApplied(func(seq uint64) { s.applied(d, seq) })
	}
	if d.retain == nil {
		s.store.Submit(&d.batch, done)
		return
	}
	s.retained.Set(d.retain)
	s.retainPending.Add(1)
	s.store.Submit(&d.batch, func(seq uint64, err error) {
		s.retainPending.Add(-1)
		done(seq, err)
	})
}

// abandon gives back the queue reservations of a delivery whose commit failed. Persistent
// sessions that were handed the entry keep it: only a failed store fails an applied batch, and
// the broker stops.
func (d *delivery) abandon() {
	durable := d.durable
	if d.applied {
		durable = nil
	}
	for _, targets := range [][]*sessionHandle{durable, d.memory} {
		for _, sess := range targets {
			sess.unreserve(len(d.msg.Payload))
		}
	}
	for _, gh := range d.groups {
		gh.mu.Lock()
		gh.g.Unreserve(len(d.msg.Payload))
		gh.unlock()
	}
}

// finish delivers to clean sessions and QoS 0 subscribers, after the commit.
func (s *Server) finish(d *delivery) {
	for i, sess := range d.memory {
		sess.enqueue(d.msg, d.memoryQoS[i])
	}
	if len(d.outlets) > 0 {
		out := publishOf(d.msg, time.Now())
		for i := range d.outlets {
			t := &d.outlets[i]
			t.o.SendPublish(t.copyOf(&out, d.msg.RetainPublished))
		}
	}
}

// complete sends what j waited for: the message to clean sessions and QoS 0 subscribers, then
// the acknowledgement; or, if its commit failed, gives everything back and closes.
func (c *conn) complete(j *pubJob) {
	if j.err != nil {
		j.d.abandon()
		if j.inboundPID != 0 {
			c.removeInbound(j.inboundPID)
		}
		c.commitFailed(j.err)
		return
	}
	c.srv.finish(&j.d)
	if j.ack != nil {
		c.sendControl(j.ack)
	}
}

// stallWait is how long a publisher waits for a subscriber's full outbound buffer to drain before
// that subscriber is marked stalled and its QoS 0 messages are dropped. A subscriber that keeps
// reading drains far faster than this, so it loses nothing; one that stopped costs each
// publisher this much once.
const stallWait = 500 * time.Millisecond
