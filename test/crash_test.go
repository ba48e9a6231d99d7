package test

// The crash test: holdfast must never lose a message it acknowledged, whatever moment it is
// killed at. Statements of DESIGN.md, "The durability contract", that these tests check:
//
//   - D1 "with durability = sync the broker sends PUBACK (QoS 1) or PUBREC (QoS 2) only after the
//     message and its queue entry for every matching persistent session are on disk": every
//     number acknowledged to the publisher reaches both persistent subscribers, however often the
//     broker is killed in between (S1 offline the whole time, S2 online and reading slowly).
//   - D2 "SUBACK is sent after the subscription is on disk": S1 subscribes once, before the first
//     crash, and receives everything at the end without subscribing again.
//   - D3 "CONNACK's session-present flag tells the truth after any crash": every reconnect of P,
//     S1 and S2 (all clean-session=0, their sessions made durable before their first CONNACK)
//     gets session-present = 1.
//   - D4 "Exactly once for QoS 2 across restarts": the inbound packet identifiers awaiting PUBREL
//     are persisted, so P's re-sent QoS 2 PUBLISH (DUP=1, same packet identifier) after a crash is
//     not routed twice; the outbound state is persisted, so a subscriber never receives a QoS 2
//     message twice as a new message.
//   - "Offline queues live on disk": S1's queue survives every crash.
//
// And of MQTT 3.1.1:
//
//   - 4.4 [MQTT-4.4.0-1]: on a reconnect with clean-session=0 the server re-sends unacknowledged
//     PUBLISH packets (with DUP=1, [MQTT-3.3.1-1]) and PUBREL packets with their original packet
//     identifiers; the clients here do the same towards the server.
//   - 4.6 ordering, checked as follows. The order checked is: for each subscriber and for each
//     delivered QoS separately, the FIRST delivery of each number comes in increasing number
//     order, which is the order P sent them in. Why this follows: P sends on one connection in
//     increasing order; the server "MUST send PUBLISH packets to consumers (for the same Topic and
//     QoS) in the order that they were received from any given Client" and "MUST re-send [them]
//     in the order in which the original PUBLISH packets were sent" [MQTT-4.6.0-1]. Strictly,
//     4.6 orders per topic and every number here has its own topic (crash/<n>), so what is
//     checked is 4.6's guarantee for the whole stream that one subscription (crash/#) carries,
//     which is the non-normative note of 4.6 ("the final copy of each message received by the
//     subscribers will be in the order that they were originally published in") and which
//     holdfast's design provides: one FIFO queue per session (q/<client-id>/<seq>, seq assigned in
//     commit order) filled in the arrival order of each connection's publishes. Only first
//     deliveries are ordered because 4.6 allows a re-sent earlier message to arrive after its
//     successors (a QoS 1 duplicate, a DUP re-delivery after a reconnect; in-flight messages are
//     re-sent first on a reconnect, and they are older than anything still queued, so this stays
//     consistent). The two QoS streams are checked separately because 4.6 is per QoS and holdfast
//     puts a QoS 2 PUBLISH on the wire only once its packet identifier is durable while QoS 1
//     goes at once, so the streams interleave freely. One exemption, counted from P's own
//     record: a number that P re-sent (after a crash, never acknowledged before it) in a later run
//     than the first transmission of a larger number may legitimately have reached the broker for
//     the first time after that larger number.
//
// The publisher P uses clean-session=0: it keeps its unfinished messages across crashes and
// re-sends them (DUP=1, same packet identifier) or their PUBREL, so that the QoS 2 inbound
// de-duplication (D4) is exercised. "Acknowledged" means PUBACK received (QoS 1) or PUBREC
// received (QoS 2): the broker's promise point. A message the broker persisted but did not
// acknowledge before dying may be delivered (and is, once P re-sends it); one never
// acknowledged may also be lost. Neither is a failure.
//
// The scenario runs with MQTT 3.1.1 clients or, one parameter apart, with MQTT 5 clients, which
// check everything above and what crash5_test.go lists: properties, subscription identifiers,
// topic aliases, message expiry and delayed wills across the downs.

