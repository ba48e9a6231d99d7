package admin

import (
	"math"
	"sync"
	"time"

	"github.com/holdfast/holdfast/broker"
	"github.com/holdfast/holdfast/persist"
)

// The console's plots: a point every seriesInterval over seriesSpan.
const (
	seriesInterval = 2 * time.Second
	seriesSpan     = 15 * time.Minute
	seriesPoints   = int(seriesSpan / seriesInterval)
	// watchedFor is how long after the console last asked the sampler also walks the sessions
	// (the queued-messages plot): a walk over 100,000 sessions is not free, the counters are.
	watchedFor = time.Minute
)

// Point is the broker over one interval: rates per second, and levels at its end.
type Point struct {
	T           int64      `json:"t"` // unix ms at the end of the interval
	In          [3]float64 `json:"in"`
	Out         [3]float64 `json:"out"`
	FsyncP50    *float64   `json:"fsync_p50_ms"` // nil: no fsync in the interval
	FsyncP99    *float64   `json:"fsync_p99_ms"`
	FreeBytes   int64      `json:"free_bytes"` // -1: unknown
	StoreBytes  int64      `json:"store_bytes"`
	Dropped     float64    `json:"dropped"`
	Refused     float64    `json:"refused"`
	Connections int64      `json:"connections"`
	Queued      *int64     `json:"queued_messages"` // nil: nobody was looking (see watchedFor)
}

// sampler keeps the last seriesSpan of points, in a ring.
type sampler struct {
	srv   *broker.Server
	store *persist.Store

	mu      sync.Mutex
	points  []Point // oldest first once full: points[next:] then points[:next]
	next    int
	watched time.Time

	prev counters
}

// counters are the cumulative values a point is the difference of.
type counters struct {
	at      time.Time
	in, out [3]int64
	dropped int64
	refused int64
	syncs   []uint64
	// storeBytes is a level, not a count: read with the store's counters, in one Stats call.
	storeBytes int64
}

func newSampler(srv *broker.Server, store *persist.Store) *sampler {
	sm := &sampler{srv: srv, store: store, points: make([]Point, 0, seriesPoints)}
	sm.prev = sm.read(time.Now())
	return sm
}

func (sm *sampler) read(now time.Time) counters {
	ps := sm.store.Stats()
	c := counters{at: now, syncs: ps.SyncHistogram, storeBytes: ps.LSMBytes + ps.VlogBytes}
	st := sm.srv.Stats()
	for q := range 3 {
		c.in[q], c.out[q] = st.MessagesIn[q].Load(), st.MessagesOut[q].Load()
	}
	for r := range st.Dropped {
		c.dropped += st.Dropped[r].Load()
	}
	for r := range st.Refused {
		c.refused += st.Refused[r].Load()
	}
	return c
}

// run samples until done is closed.
func (sm *sampler) run(done <-chan struct{}) {
	t := time.NewTicker(seriesInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			sm.sample(now)
		}
	}
}

func (sm *sampler) sample(now time.Time) {
	cur := sm.read(now)
	prev := sm.prev
	sm.prev = cur
	secs := cur.at.Sub(prev.at).Seconds()
	if secs <= 0 {
		return
	}
	p := Point{T: now.UnixMilli(), Dropped: float64(cur.dropped-prev.dropped) / secs, Refused: float64(cur.refused-prev.refused) / secs}
	for q := range 3 {
		p.In[q] = float64(cur.in[q]-prev.in[q]) / secs
		p.Out[q] = float64(cur.out[q]-prev.out[q]) / secs
	}
	delta := make([]uint64, len(cur.syncs))
	for i := range delta {
		delta[i] = cur.syncs[i] - prev.syncs[i]
	}
	p.FsyncP50, p.FsyncP99 = quantileMs(delta, 0.5), quantileMs(delta, 0.99)
	p.FreeBytes, _ = sm.store.FreeSpace()
	p.StoreBytes = cur.storeBytes
	sm.mu.Lock()
	watched := now.Sub(sm.watched) < watchedFor
	sm.mu.Unlock()
	p.Connections = sm.srv.Stats().Connections.Load()
	if watched {
		q := sm.srv.Gauges().QueuedMessages
		p.Queued = &q
	}
	sm.mu.Lock()
	if len(sm.points) < seriesPoints {
		sm.points = append(sm.points, p)
	} else {
		sm.points[sm.next] = p
		sm.next = (sm.next + 1) % seriesPoints
	}
	sm.mu.Unlock()
}

// since returns the points after unix ms t, oldest first, and marks the series watched.
func (sm *sampler) since(t int64) []Point {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.watched = time.Now()
	out := make([]Point, 0, len(sm.points))
	for _, part := range [2][]Point{sm.points[sm.next:], sm.points[:sm.next]} {
		for _, p := range part {
			if p.T > t {
				out = append(out, p)
			}
		}
	}
	return out
}

// quantileMs estimates the q-quantile, in milliseconds, of the fsyncs counted per bucket of
// persist.CommitLatencyBuckets (the last bucket: slower than the last bound), interpolating
// linearly within the bucket as Prometheus' histogram_quantile does; nil when counts are all 0.
func quantileMs(counts []uint64, q float64) *float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return nil
	}
	bounds := persist.CommitLatencyBuckets()
	rank := q * float64(total)
	var seen float64
	for i, c := range counts {
		if c == 0 || seen+float64(c) < rank {
			seen += float64(c)
			continue
		}
		if i == len(bounds) {
			v := ms(bounds[len(bounds)-1]) // slower than every bound: the last bound is all it can say
			return &v
		}
		lo := 0.0
		if i > 0 {
			lo = ms(bounds[i-1])
		}
		v := lo + (ms(bounds[i])-lo)*(rank-seen)/float64(c)
		v = math.Round(v*1000) / 1000
		return &v
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
