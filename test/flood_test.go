package test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
)

// Regression tests of issue 11's pre-authentication limits: a CONNECT flood (item 2) and sockets
// counted from accept (item 16).

// floodDial connects to addr from the loopback source address from (127.0.0.x), so that tests can
// play several clients on different addresses.
func floodDial(from, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return d.Dial("tcp", addr)
}

// floodClosedAtOnce reports whether the broker closes nc within a second without sending anything.
func floodClosedAtOnce(nc net.Conn) bool {
	nc.SetReadDeadline(time.Now().Add(time.Second))
	n, err := nc.Read(make([]byte, 1))
	return n == 0 && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err))
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "connection reset") }

// floodOpen reports whether nc is still open after a short wait (nothing to read, no EOF).
func floodOpen(nc net.Conn) bool {
	nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := nc.Read(make([]byte, 1))
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// floodConnect sends a CONNECT on nc and returns the CONNACK code, or -1 without one.
func floodConnect(nc net.Conn, id, user, password string, wait time.Duration) int {
	cp := &codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level311, ClientID: id, CleanSession: true, KeepAlive: 60,
		HasUsername: true, Username: user, HasPassword: true, Password: []byte(password)}
	nc.SetDeadline(time.Now().Add(wait))
	if _, err := nc.Write(cp.Append(nil)); err != nil {
		return -1
	}
	p, err := codec.NewReader(nc, 1<<16).ReadPacket()
	if ack, ok := p.(*codec.Connack); err == nil && ok {
		return int(ack.ReturnCode)
	}
	return -1
}

