package broker

import (
	"strings"

	"github.com/holdfast/holdfast/codec"
)

// claim makes c the owner of its client id and returns the previous owner, if any. No session
// hijack by guessing a client id: an id belongs to the user whose connection holds it or whose
// session (connected or waiting offline) it names, and another user is refused; a clean start
// may not wipe that session either. The check and the claim are one step under s.mu, so that of
// two CONNECTs racing for an id, the second sees the first. It refuses everyone while the server
// shuts down.
func (s *Server) claim(c *conn) (*conn, codec.ConnackCode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, codec.RefusedServerUnavailable
	}
	old := s.owners[c.clientID]
	owner := c.ident
	switch {
	case old != nil:
		owner = old.ident
	default:
		if prev := s.sessions.get(c.clientID); prev != nil {
			m := prev.lock()
			if m.Identity().Known {
				owner = readerOf(m)
			}
			prev.unlock()
		}
	}
	if owner.Username != c.ident.Username || owner.Anonymous != c.ident.Anonymous {
		c.log.Warn().Str("username", c.ident.Username).Str("owner", owner.Username).
			Msg("refused: the client id belongs to another user")
		return nil, codec.RefusedNotAuthorized
	}
	s.owners[c.clientID] = c
	return old, codec.Accepted
}

// ownsClientID reports whether id is in user's namespace (auth.client_id_prefix_from_username):
// the username itself, or the username and a separator, so that user "a" cannot take "ab-1".
func ownsClientID(user, id string) bool {
	rest, ok := strings.CutPrefix(id, user)
	return ok && (rest == "" || strings.ContainsRune("-_:/.", rune(rest[0])))
}
