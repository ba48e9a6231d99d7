package broker

import (
	"strings"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/session"
)

// sendRetained delivers the retained messages matching filter to sess, with the retain flag set.
func (s *Server) sendRetained(sess *session.Session, filter string, granted byte) {
	acl := s.auth.Load().acl
	matches := s.retained.Match(filter, nil)
	if strings.HasPrefix(filter, sysPrefix) {
		matches = s.sysRetained.Match(filter, matches)
	}
	for _, m := range matches {
		if !s.mayRead(acl, sess, m.Topic) {
			continue
		}
		qos := min(m.QoS, granted)
		if qos == 0 {
			if o := sess.Outlet(); o != nil {
				o.SendPublish(&codec.Publish{Topic: m.Topic, Payload: m.Payload, Retain: true})
			}
			continue
		}
		if !sess.Reserve(len(m.Payload)) {
			s.stats.drop(DropQueueFull)
			continue
		}
		msg := &persist.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: true}
		if !sess.Persistent {
			wake(sess.Enqueue(msg, qos))
			continue
		}
		var b persist.Batch
		b.Enqueue(msg, []persist.Target{{ClientID: sess.ID, QoS: qos}})
		s.store.Submit(&b, func(seq uint64, err error) {
			if err != nil {
				sess.Unreserve(len(msg.Payload))
				s.logCommitError("queueing a retained message")(0, err)
				return
			}
			wake(sess.Committed(seq, msg, qos))
		})
	}
}
