package test

import (
	"crypto/tls"
	"encoding/json"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/internal/testpki"
)

// Helpers for the tests of the tls, ws and wss listeners: the addresses a broker logged, a test
// PKI, and WebSocket connections made into mqtttest clients.

// transportWait bounds every wait of these tests.
const transportWait = 10 * time.Second

// listenAddr returns the address of the n-th listener (0-based, in config order) of type typ
// that the broker logged as "listening" after byte offset from of its log. The harness returns
// from Start on the first "listening" line, so the line sought may not be written yet: it polls.
// To find a listener after a restart, pass len(b.Log()) taken before b.Start.
func listenAddr(t *testing.T, b *Broker, from int, typ string, n int) string {
	t.Helper()
	var addr string
	found := mqtttest.Within(transportWait, func() bool {
		log := b.Log()
		seen := 0
		for _, line := range strings.Split(log[min(from, len(log)):], "\n") {
			var rec struct {
				Message string `json:"message"`
				Type    string `json:"type"`
				Address string `json:"address"`
			}
			if json.Unmarshal([]byte(line), &rec) != nil || rec.Message != "listening" || rec.Type != typ {
				continue
			}
			if seen == n {
				addr = rec.Address
				return true
			}
			seen++
		}
		return false
	})
	if !found {
		t.Fatalf("no \"listening\" line for %s listener #%d within %v; log:\n%s", typ, n, transportWait, b.Log())
	}
	return addr
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
func newWSConn(t *testing.T, url string, tlsc *tls.Config) *mqtttest.Client {
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
	return mqtttest.New(t, mqtttest.WebSocket(ws))
}

// encodePackets is the bytes of packets, for tests that cut them into several writes.
func encodePackets(ps ...codec.Packet) []byte {
	var b []byte
	for _, p := range ps {
		b = p.Append(b)
	}
	return b
}

// expectOnlyPingresp sends a PINGREQ and fails unless the next packet is the PINGRESP: nothing
// the broker had queued is still on its way. (ExpectSilence would do over TLS, but a gorilla
// WebSocket connection cannot be read again after a read times out.)
func expectOnlyPingresp(t *testing.T, c *mqtttest.Client) {
	t.Helper()
	c.Send(&codec.Pingreq{})
	mqtttest.Expect[*codec.Pingresp](c)
}

// expectAll reads len(want) packets and fails unless each matches a different one of want, in
// any order (the broker may answer a PINGREQ before the PUBACK of a QoS 1 PUBLISH it is still
// storing, and messages on different topics may overtake each other). Each matcher returns
// whether it accepts the packet; the packets are returned by the name of their matcher.
func expectAll(t *testing.T, c *mqtttest.Client, want map[string]func(codec.Packet) bool) map[string]codec.Packet {
	t.Helper()
	got := make(map[string]codec.Packet, len(want))
	left := maps.Clone(want)
	for len(left) > 0 {
		p := c.Read()
		matched := ""
		for name, ok := range left {
			if ok(p) {
				matched = name
				break
			}
		}
		if matched == "" {
			t.Fatalf("got %s, want one of: %s", mqtttest.String(p), strings.Join(slices.Collect(maps.Keys(left)), "; "))
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
