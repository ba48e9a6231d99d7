package listener

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/internal/testpki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const timeout = 5 * time.Second

// waitStacks waits until at least n goroutines have every one of frames in their stacks: the
// server has taken the connections a test made, or a writer is blocked, before the test goes on.
func waitStacks(t *testing.T, n int, frames ...string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	if !mqtttest.Within(timeout, func() bool {
		found := 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			all := true
			for _, f := range frames {
				all = all && strings.Contains(g, f)
			}
			if all {
				found++
			}
		}
		return found >= n
	}) {
		t.Fatalf("fewer than %d goroutines in %q after %v", n, frames, timeout)
	}
}

func open(t *testing.T, c Config) Listener {
	t.Helper()
	if c.Address == "" {
		c.Address = "127.0.0.1:0"
	}
	l, err := Open(c, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// serveEcho accepts connections and echoes every byte back; the returned func closes l and
// waits for every goroutine (connections end when their clients close them).
func serveEcho(l net.Listener) (stop func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return func() {
		l.Close()
		wg.Wait()
	}
}

func accept(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		return r.c
	case <-time.After(timeout):
		l.Close() // releases the goroutine
		t.Fatal("accept: timed out")
		return nil
	}
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

func wsURL(l net.Listener, scheme, path string) string {
	return fmt.Sprintf("%s://%s%s", scheme, l.Addr(), path)
}

func dialWS(url string, protos []string, tc *tls.Config, h http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{Subprotocols: protos, TLSClientConfig: tc, HandshakeTimeout: timeout}
	return d.Dial(url, h)
}

func wsRoundTrip(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(timeout))
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	var got []byte
	for len(got) < len(msg) {
		typ, p, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ != websocket.BinaryMessage {
			t.Fatalf("message type %d, want binary", typ)
		}
		got = append(got, p...)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

func closeWS(ws *websocket.Conn) {
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	ws.Close()
}

func TestTCPRoundTrip(t *testing.T) {
	l := open(t, Config{Type: "tcp"})
	stop := serveEcho(l)
	defer stop()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c")
	if err := l.Reload(); err != nil {
		t.Fatalf("Reload on tcp: %v", err)
	}
}

func TestTLSRoundTrip(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	f := testpki.NewServerFiles(t, ca, "server")
	l := open(t, Config{Type: "tls", CertFile: f.Cert, KeyFile: f.Key})
	stop := serveEcho(l)
	defer stop()
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "hello over tls")
	if v := c.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Fatalf("TLS version %x", v)
	}
}

func TestWSRoundTrip(t *testing.T) {
	l := open(t, Config{Type: "ws"})
	stop := serveEcho(l)
	defer stop()
	for _, proto := range []string{"mqtt", "mqttv3.1"} {
		ws, resp, err := dialWS(wsURL(l, "ws", "/mqtt"), []string{proto}, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if ws.Subprotocol() != proto || resp.Header.Get("Sec-WebSocket-Protocol") != proto {
			t.Fatalf("negotiated %q, want %q", ws.Subprotocol(), proto)
		}
		wsRoundTrip(t, ws, "hello over "+proto)
		closeWS(ws)
	}
	// A client offering both, in either order, gets mqtt.
	ws, _, err := dialWS(wsURL(l, "ws", "/mqtt"), []string{"foo", "mqttv3.1", "mqtt"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Subprotocol() != "mqtt" {
		t.Fatalf("negotiated %q, want mqtt", ws.Subprotocol())
	}
	closeWS(ws)
}

func TestWSSRoundTrip(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	f := testpki.NewServerFiles(t, ca, "server")
	l := open(t, Config{Type: "wss", CertFile: f.Cert, KeyFile: f.Key, Path: "/ws"})
	stop := serveEcho(l)
	defer stop()
	for _, proto := range []string{"mqtt", "mqttv3.1"} {
		ws, _, err := dialWS(wsURL(l, "wss", "/ws"), []string{proto}, &tls.Config{RootCAs: ca.Pool}, nil)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if ws.Subprotocol() != proto {
			t.Fatalf("negotiated %q, want %q", ws.Subprotocol(), proto)
		}
		wsRoundTrip(t, ws, "hello over wss "+proto)
		closeWS(ws)
	}
}

func TestWSFraming(t *testing.T) {
	l := open(t, Config{Type: "ws"})
	ws, _, err := dialWS(wsURL(l, "ws", "/mqtt"), []string{"mqtt"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := accept(t, l)
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))

	// One packet (a PUBLISH) split across three binary messages, with an empty one in between.
	pkt := []byte("\x30\x0d\x00\x03a/bpayload!!")
	for _, part := range [][]byte{pkt[:1], pkt[1:5], {}, pkt[5:]} {
		if err := ws.WriteMessage(websocket.BinaryMessage, part); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, len(pkt))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pkt) {
		t.Fatalf("read %q, want %q", got, pkt)
	}

	// Three packets (PINGREQ, PUBACK, DISCONNECT) in one message, read with small buffers.
	three := []byte("\xc0\x00\x40\x02\x00\x01\xe0\x00")
	if err := ws.WriteMessage(websocket.BinaryMessage, three); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(c, 16)
	for _, want := range [][]byte{three[:2], three[2:6], three[6:]} {
		got := make([]byte, len(want))
		if _, err := io.ReadFull(r, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %q, want %q", got, want)
		}
	}

	// Each Write is one binary message.
	for _, m := range []string{"\x20\x02\x00\x00", "\xd0\x00"} {
		if _, err := c.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	ws.SetReadDeadline(time.Now().Add(timeout))
	for _, want := range []string{"\x20\x02\x00\x00", "\xd0\x00"} {
		typ, p, err := ws.ReadMessage()
		if err != nil || typ != websocket.BinaryMessage || string(p) != want {
			t.Fatalf("client read type %d %q %v, want binary %q", typ, p, err, want)
		}
	}

	// A close from the client ends the stream.
	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("read after client close = %d, %v; want 0, EOF", n, err)
	}
}

func TestWSPingPong(t *testing.T) {
	l := open(t, Config{Type: "ws"})
	ws, _, err := dialWS(wsURL(l, "ws", "/mqtt"), []string{"mqtt"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := accept(t, l)
	readDone := make(chan error, 1)
	go func() { // the broker's reader goroutine
		_, err := c.Read(make([]byte, 1))
		readDone <- err
	}()
	pong := make(chan string, 1)
	ws.SetPongHandler(func(data string) error { pong <- data; return nil })
	clientDone := make(chan struct{})
	go func() { // the client must read to see control frames
		defer close(clientDone)
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	if err := ws.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pong:
		if p != "are you there" {
			t.Fatalf("pong %q", p)
		}
	case <-time.After(timeout):
		t.Fatal("no pong")
	}
	c.Close()
	if err := <-readDone; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after local close: %v, want net.ErrClosed", err)
	}
	<-clientDone
}

func TestWSTextFrameCloses(t *testing.T) {
	l := open(t, Config{Type: "ws"})
	ws, _, err := dialWS(wsURL(l, "ws", "/mqtt"), []string{"mqtt"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := accept(t, l)
	defer c.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("\x10\x00")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, ErrTextFrame) {
		t.Fatalf("server read: %v, want ErrTextFrame", err)
	}
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, ErrTextFrame) {
		t.Fatalf("second read: %v, want ErrTextFrame again", err)
	}
	ws.SetReadDeadline(time.Now().Add(timeout))
	_, _, err = ws.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseUnsupportedData) {
		t.Fatalf("client read: %v, want close 1003", err)
	}
}

// rawHTTP sends one HTTP request over a fresh connection and returns the response status and body.
func rawHTTP(t *testing.T, addr, request string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestWSRefusals(t *testing.T) {
	l := open(t, Config{Type: "ws", AllowedOrigins: []string{"https://dash.example"}})
	url := wsURL(l, "ws", "/mqtt")
	good := http.Header{"Origin": {"https://dash.example"}}
	cases := []struct {
		name   string
		url    string
		protos []string
		header http.Header
		status int
		body   []string
	}{
		{"no subprotocol", url, nil, good, 400, []string{"no WebSocket subprotocol offered", "mqtt, mqttv3.1"}},
		{"wrong subprotocol", url, []string{"mqttv5", "chat"}, good, 400, []string{"unsupported WebSocket subprotocol mqttv5, chat", "mqtt, mqttv3.1"}},
		{"origin not allowed", url, []string{"mqtt"}, http.Header{"Origin": {"https://evil.example"}}, 403, []string{`origin "https://evil.example" is not allowed`}},
		{"unknown path", wsURL(l, "ws", "/other"), []string{"mqtt"}, good, 404, []string{"404 page not found"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws, resp, err := dialWS(tc.url, tc.protos, nil, tc.header)
			if err == nil {
				ws.Close()
				t.Fatal("upgrade succeeded")
			}
			if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
				t.Fatalf("err %v, resp %v", err, resp)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			for _, want := range tc.body {
				if !strings.Contains(string(body), want) {
					t.Fatalf("body %q does not say %q", body, want)
				}
			}
		})
	}

	status, body := rawHTTP(t, l.Addr().String(), "GET /mqtt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if status != 400 || !strings.Contains(body, "MQTT over WebSocket") {
		t.Fatalf("plain GET: %d %q", status, body)
	}

	// A client that sends no Origin (not a browser) gets through.
	ws, _, err := dialWS(url, []string{"mqtt"}, nil, nil)
	if err != nil {
		t.Fatalf("no Origin header: %v", err)
	}
	ws.Close()

	// The allowed origin gets through.
	ws, _, err = dialWS(url, []string{"mqttv3.1"}, nil, good)
	if err != nil {
		t.Fatal(err)
	}
	c := accept(t, l)
	c.Close()
	ws.Close()
}

func TestXForwardedFor(t *testing.T) {
	xff := http.Header{"X-Forwarded-For": {"203.0.113.7, 10.0.0.1", "10.0.0.2"}}
	for _, tc := range []struct {
		behind bool
		header http.Header
		want   string
	}{
		{true, xff, "203.0.113.7"},
		{true, nil, "127.0.0.1"},
		{true, http.Header{"X-Forwarded-For": {"not an address"}}, "127.0.0.1"},
		{false, xff, "127.0.0.1"},
	} {
		l := open(t, Config{Type: "ws", BehindProxy: tc.behind})
		ws, _, err := dialWS(wsURL(l, "ws", "/mqtt"), []string{"mqtt"}, nil, tc.header)
		if err != nil {
			t.Fatal(err)
		}
		c := accept(t, l)
		a, ok := c.RemoteAddr().(*net.TCPAddr)
		if !ok || a.IP.String() != tc.want {
			t.Errorf("behind_proxy=%v header=%v: RemoteAddr %v, want %s", tc.behind, tc.header, c.RemoteAddr(), tc.want)
		}
		c.Close()
		ws.Close()
		l.Close()
	}
}

func TestParseForwarded(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":       "203.0.113.7:0",
		"203.0.113.7:4711":  "203.0.113.7:4711",
		"2001:db8::1":       "[2001:db8::1]:0",
		"[2001:db8::1]":     "[2001:db8::1]:0",
		"[2001:db8::1]:443": "[2001:db8::1]:443",
		"unknown":           "",
		"1.2.3.4:99999":     "",
		"":                  "",
	} {
		got := ""
		if a := parseForwarded(in); a != nil {
			got = a.String()
		}
		if got != want {
			t.Errorf("parseForwarded(%q) = %q, want %q", in, got, want)
		}
	}
}

// clientTLS trusts ca and presents the first of certs whatever CAs the server asks for (Go's
// client would otherwise keep a certificate from another CA to itself).
func clientTLS(ca *testpki.CA, certs []tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: ca.Pool}
	if len(certs) > 0 {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
	}
	return c
}

// tlsClient dials l with cert (if any) and reports whether the server accepted it: with TLS 1.3
// the client finishes its handshake before the server checks the certificate, so a refusal
// shows on the first read.
func tlsClient(t *testing.T, l net.Listener, ca *testpki.CA, certs []tls.Certificate) (*tls.Conn, error) {
	t.Helper()
	c, err := tls.Dial("tcp", l.Addr().String(), clientTLS(ca, certs))
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func TestMutualTLS(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	other := testpki.NewCA(t, "other CA")
	f := testpki.NewServerFiles(t, ca, "server")
	alice := ca.ClientCert(t, "alice")
	mallory := other.ClientCert(t, "mallory")

	for _, typ := range []string{"tls", "wss"} {
		for _, require := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/require=%v", typ, require), func(t *testing.T) {
				l := open(t, Config{Type: typ, CertFile: f.Cert, KeyFile: f.Key, ClientCAFile: f.CA, RequireClientCert: require, CertCNAsUsername: true})
				dial := func(certs []tls.Certificate) (io.Closer, error) {
					if typ == "tls" {
						c, err := tlsClient(t, l, ca, certs)
						if err != nil {
							return nil, err
						}
						return c, nil
					}
					ws, _, err := dialWS(wsURL(l, "wss", "/mqtt"), []string{"mqtt"}, clientTLS(ca, certs), nil)
					if err != nil {
						return nil, err
					}
					return ws, nil
				}

				// Refused clients never reach Accept.
				if c, err := dial([]tls.Certificate{mallory}); err == nil {
					c.Close()
					t.Fatal("client with a certificate from another CA accepted")
				}
				var anon io.Closer
				if require {
					if c, err := dial(nil); err == nil {
						c.Close()
						t.Fatal("client without certificate accepted though require_client_cert")
					}
				} else {
					c, err := dial(nil)
					if err != nil {
						t.Fatalf("client without certificate refused: %v", err)
					}
					anon = c
					sc := accept(t, l)
					if u, ok := PeerIdentity(sc); ok {
						t.Fatalf("PeerIdentity of an anonymous client = %q", u)
					}
					sc.Close()
				}

				c, err := dial([]tls.Certificate{alice})
				if err != nil {
					t.Fatalf("client with a certificate from the CA refused: %v", err)
				}
				sc := accept(t, l)
				if u, ok := PeerIdentity(sc); !ok || u != "alice" {
					t.Fatalf("PeerIdentity = %q, %v; want alice", u, ok)
				}
				sc.Close()
				c.Close()
				if anon != nil {
					anon.Close()
				}
			})
		}
	}
}

