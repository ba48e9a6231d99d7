package broker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/listener"
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/session"
)

// maxV31ClientID is MQTT 3.1's limit on client identifiers; 3.1.1 allows up to 65,535 bytes.
const maxV31ClientID = 23

// handleConnect applies the CONNECT rules, takes over or creates the session, starts the writer
// and queues CONNACK. It returns false when the connection must close. decodeErr is
// codec.ErrUnsupportedProtocol or nil.
func (c *conn) handleConnect(cp *codec.Connect, decodeErr error) bool {
	if decodeErr != nil {
		// Answered in 3.1.1's form: the level asked for is not one the broker speaks.
		c.log.Warn().Str("protocol", cp.ProtocolName).Uint8("protocol_level", cp.ProtocolLevel).
			Msg("refused: unsupported protocol level [MQTT-3.1.2-2]")
		c.refuse(codec.RefusedProtocolVersion)
		return false
	}
	c.level = cp.ProtocolLevel
	c.noProblemInfo = c.level5() && !wantsProblemInfo(cp)
	c.link = linkOf(cp)
	id := cp.ClientID
	assigned := ""
	switch {
	case id == "" && cp.ProtocolLevel == codec.Level31:
		c.log.Warn().Msg("refused: MQTT 3.1 requires a client identifier")
		c.refuse(codec.RefusedIdentifierRejected)
		return false
	case id == "" && !cp.CleanSession && !c.level5():
		c.log.Warn().Msg("refused: empty client identifier with clean session 0 [MQTT-3.1.3-8]")
		c.refuse(codec.RefusedIdentifierRejected)
		return false
	case id == "":
		id = newClientID() // [MQTT-3.1.3-6]
		assigned = id      // MQTT 5 tells the client [MQTT-3.2.2-16]
	case cp.ProtocolLevel == codec.Level31 && len(id) > maxV31ClientID && c.srv.cfg.Limits.StrictClientID:
		c.log.Warn().Int("length", len(id)).
			Msg("refused: MQTT 3.1 client identifier longer than 23 bytes (limits.strict_client_id)")
		c.refuse(codec.RefusedIdentifierRejected)
		return false
	}
	c.clientID = id
	ident, ok := c.login(cp)
	if !ok {
		return false
	}
	c.ident = ident
	if c.srv.cfg.Auth.ClientIDPrefixFromUsername && !ident.Anonymous {
		if cp.ClientID == "" {
			id = ident.Username + "-" + id
			c.clientID, c.ident.ID = id, id
		} else if !ownsClientID(ident.Username, id) {
			c.log.Warn().Str("client_id", id).Str("username", ident.Username).
				Msg("refused: the client id does not start with the username (auth.client_id_prefix_from_username)")
			c.refuse(codec.RefusedIdentifierRejected)
			return false
		}
	}
	c.logID, c.bridgeIn = true, cp.Bridge
	c.keepAlive = time.Duration(cp.KeepAlive) * time.Second
	serverKeepAlive := c.level5() && c.srv.cfg.Limits.MaxKeepAlive.Duration > 0 &&
		(c.keepAlive == 0 || c.keepAlive > c.srv.cfg.Limits.MaxKeepAlive.Duration)
	if serverKeepAlive {
		c.keepAlive = c.srv.cfg.Limits.MaxKeepAlive.Duration // the client is told in CONNACK [MQTT-3.1.2-21]
	}
	if cp.Will != nil && !c.srv.canPublish(&c.ident, cp.Will.Topic) {
		// Checked again when it is published; refusing it here tells the client early.
		c.log.Info().Str("topic", cp.Will.Topic).Msg("will topic not allowed by the ACL: the will will not be published")
	}

	old, code := c.srv.claim(c)
	if code != codec.Accepted {
		c.refuse(code)
		return false
	}
	if old != nil {
		// [MQTT-3.1.4-2] the existing connection of this client id is closed; wait until it has
		// let go of the session so that only one writer ever serves it.
		old.log.Info().Msg("closing: client id taken over by a new connection [MQTT-3.1.4-2]")
		old.farewell(codec.ReasonSessionTakenOver, "another connection took over the session")
		old.close()
		<-old.ended
	}

	present, err := c.openSession(cp)
	if err != nil {
		c.log.Error().Err(err).Msg("refused: session not opened")
		c.refuse(codec.RefusedServerUnavailable)
		return false
	}
	listener.Established(c.nc) // no longer counts against limits.max_pending_connects*, before the client can tell
	// The session-present byte is reserved (0) in MQTT 3.1 [MQTT-3.2.2-1..3].
	ack := &codec.Connack{SessionPresent: present && c.level != codec.Level31}
	if c.level5() {
		ack.Props = c.srv.connackProps(assigned)
		ack.Props.AuthMethod, ack.Props.AuthData = c.enh.method, c.enh.final // [MQTT-4.12.0-5] [MQTT-4.12.0-6]
		if serverKeepAlive {
			ack.Props.ServerKeepAlive = uint16(c.keepAlive / time.Second)
		}
		if c.expiryCut != 0 {
			ack.Props.SessionExpiry = c.expiryCut // §3.2.2.3.2
		}
	}
	c.sendControl(ack)
	m := c.sess.lock()
	m.SetWill(cp.Will)
	m.Attach(c.link, c)
	c.sess.unlock()
	c.srv.membersOnline(c.sess)
	c.connected5.Store(c.level5())
	c.Wake()
	ev := c.log.Debug()
	if cp.Bridge {
		ev = c.log.Info() // a link between brokers: rare, and worth seeing at the default level
	}
	ev.Bool("clean_session", cp.CleanSession).Bool("session_present", present).
		Uint8("protocol_level", c.level).Msg("connected")
	return true
}

