package broker

import (
	"strings"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/persist"
)

// handleSubscribe grants every filter, makes a persistent session's subscriptions durable, then
// answers SUBACK and sends the matching retained messages.
func (c *conn) handleSubscribe(p *codec.Subscribe) error {
	codes := make([]byte, len(p.Subscriptions))
	granted := make([]bool, len(p.Subscriptions))
	var b persist.Batch
	for i, sub := range p.Subscriptions {
		codes[i] = sub.QoS // [MQTT-3.9.3-1] granted as requested
		if why := c.refuseSubscription(sub.Filter); why != "" {
			c.log.Info().Str("filter", sub.Filter).Str("reason", why).Msg("subscription refused")
			if c.level != codec.Level31 {
				// MQTT 3.1 has no failure code: like Mosquitto, answer it with the requested
				// QoS but do not subscribe.
				codes[i] = codec.SubackFailure // [MQTT-3.9.3-2]
			}
			continue
		}
		granted[i] = true
		c.srv.subscribe(c.sess, sub.Filter, sub.QoS, &b)
	}
	if b.Len() > 0 {
		if _, err := c.srv.store.Commit(&b); err != nil {
			return err
		}
	}
	c.sendControl(&codec.Suback{PacketID: p.PacketID, ReturnCodes: codes}) // [MQTT-3.8.4-1]
	for i, sub := range p.Subscriptions {
		if granted[i] {
			if err := c.srv.sendRetained(c.sess, sub.Filter, codes[i]); err != nil { // [MQTT-3.3.1-6]
				return err
			}
		}
	}
	return nil
}

// subscribe records sess's subscription to filter at qos: in the trie, in the session and, for a
// persistent session, in b (nil when the store already holds it, at recovery). Every subscription
// is made here, so that the three copies cannot disagree. An identical filter's subscription is
// replaced [MQTT-3.8.4-3].
func (s *Server) subscribe(sess *sessionHandle, filter string, qos byte, b *persist.Batch) {
	sess.lock().Subscribe(filter, qos)
	sess.unlock()
	s.trie.Subscribe(sess, filter, qos)
	if sess.Persistent && b != nil {
		b.PutSubscription(sess.ID, persist.Subscription{Filter: filter, SubOptions: persist.SubOptions{QoS: qos}})
	}
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
	s.trie.Unsubscribe(sess, filter)
	if sess.Persistent && b != nil {
		b.DeleteSubscription(sess.ID, filter)
	}
	return true
}

// refuseSubscription returns why filter may not be subscribed, or "".
func (c *conn) refuseSubscription(filter string) string {
	lim := &c.srv.cfg.Limits
	if lim.MaxTopicLevels > 0 && topicLevels(filter) > lim.MaxTopicLevels {
		return "more levels than limits.max_topic_levels"
	}
	m := c.sess.lock()
	full := lim.MaxSubscriptions > 0 && m.NumSubscriptions() >= lim.MaxSubscriptions && !m.Has(filter)
	c.sess.unlock()
	if full {
		return "limits.max_subscriptions reached"
	}
	if !c.srv.canSubscribe(&c.ident, filter) {
		return "not allowed by the ACL"
	}
	if c.sess.Persistent && c.srv.diskLow() {
		return "a persistent session's subscription needs disk: free space below store.min_free_bytes"
	}
	return ""
}

// topicLevels counts the levels of a topic name or filter.
func topicLevels(topic string) int { return strings.Count(topic, "/") + 1 }

// handleUnsubscribe removes the filters and answers UNSUBACK, even when none matched
// [MQTT-3.10.4-4], [MQTT-3.10.4-5].
func (c *conn) handleUnsubscribe(p *codec.Unsubscribe) error {
	var b persist.Batch
	for _, f := range p.Filters {
		c.srv.unsubscribe(c.sess, f, &b)
	}
	if b.Len() > 0 {
		if _, err := c.srv.store.Commit(&b); err != nil {
			return err
		}
	}
	c.sendControl(&codec.Unsuback{PacketID: p.PacketID})
	return nil
}