import (
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// TestCrashNoAcknowledgedMessageLost kills the broker with SIGKILL at random moments (20 times)
// while P publishes and S2 receives, then checks D1-D4 and the ordering above.
func TestCrashNoAcknowledgedMessageLost(t *testing.T) {
	crashScenario(t, StartBroker(t, BrokerConfig{Durability: "sync"}), codec.Level311, 20, "SIGKILL", (*Broker).Kill)
}

// TestCrashNoAcknowledgedMessageLostV5 is the same with MQTT 5 clients and what crash5_test.go
// adds.
func TestCrashNoAcknowledgedMessageLostV5(t *testing.T) {
	crashScenario(t, StartBroker(t, BrokerConfig{Durability: "sync", MQTT5: true}), codec.Level5, 20, "SIGKILL", (*Broker).Kill)
}

// TestGracefulRestartNoAcknowledgedMessageLost is the same scenario with SIGTERM (a clean shutdown
// at a random moment), 5 times.
func TestGracefulRestartNoAcknowledgedMessageLost(t *testing.T) {
	crashScenario(t, StartBroker(t, BrokerConfig{Durability: "sync"}), codec.Level311, 5, "SIGTERM", (*Broker).Stop)
}

// TestGracefulRestartNoAcknowledgedMessageLostV5 is its twin with MQTT 5 clients.
func TestGracefulRestartNoAcknowledgedMessageLostV5(t *testing.T) {
	crashScenario(t, StartBroker(t, BrokerConfig{Durability: "sync", MQTT5: true}), codec.Level5, 5, "SIGTERM", (*Broker).Stop)
}

// crashSeed returns the seed of the kill delays: HOLDFAST_CRASH_SEED when set, else the clock.
func crashSeed(t *testing.T) int64 {
	if v := os.Getenv("HOLDFAST_CRASH_SEED"); v != "" {
		seed, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("HOLDFAST_CRASH_SEED=%q: %v", v, err)
		}
		return seed
	}
	return time.Now().UnixNano()
}

// crashCell is one cell of issue 13's table: a subscriber (S1 offline, S2 with messages in
// flight) and the QoS of the messages.
type crashCell struct {
	s   *crashSubscriber
	qos byte
	// For each down (kill, stop or power cut) at which the cell had messages at stake, how many:
	// acknowledged to P, and not yet finished with by the subscriber (PUBACK, or for QoS 2
	// PUBCOMP, since until then the broker's outbound state is what prevents a duplicate).
	stake []int
	// Downs at which some of those had reached the subscriber, which had not finished with them:
	// QoS 2 exchanges awaiting PUBREL or PUBCOMP. Rare at QoS 1, which is acknowledged on receipt.
	inflight int
}

