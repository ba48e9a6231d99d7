package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// tlsListener accepts TCP connections in its own goroutine and runs each TLS handshake in a
// goroutine of its own, under handshakeTimeout; Accept returns connections whose handshake is
// complete, so PeerIdentity can answer at once and a slow client never delays the others.
type tlsListener struct {
	raw   net.Listener
	certs *certSource
	cfg   *tls.Config
	log   zerolog.Logger

	conns  chan net.Conn // unbuffered: a handshaken connection waits in its goroutine until Accept
	done   chan struct{} // closed by Close
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup // the accept loop and every handshake goroutine
}

// tlsConn is a connection from a tls listener: the TLS connection plus the identity taken from its
// client certificate.
type tlsConn struct {
	*tls.Conn
	username    string
	hasUsername bool
}

func newTLSListener(raw net.Listener, certs *certSource, log zerolog.Logger) *tlsListener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &tlsListener{
		raw:    raw,
		certs:  certs,
		cfg:    certs.serverConfig(),
		log:    log,
		conns:  make(chan net.Conn),
		done:   make(chan struct{}),
		ctx:    ctx,
		cancel: cancel,
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *tlsListener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.raw.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Error().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			select {
			case <-time.After(backoff):
			case <-l.done:
				return
			}
			continue
		}
		backoff = 0
		l.wg.Add(1) // the loop's own count keeps the group above zero, so Add races no Wait
		go l.handshake(c)
	}
}

func (l *tlsListener) handshake(c net.Conn) {
	defer l.wg.Done()
	tc := tls.Server(c, l.cfg)
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(l.ctx); err != nil {
		l.log.Debug().Err(err).Str("remote", c.RemoteAddr().String()).Msg("TLS handshake failed")
		c.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	user, ok := identity(l.certs.c, &st)
	conn := &tlsConn{Conn: tc, username: user, hasUsername: ok}
	select {
	case l.conns <- conn:
	case <-l.done:
		c.Close() // shutting down: drop it without a close_notify that could block
	}
}

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.raw.Addr(), Err: net.ErrClosed}
	}
}

// Close stops accepting, aborts handshakes in progress, closes the connections that were not
// yet Accepted and waits for its goroutines. Accepted connections are the caller's to close.
func (l *tlsListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		l.cancel()
		err = l.raw.Close()
		l.wg.Wait()
	})
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.raw.Addr() }

func (l *tlsListener) Reload() error { return l.certs.reload() }