// TestSecurity16_HandshakesCountAgainstMaxConnections: sockets that have not finished a TLS or
// WebSocket handshake count against limits.max_connections from accept, on every listener, so
// sockets that never handshake cannot hold the broker over its limit.
func TestSecurity16_HandshakesCountAgainstMaxConnections(t *testing.T) {
	ca := newTLSTestCA(t, "holdfast test CA")
	server := ca.issue(t, "127.0.0.1", true)
	b := StartBroker(t, BrokerConfig{Extra: transportListeners(&server) + "[limits]\nmax_connections = 4\n"})
	tlsAddr, wsAddr := listenAddr(t, b, 0, "tls", 0), listenAddr(t, b, 0, "ws", 0)

	var silent []net.Conn
	for i := range 4 {
		addr := tlsAddr
		if i%2 == 1 {
			addr = wsAddr // no HTTP request: still in the handshake
		}
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		silent = append(silent, nc)
	}
	for _, nc := range silent {
		if !floodOpen(nc) {
			t.Fatalf("a socket within max_connections was closed")
		}
	}
	for _, addr := range []string{b.Addr, tlsAddr, wsAddr} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if !floodClosedAtOnce(nc) {
			t.Errorf("a fifth socket on %s was not closed at once while four sockets sat in handshakes (max_connections 4)", addr)
		}
		nc.Close()
	}

	// One handshaking socket goes away: a real TLS client gets its place.
	silent[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tc, err := tls.Dial("tcp", tlsAddr, tlsClientConfig(ca))
		if err == nil {
			code := floodConnect(tc, "tls-client", "u", "p", 5*time.Second)
			tc.Close()
			if code == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS client let in after a slot was freed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSecurity02_PendingConnectsBounded: limits.max_pending_connects_per_address refuses more silent
// sockets from one address at accept; limits.max_pending_connects evicts the oldest silent socket
// of the listener to let a new one in; a socket that finished CONNECT no longer counts.
func TestSecurity02_PendingConnectsBounded(t *testing.T) {
	b := StartBroker(t, BrokerConfig{Extra: "[limits]\nmax_pending_connects = 12\nmax_pending_connects_per_address = 5\n"})
	dial := func(from string) net.Conn {
		t.Helper()
		nc, err := floodDial(from, b.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	var first []net.Conn
	for range 5 {
		first = append(first, dial("127.0.0.2"))
	}
	if !floodOpen(first[4]) {
		t.Fatal("the fifth silent socket from one address was closed (limit 5)")
	}
	if !floodClosedAtOnce(dial("127.0.0.2")) {
		t.Error("a sixth silent socket from 127.0.0.2 was not closed at once (max_pending_connects_per_address 5)")
	}
	// Connected clients do not count: five from 127.0.0.5 finish CONNECT, a sixth is let in.
	for i := range 6 {
		if code := floodConnect(dial("127.0.0.5"), fmt.Sprint("ok-", i), "u", "p", 5*time.Second); code != 0 {
			t.Fatalf("client %d from 127.0.0.5: CONNACK %d, want 0 (connected sockets are not pending)", i, code)
		}
	}
	for range 5 {
		dial("127.0.0.3")
	}
	for range 2 {
		dial("127.0.0.4")
	}
	// 12 pending now: the next socket evicts the oldest, first[0].
	late := dial("127.0.0.6")
	if code := floodConnect(late, "late", "u", "p", 5*time.Second); code != 0 {
		t.Fatalf("a client arriving with 12 silent sockets pending got CONNACK %d, want 0", code)
	}
	if !floodClosedAtOnce(first[0]) {
		t.Error("the oldest silent socket was not closed to make room (max_pending_connects 12)")
	}
	if !floodOpen(first[1]) {
		t.Error("a silent socket other than the oldest was closed")
	}
}

// floodStats are the latencies of the legitimate connects of one flood run.
func floodPercentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// TestSecurity02_ConnectFloodDoesNotLockOutLogins: 1,500 sockets that connect and send nothing and
// 200 sockets looping CONNECTs with a wrong password do not keep a client with the right password
// out: each of 20 legitimate CONNECTs during the flood gets CONNACK 0 within a second. The
// password hashes cost 10,000 PBKDF2 iterations, a tenth of what `holdfast passwd` writes, so that
// under the race detector (CI), which runs PBKDF2 several times slower on two cores shared with
// the flood, the test still measures the queue rather than the hash; `holdfast bench connect`
// measures the full cost.
func TestSecurity02_ConnectFloodDoesNotLockOutLogins(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test: seconds of load")
	}
	pw := filepath.Join(t.TempDir(), "passwd")
	h, err := auth.HashPasswordIterations([]byte("right"), 10000)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.SetPasswordHash(pw, "legit", h); err != nil {
		t.Fatal(err)
	}
	b := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf("[auth]\npassword_file = %q\n", pw)})

	var idle []net.Conn
	defer func() {
		for _, nc := range idle {
			nc.Close()
		}
	}()
	for i := range 1500 {
		nc, err := floodDial(fmt.Sprintf("127.0.0.%d", 2+i%3), b.Addr)
		if err != nil {
			t.Fatalf("idle socket %d: %v", i, err)
		}
		idle = append(idle, nc)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var attempts, wrong, busy, closed atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := fmt.Sprintf("127.0.0.%d", 10+i%4)
			for {
				select {
				case <-stop:
					return
				default:
				}
				nc, err := floodDial(from, b.Addr)
				if err != nil {
					continue
				}
				attempts.Add(1)
				switch floodConnect(nc, fmt.Sprint("flood-", i), "legit", "wrong", 10*time.Second) {
				case int(codec.RefusedBadUsernameOrPassword):
					wrong.Add(1)
				case int(codec.RefusedServerUnavailable):
					busy.Add(1)
					// Server unavailable: retry after a breath. Without it the flood's own CPU
					// (both processes run under the race detector in CI, on two cores) rather than
					// the broker's queue decides what the legitimate client waits.
					time.Sleep(5 * time.Millisecond)
				default:
					closed.Add(1)
				}
				nc.Close()
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	// Let the flood fill the password queue before measuring.
	for wrong.Load()+busy.Load() < 200 {
		time.Sleep(50 * time.Millisecond)
	}

	var took []time.Duration
	for i := range 20 {
		start := time.Now()
		nc, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		code := floodConnect(nc, fmt.Sprint("legit-", i), "legit", "right", 5*time.Second)
		d := time.Since(start)
		nc.Close()
		took = append(took, d)
		if code != 0 {
			t.Errorf("legitimate connect %d during the flood: CONNACK %d after %v, want 0", i, code, d.Round(time.Millisecond))
		} else if d > time.Second {
			t.Errorf("legitimate connect %d during the flood took %v, want under 1 s", i, d.Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("20 legitimate connects during the flood: %v; p50 %v, max %v; flood: %d wrong-password attempts (%d answered 0x04, %d 0x03, %d closed), %d idle sockets",
		took, floodPercentile(took, 0.5).Round(time.Millisecond), floodPercentile(took, 1).Round(time.Millisecond),
		attempts.Load(), wrong.Load(), busy.Load(), closed.Load(), len(idle))
}
