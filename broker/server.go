package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/listener"
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/retain"
	"github.com/holdfast/holdfast/router"
	"github.com/holdfast/holdfast/session"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("broker: server closed")

// Server is one broker instance.
type Server struct {
	version       string
	cfg           *config.Config
	log           zerolog.Logger
	dropLog       zerolog.Logger // sampled: a full queue can drop thousands of messages a second
	store         *persist.Store
	trie          *router.Trie[*sessionHandle] // the subscriptions; see subscribe
	groups        *groups                      // the shared subscription groups ($share/...)
	retained      *retain.Store
	sysRetained   *retain.Store // the broker's own $SYS topics: memory only, outside the limits
	retainMu      sync.Mutex    // a retained publish's routing and submission, against SUBSCRIBE's look-up
	retainPending atomic.Int32  // retained updates in the index, not yet durable
	readAheads    atomic.Int32  // pages of session queues read ahead and not yet taken (outbound.go)
	retainLimits  retain.Limits
	auth          atomic.Pointer[AuthRules]
	gate          *listener.Gate // bounds sockets from accept on: max_connections, pending CONNECTs
	passwords     *passwordChecker
	refuseLog     zerolog.Logger // sampled: a flood refuses thousands of sockets a second
	sessions      *registry
	sessOpts      session.Options
	backlogHigh   int // an online session with this many unacknowledged entries slows its publishers
	stats         Stats

	mu         sync.Mutex
	owners     map[string]*conn // client id -> the connection holding it
	topicRates topicRates       // the console's top topics
	conns      map[*conn]struct{}
	listeners  []net.Listener
	closing    bool
	ready      atomic.Bool // listeners open, accepting

	wg   sync.WaitGroup // every goroutine the server started
	quit chan struct{}

	matchPool sync.Pool     // *[]router.Subscriber[*sessionHandle]
	bridges   []*bridge     // set before serving, read-only after
	counted   chan struct{} // closed once the queues are counted (or the count gave up)
	// queueQoS0 is set when some session queues QoS 0 messages while offline
	// (limits.queue_qos0_offline, a bridge's queue_qos0): QoS 0 publishes then take the routed path.
	queueQoS0 bool
}

// New rebuilds the broker's state from store and returns a server ready to Serve, checking clients
// against rules (from LoadAuth). version is what $SYS/broker/version says (main's, set at link
// time). The store stays the caller's to close, after Shutdown.
func New(cfg *config.Config, store *persist.Store, rules *AuthRules, version string, log zerolog.Logger) (*Server, error) {
	strategy, err := session.ParseStrategy(cfg.Shared.Strategy)
	if err != nil {
		return nil, fmt.Errorf("shared.strategy: %w", err)
	}
	s := &Server{
		version:     version,
		cfg:         cfg,
		log:         log,
		store:       store,
		trie:        router.New[*sessionHandle](),
		retained:    retain.New(),
		sysRetained: retain.New(),
		sessions:    newRegistry(),
		groups: newGroups(session.GroupOptions{
			Strategy:        strategy,
			MaxRedeliveries: cfg.Shared.MaxRedeliveries,
			Rand:            rand.IntN,
		}),
		sessOpts: session.Options{
			MaxInflight:       cfg.Limits.MaxInflight,
			MaxQueuedMessages: cfg.Limits.MaxQueuedMessages,
			MaxQueuedBytes:    cfg.Limits.MaxQueuedBytes,
			MemoryWindow:      max(256, cfg.Limits.MaxInflight),
		},
		backlogHigh: max(1024, 4*cfg.Limits.MaxInflight),
		retainLimits: retain.Limits{
			Messages: cfg.Limits.MaxRetainedMessages,
			Bytes:    cfg.Limits.MaxRetainedBytes,
			PerOwner: cfg.Limits.MaxRetainedPerClient,
		},
		owners:  make(map[string]*conn),
		conns:   make(map[*conn]struct{}),
		quit:    make(chan struct{}),
		counted: make(chan struct{}),
	}
	s.dropLog = log.Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Second})
	s.refuseLog = log.Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Second})
	s.gate = listener.NewGate(listener.GateLimits{
		MaxConnections:       cfg.Limits.MaxConnections,
		MaxPending:           cfg.Limits.MaxPendingConnects,
		MaxPendingPerAddress: cfg.Limits.MaxPendingConnectsPerAddress,
	}, s.gateRefused)
	s.passwords = newPasswordChecker(cfg.Auth, &s.wg, s.quit)
	s.auth.Store(rules)
	if err := s.recover(); err != nil {
		return nil, err
	}
	s.dropRefusedSubscriptions()
	s.queueQoS0 = cfg.Limits.QueueQoS0Offline
	if err := s.startBridges(); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.loadLoop()
	if every := cfg.Admin.SysInterval.Duration; every > 0 {
		s.wg.Add(1)
		go s.sysLoop(every)
	}
	return s, nil
}

