package bench

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func runFanin(e *env) error   { return runFlow(e, "fanin", e.o.pubs, 1, 0) }
func runFanout(e *env) error  { return runFlow(e, "fanout", 1, e.o.subs, 0) }
func runLatency(e *env) error { return runFlow(e, "latency", 1, 1, e.o.rate) }

// runFlow publishes from npub publishers to nsub subscribers of one topic,
// or with -topic of one topic per publisher under a filter, at rate messages
// per second in all (0: as fast as the window allows), and prints one result
// line. With -sub-addr the subscribers are on another broker, which a bridge
// feeds: at QoS 1 and 2 only what a publisher had acknowledged is owed to them.
func runFlow(e *env, name string, npub, nsub int, rate float64) error {
	o := e.o
	topic := e.topic(name)
	filter := topic
	if o.topicPrefix != "" {
		filter = o.filter
		if filter == "" {
			filter = o.topicPrefix + "#"
		}
	}
	bridged := o.subAddr != "" && o.qos > 0
	epoch := time.Now()
	var subs []*subscriber
	var cleanup func()

	if err := raiseNoFile(uint64(nsub+npub) + 64); err != nil {
		return err
	}
	subs = make([]*subscriber, nsub)
	cleanup = func() {
		for _, s := range subs {
			if s != nil {
				s.c.abort()
			}
		}
	}
	// Thousands of persistent subscribers one after the other would take minutes of commits.
	err := eachParallel(nsub, o.parallel, func(i int) error {
		c, _, err := dial(e.subDialOpts(e.clientID("s", i), o.clean))
		if err != nil {
			return err
		}
		if err := c.subscribe(filter, byte(o.qos), o.timeout); err != nil {
			c.abort()
			return err
		}
		subs[i] = newSubscriber(c, e.run, npub, epoch)
		subs[i].start()
		return nil
	})
	if err != nil {
		cleanup()
		return err
	}
	var rss rssWatch
	if o.pid > 0 {
		if err := rss.start(o.pid); err != nil {
			cleanup()
			return err
		}
	}
	pubs, err := dialPublishers(e, npub, []string{topic}, epoch)
	if err != nil {
		cleanup()
		return err
	}
	for i, p := range pubs {
		if o.topicPrefix != "" {
			p.topics = []string{o.topicPrefix + strconv.Itoa(i)}
		}
		if bridged {
			p.ackedSeqs = new(seqSet)
		}
	}

	count := uint64(o.count)
	var interval time.Duration
	if rate > 0 {
		interval = max(time.Duration(float64(time.Second)/rate), 1)
		if count == 0 {
			count = max(uint64(rate*o.duration.Seconds()), 1)
		}
	}
	start := time.Now()
	pl := plan{start: start, deadline: start.Add(o.duration), interval: interval, stall: o.timeout}
	if rate > 0 {
		// The last paced message is due one interval before -duration;
		// a late timer must not cost it.
		pl.deadline = pl.deadline.Add(o.timeout)
	}

	var sentRate, recvRate counterRate
	prog := startProgress(e.stderr, e.progress, name, func() string {
		var sent, recv uint64
		for _, p := range pubs {
			sent += p.sent.Load()
		}
		for _, s := range subs {
			recv += s.uniq.Load()
		}
		return "sent " + sentRate.text(sent) + " received " + recvRate.text(recv)
	})

	pubErrs := publishAll(pubs, pl, count)
	pubEnd := time.Now()

	var sent, acked uint64
	for _, p := range pubs {
		sent += p.sent.Load()
		acked += p.acked.Load()
	}
	owed := sent
	if bridged {
		owed = acked
	}
	drainErr := waitDrain(subs, owed, o.timeout)
	prog.end()
	rssErr := rss.stop()

	var errs []error
	for i, p := range pubs {
		if pubErrs[i] != nil {
			errs = append(errs, fmt.Errorf("publisher %d: %w", i, pubErrs[i]))
		}
		if err := p.close(); err != nil {
			errs = append(errs, fmt.Errorf("publisher %d: %w", i, err))
		}
	}
	for i, s := range subs {
		if err := s.close(); err != nil {
			errs = append(errs, fmt.Errorf("subscriber %d: %w", i, err))
		}
	}
	if rssErr != nil {
		errs = append(errs, rssErr)
	}
	if !o.clean {
		err := eachParallel(len(subs), o.parallel, func(i int) error {
			if err := cleanSession(e.subDialOpts(e.clientID("s", i), true)); err != nil {
				return fmt.Errorf("removing session of subscriber %d: %w", i, err)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}

	var received, lost, dup, stray uint64
	var last int64
	var codes ackCodes
	lat := new(histogram)
	for _, p := range pubs {
		codes.merge(&p.codes)
	}
	for _, s := range subs {
		codes.merge(&s.codes)
		t := s.t
		received += t.uniq + t.dup
		dup += t.dup
		stray += t.stray
		lat.merge(&t.lat)
		last = max(last, t.last)
		for i, p := range pubs {
			if bridged {
				lost += p.ackedSeqs.missing(&t.pubs[i])
			} else {
				lost += t.lost(i, p.sent.Load())
			}
		}
	}
	elapsed := pubEnd.Sub(start)
	if last > 0 {
		elapsed = time.Duration(last) - start.Sub(epoch)
	}

	var l line
	l.str("scenario", name).int("v", o.level).int("qos", o.qos).int("pubs", npub).int("subs", nsub).
		int("size", o.size).int("inflight", o.inflight).bool("clean", o.clean)
	if rate > 0 {
		l.add("rate", fmt.Sprint(rate))
	}
	l.uint("sent", sent)
	if bridged {
		l.uint("acked", acked)
	}
	l.uint("received", received).uint("lost", lost).uint("dup", dup).uint("stray", stray).
		secs("elapsed", elapsed).rate("sent_per_s", sent, pubEnd.Sub(start)).rate("recv_per_s", received, elapsed).
		ms("p50_ms", lat.quantile(0.50)).ms("p99_ms", lat.quantile(0.99)).ms("p999_ms", lat.quantile(0.999)).ms("max_ms", lat.max).
		uint("ack_errors", codes.total()).str("ack_codes", codes.String())
	if o.pid > 0 {
		l.int("pid", o.pid).add("rss_before_kb", strconv.FormatInt(rss.before, 10)).
			add("rss_peak_kb", strconv.FormatInt(rss.peak, 10)).add("rss_after_kb", strconv.FormatInt(rss.after, 10))
	}
	if err := l.print(e.stdout); err != nil {
		return err
	}

	// Refused messages were never acknowledged: a bridged run's lost leaves them out already.
	refused := codes.refused * uint64(nsub)
	if bridged {
		refused = 0
	}
	return outcome(guarantees(o.qos, lost, dup, owed*uint64(nsub), refused), drainErr, o.qos, &codes, errs)
}

// outcome is a run's error: a broken guarantee first; the drain's timeout
// only when no broken guarantee explains it, and never at QoS 0, where loss
// is no failure; then the other errors and the acknowledgements that were
// not a plain Success.
func outcome(broken, drainErr error, qos int, codes *ackCodes, errs []error) error {
	if broken != nil {
		errs = append([]error{broken}, errs...)
	} else if drainErr != nil && qos > 0 {
		errs = append(errs, drainErr)
	}
	return errors.Join(append(errs, codes.err())...)
}

// guarantees checks what MQTT promises: nothing lost at QoS 1 and 2,
// nothing twice at QoS 2. QoS 0 loss is reported, not failed. Of the
// deliveries missing, refused ones belong to messages the broker refused
// (level 5): they were never accepted, so not lost.
func guarantees(qos int, lost, dup, expected, refused uint64) error {
	if lost >= refused {
		lost -= refused
	}
	switch {
	case qos > 0 && lost > 0:
		return fmt.Errorf("%w: %d of %d QoS %d messages lost", ErrLoss, lost, expected, qos)
	case qos == 2 && dup > 0:
		return fmt.Errorf("%w: %d QoS 2 messages delivered twice", ErrLoss, dup)
	}
	return nil
}

// dialPublishers connects n publishers (client ids p0, p1, ...) of messages
// to topics and starts their read loops.
func dialPublishers(e *env, n int, topics []string, epoch time.Time) ([]*publisher, error) {
	o := e.o
	pubs := make([]*publisher, 0, n)
	for i := range n {
		c, _, err := dial(e.dialOpts(e.clientID("p", i), true))
		if err != nil {
			for _, p := range pubs {
				p.c.abort()
			}
			return nil, err
		}
		p := newPublisher(c, uint32(i), e.run, byte(o.qos), o.inflight, o.size, topics, epoch)
		p.start()
		pubs = append(pubs, p)
	}
	return pubs, nil
}

// publishAll runs pl on every publisher at once, count messages shared out
// among them (0: each publishes until the deadline), and returns each one's
// error.
func publishAll(pubs []*publisher, pl plan, count uint64) []error {
	errs := make([]error, len(pubs))
	n := uint64(len(pubs))
	var wg sync.WaitGroup
	for i, p := range pubs {
		mine := pl
		if count > 0 {
			mine.count = count / n
			if uint64(i) < count%n {
				mine.count++
			}
			if mine.count == 0 {
				continue // more publishers than messages
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.publish(mine)
		}()
	}
	wg.Wait()
	return errs
}

// waitDrain waits until every subscriber has received want distinct
// messages, or until none arrives for quiet, or a subscriber's connection
// ends.
func waitDrain(subs []*subscriber, want uint64, quiet time.Duration) error {
	var last uint64
	changed := time.Now()
	for {
		done := true
		var sum uint64
		for i, s := range subs {
			n := s.uniq.Load()
			sum += n
			if n >= want {
				continue
			}
			done = false
			select {
			case <-s.done:
				if s.err != nil {
					return fmt.Errorf("subscriber %d: connection lost with %d of %d messages: %w", i, n, want, s.err)
				}
				return fmt.Errorf("subscriber %d: connection closed with %d of %d messages", i, n, want)
			default:
			}
		}
		if done {
			return nil
		}
		if sum != last {
			last, changed = sum, time.Now()
		} else if time.Since(changed) > quiet {
			return fmt.Errorf("%d of %d deliveries missing after %s without one", want*uint64(len(subs))-sum, want*uint64(len(subs)), quiet)
		}
		time.Sleep(time.Millisecond)
	}
}

// eachParallel calls fn(0) to fn(n-1) on up to parallel goroutines (at least one) and returns
// the first error; after one, no new call starts.
func eachParallel(n, parallel int, fn func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(max(parallel, 1), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// rssWatch samples the broker's resident memory while a run goes on: before it, its peak (every
// rssEvery) and after it, in KiB.
type rssWatch struct {
	pid                 int
	before, peak, after int64
	stopc               chan struct{}
	done                chan error
}

const rssEvery = 100 * time.Millisecond

func (w *rssWatch) start(pid int) error {
	v, err := readRSS(pid)
	if err != nil {
		return err
	}
	w.pid, w.before, w.peak = pid, v, v
	w.stopc, w.done = make(chan struct{}), make(chan error, 1)
	go func() {
		t := time.NewTicker(rssEvery)
		defer t.Stop()
		for {
			select {
			case <-w.stopc:
				w.done <- nil
				return
			case <-t.C:
			}
			v, err := readRSS(pid)
			if err != nil {
				w.done <- err
				return
			}
			w.peak = max(w.peak, v)
		}
	}()
	return nil
}

// stop ends the sampling (if started) and reads the memory once more.
func (w *rssWatch) stop() error {
	if w.stopc == nil {
		return nil
	}
	close(w.stopc)
	if err := <-w.done; err != nil {
		return err
	}
	v, err := readRSS(w.pid)
	if err != nil {
		return err
	}
	w.after, w.peak = v, max(w.peak, v)
	return nil
}
