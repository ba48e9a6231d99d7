package broker

import (
	"time"

	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/session"
)

// expireLoop removes persistent sessions that have been offline longer than exp.
func (s *Server) expireLoop(exp time.Duration) {
	defer s.wg.Done()
	every := min(max(exp/10, 100*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			s.expireSessions(time.Now().Add(-exp))
		}
	}
}

func (s *Server) expireSessions(cutoff time.Time) {
	for _, sess := range s.sessions.Snapshot() {
		if !sess.Persistent || sess.Online() || sess.OfflineSince().After(cutoff) {
			continue
		}
		s.mu.Lock()
		// The owners map is the connect lock: a client connecting now holds its id there.
		if s.owners[sess.ID] != nil || sess.Online() {
			s.mu.Unlock()
			continue
		}
		s.discardSession(sess, nil)
		s.mu.Unlock()
		s.log.Info().Str("client_id", sess.ID).Time("offline_since", sess.OfflineSince()).Msg("session expired")
	}
}

// discardSession removes sess with everything it owns, from memory now and from disk with b (or
// in a commit of its own when b is nil). Callers hold the client id (s.mu or ownership of the id).
func (s *Server) discardSession(sess *session.Session, b *persist.Batch) {
	s.sessions.Remove(sess)
	for f := range sess.Subscriptions() {
		s.unsubscribe(sess, f, nil) // the store's copy goes with the session
	}
	if !sess.Persistent {
		return
	}
	if b != nil {
		b.DeleteSession(sess.ID)
		return
	}
	var own persist.Batch
	own.DeleteSession(sess.ID)
	s.store.Submit(&own, s.logCommitError("deleting session "+sess.ID))
}
