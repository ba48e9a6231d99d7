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
		c.sess.Subscribe(sub.Filter, sub.QoS)
		c.srv.trie.Subscribe(c.clientID, sub.Filter, sub.QoS) // [MQTT-3.8.4-3] replaces an identical filter
		if c.sess.Persistent {
			b.PutSubscription(c.clientID, persist.Subscription{Filter: sub.Filter, QoS: sub.QoS})
		}
	}
	if b.Len() > 0 {
		if _, err := c.srv.store.Commit(&b); err != nil {
			return err
		}
	}
	c.sendControl(&codec.Suback{PacketID: p.PacketID, ReturnCodes: codes}) // [MQTT-3.8.4-1]
	for i, sub := range p.Subscriptions {
		if granted[i] {
			c.srv.sendRetained(c.sess, sub.Filter, codes[i]) // [MQTT-3.3.1-6]
		}
	}
	return nil
}

// refuseSubscription returns why filter may not be subscribed, or "".
func (c *conn) refuseSubscription(filter string) string {
	lim := &c.srv.cfg.Limits
	if lim.MaxTopicLevels > 0 && topicLevels(filter) > lim.MaxTopicLevels {
		return "more levels than limits.max_topic_levels"
	}
	if lim.MaxSubscriptions > 0 && c.sess.NumSubscriptions() >= lim.MaxSubscriptions && !c.sess.Has(filter) {
		return "limits.max_subscriptions reached"
	}
	if !c.srv.canSubscribe(&c.ident, filter) {
		return "not allowed by the ACL"
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
		if c.sess.Unsubscribe(f) {
			c.srv.trie.Unsubscribe(c.clientID, f)
			if c.sess.Persistent {
				b.DeleteSubscription(c.clientID, f)
			}
		}
	}
	if b.Len() > 0 {
		if _, err := c.srv.store.Commit(&b); err != nil {
			return err
		}
	}
	c.sendControl(&codec.Unsuback{PacketID: p.PacketID})
	return nil
}