// crashScenario runs the scenario on b, a broker just started with durability "sync", with
// clients of the protocol level (codec.Level311, or codec.Level5 with what crash5_test.go adds),
// taking it down with down cycles times, and returns its four cells.
func crashScenario(t *testing.T, b *Broker, level byte, cycles int, how string, down func(*Broker)) []*crashCell {
	seed := crashSeed(t)
	t.Logf("seed %d (HOLDFAST_CRASH_SEED=%d replays the same %s delays)", seed, seed, how)
	rng := rand.New(rand.NewSource(seed))
	t0 := time.Now()

	logStarts := []int{0} // where each run's broker log begins
	var failures []string // session-present and worker problems, reported at the end

	p := newCrashPublisher("crash-publisher", t0)
	s1 := newCrashSubscriber("S1 durable-offline", "crash-durable-offline", false, t0)
	s2 := newCrashSubscriber("S2 durable-slow", "crash-durable-slow", true, t0)
	cells := []*crashCell{{s: s1, qos: 1}, {s: s1, qos: 2}, {s: s2, qos: 1}, {s: s2, qos: 2}}
	var x *crash5Extras // level 5: X and the W clients
	if level == codec.Level5 {
		x = &crash5Extras{}
		s1.v5 = crash5Subscription{subID: 11, extra: crash5ExpiryRoot + "#", extraID: 12}
		s2.v5 = crash5Subscription{subID: 21, extra: crash5WillRoot + "#", extraID: 22}
	}

	// S1: subscribe once and go offline until the end.
	c1, sp := crashConnect(t, b.Addr, s1.id, level, 0, nil)
	if sp {
		t.Fatalf("%s: session-present = 1 on its very first connection", s1.name)
	}
	crashSubscribe(t, c1, s1)
	if err := c1.send(&codec.Disconnect{}); err != nil {
		t.Fatalf("%s: DISCONNECT: %v", s1.name, err)
	}
	c1.c.ExpectClosed()
	c1.close()

	// S2: subscribe and stay online.
	c2, sp := crashConnect(t, b.Addr, s2.id, level, 0, nil)
	if sp {
		t.Fatalf("%s: session-present = 1 on its very first connection", s2.name)
	}
	crashSubscribe(t, c2, s2)

	cp, sp := crashConnect(t, b.Addr, p.id, level, 0, nil)
	if sp {
		t.Fatalf("publisher: session-present = 1 on its very first connection")
	}

	reconnect := func(name, id string, run int) *crashConn {
		t.Helper()
		cc, sp := crashConnect(t, b.Addr, id, level, run, nil)
		if !sp {
			failures = append(failures, fmt.Sprintf("run %d: %s reconnected with clean-session=0 and got session-present = 0 (D3)", run, name))
		}
		return cc
	}

	var delays []int
	var restartTime time.Duration
	runStart := time.Now()
	for run := 0; run < cycles; run++ {
		if run > 0 {
			logStarts = append(logStarts, len(b.Log()))
			before := time.Now()
			b.Start()
			restartTime += time.Since(before)
			runStart = time.Now()
			cp = reconnect("publisher", p.id, run)
			c2 = reconnect(s2.name, s2.id, run)
		}
		cp.start()
		c2.start()
		pDone, sDone := make(chan error, 1), make(chan error, 1)
		go func(cc *crashConn) { pDone <- p.serve(cc, true, time.Now().Add(crashJoinWait)) }(cp)
		go func(cc *crashConn) { sDone <- s2.serve(cc, nil) }(c2)
		if x != nil {
			x.startRun(t, b.Addr, run, reconnect)
		}

		delay := 50 + rng.Intn(351)
		delays = append(delays, delay)
		time.Sleep(time.Until(runStart.Add(time.Duration(delay) * time.Millisecond))) // paces: the crash lands at a random moment of the traffic
		// A worker that ended before the broker went down lost its connection for a reason of
		// the broker's own: report it with the log.
		for _, w := range []struct {
			name string
			done chan error
		}{{"publisher", pDone}, {s2.name, sDone}} {
			select {
			case err := <-w.done:
				failures = append(failures, fmt.Sprintf("run %d: %s's connection ended before the %s, %v after the restart: %v\nbroker log of run %d:\n%s",
					run, w.name, how, time.Since(runStart).Round(time.Millisecond), err, run, crashLogTail(b.Log(), logStarts, run, 30)))
				w.done <- err
			default:
			}
		}
		cutAt := time.Since(t0)
		down(b)
		for _, w := range []struct {
			name string
			done chan error
		}{{"publisher", pDone}, {s2.name, sDone}} {
			select {
			case err := <-w.done:
				if err != nil && !crashEnded(err) {
					failures = append(failures, fmt.Sprintf("run %d: %s ended with %v", run, w.name, err))
				}
			case <-time.After(crashJoinWait):
				cp.c.Conn.Close()
				c2.c.Conn.Close()
				t.Fatalf("run %d: %s still running %v after the broker's %s", run, w.name, crashJoinWait, how)
			}
		}
		cp.close()
		c2.close()
		if x != nil {
			x.down()
		}
		for _, c := range cells {
			if n, delivered := c.atStake(p, cutAt); n > 0 {
				c.stake = append(c.stake, n)
				if delivered > 0 {
					c.inflight++
				}
			}
		}
	}

	// The final run: nothing new is published. P finishes what it has in flight, then S1 comes
	// back (for the first time since it subscribed) and S1 and S2 drain.
	run := cycles
	logStarts = append(logStarts, len(b.Log()))
	before := time.Now()
	b.Start()
	restartTime += time.Since(before)
	cp = reconnect("publisher", p.id, run)
	cp.start()
	if err := p.serve(cp, false, time.Now().Add(20*time.Second)); err != nil {
		var open []string
		for _, m := range p.unfinished() {
			open = append(open, p.describe(m.num))
		}
		failures = append(failures, fmt.Sprintf("run %d: publisher could not finish its in-flight messages: %v\n  %s", run, err, crashSample(open, 10)))
	}
	cp.send(&codec.Disconnect{})
	cp.close()

	want := make(map[int]bool, len(p.acked))
	for n := range p.acked {
		want[n] = true
	}
	var extra1, extra2 []string // level 5: what else each subscriber must receive to be drained
	if x != nil {
		x.awaitExpiry()
		extra1, extra2 = []string{crash5Control}, x.wills
	}
	c1 = reconnect(s1.name, s1.id, run)
	c2 = reconnect(s2.name, s2.id, run)
	c1.start()
	c2.start()
	drainStart := time.Now()
	d1, d2 := make(chan error, 1), make(chan error, 1)
	go func() {
		d1 <- s1.serve(c1, &crashDrain{want: want, extra: extra1, quiet: 500 * time.Millisecond, deadline: time.Now().Add(30 * time.Second)})
	}()
	go func() {
		d2 <- s2.serve(c2, &crashDrain{want: want, extra: extra2, quiet: 500 * time.Millisecond, deadline: time.Now().Add(30 * time.Second)})
	}()
	for _, w := range []struct {
		s    *crashSubscriber
		done chan error
	}{{s1, d1}, {s2, d2}} {
		select {
		case err := <-w.done:
			if err != nil {
				failures = append(failures, fmt.Sprintf("run %d: draining %s: %v", run, w.s.name, err))
			}
		case <-time.After(45 * time.Second):
			c1.c.Conn.Close()
			c2.c.Conn.Close()
			t.Fatalf("run %d: %s still draining after 45 s", run, w.s.name)
		}
	}
	drainTime := time.Since(drainStart)
	c1.send(&codec.Disconnect{})
	c2.send(&codec.Disconnect{})
	c1.close()
	c2.close()

	// ---- report ----
	t.Logf("%s cycles: %d (delays after restart, ms: %v); restarts took %v in all; total %v; final drain %v",
		how, cycles, delays, restartTime.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), drainTime.Round(time.Millisecond))
	t.Logf("publisher: published %d, acknowledged %d, re-sent with DUP %d, PUBRELs sent %d, QoS 2 completed %d, unfinished at the end %d, stray acks %d",
		p.published(), len(p.acked), p.retransmits, p.pubrelsSent, p.completed, len(p.inflight), len(p.strays))
	if len(p.strays) > 0 {
		t.Logf("publisher stray acknowledgements:\n  %s", crashSample(p.strays, 10))
	}
	for _, s := range []*crashSubscriber{s1, s2} {
		unacked := 0
		for n := range s.recv {
			if !p.acked[n] {
				unacked++
			}
		}
		t.Logf("%s: PUBLISH packets %d, distinct numbers %d (of which never acknowledged to P: %d), QoS 1 first deliveries %d, QoS 2 first deliveries %d, QoS 2 DUP re-deliveries awaiting PUBREL %d, stray PUBRELs %d, QoS 1 duplicates %d (allowed), QoS 2 duplicates %d",
			s.name, s.publishes, s.distinct(), unacked, len(s.first[1]), len(s.first[2]), s.redeliveries, s.strayPubrels, len(s.dups1), len(s.dups2))
		if len(s.dups1) > 0 {
			report, resent := crashDupReport(s.dups1, p, 3)
			t.Logf("%s QoS 1 duplicates (allowed by at-least-once): %d of %d are numbers P re-sent after a crash, the rest broker re-deliveries:\n  %s",
				s.name, resent, len(s.dups1), report)
		}
	}
	for _, c := range cells {
		t.Logf("%s", c.summary(p, want, cycles, how))
	}
	if x != nil {
		t.Logf("%s", x.report(p, s1, s2))
	}

	// ---- verdict ----
	if p.published() == 0 || len(p.acked) == 0 {
		t.Errorf("the publisher got nothing acknowledged in %d runs: the test proved nothing", cycles)
	}
	if len(failures) > 0 {
		t.Errorf("%d problems with connections and sessions:\n  %s", len(failures), crashSample(failures, 20))
	}
	if len(p.problems) > 0 {
		t.Errorf("publisher: the broker broke the protocol %d times:\n  %s", len(p.problems), crashSample(p.problems, 20))
	}
	if x != nil {
		if v := x.verdict(s1, s2); len(v) > 0 {
			t.Errorf("level 5: %d problems with expiring messages and wills:\n  %s", len(v), crashSample(v, 20))
		}
	}
	if s1.publishes == 0 {
		t.Errorf("%s received nothing after %d restarts: its subscription or its queue did not survive (D2)", s1.name, cycles)
	}
	for _, s := range []*crashSubscriber{s1, s2} {
		if missing := s.missing(want); len(missing) > 0 {
			t.Errorf("%s: %d messages acknowledged to the publisher were never delivered (D1 violated): %v\n%s",
				s.name, len(missing), crashHead(missing, 50), crashLossDetail(p, s, missing, b.Log(), logStarts))
		}
		if len(s.dups2) > 0 {
			report, resent := crashDupReport(s.dups2, p, 10)
			t.Errorf("%s: %d QoS 2 messages delivered twice as new (D4 violated; P had re-sent %d of them with DUP after a crash: suspect the inbound de-duplication for those, the outbound state for the rest):\n  %s",
				s.name, len(s.dups2), resent, report)
		}
		if v := s.orderViolations(p); len(v) > 0 {
			t.Errorf("%s: %d first deliveries out of order (MQTT 3.1.1 4.6):\n  %s", s.name, len(v), crashSample(v, 10))
		}
		if len(s.problems) > 0 {
			t.Errorf("%s: the broker broke the protocol %d times:\n  %s", s.name, len(s.problems), crashSample(s.problems, 20))
		}
	}
	return cells
}