// openSession finds or creates the session for c.clientID and makes it durable before CONNACK,
// so that session-present tells the truth after a crash. It reports whether a session was
// resumed.
func (c *conn) openSession(cp *codec.Connect) (bool, error) {
	srv := c.srv
	existing := srv.sessions.get(c.clientID)
	// A 3.x session outlives its connection unless clean; a level-5 one if it has an expiry
	// interval, or if it resumes one that does (it then ends when this connection does).
	persistent := !cp.CleanSession
	expiry, hasExpiry := uint32(0), c.level5()
	if hasExpiry {
		expiry = c.sessionExpiry(cp)
		persistent = expiry > 0 || !cp.CleanSession && existing != nil && existing.Persistent
	}
	if persistent && (existing == nil || !existing.Persistent) && srv.diskLow() {
		return false, errors.New("a new persistent session needs disk and free space is below store.min_free_bytes")
	}
	var b persist.Batch
	var ended *codec.Will
	var endedOwner auth.Client
	present := false
	switch {
	case !cp.CleanSession && existing != nil && existing.Persistent:
		c.sess = existing
		present = true
	default:
		if existing != nil {
			m := existing.lock()
			ended, endedOwner = m.WillDue(time.Now(), true), readerOf(m) // its session ends: due now
			existing.unlock()
			srv.discardSession(existing, &b) // [MQTT-3.1.2-6] clean session discards the previous one
		}
		c.sess = newHandle(session.New(c.clientID, persistent, c.level, &srv.sessOpts), srv.backlogHigh)
		srv.sessions.put(c.sess)
	}
	m := c.sess.lock()
	m.SetIdentity(session.Identity{Username: c.ident.Username, Anonymous: c.ident.Anonymous})
	m.SetExpiry(expiry, hasExpiry)
	record, pending := m.Record(), m.Will() != nil
	c.sess.unlock()
	if c.sess.Persistent {
		b.PutSession(c.clientID, sessionRecord(record))
		// The will is stored with the session, so that a crash neither loses nor repeats it; one
		// still pending from the last connection is not sent now [MQTT-3.1.3-9].
		switch {
		case cp.Will != nil:
			b.PutWill(c.clientID, cp.Will)
			c.willStored = true
		case pending:
			b.DeleteWill(c.clientID)
		}
	}
	if b.Len() > 0 {
		// Also a barrier: acknowledgements the previous connection submitted are on disk before
		// this one reads the queue.
		if _, err := srv.store.Commit(&b); err != nil {
			return false, err
		}
	}
	if ended != nil {
		srv.publishWill(&delivery{}, ended, endedOwner, c.log.Logger())
	}
	return present, nil
}