func TestPeerIdentityOnlyWhenAsked(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	f := testpki.NewServerFiles(t, ca, "server")
	l := open(t, Config{Type: "tls", CertFile: f.Cert, KeyFile: f.Key, ClientCAFile: f.CA})
	c, err := tlsClient(t, l, ca, []tls.Certificate{ca.ClientCert(t, "alice")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := accept(t, l)
	defer sc.Close()
	if u, ok := PeerIdentity(sc); ok {
		t.Fatalf("PeerIdentity without cert_cn_as_username = %q", u)
	}
	tc, err := net.Dial("tcp", open(t, Config{Type: "tcp"}).Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc.Close()
	if _, ok := PeerIdentity(tc); ok {
		t.Fatal("PeerIdentity of a TCP connection")
	}
}

func TestMinTLSVersion(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	f := testpki.NewServerFiles(t, ca, "server")
	l := open(t, Config{Type: "tls", CertFile: f.Cert, KeyFile: f.Key, MinTLSVersion: "1.3"})
	if c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool, MaxVersion: tls.VersionTLS12}); err == nil {
		c.Close()
		t.Fatal("TLS 1.2 client accepted by a min_tls_version 1.3 listener")
	}
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ConnectionState().Version != tls.VersionTLS13 {
		t.Fatal("not TLS 1.3")
	}
	accept(t, l).Close()
}

func TestSlowTLSHandshakeDoesNotBlockAccept(t *testing.T) {
	// Restored by a cleanup registered before the listener's, so after its Close has waited
	// for the handshake goroutines that read it (a defer ran first, racing them).
	old := handshakeTimeout
	t.Cleanup(func() { handshakeTimeout = old })
	handshakeTimeout = 500 * time.Millisecond
	ca := testpki.NewCA(t, "test CA")
	f := testpki.NewServerFiles(t, ca, "server")
	l := open(t, Config{Type: "tls", CertFile: f.Cert, KeyFile: f.Key})

	slow, err := net.Dial("tcp", l.Addr().String()) // connects and never says a word
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	start := time.Now()
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	accept(t, l).Close()
	if d := time.Since(start); d > handshakeTimeout/2 {
		t.Fatalf("accept took %v behind a silent client", d)
	}
	// The silent client is dropped once the handshake timeout passes.
	slow.SetReadDeadline(time.Now().Add(timeout))
	if _, err := slow.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("silent client read: %v, want EOF", err)
	}
}

