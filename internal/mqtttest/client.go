// Package mqtttest is a raw, packet-level MQTT client for tests: it sends exactly the bytes or
// packets a test asks for and reads back decoded packets, so tests can check the broker's
// behaviour on the wire, edge cases included.
package mqtttest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
	r    *codec.Reader
}

// Dial connects to addr; the connection is closed when the test ends.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &Client{t: t, Conn: nc, r: codec.NewReader(nc, 1<<28)}
}

// Send encodes and writes packets.
func (c *Client) Send(ps ...codec.Packet) {
	c.t.Helper()
	var b []byte
	for _, p := range ps {
		b = p.Append(b)
	}
	c.SendRaw(b)
}

// SendRaw writes bytes as they are.
func (c *Client) SendRaw(b []byte) {
	c.t.Helper()
	c.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := c.Conn.Write(b); err != nil {
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

// TryRead returns the next packet or the error that ended the wait.
func (c *Client) TryRead(d time.Duration) (codec.Packet, error) {
	c.Conn.SetReadDeadline(time.Now().Add(d))
	return c.r.ReadPacket()
}

// ExpectClosed fails the test unless the broker closes the connection within Timeout (any
// packets received first are returned).
func (c *Client) ExpectClosed() []codec.Packet {
	c.t.Helper()
	var got []codec.Packet
	for {
		p, err := c.TryRead(Timeout)
		if err == nil {
			got = append(got, p)
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.t.Fatalf("connection still open after %v (received %d packets)", Timeout, len(got))
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
			c.t.Fatalf("unexpected error waiting for close: %v", err)
		}
		return got
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// ExpectSilence fails the test if a packet arrives within d.
func (c *Client) ExpectSilence(d time.Duration) {
	c.t.Helper()
	p, err := c.TryRead(d)
	if err == nil {
		c.t.Fatalf("expected no packet, got %s %+v", p.Type(), p)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
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
		c.t.Fatalf("got %s %+v, want %T", p.Type(), p, want)
	}
	return v
}

// Eventually polls cond every few milliseconds until it holds or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// String renders a packet for failure messages.
func String(p codec.Packet) string { return fmt.Sprintf("%s %+v", p.Type(), p) }
