package broker

import (
	"strings"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/router"
)

// handleSubscribe grants every filter, makes a persistent session's subscriptions durable, then
// answers SUBACK and sends the matching retained messages.
func (c *conn) handleSubscribe(p *codec.Subscribe) error {
	codes := make([]byte, len(p.Subscriptions))
	sendRetained := make([]bool, len(p.Subscriptions))
	var id uint32
	if p.Props != nil && len(p.Props.SubscriptionIDs) > 0 {
		id = p.Props.SubscriptionIDs[0] // the codec lets one through [MQTT-3.8.2-2]
	}
	var b persist.Batch
	var refused []string
	for i, sub := range p.Subscriptions {
		codes[i] = sub.QoS // [MQTT-3.9.3-1] granted as requested
		if reason, why := c.refuseSubscription(sub.Filter); why != "" {
			c.log.Info().Str("filter", sub.Filter).Str("reason", why).Msg("subscription refused")
			refused = append(refused, sub.Filter+": "+why)
			switch {
			case c.level5():
				codes[i] = byte(reason)
			case c.level != codec.Level31:
				// MQTT 3.1 has no failure code: like Mosquitto, answer it with the requested
				// QoS but do not subscribe.
				codes[i] = codec.SubackFailure // [MQTT-3.9.3-2]
			}
			continue
		}
		o := message.SubOptions{QoS: sub.QoS, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished, ID: id}
		isNew := c.srv.subscribe(c.sess, sub.Filter, o, &b)
		// Retain Handling: 0 always, 1 for a new subscription only, 2 never [MQTT-3.3.1-9..11];
		// never for a shared subscription (§4.8.2).
		_, _, shared, _ := router.ParseShared(sub.Filter)
		sendRetained[i] = !shared && (sub.RetainHandling == 0 || sub.RetainHandling == 1 && isNew)
	}
	if b.Len() > 0 {
		if _, err := c.srv.store.Commit(&b); err != nil {
			return err
		}
	}
	ack := &codec.Suback{PacketID: p.PacketID, ReturnCodes: codes} // [MQTT-3.8.4-1]
	if c.level5() {
		ack.Props = c.problem(strings.Join(refused, "; "))
	}
	c.sendControl(ack)
	for i, sub := range p.Subscriptions {
		if sendRetained[i] {
			if err := c.srv.sendRetained(c.sess, sub.Filter, codes[i]); err != nil { // [MQTT-3.3.1-6]
				return err
			}
		}
	}
	return nil
}

// subscribe records sess's subscription to filter with o: in the trie, in the session and, for a
// persistent session, in b (nil when the store already holds it, at recovery). Every subscription
// is made here, so that the three copies cannot disagree. An identical filter's subscription is
// replaced [MQTT-3.8.4-3]; it reports whether the subscription is new.
func (s *Server) subscribe(sess *sessionHandle, filter string, o message.SubOptions, b *persist.Batch) bool {
	isNew := sess.lock().Subscribe(filter, o)
	sess.unlock()
	if name, f, shared, _ := router.ParseShared(filter); shared {
		s.joinGroup(sess, name, f, o.QoS, b)
	} else {
		s.trie.Subscribe(sess, filter, o.QoS)
	}
	if sess.Persistent && b != nil {
		b.PutSubscription(sess.ID, persist.Subscription{Filter: filter, SubOptions: o})
	}
	return isNew
}

// unsubscribe removes sess's subscription to filter from the trie, the session and, for a
// persistent session, with b (nil when the whole session is being deleted from the store). It
// reports whether the subscription existed.
func (s *Server) unsubscribe(sess *sessionHandle, filter string, b *persist.Batch) bool {
	had := sess.lock().Unsubscribe(filter)
	sess.unlock()
	if !had {
		return false
	}
	if name, f, shared, _ := router.ParseShared(filter); shared {
		s.leaveGroup(sess, name, f, b)
	} else {
		s.trie.Unsubscribe(sess, filter)
	}
	if sess.Persistent && b != nil {
		b.DeleteSubscription(sess.ID, filter)
	}
	return true
}

// refuseSubscription returns why filter may not be subscribed, or "", and the level-5 reason code
// that says so. A filter the ACL refuses gets 0x80, not 0x87: Paho's v5 client, among others,
// takes only 0x80 as a refusal.
func (c *conn) refuseSubscription(filter string) (codec.ReasonCode, string) {
	_, plain, _, ok := router.ParseShared(filter)
	if !ok {
		return codec.ReasonTopicFilterInvalid, "a shared subscription needs $share/{name}/{filter}, the name without wildcards"
	}
	lim := &c.srv.cfg.Limits
	if lim.MaxTopicLevels > 0 && topicLevels(filter) > lim.MaxTopicLevels {
		return codec.ReasonTopicFilterInvalid, "more levels than limits.max_topic_levels"
	}
	m := c.sess.lock()
	full := lim.MaxSubscriptions > 0 && m.NumSubscriptions() >= lim.MaxSubscriptions && !m.Has(filter)
	c.sess.unlock()
	if full {
		return codec.ReasonQuotaExceeded, "limits.max_subscriptions reached"
	}
	if !c.srv.canSubscribe(&c.ident, plain) {
		return codec.ReasonUnspecifiedError, "not allowed by the ACL"
	}
	if c.sess.Persistent && c.srv.diskLow() {
		return codec.ReasonQuotaExceeded, "a persistent session's subscription needs disk: free space below store.min_free_bytes"
	}
	return 0, ""
}

// topicLevels counts the levels of a topic name or filter.
func topicLevels(topic string) int { return strings.Count(topic, "/") + 1 }

// handleUnsubscribe removes the filters and answers UNSUBACK, even when none matched
// [MQTT-3.10.4-4], [MQTT-3.10.4-5].
func (c *conn) handleUnsubscribe(p *codec.Unsubscribe) error {
	var b persist.Batch
	var reasons []codec.ReasonCode
	if c.level5() {
		reasons = make([]codec.ReasonCode, len(p.Filters))
	}
	for i, f := range p.Filters {
		if !c.srv.unsubscribe(c.sess, f, &b) && reasons != nil {
			reasons[i] = codec.ReasonNoSubscriptionExisted
		}
	}
	if b.Len() > 0 {
		if _, err := c.srv.store.Commit(&b); err != nil {
			return err
		}
	}
	c.sendControl(&codec.Unsuback{PacketID: p.PacketID, Reasons: reasons})
	return nil
}