// certCN returns the CommonName of the certificate the server presented to a new client.
func certCN(t *testing.T, typ string, l net.Listener, ca *testpki.CA) (string, io.Closer) {
	t.Helper()
	if typ == "tls" {
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool})
		if err != nil {
			t.Fatal(err)
		}
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName, c
	}
	ws, _, err := dialWS(wsURL(l, "wss", "/mqtt"), []string{"mqtt"}, &tls.Config{RootCAs: ca.Pool}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ws.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName, ws
}

func TestReload(t *testing.T) {
	for _, typ := range []string{"tls", "wss"} {
		t.Run(typ, func(t *testing.T) {
			ca := testpki.NewCA(t, "test CA")
			f := testpki.NewServerFiles(t, ca, "server-1")
			l := open(t, Config{Type: typ, CertFile: f.Cert, KeyFile: f.Key})
			stop := serveEcho(l)
			defer stop()
			check := func(c io.Closer, msg string) {
				t.Helper()
				if ws, ok := c.(*websocket.Conn); ok {
					wsRoundTrip(t, ws, msg)
				} else {
					roundTrip(t, c.(net.Conn), msg)
				}
			}

			cn, old := certCN(t, typ, l, ca)
			defer old.Close()
			if cn != "server-1" {
				t.Fatalf("first certificate %q", cn)
			}
			check(old, "before reload")

			f.Write(t, ca, "server-2")
			if err := l.Reload(); err != nil {
				t.Fatal(err)
			}
			cn, c := certCN(t, typ, l, ca)
			if cn != "server-2" {
				t.Fatalf("after Reload a new client sees %q, want server-2", cn)
			}
			check(c, "new client")
			c.Close()
			check(old, "old connection after reload")

			testpki.WriteFile(t, f.Cert, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
			err := l.Reload()
			if err == nil || !strings.Contains(err.Error(), typ+" "+l.Addr().String()) && !strings.Contains(err.Error(), f.Cert) {
				t.Fatalf("Reload of a broken file: %v", err)
			}
			cn, c = certCN(t, typ, l, ca)
			if cn != "server-2" {
				t.Fatalf("after a failed Reload a new client sees %q, want server-2", cn)
			}
			check(c, "after failed reload")
			c.Close()
			check(old, "old connection at the end")
		})
	}
}

func TestReloadClientCA(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	ca2 := testpki.NewCA(t, "second CA")
	f := testpki.NewServerFiles(t, ca, "server")
	l := open(t, Config{Type: "tls", CertFile: f.Cert, KeyFile: f.Key, ClientCAFile: f.CA, RequireClientCert: true, CertCNAsUsername: true})
	bob := ca2.ClientCert(t, "bob")
	if c, err := tlsClient(t, l, ca, []tls.Certificate{bob}); err == nil {
		c.Close()
		t.Fatal("bob accepted before his CA was trusted")
	}
	testpki.WriteFile(t, f.CA, append(append([]byte{}, ca.PEM...), ca2.PEM...))
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	c, err := tlsClient(t, l, ca, []tls.Certificate{bob})
	if err != nil {
		t.Fatalf("bob refused after his CA was added: %v", err)
	}
	defer c.Close()
	sc := accept(t, l)
	defer sc.Close()
	if u, _ := PeerIdentity(sc); u != "bob" {
		t.Fatalf("PeerIdentity %q", u)
	}
	testpki.WriteFile(t, f.CA, []byte("no PEM here"))
	if err := l.Reload(); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("Reload with a broken CA file: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	f := testpki.NewServerFiles(t, ca, "server")
	missing := f.Dir + "/missing.pem"
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Type: "udp", Address: "127.0.0.1:0"}, `listener udp 127.0.0.1:0: unknown type "udp"`},
		{Config{Type: "tcp"}, "listener tcp : address is missing"},
		{Config{Type: "tls", Address: "127.0.0.1:0"}, "listener tls 127.0.0.1:0: cert_file is required"},
		{Config{Type: "wss", Address: "127.0.0.1:0", CertFile: missing, KeyFile: f.Key}, "listener wss 127.0.0.1:0: load certificate " + missing},
		{Config{Type: "tls", Address: "127.0.0.1:0", CertFile: f.Cert, KeyFile: f.Key, MinTLSVersion: "1.1"}, `min_tls_version must be "1.2" or "1.3", not "1.1"`},
		{Config{Type: "tls", Address: "127.0.0.1:0", CertFile: f.Cert, KeyFile: f.Key, RequireClientCert: true}, "require_client_cert needs client_ca_file"},
		{Config{Type: "tls", Address: "127.0.0.1:0", CertFile: f.Cert, KeyFile: f.Key, CertCNAsUsername: true}, "cert_cn_as_username needs client_ca_file"},
		{Config{Type: "tls", Address: "127.0.0.1:0", CertFile: f.Cert, KeyFile: f.Key, ClientCAFile: f.Key}, "holds no PEM certificate"},
		{Config{Type: "tcp", Address: "127.0.0.1:0", CertFile: f.Cert}, "TLS settings given"},
		{Config{Type: "tls", Address: "127.0.0.1:0", CertFile: f.Cert, KeyFile: f.Key, Path: "/mqtt"}, "WebSocket settings"},
		{Config{Type: "ws", Address: "127.0.0.1:0", Path: "mqtt"}, `path "mqtt" must start with /`},
		{Config{Type: "ws", Address: "nowhere"}, "listener ws nowhere: address"},
	} {
		l, err := Open(tc.c, zerolog.Nop())
		if err == nil {
			l.Close()
			t.Errorf("%+v: opened", tc.c)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want it to say %q", tc.c, err, tc.want)
		}
	}
	// An address in use.
	l := open(t, Config{Type: "ws"})
	if l2, err := Open(Config{Type: "ws", Address: l.Addr().String()}, zerolog.Nop()); err == nil {
		l2.Close()
		t.Fatal("opened an address in use")
	} else if !strings.Contains(err.Error(), "listener ws "+l.Addr().String()) {
		t.Fatalf("address in use: %v", err)
	}
}

