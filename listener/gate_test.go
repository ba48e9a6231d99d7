package listener

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"
)

// gateHarness is a gated TCP listener on loopback whose accepted sockets the test holds.
type gateHarness struct {
	t        *testing.T
	l        net.Listener
	accepted chan net.Conn

	mu      sync.Mutex
	refused []Refusal
}

func newGateHarness(t *testing.T, lim GateLimits) *gateHarness {
	h := &gateHarness{t: t, accepted: make(chan net.Conn, 64)}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.l = NewGate(lim, func(r Refusal, _ net.Addr) {
		h.mu.Lock()
		h.refused = append(h.refused, r)
		h.mu.Unlock()
	}).Wrap(raw)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := h.l.Accept()
			if err != nil {
				return
			}
			h.accepted <- c
		}
	}()
	t.Cleanup(func() {
		h.l.Close()
		<-done
		close(h.accepted)
		for c := range h.accepted {
			c.Close()
		}
	})
	return h
}

// dial connects from the loopback address from and returns the client side and, if the gate let
// it in, the accepted side (nil when it was refused).
func (h *gateHarness) dial(from string) (client, accepted net.Conn) {
	h.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	client, err := d.Dial("tcp", h.l.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { client.Close() })
	select {
	case accepted = <-h.accepted:
		return client, accepted
	case <-time.After(300 * time.Millisecond):
		return client, nil
	}
}

func (h *gateHarness) refusals() []Refusal {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Refusal(nil), h.refused...)
}

func closedByPeer(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestGateMaxConnections(t *testing.T) {
	h := newGateHarness(t, GateLimits{MaxConnections: 2})
	_, a1 := h.dial("127.0.0.1")
	_, a2 := h.dial("127.0.0.1")
	if a1 == nil || a2 == nil {
		t.Fatal("sockets within max_connections were refused")
	}
	Established(a1) // connected or not, a socket counts until it is closed
	c3, a3 := h.dial("127.0.0.1")
	if a3 != nil || !closedByPeer(t, c3) {
		t.Fatal("a third socket was let in past MaxConnections 2")
	}
	a1.Close()
	if _, a4 := h.dial("127.0.0.1"); a4 == nil {
		t.Fatal("a socket was refused after one of two closed")
	}
	if got := h.refusals(); len(got) != 1 || got[0] != RefusedMaxConnections {
		t.Errorf("refusals %v, want one RefusedMaxConnections", got)
	}
}

func TestGatePendingPerAddressAndEviction(t *testing.T) {
	h := newGateHarness(t, GateLimits{MaxPending: 4, MaxPendingPerAddress: 2})
	c1, a1 := h.dial("127.0.0.2")
	_, a2 := h.dial("127.0.0.2")
	c3, a3 := h.dial("127.0.0.2")
	if a1 == nil || a2 == nil || a3 != nil || !closedByPeer(t, c3) {
		t.Fatal("want two pending sockets from 127.0.0.2 let in and the third closed")
	}
	Established(a2) // no longer pending: 127.0.0.2 has room for one more
	if _, a := h.dial("127.0.0.2"); a == nil {
		t.Fatal("a socket was refused although the address had only one pending")
	}
	h.dial("127.0.0.3")
	h.dial("127.0.0.3")
	// Four pending (a1, the fourth from .2, two from .3): a new one evicts the oldest, a1.
	if _, a := h.dial("127.0.0.4"); a == nil {
		t.Fatal("a new socket was refused at MaxPending instead of evicting the oldest")
	}
	if !closedByPeer(t, c1) {
		t.Error("the oldest pending socket was not closed")
	}
	want := []Refusal{RefusedPendingAddress, EvictedPending}
	if got := h.refusals(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("refusals %v, want %v", got, want)
	}
}

func TestPlainTCP(t *testing.T) {
	h := newGateHarness(t, GateLimits{})
	_, a := h.dial("127.0.0.1")
	if a == nil {
		t.Fatal("socket refused")
	}
	if tc, ok := PlainTCP(a); !ok || tc.RemoteAddr().String() != a.RemoteAddr().String() {
		t.Fatalf("a gated TCP connection: PlainTCP gave %v, %v; want its socket", tc, ok)
	}
	if _, ok := PlainTCP(tls.Server(a, &tls.Config{})); ok {
		t.Fatal("a TLS connection was taken for a plain socket")
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if _, ok := PlainTCP(p1); ok {
		t.Fatal("a pipe was taken for a TCP socket")
	}
}
