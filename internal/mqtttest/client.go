// Package mqtttest is a raw, packet-level MQTT client for tests: it sends exactly the bytes or
// packets a test asks for and reads back decoded packets, so tests can check the broker's
// behaviour on the wire, edge cases included. It is the one test client of the project: over
// TCP (from any local address), TLS or WebSocket (see WebSocket), on the test goroutine or off it.
//
// Methods that fail the test (Send, Read, Expect, ...) must run on the goroutine of the test the
// client belongs to (see For); Write, WriteRaw, TryRead and Closed return errors instead and may
// run anywhere.
package mqtttest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// Timeout bounds every read a test waits on.
const Timeout = 5 * time.Second

// Client is one raw connection.
type Client struct {
	t    testing.TB
	Conn net.Conn
	*stream
}

// stream is what the copies For makes share: one reader, one stash.
type stream struct {
	r     *codec.Reader
	level byte             // the protocol level packets are written at (3.x unless SetLevel)
	stash []*codec.Publish // PUBLISH packets Await read past
}

// SetLevel makes the client read and write packets at protocol level (codec.Level5 for MQTT 5).
func (c *Client) SetLevel(level byte) {
	c.level = level
	c.r.SetLevel(level)
}

// New makes a client of nc, any transport (a TLS connection, WebSocket's adapter); nc is closed
// when the test ends. It does not fail the test, so it may run off the test goroutine.
func New(t testing.TB, nc net.Conn) *Client {
	t.Cleanup(func() { nc.Close() })
	return &Client{t: t, Conn: nc, stream: &stream{r: codec.NewReader(nc, 1<<28)}}
}

// Dial connects to addr; the connection is closed when the test ends.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	return DialFrom(t, "", addr)
}