// sessionExpiry is the Session Expiry Interval a level-5 CONNECT asked for, cut to
// limits.session_expiry when that is shorter (CONNACK then says so, §3.2.2.3.2).
func (c *conn) sessionExpiry(cp *codec.Connect) uint32 {
	var asked uint32
	if cp.Props != nil {
		asked = cp.Props.SessionExpiry
	}
	return c.cutExpiry(asked)
}

// cutExpiry returns asked, or limits.session_expiry when that is shorter, and remembers the cut.
func (c *conn) cutExpiry(asked uint32) uint32 {
	if lim := c.srv.cfg.Limits.SessionExpiry.Duration; lim > 0 {
		if most := uint32(min(lim/time.Second, 0xFFFFFFFE)); asked > most {
			c.expiryCut = most
			return most
		}
	}
	return asked
}

// changeExpiry applies the Session Expiry Interval a DISCONNECT sets: one that was 0 at CONNECT
// cannot become anything else [MQTT-3.14.2-2]; a persistent session set to 0 ends with this
// connection (endSession).
func (c *conn) changeExpiry(seconds uint32) error {
	m := c.sess.lock()
	defer c.sess.unlock()
	if was, _ := m.Expiry(); was == 0 && seconds != 0 {
		return fmt.Errorf("%w: DISCONNECT sets a Session Expiry Interval, CONNECT set 0 [MQTT-3.14.2-2]", errProtocol)
	}
	m.SetExpiry(c.cutExpiry(seconds), true)
	return nil
}

// refuse writes a CONNACK with an error code directly (the writer has not started) and leaves
// the reader to close the connection [MQTT-3.2.2-5].
func (c *conn) refuse(code codec.ConnackCode) {
	c.srv.stats.Refused[refuseReasonOf(code)].Add(1)
	c.writeDirect(&codec.Connack{ReturnCode: code, Reason: reasonOfConnack(code)})
}

// refuseReason refuses a level-5 CONNECT (c.level is 5) with a reason that 3.x has no return code
// for.
func (c *conn) refuseReason(reason codec.ReasonCode) {
	c.writeDirect(&codec.Connack{Reason: reason})
}

// writeDirect writes p (a refusing CONNACK, an AUTH of CONNECT's exchange) at the connection's
// level, directly: the writer has not started.
func (c *conn) writeDirect(p codec.Packet) {
	if c.level5() {
		c.sent(p) // its reason code counted
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.Limits.WriteTimeout.Duration))
	c.nc.Write(p.AppendLevel(nil, c.level))
}

// endSession runs in teardown: a clean session ends with its connection, a persistent one goes
// offline with its queue on disk (or ends now, if its expiry interval is 0), and an unexpected
// close publishes the will, or leaves it pending its delay.
func (c *conn) endSession() {
	srv := c.srv
	var d delivery
	now := time.Now()
	m := c.sess.lock()
	ws, back := m.Detach(now)
	will := m.TakeWill(srv.cfg.Limits.SessionExpiry.Duration)
	if c.willStored && m.Will() == nil {
		d.batch.DeleteWill(c.clientID) // published now (in this commit), or discarded by DISCONNECT
	}
	end, expires := m.ExpiresAt(srv.cfg.Limits.SessionExpiry.Duration)
	record, owner := m.Record(), readerOf(m)
	c.sess.unlock()
	srv.settle(ws)
	addWrites(&d.batch, c.clientID, ws...)
	srv.membersOffline(c.sess, back)
	switch {
	case !c.sess.Persistent:
		srv.discardSession(c.sess, nil)
	case expires && !end.After(now):
		srv.discardSession(c.sess, &d.batch) // the connection still holds the client id
	default:
		d.batch.PutSession(c.clientID, sessionRecord(record))
		srv.schedule(c.sess)
	}
	if will == nil {
		srv.store.Submit(&d.batch, srv.logCommitError("recording a session going offline"))
		return
	}
	srv.publishWill(&d, will, owner, c.log.Logger())
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// newClientID returns a unique identifier for a client that sent an empty one.
func newClientID() string {
	var b [12]byte
	rand.Read(b[:])
	return "holdfast-" + hex.EncodeToString(b[:])
}
