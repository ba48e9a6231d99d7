package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// idAddr is the address the raft transport reports for this node: its id.
// The raft configuration holds ids as addresses, so the leader address a
// follower learns is the leader's id, and every dial goes through the
// address provider (peers) to find where to connect.
type idAddr string

func (a idAddr) Network() string { return "tcp" }
func (a idAddr) String() string  { return string(a) }

// streamLayer is raft's listener and dialer: plain TCP, or mutual TLS when
// tlsConf is set. The server side of TLS is whatever tlsConf says (the
// caller sets ClientAuth to demand client certificates); the dialing side
// presents the same certificates and checks the peer against RootCAs.
type streamLayer struct {
	ln      net.Listener
	id      string
	tlsConf *tls.Config
}

func newStreamLayer(addr, id string, tlsConf *tls.Config) (*streamLayer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &streamLayer{ln: ln, id: id}
	if tlsConf != nil {
		s.tlsConf = tlsConf.Clone()
	}
	return s, nil
}

func (s *streamLayer) Accept() (net.Conn, error) {
	conn, err := s.ln.Accept()
	if err != nil || s.tlsConf == nil {
		return conn, err
	}
	return &serverTLSConn{Conn: tls.Server(conn, s.tlsConf)}, nil
}

// serverTLSConn runs the server side of the TLS handshake on the first
// Read or Write, in the connection's own goroutine (not the accept loop),
// and gives it rpcTimeout: a peer that connects and says nothing, or
// presents no certificate, is dropped.
type serverTLSConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *serverTLSConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		defer cancel()
		if err := c.Conn.HandshakeContext(ctx); err != nil {
			c.err = fmt.Errorf("raft TLS handshake with %s: %w", c.RemoteAddr(), err)
		}
	})
	return c.err
}

func (c *serverTLSConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverTLSConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
func (s *streamLayer) Close() error   { return s.ln.Close() }
func (s *streamLayer) Addr() net.Addr { return idAddr(s.id) }

// listenAddr is the address the listener is bound to (for tests that listen
// on port 0).
func (s *streamLayer) listenAddr() net.Addr { return s.ln.Addr() }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if s.tlsConf == nil {
		return d.Dial("tcp", string(address))
	}
	conf := s.tlsConf
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(string(address))
		if err != nil {
			return nil, err
		}
		conf = conf.Clone()
		conf.ServerName = host
	}
	conn, err := tls.DialWithDialer(d, "tcp", string(address), conf)
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	return conn, nil
}

// peerAddrs resolves a server id to the address this node dials, from the
// configured peers. An id it does not know (a member added at run time) is an
// error, and the transport then dials the address in the raft configuration.
type peerAddrs map[string]string

func (p peerAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if a, ok := p[string(id)]; ok {
		return raft.ServerAddress(a), nil
	}
	return "", fmt.Errorf("cluster: no peer address for %q", id)
}

// progressTransport is raft's network transport that also notes, for each
// follower, the last log index it acknowledged and when: raft does not
// export its replication state, and Status reports a follower's lag from
// this. Pipelining is off (MaxRPCsInFlight 1), so every AppendEntries passes
// through here.
type progressTransport struct {
	*raft.NetworkTransport

	mu       sync.Mutex
	progress map[raft.ServerID]followerProgress
}

type followerProgress struct {
	match   uint64
	contact time.Time
}

func (t *progressTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err != nil || !resp.Success {
		return err
	}
	match := args.PrevLogEntry
	if n := len(args.Entries); n > 0 {
		match = args.Entries[n-1].Index
	}
	t.mu.Lock()
	p := t.progress[id]
	p.contact = time.Now()
	if match > p.match {
		p.match = match
	}
	t.progress[id] = p
	t.mu.Unlock()
	return nil
}

// resetProgress forgets what followers acknowledged to an earlier leader.
func (t *progressTransport) resetProgress() {
	t.mu.Lock()
	clear(t.progress)
	t.mu.Unlock()
}

func (t *progressTransport) followerProgress(id raft.ServerID) (followerProgress, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.progress[id]
	return p, ok
}
