package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/router"
	"github.com/holdfast/holdfast/session"
)

// A bridge is a persistent session of this broker whose connection the broker makes itself, to
// a remote broker, as an MQTT client: its subscriptions are the `out` topics, so what matches them
// is queued on disk like any persistent session's queue, sent to the remote by that connection's
// writer and removed when the remote acknowledges it; what the remote sends on the `in`
// subscriptions is read by the same connection's reader and routed here like any publish,
// acknowledged to the remote once durable. The conn does both jobs unchanged: only the
// handshake is the client's, and a few packets only a server sends are welcome.
type bridge struct {
	cfg  *config.Bridge
	id   string // the store id of its session
	sess *sessionHandle

	connected atomic.Bool
	sent      atomic.Int64 // PUBLISH packets sent to the remote
	acked     atomic.Int64 // of those, acknowledged (PUBACK, PUBCOMP)
	plain     atomic.Bool  // the remote refused the bridge bit once: connect without it
}

// bridgePrefix starts the store id of a bridge's session: U+0000 is in no client identifier
// [MQTT-1.5.3-2], so no client can take it over (see session.GroupPrefix for the groups').
const bridgePrefix = "\x00$bridge/"

// maxRestart caps the reconnect delay.
const maxRestart = time.Minute

// startBridges makes or resumes each bridge's session, subscribes its out topics (and drops
// subscriptions no longer configured), and starts the loops that keep the links up. It runs after
// recovery, before the listeners open.
func (s *Server) startBridges() error {
	for i := range s.cfg.Bridges {
		cfg := &s.cfg.Bridges[i]
		b := &bridge{cfg: cfg, id: bridgePrefix + cfg.Name}
		opts := s.sessOpts
		opts.MaxInflight = cfg.MaxInflight
		opts.MemoryWindow = max(opts.MemoryWindow, cfg.MaxInflight)
		if cfg.MaxQueuedMessages > 0 {
			opts.MaxQueuedMessages = cfg.MaxQueuedMessages
		}
		if cfg.MaxQueuedBytes > 0 {
			opts.MaxQueuedBytes = cfg.MaxQueuedBytes
		}
		b.sess = s.sessions.get(b.id)
		var batch persist.Batch
		if b.sess == nil {
			m := session.New(b.id, true, cfg.Level(), &opts)
			b.sess = newHandle(m, s.backlogHigh)
			s.sessions.put(b.sess)
		} else {
			b.sess.lock().SetOptions(&opts)
			b.sess.unlock()
		}
		m := b.sess.lock()
		m.SetExpiry(0xFFFFFFFF, true) // a bridge's queue never expires while the link is down
		old := m.Subscriptions()
		record := sessionRecord(m.Record())
		b.sess.unlock()
		batch.PutSession(b.id, record)
		want := make(map[string]bool)
		for _, t := range cfg.Topics {
			if !t.Out() {
				continue
			}
			f := t.LocalPrefix + t.Pattern
			want[f] = true
			// No Local: what came in through this bridge does not go back out through it.
			// Retain As Published: the remote gets the retain flag as it was published.
			s.subscribe(b.sess, f, message.SubOptions{QoS: t.QoS, NoLocal: true, RetainAsPublished: true}, &batch)
		}
		for f := range old {
			if !want[f] {
				s.unsubscribe(b.sess, f, &batch)
			}
		}
		if _, err := s.store.Commit(&batch); err != nil {
			return fmt.Errorf("bridge %s: storing its session: %w", cfg.Name, err)
		}
		b.sess.bridge = b
		s.bridges = append(s.bridges, b)
		s.queueQoS0 = s.queueQoS0 || cfg.QueueQoS0
		s.wg.Add(1)
		go s.keepBridge(b)
	}
	return nil
}

// keepBridge connects b, and connects it again after every loss with exponential back-off and
// jitter, until the server shuts down.
func (s *Server) keepBridge(b *bridge) {
	defer s.wg.Done()
	log := s.log.With().Str("bridge", b.cfg.Name).Logger()
	delay := b.cfg.RestartTimeout.Duration
	for attempt := 0; ; attempt++ {
		addr := b.cfg.Address[attempt%len(b.cfg.Address)]
		c, err := s.dialBridge(b, addr)
		if errors.Is(err, errBridgeBitRefused) {
			log.Info().Str("address", addr).Msg(err.Error())
			attempt--
			continue // at once, without the bit
		}
		if err == nil {
			delay = b.cfg.RestartTimeout.Duration
			log.Info().Str("address", addr).Msg("bridge connected")
			s.bridgeState(b, true)
			c.runBridge()
			s.bridgeState(b, false)
			log.Info().Str("address", addr).Msg("bridge disconnected")
		} else {
			log.Warn().Err(err).Str("address", addr).Dur("retry_in", delay).Msg("bridge could not connect")
		}
		// Jitter: up to a quarter more, so that bridges cut off together do not come back together.
		wait := delay + time.Duration(rand.Int64N(int64(delay)/4+1))
		select {
		case <-s.quit:
			return
		case <-time.After(wait):
		}
		delay = min(2*delay, maxRestart)
	}
}

