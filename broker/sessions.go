package broker

import (
	"time"

	"github.com/holdfast/holdfast/persist"
)

// schedule arranges for reap to run when sess next needs it offline: its pending will is due or
// it expires (see session.NextEvent). A timer per offline session, not a sweep of all of them:
// the broker holds many sessions and few of them have anything due soon.
func (s *Server) schedule(sess *sessionHandle) {
	m := sess.lock()
	defer sess.unlock()
	at, ok := m.NextEvent(s.cfg.Limits.SessionExpiry.Duration)
	if !ok {
		return
	}
	wait := time.Until(at)
	if sess.timer == nil {
		sess.timer = time.AfterFunc(wait, func() { s.reap(sess) })
		return
	}
	sess.timer.Reset(wait)
}

// reap publishes sess's will if it is due and removes sess if it expired, then schedules what
// remains. A session that came back online meanwhile has nothing due.
func (s *Server) reap(sess *sessionHandle) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return // the store is closing: a pending will stays on disk and is due after the restart
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	now := time.Now()
	def := s.cfg.Limits.SessionExpiry.Duration
	m := sess.lock()
	will, owner := m.WillDue(now, false), readerOf(m)
	sess.unlock()
	if will != nil {
		var d delivery
		d.batch.DeleteWill(sess.ID) // in the will's own commit: published once, also across a crash
		s.publishWill(&d, will, owner, s.log.With().Str("client_id", sess.ID).Logger())
	}

	expired := func() (bool, time.Time) {
		m := sess.lock()
		defer sess.unlock()
		end, ok := m.ExpiresAt(def)
		return ok && !end.After(now), m.OfflineSince()
	}
	if ok, _ := expired(); !ok {
		s.schedule(sess)
		return
	}
	s.mu.Lock()
	// The owners map is the connect lock: a client connecting now holds its id there.
	ok, since := expired()
	if s.owners[sess.ID] != nil || !ok || s.sessions.get(sess.ID) != sess {
		s.mu.Unlock()
		return
	}
	will = sess.lock().WillDue(now, true) // the session ends: its will is due now [MQTT-3.1.3-9]
	sess.unlock()
	var d delivery
	s.discardSession(sess, &d.batch)
	s.mu.Unlock()
	s.log.Info().Str("client_id", sess.ID).Time("offline_since", since).Msg("session expired")
	s.publishWill(&d, will, owner, s.log.With().Str("client_id", sess.ID).Logger())
}

// discardSession removes sess with everything it owns, from memory now and from disk with b (or
// in a commit of its own when b is nil). Callers hold the client id (s.mu or ownership of the id).
func (s *Server) discardSession(sess *sessionHandle, b *persist.Batch) {
	s.sessions.remove(sess)
	m := sess.lock()
	subs, held := m.Subscriptions(), m.Discard()
	sess.unlock()
	s.settle(held)
	for f := range subs {
		s.unsubscribe(sess, f, nil) // the store's copy goes with the session
	}
	var own persist.Batch
	if b == nil {
		b = &own
	}
	addWrites(b, sess.ID, held...)
	if sess.Persistent {
		b.DeleteSession(sess.ID)
	}
	if b == &own && own.Len() > 0 {
		s.store.Submit(&own, s.logCommitError("deleting session "+sess.ID))
	}
}
