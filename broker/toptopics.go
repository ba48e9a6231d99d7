package broker

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// topicRates counts publishes by topic for the operator's "top topics", only while someone asks
// (TopTopics): otherwise the publish path pays one atomic load.
type topicRates struct {
	on atomic.Bool

	mu      sync.Mutex
	since   time.Time // counting started
	asked   time.Time // the last TopTopics
	start   time.Time // the current window
	current map[string]int
	last    map[string]int // the previous full window; nil until there is one
	lastLen time.Duration
}

// Counting bounds: a window's length, how long counting goes on after the last question, and
// how many topics a window tracks (further new topics are not counted until the next window).
const (
	topicWindow    = time.Minute
	topicKeepAlive = 2 * time.Minute
	topicMax       = 10000
)

func (r *topicRates) count(topic string) {
	if !r.on.Load() {
		return
	}
	r.mu.Lock()
	if n, ok := r.current[topic]; ok || r.current != nil && len(r.current) < topicMax {
		r.current[topic] = n + 1 // current is nil once counting stopped after the load above
	}
	r.mu.Unlock()
}

// roll starts a new window once the current one is full. The caller holds mu.
func (r *topicRates) roll(now time.Time) {
	if d := now.Sub(r.start); d >= topicWindow {
		r.last, r.lastLen = r.current, d
		r.current, r.start = make(map[string]int), now
	}
}

// TopicRate is a topic's publish rate.
type TopicRate struct {
	Topic     string  `json:"topic"`
	PerSecond float64 `json:"per_second"`
}

// TopTopics returns the n topics with the most publishes per second over the last full minute
// (or the part of one counted so far), and when counting started: the first call starts it, and
// it stops two minutes after the last.
func (s *Server) TopTopics(n int) (since time.Time, window time.Duration, top []TopicRate) {
	r := &s.topicRates
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on.Load() {
		r.since, r.start, r.current, r.last = now, now, make(map[string]int), nil
		r.on.Store(true)
		time.AfterFunc(topicKeepAlive, s.stopTopicRates)
	}
	r.asked = now
	r.roll(now)
	counts, window := r.last, r.lastLen
	if counts == nil {
		counts, window = r.current, now.Sub(r.start)
	}
	top = make([]TopicRate, 0, len(counts))
	if window > 0 {
		for t, c := range counts {
			top = append(top, TopicRate{t, float64(c) / window.Seconds()})
		}
	}
	slices.SortFunc(top, func(a, b TopicRate) int {
		return cmp.Or(cmp.Compare(b.PerSecond, a.PerSecond), cmp.Compare(a.Topic, b.Topic))
	})
	return r.since, window, top[:min(n, len(top))]
}

// stopTopicRates stops counting once nobody has asked for topicKeepAlive, else checks again then.
func (s *Server) stopTopicRates() {
	r := &s.topicRates
	r.mu.Lock()
	defer r.mu.Unlock()
	if idle := time.Since(r.asked); idle < topicKeepAlive {
		time.AfterFunc(topicKeepAlive-idle, s.stopTopicRates)
		return
	}
	r.on.Store(false)
	r.current, r.last = nil, nil
}