// recover rebuilds sessions, the subscription trie and the retained index from the store. The
// queues are counted afterwards, while the broker serves (countQueues).
func (s *Server) recover() error {
	start := time.Now()
	st, err := s.store.RecoverSessions()
	if err != nil {
		return fmt.Errorf("recovering state: %w", err)
	}
	queued := 0
	var orphans persist.Batch
	stored := make(map[string]bool) // the groups whose queue has its record
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		if ss.Orphan {
			// Data without a session record belongs to no session: a client connecting later
			// must not inherit it.
			s.log.Warn().Str("client_id", ss.ClientID).Int("queued", ss.QueuedCount).Msg("deleting data of a session without a record")
			orphans.DeleteSession(ss.ClientID)
			continue
		}
		if name, filter, ok := session.ParseGroupID(ss.ClientID); ok {
			gh, _ := s.groupOf(name, filter)
			if ss.Uncounted {
				gh.g.RestoreUncounted(ss.LastSeq)
			} else {
				gh.g.RestoreQueue(ss.QueuedCount, ss.QueuedBytes, ss.LastSeq)
			}
			stored[gh.id] = true
			queued += ss.QueuedCount
			continue
		}
		sess := newHandle(session.Restore(savedSession(ss), &s.sessOpts, start), s.backlogHigh)
		s.sessions.put(sess)
		for _, sub := range ss.Subscriptions {
			s.subscribe(sess, sub.Filter, sub.SubOptions, nil)
		}
		s.schedule(sess)
		queued += ss.QueuedCount
	}
	if err := s.recoverGroups(stored, &orphans); err != nil {
		return err
	}
	if orphans.Len() > 0 {
		if _, err := s.store.Commit(&orphans); err != nil {
			return fmt.Errorf("deleting orphaned session data: %w", err)
		}
	}
	for _, m := range st.Retained {
		s.retained.Set(&retain.Message{Message: m})
	}
	if lim := s.retainLimits; lim.Messages > 0 && s.retained.Len() > lim.Messages || lim.Bytes > 0 && s.retained.Bytes() > lim.Bytes {
		// Served as it is: new retained topics are refused until enough are cleared.
		s.log.Warn().Int("retained", s.retained.Len()).Int64("bytes", s.retained.Bytes()).
			Int("max_retained_messages", lim.Messages).Int64("max_retained_bytes", lim.Bytes).
			Msg("the store holds more retained messages than the limits allow: new retained topics are not stored until some are cleared")
	}
	s.stats.RecoveryTime = time.Since(start)
	s.stats.Started = time.Now()
	ev := s.log.Info().
		Int("sessions", len(st.Sessions)).
		Int("retained", len(st.Retained))
	if st.Bound != 0 {
		ev = ev.Str("waited_for", "sessions, subscriptions, retained messages, in-flight states, wills; queues are counted in the background")
	} else {
		ev = ev.Int("queued", queued)
	}
	ev.Dur("took", time.Since(start)).Msg("recovered state")
	if st.Bound != 0 {
		s.wg.Add(1)
		go s.countQueues()
	} else {
		close(s.counted)
	}
	return nil
}

