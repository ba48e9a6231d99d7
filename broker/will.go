package broker

import (
	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
)

// publishWill publishes w (nil: none) as if owner had sent it, if the ACL lets owner publish there
// now and the broker is not shutting down, in one commit with what d's batch holds already: the
// removal of the will's record, or of its whole session, so that a crash can neither lose nor
// double a will. It waits until it is done.
func (s *Server) publishWill(d *delivery, w *codec.Will, owner auth.Client, log zerolog.Logger) {
	switch {
	case w == nil:
	case s.isClosing():
		return // a persistent session's stays on disk, and is due after the restart
	case !s.canPublish(&owner, w.Topic):
		s.stats.drop(DropNotAuthorized)
		log.Info().Str("topic", w.Topic).Msg("will not published: the ACL refuses its topic")
		w = nil
	}
	done := make(chan error, 1)
	s.routeWill(d, w, owner.ID, log, func(err error) { done <- err })
	if err := <-done; err != nil {
		d.abandon()
		log.Error().Err(err).Msg("will message not published: store write failed")
		return
	}
	if w != nil {
		s.finish(d)
		log.Debug().Str("topic", w.Topic).Msg("will published")
	}
}

// routeWill routes w (if not nil) into d and submits its batch, as accept does for a PUBLISH; done
// is called once the batch is durable.
func (s *Server) routeWill(d *delivery, w *codec.Will, owner string, log zerolog.Logger, done func(error)) {
	if w != nil {
		if w.Retain {
			s.retainMu.Lock()
			defer s.retainMu.Unlock()
		}
		p := &codec.Publish{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, Props: w.Props}
		if why := s.route(d, p, owner); why != "" {
			log.Warn().Str("topic", w.Topic).Str("limit", why).Msg("retained will delivered but not stored: retained store limit reached")
		}
	}
	if d.batch.Len() == 0 {
		done(nil)
		return
	}
	s.submitDelivery(d, func(seq uint64, err error) {
		if err == nil {
			s.committed(d, seq)
		}
		done(err)
	})
}
