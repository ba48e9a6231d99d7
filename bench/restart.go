package bench

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func runRestart(e *env) error {
	if e.o.fill {
		return runFill(e)
	}
	return runWait(e)
}

// runFill prepares a restart measurement: -sessions persistent sessions,
// session i subscribed to its own topic .../q/i and then disconnected, and
// -count messages published round-robin over those topics by -pubs
// publishers. It reports how fast the sessions were created and the
// messages queued. The sessions are left in place on purpose; the run id in
// the result names their client ids (hb<run>q<i>) and topics.
func runFill(e *env) error {
	o := e.o
	topics := make([]string, o.sessions)
	for i := range topics {
		topics[i] = e.topic("q/" + strconv.Itoa(i))
	}
	epoch := time.Now()

	var created atomic.Int64
	var pubs []*publisher
	var pubsReady atomic.Bool
	var createRate, pubRate counterRate
	prog := startProgress(e.stderr, e.progress, "restart -fill", func() string {
		if !pubsReady.Load() {
			return "sessions " + createRate.text(uint64(created.Load()))
		}
		var n uint64
		for _, p := range pubs {
			n += p.acked.Load()
		}
		return "queued " + pubRate.text(n)
	})
	defer prog.end()

	setupStart := time.Now()
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range min(o.parallel, o.sessions) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(topics) || time.Since(setupStart) > o.duration {
					return
				}
				c, _, err := dial(e.dialOpts(e.clientID("q", i), false))
				if err == nil {
					err = c.subscribe(topics[i], byte(o.qos), o.timeout)
					c.disconnect()
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("session %d: %w", i, err) })
					next.Store(int64(len(topics)))
					return
				}
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	setup := time.Since(setupStart)
	if firstErr != nil {
		return firstErr
	}
	if n := created.Load(); n < int64(o.sessions) {
		return fmt.Errorf("only %d of %d sessions created within -duration %s", n, o.sessions, o.duration)
	}

	dialed, err := dialPublishers(e, o.pubs, topics, epoch)
	if err != nil {
		return err
	}
	for i, p := range dialed {
		p.offset = i * len(topics) / o.pubs
	}
	pubs = dialed
	pubsReady.Store(true)

	start := time.Now()
	count := uint64(o.count)
	errs := publishAll(pubs, plan{start: start, deadline: setupStart.Add(o.duration), stall: o.timeout}, count)
	prog.end()

	var sent, acked uint64
	var last int64
	var codes ackCodes
	for i, p := range pubs {
		if err := p.close(); err != nil && errs[i] == nil {
			errs[i] = err
		}
		if errs[i] != nil {
			errs[i] = fmt.Errorf("publisher %d: %w", i, errs[i])
		}
		sent += p.sent.Load()
		acked += p.acked.Load()
		last = max(last, p.lastAck.Load())
		codes.merge(&p.codes)
	}
	enqueue := time.Duration(last) - start.Sub(epoch)

	var l line
	l.str("scenario", "restart").str("mode", "fill").int("v", o.level).int("sessions", o.sessions).int("pubs", o.pubs).
		int("qos", o.qos).int("size", o.size).int("inflight", o.inflight).
		uint("count", count).uint("sent", sent).uint("acked", acked).
		secs("setup_s", setup).rate("sessions_per_s", uint64(o.sessions), setup).
		secs("enqueue_s", max(enqueue, 0)).rate("enqueue_per_s", acked, enqueue).
		uint("ack_errors", codes.total()).str("ack_codes", codes.String()).
		str("run", fmt.Sprintf("%08x", e.run))
	if err := l.print(e.stdout); err != nil {
		return err
	}
	return errors.Join(append(errs, codes.err())...)
}

// runWait connects to -addr again and again until a CONNACK accepts it and
// reports the milliseconds since -since (or since the command started).
func runWait(e *env) error {
	o := e.o
	since := e.start
	if o.since != 0 {
		since = time.Unix(0, o.since)
	}
	deadline := e.start.Add(o.duration)
	attempts := 0
	id, clean := e.clientID("w", 0), true
	if o.waitID != "" {
		id, clean = o.waitID, false
	}
	for {
		attempts++
		c, present, err := dial(e.dialOpts(id, clean))
		if err == nil && !clean && !present {
			c.abort()
			return fmt.Errorf("broker at %s answered %s without session-present: its session is gone", o.addr, id)
		}
		if err == nil {
			ready := time.Since(since)
			c.abort() // no DISCONNECT: a persistent session stays as it was, its messages queued
			var l line
			l.str("scenario", "restart").str("mode", "wait").ms("ready_ms", ready.Nanoseconds()).int("attempts", attempts).
				bool("session_present", present)
			if o.pid != 0 {
				// At the first CONNACK and once the broker has settled (persist counts the queues in
				// the background after it serves).
				at, err := readRSS(o.pid)
				if err != nil {
					return err
				}
				time.Sleep(o.settle)
				later, err := readRSS(o.pid)
				if err != nil {
					return err
				}
				l.int("rss_ready_kb", int(at)).int("rss_settled_kb", int(later))
			}
			return l.print(e.stdout)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("broker at %s not ready after %s and %d attempts: %w", o.addr, o.duration, attempts, err)
		}
		time.Sleep(o.interval)
	}
}
