package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
)

// wsListener serves MQTT over WebSocket (and over TLS for wss). An http.Server upgrades
// requests at the configured path; the upgraded connections reach Accept through a channel.
type wsListener struct {
	raw      net.Listener // the TCP listener; for wss the http.Server sees it through tls.NewListener
	c        Config
	path     string
	certs    *certSource // nil for ws
	log      zerolog.Logger
	srv      *http.Server
	upgrader websocket.Upgrader
	origins  originPolicy
	refusals zerolog.Logger // Warn for refused origins, sampled: a hostile page can retry in a loop

	conns     chan net.Conn // unbuffered: an upgraded connection waits in its handler until Accept
	done      chan struct{} // closed by Close
	serveDone chan struct{} // closed when srv.Serve returns
	serveErr  error         // why Serve returned, set before serveDone is closed
	once      sync.Once

	mu        sync.Mutex
	closed    bool
	open      map[*wsConn]struct{} // every upgraded connection not yet closed, Accepted or not
	handlers  sync.WaitGroup       // handlers that passed the closed check
	httpConns sync.WaitGroup       // HTTP connections not yet closed or hijacked
}

func newWSListener(raw net.Listener, c Config, certs *certSource, log zerolog.Logger) *wsListener {
	l := &wsListener{
		raw:       raw,
		c:         c,
		path:      c.Path,
		certs:     certs,
		log:       log,
		conns:     make(chan net.Conn),
		done:      make(chan struct{}),
		serveDone: make(chan struct{}),
		open:      make(map[*wsConn]struct{}),
	}
	if l.path == "" {
		l.path = DefaultPath
	}
	l.origins = newOriginPolicy(c, raw.Addr())
	l.refusals = log.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second})
	l.upgrader = websocket.Upgrader{
		HandshakeTimeout: handshakeTimeout,
		Subprotocols:     Subprotocols,
		// ServeHTTP has checked the origin before calling Upgrade.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			l.log.Debug().Err(reason).Str("remote", r.RemoteAddr).Int("status", status).Msg("WebSocket upgrade refused")
			http.Error(w, http.StatusText(status)+": "+reason.Error(), status)
		},
	}
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: handshakeTimeout, // also bounds the TLS handshake of wss
		IdleTimeout:       handshakeTimeout,
		ErrorLog:          stdlog.New(debugWriter{log}, "", 0),
		ConnState:         l.connState,
		// A non-nil empty map turns HTTP/2 off: WebSocket upgrades need HTTP/1.1.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	ln := raw
	if certs != nil {
		ln = tls.NewListener(raw, certs.serverConfig())
	}
	go func() {
		err := l.srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			l.log.Error().Err(err).Msg("HTTP server stopped")
		}
		l.serveErr = err
		close(l.serveDone)
	}()
	return l
}

// connState counts the HTTP connections so that Close can wait for their goroutines: each
// connection starts in StateNew and ends in exactly one of StateHijacked or StateClosed.
func (l *wsListener) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		l.httpConns.Add(1)
	case http.StateHijacked, http.StateClosed:
		l.httpConns.Done()
	}
}

func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != l.path {
		http.NotFound(w, r)
		return
	}
	if !l.enter() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	defer l.handlers.Done()
	log := l.log.With().Str("remote", r.RemoteAddr).Logger()
	if !websocket.IsWebSocketUpgrade(r) {
		log.Debug().Msg("refused: not a WebSocket upgrade request")
		http.Error(w, fmt.Sprintf("this endpoint serves MQTT over WebSocket: send a WebSocket upgrade request with subprotocol %s", strings.Join(Subprotocols, " or ")), http.StatusBadRequest)
		return
	}
	// Only browsers send Origin, and the check exists to stop other sites' pages; devices and
	// command-line clients send none and are let through.
	if origin := r.Header.Get("Origin"); origin != "" && !l.origins.allow(origin, r.Host) {
		l.refusals.Warn().Str("remote", r.RemoteAddr).Str("origin", origin).Str("host", r.Host).Msg("WebSocket upgrade refused: origin not allowed (allowed_origins)")
		http.Error(w, fmt.Sprintf("origin %q is not allowed: this listener lets in pages from its own host only, or those listed in allowed_origins", origin), http.StatusForbidden)
		return
	}
	if !offersSubprotocol(r) {
		offered := websocket.Subprotocols(r)
		log.Debug().Strs("offered", offered).Msg("refused: no MQTT subprotocol")
		msg := "no WebSocket subprotocol offered"
		if len(offered) > 0 {
			msg = fmt.Sprintf("unsupported WebSocket subprotocol %s", strings.Join(offered, ", "))
		}
		http.Error(w, fmt.Sprintf("%s: this endpoint accepts the subprotocols %s (Sec-WebSocket-Protocol)", msg, strings.Join(Subprotocols, ", ")), http.StatusBadRequest)
		return
	}
	ws, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client, and upgrader.Error logged it
	}
	c := &wsConn{ws: ws, remote: l.remoteAddr(r, ws), onClose: l.forget}
	if r.TLS != nil {
		c.username, c.hasUsername = identity(l.c, r.TLS)
	}
	if !l.track(c) {
		c.closeWith(websocket.CloseGoingAway, "server shutting down")
		return
	}
	log.Debug().Str("subprotocol", ws.Subprotocol()).Str("client", c.remote.String()).Msg("WebSocket connection upgraded")
	select {
	case l.conns <- c:
	case <-l.done:
		c.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
}