// bridgeState records and announces whether b's link is up: $SYS/broker/connection/<name>/state,
// retained, 1 or 0 (Mosquitto's notification topic).
func (s *Server) bridgeState(b *bridge, up bool) {
	b.connected.Store(up)
	if !b.cfg.Notify() {
		return
	}
	state := "0"
	if up {
		state = "1"
	}
	s.setSys("connection/"+b.cfg.Name+"/state", state)
}

// dialBridge opens b's connection to addr and makes the handshake: CONNECT (with the bridge bit
// unless the remote refused it before), CONNACK. It returns the conn, registered with the server,
// ready to run.
func (s *Server) dialBridge(b *bridge, addr string) (*conn, error) {
	d := net.Dialer{Timeout: s.cfg.Limits.ConnectTimeout.Duration}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if b.cfg.TLS() {
		tc, err := bridgeTLS(b.cfg, addr)
		if err != nil {
			nc.Close()
			return nil, err
		}
		nc = tls.Client(nc, tc)
	}
	done := make(chan struct{})
	go func() { // a remote that does not answer must not hold up a shutdown
		select {
		case <-s.quit:
			nc.Close()
		case <-done:
		}
	}()
	c, err := s.handshake(b, nc)
	close(done)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return nil, errors.New("shutting down")
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.stats.Connections.Add(1)
	return c, nil
}

func bridgeTLS(cfg *config.Bridge, addr string) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(addr)
	tc := &tls.Config{ServerName: host, InsecureSkipVerify: cfg.Insecure, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no certificate", cfg.CAFile)
		}
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// errBridgeBitRefused: the remote answered the bridge bit with CONNACK 0x01.
var errBridgeBitRefused = errors.New("the remote refused the bridge protocol level (try_private); connecting without it next")

// handshake sends b's CONNECT on nc and reads the CONNACK.
func (s *Server) handshake(b *bridge, nc net.Conn) (*conn, error) {
	cfg := b.cfg
	c := newConn(s, nc)
	c.listener = "bridge " + cfg.Name
	c.bridge = b
	c.level = cfg.Level()
	c.r.SetLevel(c.level)
	c.clientID = b.id
	c.sess = b.sess
	c.keepAlive = cfg.KeepAlive.Duration
	c.ident.Username = "bridge " + cfg.Name
	c.link = session.Link{Level: c.level, Bridge: true} // No Local and Retain As Published at any level, as for a bridge in
	c.log.bridge = cfg.Name
	cp := codec.Connect{
		ProtocolName:  codec.ProtocolName311,
		ProtocolLevel: c.level,
		CleanSession:  cfg.CleanSession,
		KeepAlive:     uint16(cfg.KeepAlive.Duration / time.Second),
		ClientID:      cfg.ClientID,
	}
	if c.level == codec.Level31 {
		cp.ProtocolName = codec.ProtocolName31
	}
	if c.level == codec.Level5 {
		cp.Props = &codec.Properties{ReceiveMaximum: uint16(s.cfg.Limits.ReceiveMaximum)}
		if !cfg.CleanSession {
			cp.Props.SessionExpiry = 0xFFFFFFFF
		}
	}
	if cfg.Username != "" {
		cp.Username, cp.HasUsername = cfg.Username, true
	}
	if pw, err := cfg.Secret(); err != nil {
		return nil, fmt.Errorf("password_file: %w", err)
	} else if pw != "" {
		cp.Password, cp.HasPassword = []byte(pw), true
	}
	private := cfg.Private() && c.level != codec.Level5 && !b.plain.Load()
	cp.Bridge = private
	nc.SetDeadline(time.Now().Add(s.cfg.Limits.ConnectTimeout.Duration))
	if _, err := nc.Write(cp.Append(nil)); err != nil {
		return nil, err
	}
	p, err := c.r.ReadPacket()
	if err != nil {
		return nil, fmt.Errorf("reading CONNACK: %w", err)
	}
	ack, ok := p.(*codec.Connack)
	switch {
	case !ok:
		return nil, fmt.Errorf("the remote answered CONNECT with %s", p.Type())
	case private && ack.ReturnCode == codec.RefusedProtocolVersion:
		b.plain.Store(true)
		return nil, errBridgeBitRefused
	case ack.ReturnCode != codec.Accepted || ack.Reason >= 0x80:
		return nil, fmt.Errorf("the remote refused the bridge: CONNACK %d (reason 0x%02x)", ack.ReturnCode, byte(ack.Reason))
	}
	if pr := ack.Props; pr != nil {
		// The remote's limits on what the bridge sends it (§3.2.2.3).
		c.link.ReceiveMaximum, c.link.MaxPacketSize, c.link.TopicAliasMax = pr.ReceiveMaximum, pr.MaximumPacketSize, pr.TopicAliasMaximum
	}
	nc.SetDeadline(time.Time{})
	c.r.SetMaxPacketSize(s.cfg.Limits.MaxPacketSize)
	return c, nil
}

