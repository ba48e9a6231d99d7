package broker

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/listener"
)

// Refuser holds a cluster node's MQTT listeners while the node is not the leader: it binds every
// listener of the configuration as Server.ListenAndServe does and answers each CONNECT at once
// with a refusal, then closes the connection. MQTT 3.1 and 3.1.1 clients get CONNACK 0x03
// (Server unavailable); MQTT 5 clients get 0x9C (Use another server) with the leader's MQTT
// address as the Server Reference (§4.11), or 0x88 (Server unavailable) while no leader is known.
//
// It applies the broker's limits.connect_timeout, its bound on the first packet and its socket
// gate (max_connections, max_pending_connects*), needs no store and counts nothing into a
// Server's Stats. A Refuser serves once: after Shutdown, ListenAndServe returns ErrServerClosed
// (a node makes a new one at each role change).
type Refuser struct {
	cfg     *config.Config
	log     zerolog.Logger
	connLog zerolog.Logger // sampled: what happens to connections; a flood of them must not flood the log
	gate    *listener.Gate
	leader  atomic.Pointer[string] // the leader's MQTT address; "" = none known

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[net.Conn]struct{}
	closing   bool
	quit      chan struct{}
	wg        sync.WaitGroup // accept loops and connections
}

// NewRefuser returns a Refuser for the listeners and limits of cfg that knows no leader yet.
func NewRefuser(cfg *config.Config, log zerolog.Logger) *Refuser {
	r := &Refuser{
		cfg:   cfg,
		log:   log,
		conns: make(map[net.Conn]struct{}),
		quit:  make(chan struct{}),
	}
	r.connLog = log.Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Second})
	r.gate = listener.NewGate(listener.GateLimits{
		MaxConnections:       cfg.Limits.MaxConnections,
		MaxPending:           cfg.Limits.MaxPendingConnects,
		MaxPendingPerAddress: cfg.Limits.MaxPendingConnectsPerAddress,
	}, r.gateRefused)
	var none string
	r.leader.Store(&none)
	return r
}

// SetLeader sets the MQTT address (the leader's cluster.mqtt_advertise) that MQTT 5 clients are
// referred to from the next CONNECT on; "" means no leader is known. Safe to call at any time.
func (r *Refuser) SetLeader(mqttAddr string) {
	r.leader.Store(&mqttAddr)
}

// ListenAndServe binds every listener of the configuration, as Server.ListenAndServe does, and
// refuses the connections they accept in the background until Shutdown. It returns once all are
// bound; an error names the listener (its index, type and address), and the listeners bound
// before it stay open until Shutdown.
func (r *Refuser) ListenAndServe() error {
	for i := range r.cfg.Listeners {
		l, name, err := openListener(r.cfg, i, r.gate, r.log, "listening, refusing CONNECT: this node is not the leader")
		if err != nil {
			return err
		}
		r.mu.Lock()
		if r.closing {
			r.mu.Unlock()
			l.Close()
			return ErrServerClosed
		}
		r.listeners = append(r.listeners, l)
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			acceptLoop(l, r.quit, r.log, func(nc net.Conn) { r.admit(nc, name) })
		}()
	}
	return nil
}

// admit tracks nc and starts its goroutine, unless the Refuser is shutting down.
func (r *Refuser) admit(nc net.Conn, name string) {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		nc.Close()
		return
	}
	r.conns[nc] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		r.refuse(nc, name)
		nc.Close()
		r.mu.Lock()
		delete(r.conns, nc)
		r.mu.Unlock()
	}()
}

// refuse reads the client's first packet under the broker's connect timeout and packet bound and
// answers a CONNECT with its refusing CONNACK. The caller closes nc.
func (r *Refuser) refuse(nc net.Conn, name string) {
	lim := &r.cfg.Limits
	log := r.connLog.With().Str("remote", nc.RemoteAddr().String()).Str("listener", name).Logger()
	nc.SetReadDeadline(time.Now().Add(lim.ConnectTimeout.Duration))
	rd := codec.NewReader(nc, min(lim.MaxPacketSize, codec.MaxConnectSize))
	if r.cfg.MQTT5 {
		rd.AcceptLevel5()
	}
	p, err := rd.ReadPacket()
	if errors.Is(err, codec.ErrUnsupportedProtocol) {
		// Answered in 3.1.1's form, as the broker does: the leader would refuse it too.
		log.Warn().Err(err).Msg("refused: unsupported protocol level [MQTT-3.1.2-2]")
		r.answer(nc, &codec.Connack{ReturnCode: codec.RefusedProtocolVersion}, 0)
		return
	}
	if err != nil {
		r.logDrop(&log, err)
		if reason, ok := codec.ReasonOf(err); ok && rd.Level() == codec.Level5 {
			r.answer(nc, &codec.Connack{Reason: reason}, codec.Level5) // [MQTT-4.13.1-1]
		}
		return
	}
	cp, ok := p.(*codec.Connect)
	if !ok {
		log.Warn().Stringer("packet", p.Type()).Msg("connection closed: first packet is not CONNECT [MQTT-3.1.0-1]")
		return
	}
	ack := r.connack(cp)
	log.Debug().Str("client_id", cp.ClientID).Uint8("protocol_level", cp.ProtocolLevel).
		Uint8("return_code", byte(ack.ReturnCode)).Stringer("reason", ack.Reason).
		Msg("CONNECT refused: this node is not the leader")
	r.answer(nc, ack, cp.ProtocolLevel)
}

