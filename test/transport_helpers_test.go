package test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/testpki"
)

// Helpers for the tests of the tls, ws and wss listeners: the addresses a broker logged, a test
// PKI, and a packet-level MQTT client over any byte transport (TLS, WebSocket).

// transportWait bounds every wait of these tests.
const transportWait = 10 * time.Second

// listenAddr returns the address of the n-th listener (0-based, in config order) of type typ
// that the broker logged as "listening" after byte offset from of its log. The harness returns
// from Start on the first "listening" line, so the line sought may not be written yet: it polls.
// To find a listener after a restart, pass len(b.Log()) taken before b.Start.
func listenAddr(t *testing.T, b *Broker, from int, typ string, n int) string {
	t.Helper()
	deadline := time.Now().Add(transportWait)
	for {
		log := b.Log()
		if from > len(log) {
			from = len(log)
		}
		seen := 0
		for _, line := range strings.Split(log[from:], "\n") {
			var rec struct {
				Message string `json:"message"`
				Type    string `json:"type"`
				Address string `json:"address"`
			}
			if json.Unmarshal([]byte(line), &rec) != nil || rec.Message != "listening" || rec.Type != typ {
				continue
			}
			if seen == n {
				return rec.Address
			}
			seen++
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"listening\" line for %s listener #%d within %v; log:\n%s", typ, n, transportWait, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tlsTestCA is a certificate authority made for one test, with its certificate written to a new
// temporary directory, where the certificates it issues are written too.
type tlsTestCA struct {
	*testpki.CA
	File string // PEM certificate, for client_ca_file or a client's RootCAs
	dir  string
}

// tlsIssued is a certificate signed by a tlsTestCA, in memory and on disk.
type tlsIssued = testpki.Issued

// newTLSTestCA creates a self-signed CA and writes its certificate to a new temporary directory.
func newTLSTestCA(t *testing.T, name string) *tlsTestCA {
	t.Helper()
	ca := &tlsTestCA{CA: testpki.NewCA(t, name), dir: t.TempDir()}
	ca.File = filepath.Join(ca.dir, "ca.pem")
	testpki.WriteFile(t, ca.File, ca.PEM)
	return ca
}

// issue signs a certificate for cn: a server certificate for 127.0.0.1 (and localhost) when
// server is true, else a client certificate.
func (ca *tlsTestCA) issue(t *testing.T, cn string, server bool) tlsIssued {
	t.Helper()
	return ca.IssueFiles(t, ca.dir, cn, server)
}

// tlsClientConfig is the configuration of a client that trusts ca and presents cert, if given,
// whatever CAs the server says it accepts (crypto/tls would otherwise send no certificate at all
// when the certificate's issuer is not in the server's list, and the test would not show that
// the broker verifies it).
func tlsClientConfig(ca *tlsTestCA, cert ...tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if len(cert) > 0 {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert[0], nil }
	}
	return c
}

// pktConn is a packet-level MQTT client over any byte transport: the tests use it over TLS and
// over WebSocket, where mqtttest.Client only dials TCP.
type pktConn struct {
	t     *testing.T
	r     *codec.Reader
	write func([]byte) error // one call, one TCP write or one WebSocket message
	rdl   func(time.Time) error
	close func() error
}

// newStreamConn wraps a net.Conn (a TLS connection, say); it is closed when the test ends.
func newStreamConn(t *testing.T, c net.Conn) *pktConn {
	t.Cleanup(func() { c.Close() })
	return &pktConn{
		t: t,
		r: codec.NewReader(c, 1<<20),
		write: func(b []byte) error {
			c.SetWriteDeadline(time.Now().Add(transportWait))
			_, err := c.Write(b)
			return err
		},
		rdl:   c.SetReadDeadline,
		close: c.Close,
	}
}

// wsReader turns the binary messages of a WebSocket connection into a byte stream.
type wsReader struct {
	ws  *websocket.Conn
	cur io.Reader
}

func (r *wsReader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			typ, rd, err := r.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("broker sent a WebSocket message of type %d, want binary (%d)", typ, websocket.BinaryMessage)
			}
			r.cur = rd
		}
		n, err := r.cur.Read(p)
		if err == io.EOF {
			r.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// wsDial opens a WebSocket connection offering subprotocols; it is closed when the test ends.
func wsDial(t *testing.T, url string, tlsc *tls.Config, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: transportWait, Subprotocols: subprotocols, TLSClientConfig: tlsc}
	ws, resp, err := d.Dial(url, nil)
	if ws != nil {
		t.Cleanup(func() { ws.Close() })
	}
	return ws, resp, err
}

// newWSConn dials url offering the subprotocol "mqtt" and fails the test unless the broker
// upgrades the connection with that subprotocol.
func newWSConn(t *testing.T, url string, tlsc *tls.Config) *pktConn {
	t.Helper()
	ws, resp, err := wsDial(t, url, tlsc, "mqtt")
	if err != nil {
		status := "no HTTP response"
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("WebSocket dial %s: %v (%s)", url, err, status)
	}
	if got := ws.Subprotocol(); got != "mqtt" {
		t.Fatalf("negotiated subprotocol %q, want \"mqtt\"", got)
	}
	return wsPktConn(t, ws)
}

func wsPktConn(t *testing.T, ws *websocket.Conn) *pktConn {
	return &pktConn{
		t: t,
		r: codec.NewReader(&wsReader{ws: ws}, 1<<20),
		write: func(b []byte) error {
			ws.SetWriteDeadline(time.Now().Add(transportWait))
			return ws.WriteMessage(websocket.BinaryMessage, b)
		},
		rdl:   ws.SetReadDeadline,
		close: ws.Close,
	}
}

// sendRaw writes each argument as one write (one WebSocket message).
func (c *pktConn) sendRaw(chunks ...[]byte) {
	c.t.Helper()
	for _, b := range chunks {
		if err := c.write(b); err != nil {
			c.t.Fatalf("write: %v", err)
		}
	}
}

// send encodes the packets into a single write (a single WebSocket message).
func (c *pktConn) send(ps ...codec.Packet) {
	c.t.Helper()
	c.sendRaw(encodePackets(ps...))
}

func encodePackets(ps ...codec.Packet) []byte {
	var b []byte
	for _, p := range ps {
		b = p.Append(b)
	}
	return b
}

func (c *pktConn) tryRead(d time.Duration) (codec.Packet, error) {
	c.rdl(time.Now().Add(d))
	return c.r.ReadPacket()
}

func (c *pktConn) read() codec.Packet {
	c.t.Helper()
	p, err := c.tryRead(transportWait)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return p
}

// expectEnd fails the test unless the connection ends (any read error but a timeout) within
// transportWait before any packet arrives.
func (c *pktConn) expectEnd(what string) error {
	c.t.Helper()
	p, err := c.tryRead(transportWait)
	if err == nil {
		c.t.Fatalf("%s: received %s %+v, want the connection closed", what, p.Type(), p)
	}
	if isReadTimeout(err) {
		c.t.Fatalf("%s: connection still open after %v, want it closed", what, transportWait)
	}
	return err
}

// isReadTimeout reports a read deadline: gorilla/websocket replaces the net package's error by its
// own net.Error, so errors.Is(err, os.ErrDeadlineExceeded) does not see it.
func isReadTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// expectOnlyPingresp sends a PINGREQ and fails unless the next packet is the PINGRESP: nothing
// the broker had queued is still on its way. (A silence check with a read deadline would do over
// TLS, but a gorilla WebSocket connection cannot be read again after a read times out.)
func (c *pktConn) expectOnlyPingresp() {
	c.t.Helper()
	c.send(&codec.Pingreq{})
	expectPacket[*codec.Pingresp](c)
}

// expectAll reads len(want) packets and fails unless each matches a different one of want, in
// any order (the broker may answer a PINGREQ before the PUBACK of a QoS 1 PUBLISH it is still
// storing, and messages on different topics may overtake each other). Each matcher returns
// whether it accepts the packet; the packets are returned by the name of their matcher.
func (c *pktConn) expectAll(want map[string]func(codec.Packet) bool) map[string]codec.Packet {
	c.t.Helper()
	got := make(map[string]codec.Packet, len(want))
	left := make(map[string]func(codec.Packet) bool, len(want))
	for k, v := range want {
		left[k] = v
	}
	for len(left) > 0 {
		p := c.read()
		matched := ""
		for name, ok := range left {
			if ok(p) {
				matched = name
				break
			}
		}
		if matched == "" {
			names := make([]string, 0, len(left))
			for name := range left {
				names = append(names, name)
			}
			c.t.Fatalf("got %s %+v, want one of: %s", p.Type(), p, strings.Join(names, "; "))
		}
		delete(left, matched)
		got[matched] = p
	}
	return got
}

// matchPuback matches the PUBACK of packet id.
func matchPuback(id uint16) func(codec.Packet) bool {
	return func(p codec.Packet) bool {
		a, ok := p.(*codec.Puback)
		return ok && a.PacketID == id
	}
}

// matchPingresp matches a PINGRESP.
func matchPingresp(p codec.Packet) bool {
	_, ok := p.(*codec.Pingresp)
	return ok
}

// matchPublish matches a first delivery (DUP 0, RETAIN 0) of payload on topic at qos.
func matchPublish(topic, payload string, qos byte) func(codec.Packet) bool {
	return func(p codec.Packet) bool {
		m, ok := p.(*codec.Publish)
		return ok && m.Topic == topic && string(m.Payload) == payload && m.QoS == qos && !m.Retain && !m.Dup
	}
}

// expectPacket reads the next packet and fails the test unless it is a T.
func expectPacket[T codec.Packet](c *pktConn) T {
	c.t.Helper()
	p := c.read()
	v, ok := p.(T)
	if !ok {
		var want T
		c.t.Fatalf("got %s %+v, want %T", p.Type(), p, want)
	}
	return v
}

// connect sends a 3.1.1 CONNECT and fails unless it is accepted; it returns session-present.
func (c *pktConn) connect(id string, clean bool) bool {
	c.t.Helper()
	c.send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level311, ClientID: id, CleanSession: clean, KeepAlive: 60})
	ack := expectPacket[*codec.Connack](c)
	if ack.ReturnCode != codec.Accepted {
		c.t.Fatalf("CONNECT %q refused: 0x%02x (%v)", id, byte(ack.ReturnCode), ack.ReturnCode)
	}
	return ack.SessionPresent
}

// expectPublish reads a PUBLISH and checks its topic, payload, QoS and flags.
func (c *pktConn) expectPublish(topic, payload string, qos byte) *codec.Publish {
	c.t.Helper()
	p := expectPacket[*codec.Publish](c)
	if p.Topic != topic || string(p.Payload) != payload || p.QoS != qos || p.Retain || p.Dup {
		c.t.Fatalf("PUBLISH topic %q payload %q qos %d retain %v dup %v; want topic %q payload %q qos %d retain false dup false",
			p.Topic, p.Payload, p.QoS, p.Retain, p.Dup, topic, payload, qos)
	}
	return p
}