// testHookCount, set by tests, runs before the queues are counted.
var testHookCount func()

// countQueues gives the sessions and groups restored uncounted the size of their queues as the
// store counts them, while the broker serves. A problem it finds fails the store (fail-stop).
func (s *Server) countQueues() {
	defer s.wg.Done()
	defer close(s.counted)
	if testHookCount != nil {
		testHookCount()
	}
	err := s.store.CountQueues(s.quit, func(q persist.QueueCount) {
		if _, _, ok := session.ParseGroupID(q.ClientID); ok {
			s.groups.mu.Lock()
			gh := s.groups.byID[q.ClientID]
			s.groups.mu.Unlock()
			if gh != nil {
				gh.mu.Lock()
				gh.g.Counted(q.Count, q.Bytes)
				gh.unlock()
			}
			return
		}
		if h := s.sessions.get(q.ClientID); h != nil {
			h.lock().Counted(q.Count, q.Bytes, q.Oldest)
			h.unlock()
		}
	})
	// persist logs the count ("counted the queues"), and a failure as a storage error.
	if err != nil && !errors.Is(err, persist.ErrClosed) {
		s.log.Error().Err(err).Msg("counting the queues")
	}
}

// ListenAndServe opens every listener of the configuration and serves them until Shutdown. It
// returns once all listeners are open; accept loops run in the background.
func (s *Server) ListenAndServe() error {
	for i, lc := range s.cfg.Listeners {
		l, name, err := openListener(s.cfg, i, s.gate, s.log, "listening")
		if err != nil {
			return err
		}
		if !lc.Loopback() && s.cfg.Auth.Anonymous() {
			s.log.Warn().Str("type", lc.Type).Str("address", lc.Address).Msg("listener open to the network with anonymous access (auth.allow_anonymous = true)")
		}
		if err := s.serve(l, name); err != nil {
			l.Close()
			return err
		}
	}
	return nil
}

// openListener opens listener i of cfg with its sockets admitted through gate, logs msg with its
// type and address, and returns it with its name for the operator (its type and address). The
// Server and the Refuser bind the same listeners through it.
func openListener(cfg *config.Config, i int, gate *listener.Gate, log zerolog.Logger, msg string) (listener.Listener, string, error) {
	lc := cfg.Listeners[i]
	l, err := listener.Open(listener.Config{
		Type:              lc.Type,
		Address:           lc.Address,
		Path:              lc.Path,
		CertFile:          lc.CertFile,
		KeyFile:           lc.KeyFile,
		ClientCAFile:      lc.ClientCAFile,
		RequireClientCert: lc.RequireClientCert,
		CertCNAsUsername:  lc.CertCNAsUsername,
		MinTLSVersion:     lc.MinTLSVersion,
		AllowedOrigins:    lc.AllowedOrigins,
		BehindProxy:       lc.BehindProxy,
		Gate:              gate,
	}, log.With().Str("listener", lc.Type).Logger())
	if err != nil {
		return nil, "", fmt.Errorf("listener[%d]: %w", i, err)
	}
	ev := log.Info().Str("type", lc.Type).Str("address", l.Addr().String())
	if lc.Path != "" {
		ev = ev.Str("path", lc.Path)
	}
	ev.Msg(msg)
	return l, lc.Type + " " + l.Addr().String(), nil
}

// ReloadCertificates re-reads the certificates of every TLS and WebSocket-over-TLS listener;
// connected clients are not affected. A broken file keeps the old certificate.
func (s *Server) ReloadCertificates() {
	s.mu.Lock()
	ls := append([]net.Listener(nil), s.listeners...)
	s.mu.Unlock()
	for _, l := range ls {
		if r, ok := l.(listener.Listener); ok {
			if err := r.Reload(); err != nil {
				s.log.Error().Err(err).Str("address", l.Addr().String()).Msg("certificate not reloaded, keeping the old one")
			}
		}
	}
}