func acceptClosed(t *testing.T, l net.Listener) {
	t.Helper()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

// TestWSCloseLeavesNothing closes a ws/wss listener with an Accepted connection, an upgraded
// connection not yet Accepted, an idle HTTP keep-alive connection, a half-sent request, and (wss)
// a client stuck before its TLS handshake; every one must be closed and no goroutine left.
func TestWSCloseLeavesNothing(t *testing.T) {
	for _, typ := range []string{"ws", "wss"} {
		t.Run(typ, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			c := Config{Type: typ, Address: "127.0.0.1:0"}
			var tc *tls.Config
			scheme := "ws"
			if typ == "wss" {
				ca := testpki.NewCA(t, "test CA")
				f := testpki.NewServerFiles(t, ca, "server")
				c.CertFile, c.KeyFile = f.Cert, f.Key
				tc = &tls.Config{RootCAs: ca.Pool}
				scheme = "wss"
			}
			l, err := Open(c, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			url := wsURL(l, scheme, "/mqtt")

			accepted, _, err := dialWS(url, []string{"mqtt"}, tc, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer accepted.Close()
			sc := accept(t, l)
			readErr := make(chan error, 1)
			go func() { // the broker's reader, still running at Close
				_, err := io.Copy(io.Discard, sc)
				readErr <- err
			}()

			pending, _, err := dialWS(url, []string{"mqttv3.1"}, tc, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer pending.Close()

			var raws []net.Conn
			dialRaw := func() net.Conn {
				r, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				raws = append(raws, r)
				return r
			}
			if typ == "ws" {
				idle := dialRaw()
				io.WriteString(idle, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
				if err != nil || resp.StatusCode != 404 {
					t.Fatalf("404 request: %v %v", resp, err)
				}
				io.WriteString(dialRaw(), "GET /mqtt HTTP/1.1\r\nHost: x\r\n")
				// Unread bytes at Close would make it a reset: wait until the server reads them.
				waitStacks(t, 1, "net/http.(*conn).serve", "MIMEHeader")
			} else {
				dialRaw() // no ClientHello ever
				waitStacks(t, 1, "net/http.(*conn).serve", "crypto/tls.(*Conn).serverHandshake")
			}

			start := time.Now()
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if d := time.Since(start); d > shutdownTimeout+2*time.Second {
				t.Fatalf("Close took %v", d)
			}
			acceptClosed(t, l)
			if err := l.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}

			for name, ws := range map[string]*websocket.Conn{"accepted": accepted, "pending": pending} {
				ws.SetReadDeadline(time.Now().Add(timeout))
				if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
					t.Errorf("%s connection: %v, want close 1001", name, err)
				}
			}
			select {
			case err := <-readErr:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("accepted connection's reader: %v, want net.ErrClosed", err)
				}
			case <-time.After(timeout):
				sc.Close() // releases the reader
				<-readErr
				t.Error("the accepted connection was left open by Close")
			}
			sc.Close()
			for i, r := range raws {
				r.SetReadDeadline(time.Now().Add(timeout))
				if _, err := io.ReadAll(r); err != nil {
					t.Errorf("raw connection %d not closed: %v", i, err)
				}
				r.Close()
			}
		})
	}
}

// TestTLSCloseLeavesNothing closes a tls listener with a handshake in progress, a handshaken
// connection not yet Accepted, and an Accepted one (which stays the caller's).
func TestTLSCloseLeavesNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	ca := testpki.NewCA(t, "test CA")
	f := testpki.NewServerFiles(t, ca, "server")
	l, err := Open(Config{Type: "tls", Address: "127.0.0.1:0", CertFile: f.Cert, KeyFile: f.Key}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	accepted, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	sc := accept(t, l)
	pending, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitStacks(t, 2, "listener.(*tlsListener).handshake(") // pending's and silent's

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	acceptClosed(t, l)
	for name, c := range map[string]net.Conn{"pending": pending, "silent": silent} {
		c.SetReadDeadline(time.Now().Add(timeout))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s connection still open after Close: %v", name, err)
		}
	}
	roundTripTo(t, sc, accepted)
	sc.Close()
}

