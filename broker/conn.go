package broker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/iocount"
	"github.com/holdfast/holdfast/listener"
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/session"
)

// conn is one client connection: a reader goroutine (serve, then read) that decodes and handles
// packets, and on a quiet TCP connection parks (park_linux.go), a writer goroutine (writeLoop)
// that sends the outbound buffer and the session's queue while there is something to send, and
// the queue of its publishes waiting for their commit (inOrder).
type conn struct {
	srv  *Server
	nc   net.Conn
	sock syscall.RawConn // nc's socket when nc is plain TCP: read directly, parked when quiet
	r    *codec.Reader
	log  connLog

	// Set by the reader during CONNECT, read-only afterwards.
	clientID string
	logID    bool // log lines name clientID (and bridgeIn): CONNECT got that far
	bridgeIn bool // the client's CONNECT said it is a bridge
	level    byte
	listener string       // the listener it came through, as the operator's console shows it
	link     session.Link // what the client's CONNECT set for deliveries to it

	connected5    atomic.Bool  // a level-5 client got its CONNACK: it is told why the server closes
	expiryCut     uint32       // the Session Expiry Interval used instead of the longer one asked for; 0: as asked
	unacked       atomic.Int32 // level 5: the client's QoS 1/2 PUBLISH packets not yet finished (Receive Maximum)
	noProblemInfo bool         // level 5: the client set Request Problem Information to 0
	willStored    bool         // the CONNECT's will is on disk with the session
	linger        bool         // the reader sent DISCONNECT: teardown closes lingering (reader-owned)
	deadlineSet   time.Time    // when the read deadline was last moved (reader-owned)
	sess          *sessionHandle
	bridge        *bridge // set when this is a bridge's link to a remote broker, made by the broker
	keepAlive     time.Duration
	ident         auth.Client    // who the client authenticated as, for the ACL
	enh           enhanced       // MQTT 5 enhanced authentication (reader-owned)
	acks          *persist.Batch // removals of acknowledged entries not yet submitted (reader-owned)

	retainRefused bool                // a retained publish passed a retained-store limit (logged once)
	aliasesIn     map[uint16]string   // MQTT 5: the topic aliases the client set (reader-owned)
	aliasesOut    map[string]aliasDef // MQTT 5: the topic aliases the broker assigned (under omu)
	rounds        uint64              // the writer's rounds: obuf taken for the socket (under omu)
	ahead         *readAhead          // the next read of the session's queue, started early (writer-owned; see dropReadAhead)

	outbound
	closing  chan struct{} // closed once: the connection is going away
	closeOne sync.Once

	ended chan struct{} // closed when teardown is complete

	mayPark        bool        // an accepted connection past CONNECT (a bridge's link never parks)
	parkID         uint64      // the poller's id for it while parked, else 0 (under parking.mu)
	keepAliveTimer *time.Timer // wakes it parked when the keep-alive runs out (under parking.mu)
	inOrder

	// Reader-owned staging of QoS 0 messages for other connections (stagePublish).
	staged      []stagedOut
	stageIdx    map[session.Outlet]int
	stagedBytes int
}

func newConn(s *Server, nc net.Conn) *conn {
	// The reader starts at the CONNECT bound: a client that has not authenticated must not make
	// the broker buffer limits.max_packet_size. connect raises the limit after CONNACK.
	c := &conn{
		srv:      s,
		nc:       nc,
		r:        codec.NewReader(iocount.Reader{R: nc, N: &s.stats.WireBytesIn}, min(s.cfg.Limits.MaxPacketSize, codec.MaxConnectSize)),
		outbound: outbound{omax: s.cfg.Limits.MaxOutboundBytes},
		closing:  make(chan struct{}),
		ended:    make(chan struct{}),
	}
	c.log.c = c
	if tc, ok := listener.PlainTCP(nc); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			c.sock = rc
			c.r.UseSocket(rc, &s.stats.WireBytesIn) // no read buffer while the client is quiet
		}
	}
	if s.cfg.MQTT5 {
		c.r.AcceptLevel5()
	}
	return c
}

// connLog is a connection's logger. It makes zerolog's context logger (remote address, client
// id) only for a line written at an enabled level: kept for the connection's life, that context
// would hold a 500-byte buffer per connection.
type connLog struct {
	c      *conn
	bridge string // the name of the bridge whose link to its remote this connection is
}

// Logger returns the connection's context logger.
func (l connLog) Logger() zerolog.Logger {
	c := l.c
	lc := c.srv.log.With().Str("remote", c.nc.RemoteAddr().String())
	if c.logID {
		lc = lc.Str("client_id", c.clientID)
		if c.bridgeIn {
			lc = lc.Bool("bridge", true)
		}
	}
	if l.bridge != "" {
		lc = lc.Str("bridge", l.bridge)
	}
	return lc.Logger()
}

func (l connLog) at(level zerolog.Level) *zerolog.Event {
	if level < l.c.srv.log.GetLevel() || level < zerolog.GlobalLevel() {
		return nil // zerolog's disabled event: its methods do nothing
	}
	lg := l.Logger()
	return lg.WithLevel(level)
}