func offersSubprotocol(r *http.Request) bool {
	for _, p := range websocket.Subprotocols(r) {
		for _, s := range Subprotocols {
			if p == s {
				return true
			}
		}
	}
	return false
}

// enter registers a running handler, unless Close has begun.
func (l *wsListener) enter() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.handlers.Add(1)
	return true
}

func (l *wsListener) track(c *wsConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.open[c] = struct{}{}
	return true
}

func (l *wsListener) forget(c *wsConn) {
	l.mu.Lock()
	delete(l.open, c)
	l.mu.Unlock()
}

// remoteAddr is the connection's peer, or with BehindProxy the left-most X-Forwarded-For entry.
func (l *wsListener) remoteAddr(r *http.Request, ws *websocket.Conn) net.Addr {
	peer := ws.RemoteAddr()
	if !l.c.BehindProxy {
		return peer
	}
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return peer
	}
	first, _, _ := strings.Cut(xff[0], ",")
	first = strings.TrimSpace(first)
	if a := parseForwarded(first); a != nil {
		return a
	}
	l.log.Debug().Str("x_forwarded_for", first).Str("remote", peer.String()).Msg("unparsable X-Forwarded-For; using the peer address")
	return peer
}

// parseForwarded parses an X-Forwarded-For entry: an IP address, possibly with a port, IPv6
// possibly in brackets.
func parseForwarded(s string) net.Addr {
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); ip != nil {
		return &net.TCPAddr{IP: ip}
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	p, err := strconv.ParseUint(port, 10, 16)
	if ip == nil || err != nil {
		return nil
	}
	return &net.TCPAddr{IP: ip, Port: int(p)}
}

func (l *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.raw.Addr(), Err: net.ErrClosed}
	case <-l.serveDone:
		select {
		case <-l.done:
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.raw.Addr(), Err: net.ErrClosed}
		default:
		}
		return nil, l.c.errorf("%w", l.serveErr)
	}
}

// Close stops the HTTP server, closes every WebSocket connection it upgraded (Accepted or not:
// http.Server.Shutdown does not track hijacked connections) with close code 1001, and returns
// once none of the listener's goroutines, nor the HTTP server's, is left.
func (l *wsListener) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.done) // handlers waiting to hand a connection to Accept give up
		l.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if e := l.srv.Shutdown(ctx); e != nil && !errors.Is(e, context.DeadlineExceeded) {
			err = e
		}
		cancel()
		l.srv.Close() // whatever Shutdown left: slow handshakes, requests in progress

		l.mu.Lock()
		open := make([]*wsConn, 0, len(l.open))
		for c := range l.open {
			open = append(open, c)
		}
		l.mu.Unlock()
		var wg sync.WaitGroup
		for _, c := range open {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.closeWith(websocket.CloseGoingAway, "server shutting down")
			}()
		}
		wg.Wait()

		<-l.serveDone      // no StateNew after this
		l.handlers.Wait()  // a handler still upgrading closes its connection itself (l.closed)
		l.httpConns.Wait() // every HTTP connection goroutine has closed or handed over its conn
		l.log.Debug().Int("websocket_conns_closed", len(open)).Msg("listener closed")
	})
	return err
}

func (l *wsListener) Addr() net.Addr { return l.raw.Addr() }

func (l *wsListener) Reload() error {
	if l.certs == nil {
		return nil
	}
	return l.certs.reload()
}

// debugWriter sends the http.Server's error log (TLS handshake errors and the like) to zerolog
// at debug level: they are about misbehaving clients, not about the broker.
type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