// connack is the refusal of cp: 0x03 below level 5; at level 5, 0x9C with the leader's address
// as Server Reference, or 0x88 without a leader. A Reason String says why, unless it would make
// the packet larger than the client's Maximum Packet Size [MQTT-3.1.2-25].
func (r *Refuser) connack(cp *codec.Connect) *codec.Connack {
	if cp.ProtocolLevel != codec.Level5 {
		return &codec.Connack{ReturnCode: codec.RefusedServerUnavailable} // Session Present 0 [MQTT-3.2.2-4]
	}
	ack := &codec.Connack{Reason: codec.ReasonServerUnavailable, Props: &codec.Properties{
		ReasonString: "no cluster leader is known: try again later",
	}}
	if leader := *r.leader.Load(); leader != "" {
		ack.Reason = codec.ReasonUseAnotherServer
		ack.Props.ServerReference = leader
		ack.Props.ReasonString = "this node is not the cluster leader: connect to the Server Reference"
	}
	if cp.Props != nil && cp.Props.MaximumPacketSize > 0 &&
		len(ack.AppendLevel(nil, codec.Level5)) > int(cp.Props.MaximumPacketSize) {
		ack.Props.ReasonString = ""
	}
	return ack
}

// answer writes ack at level, then ends the connection the way that lets the client read it:
// half-closed where the transport allows, the client's further bytes read and dropped until it
// closes (or lingerTime, lingerBytes), so that unread bytes do not make the kernel reset the
// connection and throw the CONNACK away [MQTT-3.2.2-5] [MQTT-3.2.2-7].
func (r *Refuser) answer(nc net.Conn, ack *codec.Connack, level byte) {
	nc.SetWriteDeadline(time.Now().Add(r.cfg.Limits.WriteTimeout.Duration))
	if _, err := nc.Write(ack.AppendLevel(nil, level)); err != nil {
		return
	}
	if tc, ok := listener.PlainTCP(nc); ok {
		tc.CloseWrite()
	} else if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	nc.SetReadDeadline(time.Now().Add(lingerTime))
	io.Copy(io.Discard, io.LimitReader(nc, lingerBytes))
}

// logDrop says why a connection was closed before its CONNECT was read.
func (r *Refuser) logDrop(log *zerolog.Logger, err error) {
	var why string
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		log.Debug().Err(err).Msg("connection closed before CONNECT")
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		why = "no CONNECT within limits.connect_timeout"
	case errors.Is(err, codec.ErrPacketTooLarge) && r.cfg.Limits.MaxPacketSize > codec.MaxConnectSize:
		why = "malformed packet: first packet larger than the largest legal CONNECT"
	case errors.Is(err, codec.ErrPacketTooLarge):
		why = "malformed packet: first packet larger than limits.max_packet_size"
	case errors.Is(err, codec.ErrMalformed):
		why = "malformed packet"
	default:
		why = "read failed"
	}
	log.Warn().Err(err).Str("reason", why).Msg("connection closed before CONNECT")
}

// gateRefused logs (sampled) a socket the gate closed.
func (r *Refuser) gateRefused(why listener.Refusal, remote net.Addr) {
	var msg string
	switch why {
	case listener.RefusedMaxConnections:
		msg = "connection refused: limits.max_connections reached"
	case listener.RefusedPendingAddress:
		msg = "connection refused: limits.max_pending_connects_per_address reached for this address"
	case listener.EvictedPending:
		msg = "connection closed before CONNECT to make room: limits.max_pending_connects reached"
	}
	r.connLog.Warn().Str("remote", remote.String()).Msg(msg)
}

// Shutdown closes the listeners, which frees their ports at once for a Server to bind, and every
// open connection, then waits for the Refuser's goroutines until ctx ends. Idempotent.
func (r *Refuser) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	var ls []net.Listener
	if !r.closing {
		r.closing = true
		close(r.quit)
		ls = r.listeners
		for nc := range r.conns {
			nc.Close()
		}
	}
	r.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	return waitUntil(ctx, &r.wg)
}