func (l connLog) Debug() *zerolog.Event { return l.at(zerolog.DebugLevel) }
func (l connLog) Info() *zerolog.Event  { return l.at(zerolog.InfoLevel) }
func (l connLog) Warn() *zerolog.Event  { return l.at(zerolog.WarnLevel) }
func (l connLog) Error() *zerolog.Event { return l.at(zerolog.ErrorLevel) }

// serve handles CONNECT, then parks the connection (park_linux.go) or hands it to a fresh reader
// goroutine: CONNECT's work (authentication, the store) grows a goroutine's stack, and an idle
// connection would keep that stack for as long as it lives.
func (c *conn) serve() {
	defer c.srv.wg.Done()
	if !c.connect() {
		c.teardown()
		return
	}
	c.startDeadline()
	c.mayPark = true
	c.srv.wg.Add(1) // the reader's, held while it is parked
	if c.r.Buffered() == 0 && c.park() {
		return
	}
	go c.read()
}

// read is the reader goroutine: it reads until the connection ends, or until it parks (then the
// poller starts it again).
func (c *conn) read() {
	if c.readLoop() {
		return
	}
	c.teardown()
	c.srv.wg.Done()
}

// connect reads and handles CONNECT; false means the connection must close.
func (c *conn) connect() bool {
	c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.Limits.ConnectTimeout.Duration))
	p, err := c.r.ReadPacket()
	if errors.Is(err, codec.ErrPacketTooLarge) && c.srv.cfg.Limits.MaxPacketSize > codec.MaxConnectSize {
		c.log.Warn().Err(err).Str("when", "before CONNECT").
			Str("reason", "malformed packet: first packet larger than the largest legal CONNECT (limits.max_packet_size applies after CONNACK)").
			Msg("connection closed")
		return false
	}
	if err != nil && !errors.Is(err, codec.ErrUnsupportedProtocol) {
		c.logReadError("before CONNECT", err)
		if reason, ok := codec.ReasonOf(err); ok && c.r.Level() == codec.Level5 {
			c.level = codec.Level5
			c.refuseReason(reason) // a malformed level-5 CONNECT is answered [MQTT-4.13.1-1]
		}
		return false
	}
	cp, ok := p.(*codec.Connect)
	if !ok {
		// [MQTT-3.1.0-1] the first packet from the client must be CONNECT.
		c.log.Warn().Stringer("packet", p.Type()).Msg("closing: first packet is not CONNECT [MQTT-3.1.0-1]")
		return false
	}
	if !c.handleConnect(cp, err) {
		return false
	}
	// Set before the next read, so that packets pipelined behind CONNECT get the full limit.
	c.r.SetMaxPacketSize(c.srv.cfg.Limits.MaxPacketSize)
	return true
}

// startDeadline sets the read deadline after CONNECT: the keep-alive's and a half, or none.
func (c *conn) startDeadline() {
	if c.keepAlive == 0 {
		c.nc.SetReadDeadline(time.Time{}) // keep-alive 0: no limit after the CONNECT deadline
		return
	}
	c.deadlineSet = time.Now()
	c.nc.SetReadDeadline(c.deadlineSet.Add(c.keepAlive * 3 / 2))
}

// readLoop reads and handles packets after CONNECT (and startDeadline) until the connection ends,
// or until it parks the connection after a packet that leaves it quiet: true means parked, and the
// calling goroutine must not touch the connection again.
func (c *conn) readLoop() bool {
	for {
		c.waitRoom()
		p, err := c.r.ReadPacket()
		if err != nil {
			c.logReadError("", err)
			if reason, ok := reasonOfReadError(err); ok {
				c.farewell(reason, err.Error())
				c.linger = true
			}
			c.flushStaged() // what was read is delivered, however the connection ends
			c.flushAcks()
			return false
		}
		if c.keepAlive > 0 {
			// Refreshing the deadline on every packet costs a timer update; a quarter of the
			// keep-alive's precision is plenty [MQTT-3.1.2-24].
			if now := time.Now(); now.Sub(c.deadlineSet) > c.keepAlive/8 {
				c.nc.SetReadDeadline(now.Add(c.keepAlive * 3 / 2))
				c.deadlineSet = now
			}
		}
		if err := c.handle(p); err != nil {
			if !errors.Is(err, errDisconnect) {
				c.log.Warn().Err(err).Msg("closing connection")
				c.farewell(reasonOfHandleError(err), err.Error())
				c.linger = true
			}
			c.flushStaged()
			c.flushAcks()
			return false
		}
		if c.r.Buffered() == 0 {
			c.flushStaged() // about to block on the socket
			c.flushAcks()
			if quiet(p) && c.park() {
				return true
			}
		}
	}
}

// quiet reports whether p is a packet after which a client usually sends nothing for a while, so
// that its reader parks (a busy publisher's never does: parking costs system calls).
func quiet(p codec.Packet) bool {
	switch p.(type) {
	case *codec.Pingreq, *codec.Subscribe, *codec.Unsubscribe:
		return true
	}
	return false
}

