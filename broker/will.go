package broker

import (
	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/codec"
)

// publishWill publishes a will message as if its client had sent it, and waits until it is done.
func (s *Server) publishWill(w *codec.Will, owner string, log zerolog.Logger) {
	var d delivery
	done := make(chan error, 1)
	s.routeWill(&d, w, owner, log, func(err error) { done <- err })
	if err := <-done; err != nil {
		d.abandon()
		log.Error().Err(err).Msg("will message not published: store write failed")
		return
	}
	s.finish(&d)
	log.Debug().Str("topic", w.Topic).Msg("will published")
}

// routeWill routes w into d and submits its batch, as accept does for a PUBLISH; done is called
// once the batch is durable.
func (s *Server) routeWill(d *delivery, w *codec.Will, owner string, log zerolog.Logger, done func(error)) {
	if w.Retain {
		s.retainMu.Lock()
		defer s.retainMu.Unlock()
	}
	if why := s.route(d, &codec.Publish{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain}, owner); why != "" {
		log.Warn().Str("topic", w.Topic).Str("limit", why).Msg("retained will delivered but not stored: retained store limit reached")
	}
	if d.batch.Len() == 0 {
		done(nil)
		return
	}
	s.submitDelivery(d, func(seq uint64, err error) {
		if err == nil {
			d.committed(seq)
		}
		done(err)
	})
}

// publishWillIfDue publishes the will the session returned at the end of the connection (there
// is none after DISCONNECT), unless the broker is shutting down, if the ACL lets its client
// publish there now.
func (c *conn) publishWillIfDue(will *codec.Will) {
	srv := c.srv
	if will == nil || srv.isClosing() {
		return
	}
	if !srv.canPublish(&c.ident, will.Topic) {
		srv.stats.drop(DropNotAuthorized)
		c.log.Info().Str("topic", will.Topic).Msg("will not published: the ACL refuses its topic")
		return
	}
	srv.publishWill(will, c.clientID, c.log)
}
