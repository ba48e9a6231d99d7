package broker

import (
	"fmt"

	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/enhauth"
	"github.com/holdfast/holdfast/listener"
	"github.com/holdfast/holdfast/persist"
)

// AuthRules are the loaded password and ACL files; nil fields mean "not configured". They are
// replaced whole on reload, so a check always sees one consistent set.
type AuthRules struct {
	passwords *auth.Passwords
	acl       *auth.ACL
	methods   map[string]enhauth.Method // MQTT 5 enhanced authentication, by name
}

// LoadAuth reads the password and ACL files named in the configuration. Errors name the key, the
// file and the line: they are configuration errors. Call it before opening anything else.
func LoadAuth(c config.Auth, log zerolog.Logger) (*AuthRules, error) {
	r := &AuthRules{}
	var err error
	if f := c.PasswordFile; f != "" {
		if r.passwords, err = auth.LoadPasswords(f); err != nil {
			return nil, fmt.Errorf("auth.password_file: %w", err)
		}
		for _, w := range r.passwords.Warnings() {
			log.Warn().Str("file", f).Msg(w)
		}
		r.methods = authMethods(r.passwords)
	}
	if f := c.ACLFile; f != "" {
		if r.acl, err = auth.LoadACL(f); err != nil {
			return nil, fmt.Errorf("auth.acl_file: %w", err)
		}
		for _, w := range r.acl.Warnings() {
			log.Warn().Str("file", f).Msg(w)
		}
	}
	return r, nil
}

// ReloadAuth re-reads the password and ACL files. A broken file keeps the old rules; the error
// names the file and line. Connected clients are checked against the new rules from their next
// operation on.
func (s *Server) ReloadAuth() error {
	r, err := LoadAuth(s.cfg.Auth, s.log)
	if err != nil {
		s.log.Error().Err(err).Msg("auth files not reloaded, keeping the old rules")
		return err
	}
	s.auth.Store(r)
	s.log.Info().Int("users", r.passwords.Len()).Int("acl_rules", r.acl.Len()).Msg("auth files reloaded")
	s.dropRefusedSubscriptions()
	return nil
}

// dropRefusedSubscriptions removes the subscriptions that the ACL loaded now (after a reload, or
// at start after the file changed while the broker was down) no longer grants, from
// the trie, the sessions and the store. Messages already queued under them are refused when they
// are sent (mayRead).
func (s *Server) dropRefusedSubscriptions() {
	if s.auth.Load().acl == nil {
		return
	}
	var b persist.Batch
	removed := 0
	for _, sess := range s.sessions.snapshot() {
		m := sess.lock()
		known, subs, owner := m.Identity().Known, m.Subscriptions(), readerOf(m)
		sess.unlock()
		if !known {
			continue // recovered from a store that did not record owners: the ACL cannot tell
		}
		for f := range subs {
			if s.canSubscribe(&owner, f) || !s.unsubscribe(sess, f, &b) {
				continue
			}
			removed++
			s.log.Info().Str("client_id", sess.ID).Str("filter", f).Msg("subscription removed: the reloaded ACL refuses it")
		}
	}
	if b.Len() > 0 {
		s.store.Submit(&b, s.logCommitError("removing subscriptions the ACL refuses"))
	}
	if removed > 0 {
		s.log.Warn().Int("subscriptions", removed).Msg("subscriptions removed after the ACL reload")
	}
}

// login authenticates CONNECT's client: by the exchange of the Authentication Method it names,
// else by its certificate, username and password. It returns who the client is for the ACL, or
// false when it refused the client (and told it).
func (c *conn) login(cp *codec.Connect) (auth.Client, bool) {
	if cp.Props != nil && cp.Props.AuthMethod != "" {
		return c.exchange(cp)
	}
	ident, code, why := c.authenticate(cp)
	if code != codec.Accepted {
		// Sampled: a flood of wrong passwords would otherwise cost more in logging than in hashing.
		c.srv.refuseLog.Warn().Str("remote", c.nc.RemoteAddr().String()).Str("client_id", c.clientID).Str("username", cp.Username).Msg("refused: " + why)
		c.refuse(code)
		return ident, false
	}
	return ident, true
}

// authenticate decides whether a CONNECT may proceed and returns the client's identity for the
// ACL, or the CONNACK code that refuses it.
func (c *conn) authenticate(cp *codec.Connect) (auth.Client, codec.ConnackCode, string) {
	id := auth.Client{ID: c.clientID}
	if user, ok := listener.PeerIdentity(c.nc); ok {
		// A verified client certificate is the credential.
		id.Username = user
		return id, codec.Accepted, ""
	}
	if !cp.HasUsername {
		if !c.srv.cfg.Auth.Anonymous() {
			return id, codec.RefusedNotAuthorized, "anonymous clients are not allowed (auth.allow_anonymous)"
		}
		id.Anonymous = true
		return id, codec.Accepted, ""
	}
	id.Username = cp.Username
	rules := c.srv.auth.Load()
	if rules.passwords == nil {
		if c.srv.cfg.Auth.Anonymous() {
			return id, codec.Accepted, "" // no password file: a username is only a name
		}
		return id, codec.RefusedNotAuthorized, "no password_file to check the username against"
	}
	if !cp.HasPassword {
		// Not an empty password: a username alone proves nothing, whatever the file holds for it.
		return id, codec.RefusedBadUsernameOrPassword, "username without a password"
	}
	ok, served := c.srv.passwords.check(rules.passwords, listener.SourceAddress(c.nc.RemoteAddr()), cp.Username, cp.Password)
	if !served {
		c.srv.stats.Refused[RefusePasswordQueue].Add(1)
		return id, codec.RefusedServerUnavailable, "password checks are queued up to auth.password_queue (or password_queue_per_address for this address)"
	}
	if !ok {
		return id, codec.RefusedBadUsernameOrPassword, "wrong username or password"
	}
	return id, codec.Accepted, ""
}
