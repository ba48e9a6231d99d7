// Package admin is the operators' HTTP listener: Prometheus metrics, health and readiness probes,
// online backups, a JSON inventory of sessions, and the operator's console with its JSON API. It is off unless configured, and requires a
// bearer token when one is set. It answers only requests addressed to it by a loopback address,
// its configured address or its bound address (see hostGuard).
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/broker"
	"github.com/holdfast/holdfast/listener"
	"github.com/holdfast/holdfast/persist"
)

// NextSinceTrailer is the HTTP trailer of GET /backup carrying the version to pass as since for
// the next incremental backup (known only once the stream is written).
const NextSinceTrailer = "Holdfast-Next-Since"

// EstimatedBytesHeader is the header of GET /backup (a full one: since 0) estimating the
// stream's length, for a client's progress display; see BackupEstimate. It is absent when
// nothing is known.
const EstimatedBytesHeader = "Holdfast-Estimated-Bytes"

// BackupEstimate estimates the length of a full backup of a store whose Stats are st: the size
// of its files as Badger last measured them (at open, then once a minute; 0 before). An estimate
// only: the stream holds each key's newest version once, the files also old versions and
// deleted values not yet compacted away, but not what is still in the memtables.
func BackupEstimate(st persist.Stats) int64 { return st.LSMBytes + st.VlogBytes }

// Server is the admin HTTP server.
type Server struct {
	http *http.Server
	l    net.Listener
	done chan struct{}
	stop chan struct{} // closed by Shutdown: stops the console's sampler
}

// Start listens on address and serves until Shutdown.
func Start(address, token string, srv *broker.Server, store *persist.Store, reg *prometheus.Registry, log zerolog.Logger) (*Server, error) {
	l, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("admin.address %s: %w", address, err)
	}
	h := &handler{srv: srv, store: store, log: log}
	protected := http.NewServeMux()
	protected.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	protected.HandleFunc("GET /backup", h.backup)
	protected.HandleFunc("GET /inspect", h.inspect)
	var series *sampler
	if srv != nil {
		series = newSampler(srv, store)
		(&api{handler: h, series: series}).register(protected)
	}
	// Profiles for diagnosing a live broker (go tool pprof http://ADDRESS/debug/pprof/profile).
	protected.HandleFunc("GET /debug/pprof/", pprof.Index)
	protected.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	protected.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	// The probes tell nothing but "up" and "ready", and orchestrators call them without
	// credentials; everything else needs the token.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", h.ready)
	handleConsole(mux) // static files without data: the page asks for the token
	mux.Handle("/", requireToken(token, protected))
	s := &Server{
		http: &http.Server{Handler: newHostGuard(address, l.Addr(), log, mux), ReadHeaderTimeout: 10 * time.Second},
		l:    l,
		done: make(chan struct{}),
		stop: make(chan struct{}),
	}
	if series != nil {
		go series.run(s.stop)
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("admin listener failed")
		}
	}()
	log.Info().Str("address", l.Addr().String()).Bool("token", token != "").Msg("admin listening")
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.l.Addr() }

// Shutdown stops the server, waiting for running requests (a backup in progress) until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	close(s.stop)
	err := s.http.Shutdown(ctx)
	<-s.done
	return err
}

