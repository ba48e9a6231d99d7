package bench

import (
	"errors"
	"fmt"
	"time"
)

// runShared measures a shared subscription (MQTT 5.0 §4.8.2; Mosquitto and
// holdfast also take it from 3.1.1 clients): -pubs publishers send to one
// topic, to which -subs members subscribe as $share/<group>/<topic>. The
// group counts as one receiver: a message reached it when any member got it.
// lost counts the messages a publisher had acknowledged that no member
// received; dup counts the deliveries of a message some member already had,
// which a broker may rightly make after a member died before acknowledging
// it. With -churn, every interval one member's socket is closed without
// DISCONNECT and a member with a new client id joins in its place: a broker
// that leaves the dead member's messages in its session shows them as lost.
// Every member's session is removed at the end.
func runShared(e *env) error {
	o := e.o
	topic := e.topic("shared")
	filter := fmt.Sprintf("$share/hb%08x/%s", e.run, topic)
	epoch := time.Now()
	g := newGroupTracker(e.run, o.pubs)

	// members holds every member started, member i with client id s<i>;
	// live those connected, oldest first. Only the churn goroutine changes them
	// while it runs.
	var members, live []*subscriber
	join := func() error {
		c, _, err := dial(e.dialOpts(e.clientID("s", len(members)), o.clean))
		if err != nil {
			return err
		}
		s := newMember(c, g, epoch)
		s.start()
		members = append(members, s)
		if err := s.subscribe(filter, byte(o.qos), o.timeout); err != nil {
			s.c.abort()
			<-s.done
			return err
		}
		live = append(live, s)
		return nil
	}
	var errs []error
	removeSessions := func() {
		if o.clean {
			return
		}
		for i := range members {
			if err := cleanSession(e.dialOpts(e.clientID("s", i), true)); err != nil {
				errs = append(errs, fmt.Errorf("removing session of member %d: %w", i, err))
			}
		}
	}
	abortLive := func() {
		for _, s := range live {
			s.c.abort()
		}
	}
	for range o.subs {
		if err := join(); err != nil {
			abortLive()
			removeSessions()
			return errors.Join(append([]error{err}, errs...)...)
		}
	}
	pubs, err := dialPublishers(e, o.pubs, []string{topic}, epoch)
	if err != nil {
		abortLive()
		removeSessions()
		return errors.Join(append([]error{err}, errs...)...)
	}
	for _, p := range pubs {
		p.ackedSeqs = new(seqSet)
	}

	var sentRate, recvRate counterRate
	prog := startProgress(e.stderr, e.progress, "shared", func() string {
		var sent uint64
		for _, p := range pubs {
			sent += p.sent.Load()
		}
		return "sent " + sentRate.text(sent) + " received " + recvRate.text(g.uniq.Load())
	})

	stopChurn := make(chan struct{})
	churned := make(chan struct{})
	var killed int
	var churnErr error
	go func() {
		defer close(churned)
		if o.churn == 0 {
			return
		}
		tick := time.NewTicker(o.churn)
		defer tick.Stop()
		for {
			select {
			case <-stopChurn:
				return
			case <-tick.C:
			}
			// The longest-lived member goes: each is killed in turn.
			victim := live[0]
			victim.c.abort()
			<-victim.done
			killed++
			live = live[1:]
			if err := join(); err != nil {
				churnErr = fmt.Errorf("member %d joining: %w", len(members)-1, err)
				return
			}
		}
	}()

	start := time.Now()
	pubErrs := publishAll(pubs, plan{start: start, deadline: start.Add(o.duration), stall: o.timeout}, uint64(o.count))
	pubEnd := time.Now()
	close(stopChurn)
	<-churned

	var sent, acked uint64
	for _, p := range pubs {
		sent += p.sent.Load()
		acked += p.acked.Load()
	}
	drainErr := waitShared(g, live, acked, o.timeout)
	prog.end()

	for i, p := range pubs {
		if pubErrs[i] != nil {
			errs = append(errs, fmt.Errorf("publisher %d: %w", i, pubErrs[i]))
		}
		if err := p.close(); err != nil {
			errs = append(errs, fmt.Errorf("publisher %d: %w", i, err))
		}
	}
	if churnErr != nil {
		errs = append(errs, churnErr)
	}
	for _, s := range live {
		if err := s.close(); err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", s.c.clientID, err))
		}
	}
	removeSessions()

	var lost uint64
	var codes ackCodes
	for i, p := range pubs {
		codes.merge(&p.codes)
		lost += p.ackedSeqs.missing(&g.t.pubs[i])
	}
	for _, s := range members {
		codes.merge(&s.codes)
	}
	t := g.t
	elapsed := pubEnd.Sub(start)
	if t.last > 0 {
		elapsed = time.Duration(t.last) - start.Sub(epoch)
	}
	received := t.uniq + t.dup

	var l line
	l.str("scenario", "shared").int("v", o.level).int("qos", o.qos).int("pubs", o.pubs).int("subs", o.subs).
		int("size", o.size).int("inflight", o.inflight).bool("clean", o.clean).
		secs("churn", o.churn).int("killed", killed).
		uint("sent", sent).uint("acked", acked).uint("received", received).uint("lost", lost).uint("dup", t.dup).uint("stray", t.stray).
		secs("elapsed", elapsed).rate("sent_per_s", sent, pubEnd.Sub(start)).rate("recv_per_s", received, elapsed).
		ms("p50_ms", t.lat.quantile(0.50)).ms("p99_ms", t.lat.quantile(0.99)).ms("max_ms", t.lat.max).
		uint("ack_errors", codes.total()).str("ack_codes", codes.String())
	if err := l.print(e.stdout); err != nil {
		return err
	}

	// A QoS 2 message a member received but had not yet acknowledged with
	// PUBREC when it was killed goes to another member: a duplicate only
	// a run without churn has to answer for.
	dupNew := t.dup
	if killed > 0 {
		dupNew = 0
	}
	// Refused messages were never acknowledged, so are not in lost.
	return outcome(guarantees(o.qos, lost, dupNew, acked, 0), drainErr, o.qos, &codes, errs)
}

// waitShared waits until the group has received want distinct messages, or
// until none arrives for quiet, or a live member's connection ends.
func waitShared(g *groupTracker, live []*subscriber, want uint64, quiet time.Duration) error {
	last := g.uniq.Load()
	changed := time.Now()
	for {
		n := g.uniq.Load()
		if n >= want {
			return nil
		}
		for _, s := range live {
			select {
			case <-s.done:
				if s.err != nil {
					return fmt.Errorf("member %s: connection lost with %d of %d messages in the group: %w", s.c.clientID, n, want, s.err)
				}
				return fmt.Errorf("member %s: connection closed with %d of %d messages in the group", s.c.clientID, n, want)
			default:
			}
		}
		if n != last {
			last, changed = n, time.Now()
		} else if time.Since(changed) > quiet {
			return fmt.Errorf("%d of %d messages missing after %s without one", want-n, want, quiet)
		}
		time.Sleep(time.Millisecond)
	}
}
