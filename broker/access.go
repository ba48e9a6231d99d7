package broker

import (
	"strings"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/session"
)

// sysPrefix starts the broker's own topics; clients may publish there only where the ACL says so
// explicitly, since subscribers trust them to come from the broker.
const sysPrefix = "$SYS"

// canPublish applies the ACL to a PUBLISH (or a will) of client id.
func (s *Server) canPublish(id *auth.Client, topic string) bool {
	acl := s.auth.Load().acl
	if strings.HasPrefix(topic, sysPrefix) {
		return acl != nil && acl.CanPublish(*id, topic)
	}
	return acl == nil || acl.CanPublish(*id, topic)
}

// canSubscribe applies the ACL to a SUBSCRIBE filter.
func (s *Server) canSubscribe(id *auth.Client, filter string) bool {
	acl := s.auth.Load().acl
	return acl == nil || acl.CanSubscribe(*id, filter)
}

// readerOf returns who m reads as, for the ACL.
func readerOf(m *session.Session) auth.Client {
	id := m.Identity()
	return auth.Client{ID: m.ID, Username: id.Username, Anonymous: id.Anonymous}
}

// mayRead decides whether m may read a message on topic under acl (the rules loaded now; nil
// allows everything). A refusal is counted. The caller holds m's lock.
func (s *Server) mayRead(acl *auth.ACL, m *session.Session, topic string) bool {
	if acl == nil || acl.CanReceive(readerOf(m), topic) || strings.HasPrefix(m.ID, bridgePrefix) {
		return true
	}
	s.stats.drop(DropNotAuthorized)
	return false
}

// readCache remembers mayRead's answers for one session's writer, per topic, for as long as the
// same ACL is loaded: a queued message is checked again when it is sent (the ACL may have been
// reloaded since it was queued), and the cache keeps that cheap. Used by one goroutine at a time.
type readCache struct {
	acl     *auth.ACL
	answers map[string]bool
}

// readCacheSize bounds a cache; a session reading more distinct topics than this starts over.
const readCacheSize = 1024

// check is mayRead through the cache, for client (the connection's identity: Fill calls it under
// the session's lock, so it cannot ask the session).
func (rc *readCache) check(s *Server, client *auth.Client, topic string) bool {
	acl := s.auth.Load().acl
	if acl == nil {
		return true
	}
	if acl != rc.acl || len(rc.answers) >= readCacheSize {
		rc.acl = acl
		rc.answers = make(map[string]bool)
	}
	ok, seen := rc.answers[topic]
	if !seen {
		ok = acl.CanReceive(*client, topic)
		rc.answers[topic] = ok
	}
	if !ok {
		s.stats.drop(DropNotAuthorized)
	}
	return ok
}