// crashSubscribe subscribes s to its filter at QoS 2 and, at level 5, with its Subscription
// Identifier, then to its second filter.
func crashSubscribe(t *testing.T, cc *crashConn, s *crashSubscriber) {
	t.Helper()
	if cc.level != codec.Level5 {
		if codes := cc.c.Subscribe(1, 2, s.filter); len(codes) != 1 || codes[0] != 2 {
			t.Fatalf("%s: SUBACK %v, want [2]", s.name, codes)
		}
		return
	}
	if codes := subscribe5(t, cc.c, 1, s.v5.subID, codec.Subscription{Filter: s.filter, QoS: 2}); codes[0] != 2 {
		t.Fatalf("%s: SUBACK %v, want [2]", s.name, codes)
	}
	if codes := subscribe5(t, cc.c, 2, s.v5.extraID, codec.Subscription{Filter: s.v5.extra, QoS: 2}); codes[0] != 2 {
		t.Fatalf("%s: SUBACK %v for %s, want [2]", s.name, codes, s.v5.extra)
	}
}

// atStake counts the cell's messages at stake at a down that happened at cutAt (since the
// scenario began), and of those the ones already delivered to the subscriber: every
// acknowledgement P has received came from a broker run that has ended by now, so all of them
// count, while the subscriber's packets count only if received or written before the down.
func (c *crashCell) atStake(p *crashPublisher, cutAt time.Duration) (n, delivered int) {
	for num := range p.acked {
		if crashQoS(num) != c.qos {
			continue
		}
		if at, ok := c.s.doneAt[num]; ok && at < cutAt {
			continue
		}
		n++
		if r := c.s.recv[num]; len(r) > 0 && r[0].at < cutAt {
			delivered++
		}
	}
	return n, delivered
}

