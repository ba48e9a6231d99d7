package broker

import (
	"time"

	"github.com/holdfast/holdfast/persist"
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
	expired := func(sess *sessionHandle) (bool, time.Time) {
		m := sess.lock()
		defer sess.unlock()
		return !m.Online() && !m.OfflineSince().After(cutoff), m.OfflineSince()
	}
	for _, sess := range s.sessions.snapshot() {
		if !sess.Persistent {
			continue
		}
		if ok, _ := expired(sess); !ok {
			continue
		}
		s.mu.Lock()
		// The owners map is the connect lock: a client connecting now holds its id there.
		ok, since := expired(sess)
		if s.owners[sess.ID] != nil || !ok {
			s.mu.Unlock()
			continue
		}
		s.discardSession(sess, nil)
		s.mu.Unlock()
		s.log.Info().Str("client_id", sess.ID).Time("offline_since", since).Msg("session expired")
	}
}

// discardSession removes sess with everything it owns, from memory now and from disk with b (or
// in a commit of its own when b is nil). Callers hold the client id (s.mu or ownership of the id).
func (s *Server) discardSession(sess *sessionHandle, b *persist.Batch) {
	s.sessions.remove(sess)
	subs := sess.lock().Subscriptions()
	sess.unlock()
	for f := range subs {
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
