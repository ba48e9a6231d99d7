package broker

import (
	"strings"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/persist"
)

// sendRetained delivers the retained messages matching filter to sess, with the retain flag set.
func (s *Server) sendRetained(sess *sessionHandle, filter string, granted byte) {
	acl := s.auth.Load().acl
	matches := s.retained.Match(filter, nil)
	if strings.HasPrefix(filter, sysPrefix) {
		matches = s.sysRetained.Match(filter, matches)
	}
	for _, m := range matches {
		qos := min(m.QoS, granted)
		o, queued := s.take(acl, sess, m.Topic, qos, len(m.Payload))
		if o != nil {
			o.SendPublish(&codec.Publish{Topic: m.Topic, Payload: m.Payload, Retain: true})
		}
		if !queued {
			continue
		}
		msg := &persist.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: true}
		if !sess.Persistent {
			sess.enqueue(msg, qos)
			continue
		}
		var b persist.Batch
		b.Enqueue(msg, []persist.Target{{ClientID: sess.ID, QoS: qos}})
		s.store.Submit(&b, func(seq uint64, err error) {
			if err != nil {
				sess.unreserve(len(msg.Payload))
				s.logCommitError("queueing a retained message")(0, err)
				return
			}
			sess.committed(seq, msg, qos)
		})
	}
}
