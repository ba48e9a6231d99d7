package listener

import (
	"crypto/tls"
	"net"
	"sync"
)

// GateLimits bound the sockets a broker holds, counted from the moment they are accepted, before
// any TLS or WebSocket handshake; zero means no limit.
type GateLimits struct {
	MaxConnections int // open sockets across every listener sharing the gate
	// MaxPending is per listener: sockets that have not finished CONNECT. Past it the oldest of
	// them is closed to make room, so a flood of silent sockets slows new clients down but cannot
	// lock them out.
	MaxPending int
	// MaxPendingPerAddress is per listener and source IP address: past it a new socket from that
	// address is closed at once.
	MaxPendingPerAddress int
}

// Refusal says why the gate closed a socket.
type Refusal int

const (
	RefusedMaxConnections Refusal = iota // GateLimits.MaxConnections reached: closed at accept
	RefusedPendingAddress                // GateLimits.MaxPendingPerAddress reached: closed at accept
	EvictedPending                       // the oldest pending socket, closed to admit a new one
)

// Gate admits accepted sockets for every listener that shares it. Safe for concurrent use.
type Gate struct {
	lim     GateLimits
	refused func(Refusal, net.Addr) // called without the lock held; may be nil

	mu   sync.Mutex
	open int
}

// NewGate returns a gate that enforces lim and reports each socket it closes to refused.
func NewGate(lim GateLimits, refused func(Refusal, net.Addr)) *Gate {
	return &Gate{lim: lim, refused: refused}
}

func (g *Gate) report(r Refusal, addr net.Addr) {
	if g.refused != nil {
		g.refused(r, addr)
	}
}

// Wrap returns l with every accepted socket admitted through g. A nil gate returns l.
func (g *Gate) Wrap(l net.Listener) net.Listener {
	if g == nil {
		return l
	}
	return &gatedListener{Listener: l, g: g, byAddr: make(map[string]int)}
}

// gatedListener is one listener's share of a gate: its pending sockets, oldest first.
type gatedListener struct {
	net.Listener
	g *Gate

	mu      sync.Mutex
	pending []*gatedConn // not yet established, in accept order; closed ones are removed
	byAddr  map[string]int
}

// Accept returns the next admitted socket; refused ones are closed here and never returned.
func (l *gatedListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.admit(nc); c != nil {
			return c, nil
		}
	}
}

func (l *gatedListener) admit(nc net.Conn) *gatedConn {
	g := l.g
	g.mu.Lock()
	if g.lim.MaxConnections > 0 && g.open >= g.lim.MaxConnections {
		g.mu.Unlock()
		// Counted before the close, so that whoever sees the close finds it counted.
		g.report(RefusedMaxConnections, nc.RemoteAddr())
		nc.Close()
		return nil
	}
	g.open++
	g.mu.Unlock()

	addr := SourceAddress(nc.RemoteAddr())
	c := &gatedConn{Conn: nc, l: l, addr: addr, pending: true}
	var evict *gatedConn
	l.mu.Lock()
	if g.lim.MaxPendingPerAddress > 0 && l.byAddr[addr] >= g.lim.MaxPendingPerAddress {
		l.mu.Unlock()
		c.pending = false
		g.report(RefusedPendingAddress, nc.RemoteAddr())
		c.Close()
		return nil
	}
	if g.lim.MaxPending > 0 && len(l.pending) >= g.lim.MaxPending {
		evict = l.pending[0]
	}
	l.pending = append(l.pending, c)
	l.byAddr[addr]++
	l.mu.Unlock()
	if evict != nil {
		g.report(EvictedPending, evict.RemoteAddr())
		evict.Close()
	}
	return c
}

// settle takes c out of the pending set, if it is there; l.mu is held.
func (l *gatedListener) settleLocked(c *gatedConn) {
	if !c.pending {
		return
	}
	c.pending = false
	for i, p := range l.pending {
		if p == c {
			l.pending = append(l.pending[:i], l.pending[i+1:]...)
			break
		}
	}
	if l.byAddr[c.addr]--; l.byAddr[c.addr] <= 0 {
		delete(l.byAddr, c.addr)
	}
}

// gatedConn is an admitted socket; closing it gives its place back.
type gatedConn struct {
	net.Conn
	l       *gatedListener
	addr    string
	pending bool // guarded by l.mu
	once    sync.Once
}

// NetConn returns the accepted socket itself, as tls.Conn.NetConn does.
func (c *gatedConn) NetConn() net.Conn { return c.Conn }

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.settleLocked(c)
		c.l.mu.Unlock()
		c.l.g.mu.Lock()
		c.l.g.open--
		c.l.g.mu.Unlock()
	})
	return err
}

// Established tells the gate that the client on nc has finished CONNECT: it no longer counts as
// pending. nc is a connection returned by a Listener's Accept (or by a gated listener itself);
// for any other connection Established does nothing.
func Established(nc net.Conn) {
	for {
		switch c := nc.(type) {
		case *gatedConn:
			c.l.mu.Lock()
			c.l.settleLocked(c)
			c.l.mu.Unlock()
			return
		case *tlsConn:
			nc = c.Conn.NetConn()
		case *tls.Conn:
			nc = c.NetConn()
		case *wsConn:
			nc = c.ws.NetConn()
		default:
			return
		}
	}
}

// SourceAddress is the IP address of addr without the port, the unit of MaxPendingPerAddress.
func SourceAddress(addr net.Addr) string {
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

// PlainTCP returns the TCP socket under nc when reading nc reads that socket and nothing else
// (a tcp listener's connection, gated or not; never TLS or WebSocket, whose framing sits between).
func PlainTCP(nc net.Conn) (*net.TCPConn, bool) {
	if c, ok := nc.(*gatedConn); ok {
		nc = c.Conn
	}
	tc, ok := nc.(*net.TCPConn)
	return tc, ok
}