// summary is the cell's line of the table.
func (c *crashCell) summary(p *crashPublisher, want map[int]bool, cycles int, how string) string {
	acked := 0
	for n := range p.acked {
		if crashQoS(n) == c.qos {
			acked++
		}
	}
	lost := 0
	for _, n := range c.s.missing(want) {
		if crashQoS(n) == c.qos {
			lost++
		}
	}
	dups := fmt.Sprintf("QoS 1 duplicates %d (allowed)", len(c.s.dups1))
	if c.qos == 2 {
		dups = fmt.Sprintf("QoS 2 duplicates %d", len(c.s.dups2))
	}
	stake := slices.Sorted(slices.Values(c.stake))
	spread := ""
	if len(stake) > 0 {
		spread = fmt.Sprintf(" (messages at stake per %s: min %d, median %d, max %d)", how, stake[0], stake[len(stake)/2], stake[len(stake)-1])
	}
	return fmt.Sprintf("cell %s x QoS %d: acknowledged %d, lost %d, %s; at stake in %d of %d %ss%s, received and not finished by the subscriber in %d",
		c.s.name, c.qos, acked, lost, dups, len(stake), cycles, how, spread, c.inflight)
}

// crashHead renders the first k numbers of list.
func crashHead(list []int, k int) string {
	if len(list) <= k {
		return fmt.Sprint(list)
	}
	return fmt.Sprintf("%v ... and %d more", list[:k], len(list)-k)
}