func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte("Bearer " + token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !tokenMatches(r.Header.Get("Authorization"), want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="holdfast"`)
			http.Error(w, "missing or wrong bearer token (admin.token)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tokenMatches compares digests rather than the header itself: ConstantTimeCompare returns at
// once when the lengths differ, which would tell an attacker the token's length.
func tokenMatches(authorization string, want [sha256.Size]byte) bool {
	got := sha256.Sum256([]byte(authorization))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// hostGuard refuses requests whose Host header does not name this listener. A web page can
// make the browser send requests to a name of the page's own that it then resolves to
// 127.0.0.1 (DNS rebinding), and read the answers: /backup is the whole database. A rebound
// name shows in the Host header, a literal address cannot be rebound, so the guard lets in
// loopback addresses and "localhost" (any port, for tunnels and port forwards), the configured
// address and the bound one, and, on a listener bound to every interface, any literal address.
type hostGuard struct {
	own      [][2]string // host and port of the configured and the bound address
	anyIP    bool
	next     http.Handler
	refusals zerolog.Logger
}

func newHostGuard(configured string, bound net.Addr, log zerolog.Logger, next http.Handler) *hostGuard {
	g := &hostGuard{next: next, refusals: log.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second})}
	bhost, bport, _ := listener.SplitAuthority(bound.String(), "")
	if ip := net.ParseIP(bhost); ip != nil && ip.IsUnspecified() {
		g.anyIP = true
	}
	g.own = append(g.own, [2]string{bhost, bport})
	if host, _, ok := listener.SplitAuthority(configured, ""); ok {
		g.own = append(g.own, [2]string{host, bport}) // a configured port 0 is the bound one
	}
	return g
}

func (g *hostGuard) allowed(hostHeader string) bool {
	host, port, ok := listener.SplitAuthority(hostHeader, "80")
	switch {
	case !ok:
		return false
	case listener.LoopbackHost(host):
		return true
	case g.anyIP && net.ParseIP(host) != nil:
		return true
	}
	for _, o := range g.own {
		if o == [2]string{host, port} {
			return true
		}
	}
	return false
}

func (g *hostGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.allowed(r.Host) {
		g.refusals.Warn().Str("host", r.Host).Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Msg("admin request refused: Host is not this listener (DNS rebinding?)")
		http.Error(w, fmt.Sprintf("Host %q is not this admin listener: address it as 127.0.0.1:PORT, localhost:PORT or admin.address", r.Host), http.StatusForbidden)
		return
	}
	g.next.ServeHTTP(w, r)
}

type handler struct {
	srv   *broker.Server
	store *persist.Store
	log   zerolog.Logger
}

// ready answers 200 once recovery is done, the listeners are open and the store takes writes.
func (h *handler) ready(w http.ResponseWriter, r *http.Request) {
	if !h.srv.Ready() {
		http.Error(w, "not ready: listeners not open", http.StatusServiceUnavailable)
		return
	}
	if low, free := h.store.SpaceLow(); low {
		http.Error(w, fmt.Sprintf("not ready: %d bytes free on the data directory's file system, below store.min_free_bytes", free), http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	h.store.Submit(new(persist.Batch), func(_ uint64, err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			http.Error(w, "not ready: store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	case <-ctx.Done():
		http.Error(w, "not ready: store did not answer within 5 s", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// backup streams a consistent backup of every change after ?since= (0 or absent: everything).
func (h *handler) backup(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, "since: not a version number", http.StatusBadRequest)
			return
		}
		since = n
	}
	if h.store.Durability() == persist.None {
		http.Error(w, "durability = \"none\" keeps nothing to back up", http.StatusNotImplemented)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Trailer", NextSinceTrailer)
	// An incremental's length is not known from the store's size, nor anything before Badger
	// first measured it.
	if est := BackupEstimate(h.store.Stats()); since == 0 && est > 0 {
		w.Header().Set(EstimatedBytesHeader, strconv.FormatInt(est, 10))
	}
	start := time.Now()
	next, err := h.store.Backup(w, since)
	if err != nil {
		// The status is already sent; a missing trailer tells the client the stream is incomplete.
		h.log.Error().Err(err).Uint64("since", since).Msg("backup failed")
		return
	}
	w.Header().Set(NextSinceTrailer, strconv.FormatUint(next, 10))
	h.log.Info().Uint64("since", since).Uint64("next_since", next).Dur("took", time.Since(start)).Msg("backup taken")
}

func (h *handler) inspect(w http.ResponseWriter, _ *http.Request) {
	inv, err := h.store.Inspect()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// The store knows what is durable; the broker knows who is connected and what is in flight.
	for i := range inv.Sessions {
		if h.srv == nil {
			break // serving a store without a broker (tests)
		}
		si := &inv.Sessions[i]
		if connected, inflight, ok := h.srv.Live(si.ClientID); ok {
			si.Connected, si.Inflight = connected, inflight
			if connected {
				si.DisconnectedAt = nil
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(inv)
}