// runBridge serves an established bridge connection until it ends: it attaches the bridge's
// session (its queue goes out), subscribes the in topics on the remote, pings within the
// keep-alive, and reads.
func (c *conn) runBridge() {
	b := c.bridge
	m := c.sess.lock()
	m.Attach(c.link, c)
	c.sess.unlock()
	c.srv.membersOnline(c.sess)
	var subs []codec.Subscription
	for _, t := range b.cfg.Topics {
		if t.In() {
			subs = append(subs, codec.Subscription{Filter: t.RemotePrefix + t.Pattern, QoS: t.QoS})
		}
	}
	if len(subs) > 0 {
		c.sendControl(&codec.Subscribe{PacketID: 1, Subscriptions: subs})
	}
	c.Wake()
	c.srv.wg.Add(1)
	go c.ping()
	c.srv.wg.Add(1) // teardown's
	func() {
		defer c.srv.wg.Done()
		defer c.teardown()
		c.startDeadline()
		c.readLoop()
	}()
}

// ping sends PINGREQ every keep-alive, so that the remote keeps the link and its PINGRESP keeps
// the reader's deadline.
func (c *conn) ping() {
	defer c.srv.wg.Done()
	t := time.NewTicker(c.keepAlive)
	defer t.Stop()
	for {
		select {
		case <-c.closing:
			return
		case <-t.C:
			c.sendControl(&codec.Pingreq{})
		}
	}
}

// handleFromRemote takes the packets a bridge's remote sends that a client never does.
func (c *conn) handleFromRemote(p codec.Packet) (bool, error) {
	switch p := p.(type) {
	case *codec.Pingresp, *codec.Unsuback:
		return true, nil
	case *codec.Suback:
		for i, code := range p.ReturnCodes {
			if code >= 0x80 {
				c.log.Warn().Int("topic", i).Uint8("code", code).Msg("the remote refused an in subscription of the bridge")
			}
		}
		return true, nil
	}
	return false, nil
}

// remoteTopic is the topic a local message goes out to the remote on: the local prefix of the
// first out topic that matches it replaced by the remote one; "" when none matches.
func (b *bridge) remoteTopic(local string) string {
	for _, t := range b.cfg.Topics {
		if t.Out() && router.MatchFilter(t.LocalPrefix+t.Pattern, local) {
			return t.RemotePrefix + strings.TrimPrefix(local, t.LocalPrefix)
		}
	}
	return ""
}

// localTopic is remoteTopic's reverse for what comes in.
func (b *bridge) localTopic(remote string) string {
	for _, t := range b.cfg.Topics {
		if t.In() && router.MatchFilter(t.RemotePrefix+t.Pattern, remote) {
			return t.LocalPrefix + strings.TrimPrefix(remote, t.RemotePrefix)
		}
	}
	return ""
}

// BridgeStats is one bridge's state, for metrics.
type BridgeStats struct {
	Name        string
	Connected   bool
	Queued      int
	QueuedBytes int64
	Sent, Acked int64
}

// Bridges returns the state of every bridge.
func (s *Server) Bridges() []BridgeStats {
	out := make([]BridgeStats, 0, len(s.bridges))
	for _, b := range s.bridges {
		n, bytes := b.sess.lock().Queued()
		b.sess.unlock()
		out = append(out, BridgeStats{Name: b.cfg.Name, Connected: b.connected.Load(), Queued: n, QueuedBytes: bytes, Sent: b.sent.Load(), Acked: b.acked.Load()})
	}
	return out
}
