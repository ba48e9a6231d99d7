package test

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// Regression tests of issue 11's pre-authentication limits: a CONNECT flood (item 2) and sockets
// counted from accept (item 16).

// floodClosedAtOnce reports whether the broker closes c within a second without sending anything.
func floodClosedAtOnce(c *mqtttest.Client) bool {
	got, err := c.Closed(time.Second, nil)
	return err == nil && len(got) == 0
}

// floodOpen reports whether c is still open after a short wait (nothing to read, no EOF).
func floodOpen(c *mqtttest.Client) bool {
	_, err := c.TryRead(200 * time.Millisecond)
	return mqtttest.IsTimeout(err)
}

// floodConnect sends a CONNECT on c and returns the CONNACK code, or -1 without one within wait.
// It does not fail the test, so the flood's goroutines use it too.
func floodConnect(c *mqtttest.Client, id, user, password string, wait time.Duration) int {
	cp := &codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level311, ClientID: id, CleanSession: true, KeepAlive: 60,
		HasUsername: true, Username: user, HasPassword: true, Password: []byte(password)}
	if err := c.Write(cp); err != nil {
		return -1
	}
	p, err := c.TryRead(wait)
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

	var silent []*mqtttest.Client
	for i := range 4 {
		addr := tlsAddr
		if i%2 == 1 {
			addr = wsAddr // no HTTP request: still in the handshake
		}
		silent = append(silent, mqtttest.Dial(t, addr))
	}
	for _, c := range silent {
		if !floodOpen(c) {
			t.Fatalf("a socket within max_connections was closed")
		}
	}
	for _, addr := range []string{b.Addr, tlsAddr, wsAddr} {
		c := mqtttest.Dial(t, addr)
		if !floodClosedAtOnce(c) {
			t.Errorf("a fifth socket on %s was not closed at once while four sockets sat in handshakes (max_connections 4)", addr)
		}
		c.Conn.Close()
	}

	// One handshaking socket goes away: a real TLS client gets its place.
	silent[0].Conn.Close()
	var err error
	if !mqtttest.Within(5*time.Second, func() bool {
		var tc *tls.Conn
		if tc, err = tls.Dial("tcp", tlsAddr, tlsClientConfig(ca)); err != nil {
			return false
		}
		c := mqtttest.New(t, tc)
		defer c.Conn.Close()
		return floodConnect(c, "tls-client", "u", "p", 5*time.Second) == 0
	}) {
		t.Fatalf("no TLS client let in after a slot was freed: %v", err)
	}
}

// TestSecurity02_PendingConnectsBounded: limits.max_pending_connects_per_address refuses more silent
// sockets from one address at accept; limits.max_pending_connects evicts the oldest silent socket
// of the listener to let a new one in; a socket that finished CONNECT no longer counts.
func TestSecurity02_PendingConnectsBounded(t *testing.T) {
	b := StartBroker(t, BrokerConfig{Extra: "[limits]\nmax_pending_connects = 12\nmax_pending_connects_per_address = 5\n"})
	dial := func(from string) *mqtttest.Client {
		t.Helper()
		return mqtttest.DialFrom(t, from, b.Addr)
	}
	var first []*mqtttest.Client
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

	var idle []*mqtttest.Client
	for i := range 1500 {
		idle = append(idle, mqtttest.DialFrom(t, fmt.Sprintf("127.0.0.%d", 2+i%3), b.Addr))
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
				c, err := mqtttest.TryDial(t, from, b.Addr)
				if err != nil {
					continue
				}
				attempts.Add(1)
				switch floodConnect(c, fmt.Sprint("flood-", i), "legit", "wrong", 10*time.Second) {
				case int(codec.RefusedBadUsernameOrPassword):
					wrong.Add(1)
				case int(codec.RefusedServerUnavailable):
					busy.Add(1)
					// Server unavailable: retry after a breath (this Sleep paces the flood). Without it the flood's own CPU
					// (both processes run under the race detector in CI, on two cores) rather than
					// the broker's queue decides what the legitimate client waits.
					time.Sleep(5 * time.Millisecond)
				default:
					closed.Add(1)
				}
				c.Conn.Close()
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	// Let the flood fill the password queue before measuring.
	mqtttest.Eventually(t, 60*time.Second, "200 answers to the flood", func() bool { return wrong.Load()+busy.Load() >= 200 })

	var took []time.Duration
	for i := range 20 {
		start := time.Now()
		c := mqtttest.Dial(t, b.Addr)
		code := floodConnect(c, fmt.Sprint("legit-", i), "legit", "right", 5*time.Second)
		d := time.Since(start)
		c.Conn.Close()
		took = append(took, d)
		if code != 0 {
			t.Errorf("legitimate connect %d during the flood: CONNACK %d after %v, want 0", i, code, d.Round(time.Millisecond))
		} else if d > time.Second {
			t.Errorf("legitimate connect %d during the flood took %v, want under 1 s", i, d.Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond) // paces the legitimate connects through the flood
	}
	t.Logf("20 legitimate connects during the flood: %v; p50 %v, max %v; flood: %d wrong-password attempts (%d answered 0x04, %d 0x03, %d closed), %d idle sockets",
		took, floodPercentile(took, 0.5).Round(time.Millisecond), floodPercentile(took, 1).Round(time.Millisecond),
		attempts.Load(), wrong.Load(), busy.Load(), closed.Load(), len(idle))
}
