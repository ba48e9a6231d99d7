package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/holdfast/holdfast/broker"
	"github.com/holdfast/holdfast/inventory"
)

// api serves the console's JSON endpoints under /api/ (README: "The console and its API").
type api struct {
	*handler
	series *sampler
}

// queueHeadLen is how many queued messages GET /api/session shows.
const queueHeadLen = 100

func (a *api) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/overview", a.overview)
	mux.HandleFunc("GET /api/series", a.seriesSince)
	mux.HandleFunc("GET /api/sessions", a.sessions)
	mux.HandleFunc("GET /api/session", a.session)
	mux.HandleFunc("POST /api/session/disconnect", sameOrigin(a.action("disconnected", a.srv.Disconnect)))
	mux.HandleFunc("DELETE /api/session", sameOrigin(a.action("deleted", a.srv.DeleteSession)))
	mux.HandleFunc("GET /api/retained", a.retained)
	mux.HandleFunc("GET /api/topics/top", a.topTopics)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, r.Method+" "+r.URL.Path+": no such endpoint (README: The console and its API)")
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// sameOrigin refuses what a page of another site makes the browser send: a form or script on
// any page can POST to a loopback address, and without a token nothing else would stop it.
// Browsers say where a request comes from (Sec-Fetch-Site, Origin); scripts like curl send
// neither and are let in.
func sameOrigin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		site := r.Header.Get("Sec-Fetch-Site")
		crossSite := site != "" && site != "same-origin" && site != "none"
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			crossSite = crossSite || err != nil || u.Host != r.Host
		}
		if crossSite {
			apiError(w, http.StatusForbidden, "refused: the request comes from another site's page")
			return
		}
		next(w, r)
	}
}

type overview struct {
	Version       string                   `json:"version"`
	Started       time.Time                `json:"started"`
	UptimeSeconds float64                  `json:"uptime_seconds"`
	Durability    string                   `json:"durability"`
	Ready         bool                     `json:"ready"`
	Connections   []broker.ConnectionCount `json:"connections"`
	Sessions      sessionCounts            `json:"sessions"`
	Subscriptions int                      `json:"subscriptions"`
	Retained      int                      `json:"retained"`
	Queued        int64                    `json:"queued_messages"`
	QueuedBytes   int64                    `json:"queued_bytes"`
	Inflight      int64                    `json:"inflight"`
	Store         storeOverview            `json:"store"`
	Dropped       map[string]int64         `json:"dropped"`
	Refused       map[string]int64         `json:"refused"`
}

type sessionCounts struct {
	Online  int `json:"online"`
	Offline int `json:"offline"`
}

type storeOverview struct {
	LSMBytes       int64  `json:"lsm_bytes"`
	ValueLogBytes  int64  `json:"value_log_bytes"`
	FreeBytes      int64  `json:"free_bytes"`
	MinFreeBytes   int64  `json:"min_free_bytes"`
	SpaceLow       bool   `json:"space_low"`
	Checkpoints    uint64 `json:"checkpoints"`
	Commits        uint64 `json:"commits"`
	Syncs          uint64 `json:"syncs"`
	FailedRequests uint64 `json:"failed_requests"`
	Error          string `json:"error,omitempty"` // the error the store stopped on
}

func (a *api) overview(w http.ResponseWriter, _ *http.Request) {
	st := a.srv.Stats()
	g := a.srv.Gauges()
	ps := a.store.Stats()
	o := overview{
		Version:       a.srv.Version(),
		Started:       st.Started.UTC(),
		UptimeSeconds: a.srv.Uptime().Seconds(),
		Durability:    a.store.Durability().String(),
		Connections:   a.srv.Connections(),
		Subscriptions: g.Subscriptions,
		Retained:      g.Retained,
		Queued:        g.QueuedMessages,
		QueuedBytes:   g.QueuedBytes,
		Inflight:      g.Inflight,
		Dropped:       make(map[string]int64),
		Refused:       make(map[string]int64),
	}
	o.Sessions.Online, o.Sessions.Offline = g.ClientsConnected, g.ClientsDisconnected
	o.Store = storeOverview{
		LSMBytes: ps.LSMBytes, ValueLogBytes: ps.VlogBytes,
		Checkpoints: ps.Checkpoints, Commits: ps.Commits, Syncs: ps.Syncs, FailedRequests: ps.Failed,
	}
	o.Store.FreeBytes, o.Store.MinFreeBytes = a.store.FreeSpace()
	o.Store.SpaceLow, _ = a.store.SpaceLow()
	if err := a.store.Err(); err != nil {
		o.Store.Error = err.Error()
	}
	o.Ready = a.srv.Serving()
	for r := range st.Dropped {
		o.Dropped[broker.DropReason(r).String()] = st.Dropped[r].Load()
	}
	for r := range st.Refused {
		o.Refused[broker.RefuseReason(r).String()] = st.Refused[r].Load()
	}
	writeJSON(w, &o)
}

func (a *api) seriesSince(w http.ResponseWriter, r *http.Request) {
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			apiError(w, http.StatusBadRequest, "since: "+strconv.Quote(v)+" is not a time in unix milliseconds")
			return
		}
		since = n
	}
	writeJSON(w, map[string]any{"interval_ms": seriesInterval.Milliseconds(), "points": a.series.since(since)})
}

func (a *api) sessions(w http.ResponseWriter, r *http.Request) {
	q, err := inventory.ParseQuery(r.URL.Query())
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, q.Apply(a.srv.Sessions()))
}

// clientID reads the id parameter: any string, the empty one included, may be a client id, so
// it must be there.
func clientID(w http.ResponseWriter, r *http.Request) (string, bool) {
	q := r.URL.Query()
	if !q.Has("id") {
		apiError(w, http.StatusBadRequest, "id: missing (the client id, URL-encoded)")
		return "", false
	}
	return q.Get("id"), true
}

func (a *api) session(w http.ResponseWriter, r *http.Request) {
	id, ok := clientID(w, r)
	if !ok {
		return
	}
	d, err := a.srv.Session(id, queueHeadLen)
	if a.failed(w, err) {
		return
	}
	writeJSON(w, &d)
}

// action runs the operator's action do on the session named by the id parameter and answers
// {done: true}, or the error's status.
func (a *api) action(done string, do func(ctx context.Context, id string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := clientID(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if a.failed(w, do(ctx, id)) {
			return
		}
		writeJSON(w, map[string]bool{done: true})
	}
}

// failed answers err, if not nil, with its status.
func (a *api) failed(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, broker.ErrNoSession):
		apiError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, broker.ErrNotConnected), errors.Is(err, broker.ErrNotClient):
		apiError(w, http.StatusConflict, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		apiError(w, http.StatusGatewayTimeout, "the connection did not close within 10 s")
	default:
		a.log.Error().Err(err).Msg("console request failed")
		apiError(w, http.StatusInternalServerError, err.Error())
	}
	return true
}

func (a *api) retained(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	if err := inventory.CheckPrefix(prefix); err != nil {
		apiError(w, http.StatusBadRequest, "prefix: "+err.Error())
		return
	}
	writeJSON(w, a.srv.RetainedUnder(prefix))
}

func (a *api) topTopics(w http.ResponseWriter, r *http.Request) {
	n := 20
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 1000 {
			apiError(w, http.StatusBadRequest, "n: "+strconv.Quote(v)+" is not a whole number from 1 to 1000")
			return
		}
	}
	since, window, top := a.srv.TopTopics(n)
	writeJSON(w, map[string]any{"counting_since": since.UTC(), "window_seconds": window.Seconds(), "topics": top})
}