var errDisconnect = errors.New("client sent DISCONNECT")

func (c *conn) logReadError(when string, err error) {
	ev := c.log.Warn()
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		ev = c.log.Debug()
	case errors.Is(err, os.ErrDeadlineExceeded):
		if c.clientID == "" {
			ev = ev.Str("reason", "no CONNECT within limits.connect_timeout")
		} else {
			ev = ev.Str("reason", "keep-alive expired [MQTT-3.1.2-24]")
		}
	case errors.Is(err, codec.ErrMalformed), errors.Is(err, codec.ErrPacketTooLarge):
		ev = ev.Str("reason", "malformed packet")
	}
	select {
	case <-c.closing:
		ev = c.log.Debug() // we closed it ourselves (take-over, shutdown, write failure)
	default:
	}
	if when != "" {
		ev = ev.Str("when", when)
	}
	ev.Err(err).Msg("connection closed")
}

// handle dispatches one packet after CONNECT. An error closes the connection.
func (c *conn) handle(p codec.Packet) error {
	switch p.(type) {
	case *codec.Publish:
	case *codec.Puback, *codec.Pubcomp:
		c.flushStaged() // keep staged QoS 0 messages ahead of whatever this packet causes
	default:
		c.flushStaged()
		c.flushAcks()
	}
	switch p := p.(type) {
	case *codec.Publish:
		return c.handlePublish(p)
	case *codec.Puback:
		c.acked(p.PacketID, codec.TypePuback)
	case *codec.Pubrec:
		c.handlePubrec(p.PacketID)
	case *codec.Pubrel:
		c.handlePubrel(p.PacketID)
	case *codec.Pubcomp:
		c.acked(p.PacketID, codec.TypePubcomp)
	case *codec.Subscribe:
		return c.handleSubscribe(p)
	case *codec.Unsubscribe:
		return c.handleUnsubscribe(p)
	case *codec.Pingreq:
		c.sendControl(&codec.Pingresp{}) // [MQTT-3.12.4-1]
	case *codec.Disconnect:
		if p.Props != nil && p.Props.Has(codec.PropSessionExpiryInterval) {
			if err := c.changeExpiry(p.Props.SessionExpiry); err != nil {
				return err
			}
		}
		if p.Reason != codec.ReasonDisconnectWithWill { // [MQTT-3.14.4-3]
			c.sess.lock().Disconnected()
			c.sess.unlock()
		}
		return errDisconnect
	case *codec.Auth:
		return c.handleAuth(p)
	case *codec.Connect:
		return fmt.Errorf("%w: second CONNECT [MQTT-3.1.0-2]", errProtocol)
	default:
		if c.bridge != nil {
			if ok, err := c.handleFromRemote(p); ok {
				return err
			}
		}
		return fmt.Errorf("%w: the client sent %s, a server-only packet or one out of place", errProtocol, p.Type())
	}
	return nil
}

// commitFailed closes a connection whose acknowledgement depended on a write that failed: the
// client will retry, and nothing unacknowledged is lost.
func (c *conn) commitFailed(err error) {
	if !errors.Is(err, persist.ErrClosed) && !errors.Is(err, persist.ErrFailed) { // a failed store says so once
		c.log.Error().Err(err).Msg("store write failed: closing the connection without acknowledging")
	}
	c.close()
}

// close asks both loops to stop; the reader's teardown does the rest.
func (c *conn) close() {
	c.closeOne.Do(func() {
		close(c.closing)
		c.wakeParked()
		c.nc.Close()
	})
}

// closeLingering closes the connection after the DISCONNECT the reader sent: it stops writing at
// once but reads and drops what the client still sends for up to lingerTime before it closes, so
// that unread packets of a client that is still sending do not make the kernel reset the
// connection and throw away the DISCONNECT before the client reads it.
func (c *conn) closeLingering() {
	c.closeOne.Do(func() {
		close(c.closing)
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		c.nc.SetReadDeadline(time.Now().Add(lingerTime))
		c.srv.wg.Add(1)
		go func() {
			defer c.srv.wg.Done()
			io.Copy(io.Discard, io.LimitReader(c.nc, lingerBytes))
			c.nc.Close()
		}()
	})
}

// How long, and for how many bytes, closeLingering reads after a server-sent DISCONNECT.
const (
	lingerTime  = time.Second
	lingerBytes = 1 << 20
)

// teardown runs once, when the reader returns.
func (c *conn) teardown() {
	if c.linger {
		c.closeLingering()
	}
	c.close()
	c.omu.Lock()
	c.oclosed = true
	c.obuf = nil
	c.releaseWaitersLocked()
	c.omu.Unlock()
	c.writers.Wait()
	// No writer can take a page read ahead now.
	c.dropReadAhead()
	c.all.Wait() // every publish read is routed or given back before the session goes
	if c.sess != nil {
		c.endSession()
	}
	c.srv.removeConn(c)
	close(c.ended)
}
