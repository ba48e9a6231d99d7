package broker

import (
	"errors"
	"fmt"
	"os"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/enhauth"
)

// MQTT 5 enhanced authentication (§4.12): CONNECT names a method, and the method's exchange runs
// in AUTH packets before CONNACK; after CONNACK the client may run it again (re-authentication).
// The methods are in AuthRules, made with the password file they check against.

// enhanced is a connection's enhanced authentication; the reader owns it.
type enhanced struct {
	method string           // CONNECT's Authentication Method; "" when it named none
	final  []byte           // the data that ended CONNECT's exchange, for CONNACK
	reauth enhauth.Exchange // a re-authentication under way, nil when none
}

// errNotAuthorized closes a connection whose re-authentication failed: DISCONNECT 0x87.
var errNotAuthorized = errors.New("re-authentication failed")

// authMethods are the methods offered with passwords: none without a password file, since
// every exchange would fail at the proof, and the client is better told 0x8C at once.
func authMethods(passwords *auth.Passwords) map[string]enhauth.Method {
	if passwords == nil {
		return nil
	}
	methods := map[string]enhauth.Method{}
	for _, m := range []enhauth.Method{enhauth.NewSCRAM(passwords.SCRAM)} {
		methods[m.Name()] = m
	}
	return methods
}

// exchange runs the exchange that CONNECT's Authentication Method starts, on the connection's
// CONNECT deadline and before the connection stops counting as pending, so a slow exchange
// holds a pre-authentication slot no longer than a slow CONNECT. It returns who the client
// proved to be, or false when it refused the client (and told it) or the client went away.
// Refusals are logged sampled, as wrong passwords are: a flood must not cost more in logging.
func (c *conn) exchange(cp *codec.Connect) (auth.Client, bool) {
	id := auth.Client{ID: c.clientID}
	method := cp.Props.AuthMethod
	m, ok := c.srv.auth.Load().methods[method]
	if !ok {
		c.srv.refuseLog.Warn().Str("remote", c.nc.RemoteAddr().String()).Str("client_id", c.clientID).
			Str("method", method).Msg("refused: authentication method not offered [MQTT-4.12.0-1]")
		c.refuseReason(codec.ReasonBadAuthenticationMethod)
		return id, false
	}
	x := m.Start()
	data := cp.Props.AuthData
	for {
		out, done, err := x.Step(data)
		if err != nil {
			c.srv.refuseLog.Warn().Str("remote", c.nc.RemoteAddr().String()).Str("client_id", c.clientID).
				Str("method", method).Err(err).Msg("refused: enhanced authentication failed [MQTT-4.12.0-4]")
			c.refuse(codec.RefusedNotAuthorized)
			return id, false
		}
		if done {
			c.enh.method, c.enh.final = method, out
			id.Username = x.Username()
			return id, true
		}
		c.writeDirect(&codec.Auth{Reason: codec.ReasonContinueAuthentication, // [MQTT-4.12.0-2]
			Props: &codec.Properties{AuthMethod: method, AuthData: out}}) // [MQTT-4.12.0-5]
		p, err := c.r.ReadPacket()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.log.Warn().Str("reason", "authentication exchange not done within limits.connect_timeout").Msg("connection closed")
			return id, false
		}
		if err != nil {
			c.logReadError("during the authentication exchange", err)
			if reason, ok := codec.ReasonOf(err); ok {
				c.refuseReason(reason)
			}
			return id, false
		}
		switch p := p.(type) {
		case *codec.Auth:
			var m string
			if m, data = authProps(p); p.Reason != codec.ReasonContinueAuthentication || m != method {
				c.log.Warn().Stringer("reason", p.Reason).Str("method", m).
					Msg("refused: AUTH without Continue authentication or with another method [MQTT-4.12.0-3] [MQTT-4.12.0-5]")
				c.refuseReason(codec.ReasonProtocolError)
				return id, false
			}
		case *codec.Disconnect:
			c.log.Debug().Msg("the client gave up authenticating (DISCONNECT)")
			return id, false
		default:
			c.log.Warn().Stringer("packet", p.Type()).
				Msg("refused: a packet other than AUTH or DISCONNECT before CONNACK [MQTT-3.1.2-30]")
			c.refuseReason(codec.ReasonProtocolError)
			return id, false
		}
	}
}

// handleAuth runs a re-authentication after CONNACK [MQTT-4.12.1-1]: AUTH 0x19 starts it with
// the method CONNECT named, AUTH 0x18 continues it, and the broker ends it with AUTH 0x00, or
// with DISCONNECT 0x87 when it fails [MQTT-4.12.1-2], also when it proves another user than the
// one the session belongs to. Other packets flow meanwhile under the first authentication.
func (c *conn) handleAuth(p *codec.Auth) error {
	method, data := authProps(p)
	if c.enh.method == "" || method != c.enh.method {
		// §3.15.2.2.2; a client whose CONNECT named no method sends no AUTH [MQTT-4.12.0-7].
		return fmt.Errorf("%w: AUTH with method %q on a connection authenticated with %q", errProtocol, method, c.enh.method)
	}
	switch {
	case p.Reason == codec.ReasonReAuthenticate && c.enh.reauth == nil:
		m, ok := c.srv.auth.Load().methods[method]
		if !ok {
			return fmt.Errorf("%w: the reloaded auth files no longer offer %s", errNotAuthorized, method)
		}
		c.enh.reauth = m.Start()
	case p.Reason == codec.ReasonContinueAuthentication && c.enh.reauth != nil:
	default:
		return fmt.Errorf("%w: AUTH %v out of turn (re-authentication under way: %v)", errProtocol, p.Reason, c.enh.reauth != nil)
	}
	out, done, err := c.enh.reauth.Step(data)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotAuthorized, err)
	}
	reason := codec.ReasonContinueAuthentication
	if done {
		user := c.enh.reauth.Username()
		c.enh.reauth = nil
		if user != c.ident.Username {
			return fmt.Errorf("%w: proved to be %q on a connection of %q", errNotAuthorized, user, c.ident.Username)
		}
		reason = codec.ReasonSuccess
		c.log.Debug().Str("method", method).Msg("re-authenticated")
	}
	c.sendControl(&codec.Auth{Reason: reason, Props: &codec.Properties{AuthMethod: method, AuthData: out}})
	return nil
}

// authProps returns an AUTH packet's method and data; an AUTH without properties has neither.
func authProps(p *codec.Auth) (method string, data []byte) {
	if p.Props == nil {
		return "", nil
	}
	return p.Props.AuthMethod, p.Props.AuthData
}