// roundTripTo checks that an Accepted connection still carries bytes both ways.
func roundTripTo(t *testing.T, server, client net.Conn) {
	t.Helper()
	server.SetDeadline(time.Now().Add(timeout))
	client.SetDeadline(time.Now().Add(timeout))
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("%q %v", buf, err)
	}
}

func TestWSDeadlines(t *testing.T) {
	l := open(t, Config{Type: "ws"})
	ws, _, err := dialWS(wsURL(l, "ws", "/mqtt"), []string{"mqtt"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := accept(t, l)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past deadline: %v, want os.ErrDeadlineExceeded", err)
	}

	// A writer blocked on a client that does not read is released by a deadline set from another
	// goroutine.
	done := make(chan error, 1)
	go func() {
		big := make([]byte, 1<<20)
		for {
			if _, err := c.Write(big); err != nil {
				done <- err
				return
			}
		}
	}()
	waitStacks(t, 1, "listener.(*wsConn).Write(", "internal/poll.(*pollDesc).waitWrite(")
	c.SetWriteDeadline(time.Now())
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blocked write: %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(timeout):
		t.Fatal("write deadline did not release the writer")
	}
	if c.LocalAddr().String() != l.Addr().String() {
		t.Fatalf("LocalAddr %v, listener %v", c.LocalAddr(), l.Addr())
	}
}
