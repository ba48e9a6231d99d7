package bench

import (
	"fmt"
	"sync/atomic"
	"time"
)

// runOffline measures a persistent session's offline queue: a
// clean-session=0 subscriber subscribes and leaves, one publisher sends
// -count messages through its in-flight window (enqueue rate: messages over
// the time until the last acknowledgement), then the subscriber comes back
// and drains (drain rate: messages over the time from its CONNECT to the
// last message). The session is removed at the end.
func runOffline(e *env) error {
	o := e.o
	topic := e.topic("offline")
	subID := e.clientID("o", 0)
	epoch := time.Now()

	c, _, err := dial(e.dialOpts(subID, false))
	if err != nil {
		return err
	}
	if err := c.subscribe(topic, byte(o.qos), o.timeout); err != nil {
		c.abort()
		return err
	}
	c.disconnect()

	pc, _, err := dial(e.dialOpts(e.clientID("p", 0), true))
	if err != nil {
		cleanSession(e.dialOpts(subID, true))
		return err
	}
	pub := newPublisher(pc, 0, e.run, byte(o.qos), o.inflight, o.size, []string{topic}, epoch)
	pub.start()

	var sub atomic.Pointer[subscriber] // set once the drain starts
	var pubRate, subRate counterRate
	prog := startProgress(e.stderr, e.progress, "offline", func() string {
		s := "enqueued " + pubRate.text(pub.acked.Load())
		if d := sub.Load(); d != nil {
			s += " drained " + subRate.text(d.uniq.Load())
		}
		return s
	})
	defer prog.end()

	start := time.Now()
	pubErr := pub.publish(plan{count: uint64(o.count), start: start, deadline: start.Add(o.duration), stall: o.timeout})
	if err := pub.close(); pubErr == nil {
		pubErr = err
	}
	sent, acked := pub.sent.Load(), pub.acked.Load()
	enqueue := time.Duration(pub.lastAck.Load()) - start.Sub(epoch)
	if pubErr != nil {
		cleanSession(e.dialOpts(subID, true))
		return fmt.Errorf("publishing: %w", pubErr)
	}

	drainStart := time.Now()
	c, present, err := dial(e.dialOpts(subID, false))
	if err != nil {
		cleanSession(e.dialOpts(subID, true))
		return err
	}
	s := newSubscriber(c, e.run, 1, epoch)
	sub.Store(s)
	s.start()
	drainErr := waitDrain([]*subscriber{s}, acked, o.timeout)
	var errs []error
	if err := s.close(); err != nil {
		errs = append(errs, err)
	}
	if err := cleanSession(e.dialOpts(subID, true)); err != nil {
		errs = append(errs, fmt.Errorf("removing the session: %w", err))
	}
	prog.end()

	var codes ackCodes
	codes.merge(&pub.codes)
	codes.merge(&s.codes)
	t := s.t
	drain := time.Duration(t.last) - drainStart.Sub(epoch)
	lost := t.lost(0, sent)
	var l line
	l.str("scenario", "offline").int("v", o.level).int("qos", o.qos).int("size", o.size).int("inflight", o.inflight).
		uint("count", uint64(o.count)).uint("sent", sent).uint("acked", acked).
		uint("received", t.uniq+t.dup).uint("lost", lost).uint("dup", t.dup).uint("stray", t.stray).
		bool("session_present", present).
		secs("enqueue_s", enqueue).rate("enqueue_per_s", acked, enqueue).
		secs("drain_s", max(drain, 0)).rate("drain_per_s", t.uniq, drain).
		uint("ack_errors", codes.total()).str("ack_codes", codes.String())
	if err := l.print(e.stdout); err != nil {
		return err
	}
	return outcome(guarantees(o.qos, lost, t.dup, sent, codes.refused), drainErr, o.qos, &codes, errs)
}
