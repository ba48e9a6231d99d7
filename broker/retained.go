package broker

import (
	"strings"
	"time"

	"github.com/holdfast/holdfast/persist"
)

// sendRetained delivers the retained messages matching filter to sess, with the retain flag set;
// sess is subscribed already. A retained publish routed concurrently either matched the
// subscription or is in the index by the time retainMu is free, so this look-up finds it. The
// messages go out only once every retained update in the index is durable (a barrier commit when
// some are not), so that a crash cannot let sess see a message its publisher will send again.
func (s *Server) sendRetained(sess *sessionHandle, filter string, granted byte) error {
	s.retainMu.Lock()
	matches := s.retained.Match(filter, nil)
	s.retainMu.Unlock()
	if strings.HasPrefix(filter, sysPrefix) {
		matches = s.sysRetained.Match(filter, matches)
	}
	if len(matches) > 0 && s.retainPending.Load() > 0 {
		if _, err := s.store.Commit(&persist.Batch{}); err != nil {
			return err
		}
	}
	acl := s.auth.Load().acl
	now := time.Now()
	for _, m := range matches {
		if m.ExpiredAt(now) {
			continue // [MQTT-3.3.2-5]
		}
		qos := min(m.QoS, granted)
		t, queued := s.take(acl, sess, m.Topic, "", qos, len(m.Payload), false)
		if t.o != nil {
			out := publishOf(&m.Message, now)
			out.Retain = true
			t.o.SendPublish(t.copyOf(&out, true))
		}
		if !queued {
			continue
		}
		msg := new(persist.Message)
		*msg = m.Message
		msg.Retain = true
		if !sess.Persistent {
			sess.enqueue(msg, qos)
			continue
		}
		var b persist.Batch
		b.Enqueue(msg, []persist.Target{{ClientID: sess.ID, QoS: qos}})
		applied := false // as delivery.applied
		b.OnApplied(func(seq uint64) {
			sess.applied(seq, msg, qos)
			applied = true
		})
		s.store.Submit(&b, func(seq uint64, err error) {
			if err != nil {
				if !applied {
					sess.unreserve(len(msg.Payload))
				}
				s.logCommitError("queueing a retained message")(0, err)
				return
			}
			sess.durable(seq)
		})
	}
	return nil
}