// DialFrom connects to addr from the local IP address from (127.0.0.x plays another client host;
// "" lets the system choose), failing the test on error.
func DialFrom(t testing.TB, from, addr string) *Client {
	t.Helper()
	c, err := TryDial(t, from, addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TryDial is DialFrom returning the error instead of failing, for use off the test goroutine.
func TryDial(t testing.TB, from, addr string) (*Client, error) {
	d := net.Dialer{Timeout: Timeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return New(t, nc), nil
}

// For returns the same connection failing t instead, for a subtest that uses its parent's client.
func (c *Client) For(t testing.TB) *Client {
	return &Client{t: t, Conn: c.Conn, stream: c.stream}
}

// Write encodes packets into one write (one WebSocket message) bounded by Timeout.
func (c *Client) Write(ps ...codec.Packet) error {
	var b []byte
	for _, p := range ps {
		if c.level == codec.Level5 {
			b = p.AppendLevel(b, codec.Level5)
		} else {
			b = p.Append(b)
		}
	}
	return c.WriteRaw(b)
}

// WriteRaw writes bytes as they are, in one write bounded by Timeout.
func (c *Client) WriteRaw(b []byte) error {
	c.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	_, err := c.Conn.Write(b)
	return err
}

// Send encodes and writes packets, failing the test on error.
func (c *Client) Send(ps ...codec.Packet) {
	c.t.Helper()
	if err := c.Write(ps...); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// SendRaw writes bytes as they are, failing the test on error.
func (c *Client) SendRaw(b []byte) {
	c.t.Helper()
	if err := c.WriteRaw(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Read returns the next packet, failing the test on error or timeout.
func (c *Client) Read() codec.Packet {
	c.t.Helper()
	p, err := c.TryRead(Timeout)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return p
}

// TryRead returns the next packet or the error that ended the wait. A read cut by the deadline
// leaves the stream unusable (the reader cannot resume a packet, nor gorilla's WebSocket a read).
func (c *Client) TryRead(d time.Duration) (codec.Packet, error) {
	c.Conn.SetReadDeadline(time.Now().Add(d))
	return c.r.ReadPacket()
}

// Next returns the next packet other than PUBREL, answering as a well-behaved client does:
// PUBLISH with PUBACK (QoS 1) or PUBREC (QoS 2), PUBREL with PUBCOMP.
func (c *Client) Next() codec.Packet {
	c.t.Helper()
	for {
		p := c.Read()
		if a := reply(p); a != nil {
			c.Send(a)
		}
		if p.Type() != codec.TypePubrel {
			return p
		}
	}
}

// reply is a well-behaved client's answer to p as a receiver: PUBACK or PUBREC to a PUBLISH at
// QoS 1 or 2, PUBCOMP to PUBREL; nil for anything else.
func reply(p codec.Packet) codec.Packet {
	switch p := p.(type) {
	case *codec.Publish:
		switch p.QoS {
		case 1:
			return &codec.Puback{PacketID: p.PacketID}
		case 2:
			return &codec.Pubrec{PacketID: p.PacketID}
		}
	case *codec.Pubrel:
		return &codec.Pubcomp{PacketID: p.PacketID}
	}
	return nil
}

// AnswerAll reads until the connection ends (or stays silent for idle), answering every QoS
// handshake the peer starts or continues, PUBREC with PUBREL included, and dropping the rest: a
// client that keeps every path of a broker busy under load. It may run off the test goroutine;
// writes from other goroutines may go on meanwhile (one Write is one system call).
func (c *Client) AnswerAll(idle time.Duration) error {
	for {
		p, err := c.TryRead(idle)
		if err != nil {
			return err
		}
		a := reply(p)
		if rec, ok := p.(*codec.Pubrec); ok {
			a = &codec.Pubrel{PacketID: rec.PacketID}
		}
		if a != nil {
			if err := c.Write(a); err != nil {
				return err
			}
		}
	}
}

// Await returns the next packet of type want (through Next), keeping the PUBLISH packets that
// arrive before it for NextPublish; any other packet fails the test.
func (c *Client) Await(want codec.Type) codec.Packet {
	c.t.Helper()
	for {
		p := c.Next()
		if p.Type() == want {
			return p
		}
		pub, ok := p.(*codec.Publish)
		if !ok {
			c.t.Fatalf("waiting for %s, got %s", want, String(p))
		}
		c.stash = append(c.stash, pub)
	}
}

// NextPublish returns the oldest PUBLISH Await kept, or else the next packet (through Next),
// failing the test unless it is a PUBLISH.
func (c *Client) NextPublish() *codec.Publish {
	c.t.Helper()
	if len(c.stash) > 0 {
		p := c.stash[0]
		c.stash = c.stash[1:]
		return p
	}
	p := c.Next()
	pub, ok := p.(*codec.Publish)
	if !ok {
		c.t.Fatalf("got %s, want PUBLISH", String(p))
	}
	return pub
}

// Stashed returns the PUBLISH packets Await kept that NextPublish has not returned yet.
func (c *Client) Stashed() []*codec.Publish { return c.stash }

// ErrStillOpen is the error of Closed when the connection outlived the wait.
var ErrStillOpen = errors.New("connection still open")

// Closed reads packets until the peer closes the connection (nil error), d passes (ErrStillOpen)
// or the stream breaks (e.g. bytes that do not decode); it also returns early, with nil, after a
// packet for which stop returns true (stop may be nil).
func (c *Client) Closed(d time.Duration, stop func(codec.Packet) bool) ([]codec.Packet, error) {
	var got []codec.Packet
	c.Conn.SetReadDeadline(time.Now().Add(d))
	for {
		p, err := c.r.ReadPacket()
		switch {
		case err == nil:
			got = append(got, p)
			if stop != nil && stop(p) {
				return got, nil
			}
			continue
		case closedByPeer(err):
			return got, nil
		case IsTimeout(err):
			return got, fmt.Errorf("%w after %v (received %d packets)", ErrStillOpen, d, len(got))
		}
		return got, err
	}
}

// ExpectClosed fails the test unless the broker closes the connection within Timeout (any
// packets received first are returned).
func (c *Client) ExpectClosed() []codec.Packet {
	c.t.Helper()
	got, err := c.Closed(Timeout, nil)
	if err != nil {
		c.t.Fatalf("waiting for the broker to close the connection: %v", err)
	}
	return got
}

// ExpectEnd fails the test unless the connection ends, by any error but a timeout, before a packet
// arrives; it returns that error (over WebSocket, the close frame's).
func (c *Client) ExpectEnd(what string) error {
	c.t.Helper()
	p, err := c.TryRead(Timeout)
	if err == nil {
		c.t.Fatalf("%s: received %s, want the connection closed", what, String(p))
	}
	if IsTimeout(err) {
		c.t.Fatalf("%s: connection still open after %v, want it closed", what, Timeout)
	}
	return err
}

// closedByPeer reports whether err means the other side closed or reset the connection.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// IsTimeout reports a deadline: gorilla/websocket replaces the net package's error by its own
// net.Error, so errors.Is(err, os.ErrDeadlineExceeded) alone does not see it.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// ExpectSilence fails the test if a packet arrives within d. Not over WebSocket: its connection
// cannot be read again after a read times out (send PINGREQ and expect PINGRESP there instead).
func (c *Client) ExpectSilence(d time.Duration) {
	c.t.Helper()
	p, err := c.TryRead(d)
	if err == nil {
		c.t.Fatalf("expected no packet, got %s", String(p))
	}
	if !IsTimeout(err) {
		c.t.Fatalf("expected silence, connection ended: %v", err)
	}
}

// Connect sends CONNECT and returns the CONNACK.
func (c *Client) Connect(cp *codec.Connect) *codec.Connack {
	c.t.Helper()
	if cp.ProtocolName == "" {
		cp.ProtocolName, cp.ProtocolLevel = "MQTT", codec.Level311
	}
	c.Send(cp)
	return Expect[*codec.Connack](c)
}

// MustConnect connects with 3.1.1 and fails unless accepted; it returns session-present.
func (c *Client) MustConnect(id string, clean bool) bool {
	c.t.Helper()
	ack := c.Connect(&codec.Connect{ClientID: id, CleanSession: clean, KeepAlive: 60})
	if ack.ReturnCode != codec.Accepted {
		c.t.Fatalf("CONNECT %q refused with 0x%02x", id, ack.ReturnCode)
	}
	return ack.SessionPresent
}

// Subscribe subscribes to filters at qos and returns the SUBACK return codes.
func (c *Client) Subscribe(pid uint16, qos byte, filters ...string) []byte {
	c.t.Helper()
	s := &codec.Subscribe{PacketID: pid}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, codec.Subscription{Filter: f, QoS: qos})
	}
	c.Send(s)
	ack := Expect[*codec.Suback](c)
	if ack.PacketID != pid {
		c.t.Fatalf("SUBACK packet id %d, want %d", ack.PacketID, pid)
	}
	return ack.ReturnCodes
}

// Expect reads the next packet and fails the test unless it is a T.
func Expect[T codec.Packet](c *Client) T {
	c.t.Helper()
	p := c.Read()
	v, ok := p.(T)
	if !ok {
		var want T
		c.t.Fatalf("got %s, want %T", String(p), want)
	}
	return v
}

// Within polls cond every few milliseconds until it holds (true) or d passes (false).
func Within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Eventually polls cond every few milliseconds until it holds, failing the test after d.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// String renders a packet for failure messages.
func String(p codec.Packet) string { return fmt.Sprintf("%s %+v", p.Type(), p) }