// crashLossDetail explains the first few lost numbers: P's history of each, what the subscriber
// received around it, and the broker log of the run in which the broker acknowledged it.
func crashLossDetail(p *crashPublisher, s *crashSubscriber, missing []int, log string, logStarts []int) string {
	var b strings.Builder
	var runs []int
	for _, n := range missing[:min(len(missing), 5)] {
		fmt.Fprintf(&b, "  publisher: %s\n    %s around it: %s\n", p.describe(n), s.name, s.neighbours(n))
		if r := p.ackedRun[n]; !slices.Contains(runs, r) {
			runs = append(runs, r)
		}
	}
	// How far the acknowledged numbers of each run got through to the subscriber.
	byRun := map[int][2]int{}
	for n := range p.acked {
		r := p.ackedRun[n]
		c := byRun[r]
		c[0]++
		if len(s.recv[n]) == 0 {
			c[1]++
		}
		byRun[r] = c
	}
	var per []string
	for r := 0; r < len(logStarts); r++ {
		if c, ok := byRun[r]; ok && c[1] > 0 {
			per = append(per, fmt.Sprintf("run %d: %d of %d acknowledged lost", r, c[1], c[0]))
		}
	}
	fmt.Fprintf(&b, "  losses by the run of their acknowledgement: %s\n", strings.Join(per, ", "))
	for _, r := range runs {
		fmt.Fprintf(&b, "  broker log, end of run %d (the next run starts after the kill):\n%s\n", r, crashLogTail(log, logStarts, r, 25))
		if r+1 < len(logStarts) {
			fmt.Fprintf(&b, "  broker log, start of run %d (recovery):\n%s\n", r+1, crashLogHead(log, logStarts, r+1, 25))
		}
	}
	return b.String()
}
