package bench

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/codec"
)

const (
	readBufSize  = 64 << 10
	writeBufSize = 64 << 10
)

// conn is one MQTT client connection of the load tool. After the handshake
// a single goroutine reads (conn.runReads, for subscribers and publishers);
// writes go through one bufio.Writer guarded by mu, flushed by whoever
// knows that nothing more is coming soon.
type conn struct {
	nc       net.Conn
	clientID string
	fr       *frameReader
	level    byte // protocol level: packets are encoded and decoded at it
	v5       bool // level 5

	mu      sync.Mutex
	bw      *bufio.Writer
	scratch []byte // encoding space for control packets, under mu

	closing atomic.Bool
}

// dialOpts says how to open a connection.
type dialOpts struct {
	addr     string
	level    byte // 3, 4 or 5
	clientID string
	clean    bool
	timeout  time.Duration // for the TCP connect and the CONNACK
	window   int           // QoS 1/2 PUBLISH packets kept in flight: a level-5 broker's Receive Maximum must allow them
}

// dial connects and completes CONNECT/CONNACK. It returns the CONNACK's
// session-present flag.
func dial(o dialOpts) (*conn, bool, error) {
	nc, err := net.DialTimeout("tcp", o.addr, o.timeout)
	if err != nil {
		return nil, false, err
	}
	c := &conn{
		nc:       nc,
		clientID: o.clientID,
		fr:       newFrameReader(nc, readBufSize),
		level:    o.level,
		v5:       o.level == codec.Level5,
		bw:       bufio.NewWriterSize(nc, writeBufSize),
	}
	present, err := c.handshake(o)
	if err != nil {
		nc.Close()
		return nil, false, fmt.Errorf("connect %s as %q: %w", o.addr, o.clientID, err)
	}
	return c, present, nil
}

// connectPacket builds the CONNECT the tool sends: no will, no credentials,
// keep-alive off so that an idle subscriber is never disconnected.
func connectPacket(level byte, clientID string, clean bool) *codec.Connect {
	name := codec.ProtocolName311
	if level == codec.Level31 {
		name = codec.ProtocolName31
	}
	c := &codec.Connect{ProtocolName: name, ProtocolLevel: level, CleanSession: clean, ClientID: clientID}
	if level == codec.Level5 && !clean {
		// A level-5 session without a Session Expiry Interval ends with its
		// connection [MQTT-3.1.2-23]; one that never expires is what
		// clean-session=0 asks of a 3.1.1 broker.
		c.Props = &codec.Properties{SessionExpiry: math.MaxUint32}
	}
	return c
}

// checkConnack returns the CONNACK p if it accepts the connection, at any
// level: a 3.x CONNACK leaves Reason at Success, a level-5 one ReturnCode at
// Accepted.
func checkConnack(p codec.Packet) (*codec.Connack, error) {
	ack, ok := p.(*codec.Connack)
	switch {
	case !ok:
		return nil, fmt.Errorf("got %s, want CONNACK", p.Type())
	case ack.ReturnCode != codec.Accepted:
		return nil, fmt.Errorf("CONNACK refused: %s", ack.ReturnCode)
	case ack.Reason != codec.ReasonSuccess:
		return nil, fmt.Errorf("CONNACK refused: %s (0x%02x)", ack.Reason, byte(ack.Reason))
	}
	return ack, nil
}

func (c *conn) handshake(o dialOpts) (bool, error) {
	c.nc.SetDeadline(time.Now().Add(o.timeout))
	defer c.nc.SetDeadline(time.Time{})
	if err := c.writeFlush(connectPacket(o.level, o.clientID, o.clean)); err != nil {
		return false, err
	}
	first, body, err := c.fr.next()
	if err != nil {
		return false, fmt.Errorf("waiting for CONNACK: %w", err)
	}
	p, err := decodeFrame(first, body, o.level)
	if err != nil {
		return false, err
	}
	ack, err := checkConnack(p)
	if err != nil {
		return false, err
	}
	if c.v5 && ack.Props != nil {
		// A client keeps no more in flight than the broker's Receive Maximum
		// [MQTT-3.3.4-7], 65,535 when absent (§3.2.2.3.3): a smaller window
		// than asked for would measure something else.
		if rm := ack.Props.ReceiveMaximum; rm > 0 && int(rm) < o.window {
			return false, fmt.Errorf("the broker's Receive Maximum %d is below -inflight %d", rm, o.window)
		}
	}
	return ack.SessionPresent, nil
}

// writeFlush encodes p and sends it now.
func (c *conn) writeFlush(p codec.Packet) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scratch = p.AppendLevel(c.scratch[:0], c.level)
	if _, err := c.bw.Write(c.scratch); err != nil {
		return err
	}
	return c.bw.Flush()
}

// subscribe sends one SUBSCRIBE and waits for its SUBACK. It must be called
// before the connection's read loop starts.
func (c *conn) subscribe(filter string, qos byte, timeout time.Duration) error {
	c.nc.SetDeadline(time.Now().Add(timeout))
	defer c.nc.SetDeadline(time.Time{})
	if err := c.writeFlush(subscribePacket(filter, qos)); err != nil {
		return err
	}
	first, body, err := c.fr.next()
	if err != nil {
		return fmt.Errorf("waiting for SUBACK: %w", err)
	}
	p, err := decodeFrame(first, body, c.level)
	if err != nil {
		return err
	}
	return checkSuback(p, filter)
}

// subscribePacket is the tool's SUBSCRIBE: one filter, packet identifier 1.
func subscribePacket(filter string, qos byte) *codec.Subscribe {
	return &codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: filter, QoS: qos}}}
}

// checkSuback reports whether p is the SUBACK that grants subscribePacket.
func checkSuback(p codec.Packet, filter string) error {
	ack, ok := p.(*codec.Suback)
	if !ok || ack.PacketID != 1 || len(ack.ReturnCodes) != 1 {
		return fmt.Errorf("got %s, want SUBACK for packet 1", p.Type())
	}
	// 0x80 in 3.1.1; at level 5 every code from 0x80 on is a refusal.
	if rc := ack.ReturnCodes[0]; rc >= codec.SubackFailure {
		return fmt.Errorf("subscription to %q refused: 0x%02x", filter, rc)
	}
	return nil
}

// disconnect sends DISCONNECT and closes the socket. A read loop that then
// fails sees closing set and ends quietly.
func (c *conn) disconnect() {
	c.closing.Store(true)
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.writeFlush(&codec.Disconnect{})
	c.nc.Close()
}

// abort closes the socket without a goodbye.
func (c *conn) abort() {
	c.closing.Store(true)
	c.nc.Close()
}

// readErr turns the error that ended a read loop into nil when the tool
// itself closed the connection.
func (c *conn) readErr(err error) error {
	if c.closing.Load() {
		return nil
	}
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// runReads is the body of a read goroutine: it runs read until it fails, records why in *errp
// (nil when the tool closed the connection itself), closes the socket and then done.
func (c *conn) runReads(read func() error, errp *error, done chan struct{}) {
	defer close(done)
	err := read() // never nil: the loop ends on a read error at the latest
	*errp = c.readErr(err)
	c.abort()
}

// cleanSession removes a persistent session: a connection with
// clean-session=1 under the same client id discards it [MQTT-3.1.2-6].
func cleanSession(o dialOpts) error {
	o.clean = true
	c, _, err := dial(o)
	if err != nil {
		return err
	}
	c.disconnect()
	return nil
}