// Serve accepts MQTT connections from l in the background until Shutdown. A listener from
// listener.Open should have been given the server's Gate; any other is admitted through it here.
func (s *Server) Serve(l net.Listener) error {
	return s.serve(l, l.Addr().String())
}

// serve is Serve with the listener's name for the operator (its type and address).
func (s *Server) serve(l net.Listener, name string) error {
	if _, ok := l.(listener.Listener); !ok {
		l = s.gate.Wrap(l)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, l)
	s.wg.Add(1)
	go s.acceptLoop(l, name)
	s.ready.Store(true)
	return nil
}

// Ready reports whether the broker accepts connections: state recovered, a listener open, not
// shutting down.
func (s *Server) Ready() bool { return s.ready.Load() }

// Serving reports readiness as the metrics and the console show it: Ready, free space above
// store.min_free_bytes, and the store not failed (/readyz also has the store answer a write).
func (s *Server) Serving() bool {
	low, _ := s.store.SpaceLow()
	return s.Ready() && !low && s.store.Err() == nil
}

func (s *Server) acceptLoop(l net.Listener, name string) {
	defer s.wg.Done()
	acceptLoop(l, s.quit, s.log, func(nc net.Conn) { s.admit(nc, name) })
}

// acceptLoop hands every socket l accepts to admit until l is closed or quit is, backing off on
// errors such as running out of file descriptors.
func acceptLoop(l net.Listener, quit <-chan struct{}, log zerolog.Logger, admit func(net.Conn)) {
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			select {
			case <-quit:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Error().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			select {
			case <-time.After(backoff):
			case <-quit:
				return
			}
			continue
		}
		backoff = 0
		admit(nc)
	}
}

// admit registers a new connection and starts its reader, unless the server is closing or full.
func (s *Server) admit(nc net.Conn, listener string) bool {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return false
	}
	c := newConn(s, nc)
	c.listener = listener
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.stats.Connections.Add(1)
	s.stats.ConnectionsTotal.Add(1)
	go c.serve()
	return true
}

// gateRefused counts and logs (sampled) a socket the gate closed.
func (s *Server) gateRefused(r listener.Refusal, remote net.Addr) {
	var why string
	switch r {
	case listener.RefusedMaxConnections:
		s.stats.Refused[RefuseMaxConnections].Add(1)
		why = "connection refused: limits.max_connections reached"
	case listener.RefusedPendingAddress:
		s.stats.Refused[RefusePendingAddress].Add(1)
		why = "connection refused: limits.max_pending_connects_per_address reached for this address"
	case listener.EvictedPending:
		s.stats.Refused[RefuseEvictedPending].Add(1)
		why = "connection closed before CONNECT to make room: limits.max_pending_connects reached"
	}
	s.refuseLog.Warn().Str("remote", remote.String()).Msg(why)
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.clientID != "" && s.owners[c.clientID] == c {
		delete(s.owners, c.clientID)
	}
	s.mu.Unlock()
	s.stats.Connections.Add(-1)
}

// Shutdown stops accepting, closes every connection, and waits for all goroutines until ctx ends.
// Acknowledged work is already durable; the caller closes the store afterwards. Idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		s.ready.Store(false)
		close(s.quit)
		for _, l := range s.listeners {
			l.Close()
		}
		for c := range s.conns {
			if !c.connected5.Load() {
				c.close()
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c.farewell(codec.ReasonServerShuttingDown, "the broker is shutting down")
				c.close()
			}()
		}
	}
	s.mu.Unlock()
	return waitUntil(ctx, &s.wg)
}

// waitUntil waits for wg until ctx ends, and returns ctx's error if it ends first.
func waitUntil(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the live counters.
func (s *Server) Stats() *Stats { return &s.stats }

// logCommitError returns a completion callback for writes nobody waits on.
func (s *Server) logCommitError(what string) func(uint64, error) {
	return func(_ uint64, err error) {
		if err != nil && !errors.Is(err, persist.ErrClosed) && !errors.Is(err, persist.ErrFailed) {
			s.log.Error().Err(err).Str("what", what).Msg("store write failed")
		}
	}
}
