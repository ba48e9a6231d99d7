package test

// Shared subscriptions that never strand a message with a dead consumer (issue 15), against the
// binary. The group's members and the publisher are the crash harness's clients
// (crash_helpers_test.go), which record every packet they send and receive, so that a missing
// number can be traced to the member that had it.
//
// "Reached the group" means: received by a live member, or finished by the member that died
// before it died. For QoS 1 that is its PUBACK (the only proof that it is done with it); for
// QoS 2 its PUBREC, after which the broker keeps the message with that member (exactly once
// within the group), so a QoS 2 message the dead member received may either stay with it or
// come to another member, which the outside cannot tell apart.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

const (
	sharedFilter    = "$share/workers/" + crashFilter
	sharedBatch     = 10000 // numbers per batch of TestSharedMemberDies*; two batches
	sharedMilestone = 3000  // acknowledged numbers of a batch after which its event comes
)

// sharedJoin connects s for the first time (no session present) and subscribes it to its filter.
func sharedJoin(t *testing.T, addr string, s *crashSubscriber, run int) *crashConn {
	t.Helper()
	cc, sp := crashConnect(t, addr, s.id, codec.Level311, run, nil)
	if sp {
		t.Fatalf("%s: session-present = 1 on its very first connection", s.name)
	}
	crashSubscribe(t, cc, s)
	return cc
}

// sharedRejoin reconnects s with clean-session=0 after a restart; the session must be there.
func sharedRejoin(t *testing.T, addr string, s *crashSubscriber, run int) *crashConn {
	t.Helper()
	cc, sp := crashConnect(t, addr, s.id, codec.Level311, run, nil)
	if !sp {
		t.Fatalf("run %d: %s reconnected with clean-session=0 and got session-present = 0", run, s.name)
	}
	return cc
}

// sharedFinished reports whether s, a member that died, had finished with n before it died (see
// the file comment).
func sharedFinished(s *crashSubscriber, n int) bool {
	if s.qos.of(n) == 1 {
		_, ok := s.doneAt[n]
		return ok
	}
	return len(s.recv[n]) > 0
}

// sharedNewCopies is how many times n reached s with DUP=0.
func sharedNewCopies(s *crashSubscriber, n int) int {
	k := 0
	for _, r := range s.recv[n] {
		if !r.dup {
			k++
		}
	}
	return k
}

// sharedAwait waits for done, failing the test with what after d.
func sharedAwait(t *testing.T, done <-chan error, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s: still running after %v", what, d)
		return nil
	}
}

// [MQTT-4.8.2-3] and issue 15 at QoS 1: a member of a group whose connection drops and never
// comes back strands nothing; nor does a kill -9 of the broker.
func TestSharedMemberDiesNothingStranded(t *testing.T) { sharedMemberDies(t, 1) }

// The same at QoS 2, where no message may also reach the other member twice as new, nor reach it
// after the member that died had completed it.
func TestSharedMemberDiesNothingStrandedQoS2(t *testing.T) { sharedMemberDies(t, 2) }

// sharedMemberDies: two persistent members A and B of $share/workers/crash/#; a persistent
// publisher sends two batches of numbers at qos. After sharedMilestone acknowledgements of the
// first batch, A's socket is closed without DISCONNECT and A never comes back. After
// sharedMilestone of the second, the broker is killed (SIGKILL) and restarted; the publisher
// reconnects and finishes the batch while B is offline; then B reconnects, finds its session
// and its membership, and must receive every acknowledged number that A had not finished.
func sharedMemberDies(t *testing.T, qos byte) {
	b := StartBroker(t, BrokerConfig{Extra: opsAdminExtra("0s")})
	admin := "http://" + opsAdminAddr(t, b)
	t0 := time.Now()
	p := newCrashPublisher("shared-publisher", t0)
	p.qos, p.limit = crashMix(qos), sharedBatch
	a := newCrashSubscriber("A", "shared-a", false, t0)
	bm := newCrashSubscriber("B", "shared-b", false, t0)
	for _, s := range []*crashSubscriber{a, bm} {
		s.filter, s.qos = sharedFilter, crashMix(qos)
	}
	ca := sharedJoin(t, b.Addr, a, 0)
	cb := sharedJoin(t, b.Addr, bm, 0)
	cp, _ := crashConnect(t, b.Addr, p.id, codec.Level311, 0, nil)

	milestone := func(at int) <-chan struct{} {
		reached := make(chan struct{})
		p.onAck = func(acked int) {
			if acked == at {
				close(reached)
			}
		}
		return reached
	}
	// waitFor returns once the publisher reached mid, failing the test if it ended first.
	waitFor := func(mid <-chan struct{}, pDone chan error, what string) {
		t.Helper()
		select {
		case <-mid:
		case err := <-pDone:
			t.Fatalf("the publisher ended before %s: %v", what, err)
		case <-time.After(60 * time.Second):
			t.Fatalf("the publisher did not reach %s within 60 s", what)
		}
	}

	// Batch 1: A dies.
	mid := milestone(sharedMilestone)
	for _, c := range []*crashConn{ca, cb, cp} {
		c.start()
	}
	aDone, bDone, pDone := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	go func() { aDone <- a.serve(ca, nil) }()
	go func() { bDone <- bm.serve(cb, nil) }()
	go func() { pDone <- p.serve(cp, true, time.Now().Add(120*time.Second)) }()
	waitFor(mid, pDone, fmt.Sprintf("%d acknowledgements", sharedMilestone))
	killedA := time.Since(t0)
	ca.c.Conn.Close() // no DISCONNECT: the worker crashed
	if err := sharedAwait(t, aDone, crashJoinWait, "A after its socket closed"); err == nil || !crashEnded(err) {
		t.Fatalf("A ended with %v, want the end of its connection", err)
	}
	ca.close()
	if err := sharedAwait(t, pDone, 120*time.Second, "the publisher's first batch"); err != nil {
		t.Fatalf("publisher, first batch: %v", err)
	}
	afterBatch1 := len(p.acked)
	// What the broker took back from A: the counter of this run, before the kill resets it.
	redelivered := opsScrape(t, admin)[`holdfast_shared_redelivered_total{group="workers/`+crashFilter+`"}`]

	// Batch 2: the broker is killed.
	p.limit = 2 * sharedBatch
	mid = milestone(sharedBatch + sharedMilestone)
	go func() { pDone <- p.serve(cp, true, time.Now().Add(120*time.Second)) }()
	waitFor(mid, pDone, fmt.Sprintf("%d acknowledgements", sharedBatch+sharedMilestone))
	b.Kill()
	for _, w := range []struct {
		name string
		done chan error
	}{{"publisher", pDone}, {"B", bDone}} {
		if err := sharedAwait(t, w.done, crashJoinWait, w.name+" after the kill"); err == nil || !crashEnded(err) {
			t.Fatalf("%s ended with %v, want the end of its connection", w.name, err)
		}
	}
	cp.close()
	cb.close()
	ackedAtKill := len(p.acked)

	b.Start()
	cp, sp := crashConnect(t, b.Addr, p.id, codec.Level311, 1, nil)
	if !sp {
		t.Fatal("run 1: the publisher reconnected with clean-session=0 and got session-present = 0")
	}
	cp.start()
	// B is offline meanwhile: the group keeps the rest of the batch on disk.
	if err := p.serve(cp, true, time.Now().Add(120*time.Second)); err != nil {
		t.Fatalf("publisher, after the restart: %v", err)
	}
	cp.send(&codec.Disconnect{})
	cp.close()

	want := map[int]bool{}
	for n := range p.acked {
		if !sharedFinished(a, n) {
			want[n] = true
		}
	}
	cb = sharedRejoin(t, b.Addr, bm, 1) // no SUBSCRIBE: the membership is part of the session
	cb.start()
	drainErr := bm.serve(cb, &crashDrain{want: want, quiet: 500 * time.Millisecond, deadline: time.Now().Add(60 * time.Second)})
	cb.send(&codec.Disconnect{})
	cb.close()

	// ---- report ----
	var aGot, bGotBefore, both int
	for n := range a.recv {
		aGot++
		if len(bm.recv[n]) > 0 {
			both++
		}
	}
	for n, rs := range bm.recv {
		if rs[0].at < killedA && n <= afterBatch1 {
			bGotBefore++
		}
	}
	t.Logf("QoS %d: published %d, acknowledged %d (%d by the end of batch 1, %d at the kill); A received %d and finished %d before it died at %v; B received %d before that, %d distinct in all (%d PUBLISH packets, %d DUP re-deliveries awaiting PUBREL); received by A and B %d; holdfast_shared_redelivered_total after batch 1: %v",
		qos, p.published(), len(p.acked), afterBatch1, ackedAtKill, aGot, len(a.doneAt), killedA.Round(time.Millisecond), bGotBefore, bm.distinct(), bm.publishes, bm.redeliveries, both, redelivered)

	// ---- verdict ----
	if drainErr != nil {
		t.Errorf("draining B: %v", drainErr)
	}
	if aGot < (aGot+bGotBefore)/10 || bGotBefore < (aGot+bGotBefore)/10 {
		t.Errorf("the load was not spread before A died: A received %d, B %d", aGot, bGotBefore)
	}
	if len(p.problems) > 0 {
		t.Errorf("publisher: the broker broke the protocol %d times:\n  %s", len(p.problems), crashSample(p.problems, 20))
	}
	for _, s := range []*crashSubscriber{a, bm} {
		if len(s.problems) > 0 {
			t.Errorf("%s: the broker broke the protocol %d times:\n  %s", s.name, len(s.problems), crashSample(s.problems, 20))
		}
	}
	if missing := bm.missing(want); len(missing) > 0 {
		t.Errorf("%d acknowledged messages reached neither B nor A before A died (first: %v):\n%s",
			len(missing), crashHead(missing, 30), sharedWhere(p, missing, a, bm))
	}
	if qos == 2 {
		var twice, afterA []string
		for n := range bm.recv {
			if k := sharedNewCopies(bm, n); k > 1 {
				twice = append(twice, fmt.Sprintf("%d: B %s", n, bm.describe(n)))
			}
			if a.completed[n] {
				afterA = append(afterA, fmt.Sprintf("%d: A %s, PUBREL received; B %s", n, a.describe(n), bm.describe(n)))
			}
		}
		slices.Sort(twice)
		slices.Sort(afterA)
		if len(twice) > 0 {
			t.Errorf("%d QoS 2 messages reached B twice with DUP=0:\n  %s", len(twice), crashSample(twice, 20))
		}
		if len(afterA) > 0 {
			t.Errorf("%d QoS 2 messages that A had completed (PUBREL received) reached B as well:\n  %s", len(afterA), crashSample(afterA, 20))
		}
	}
}

// sharedWhere says, for the first missing numbers, what the publisher and each member saw of them.
func sharedWhere(p *crashPublisher, missing []int, members ...*crashSubscriber) string {
	var b strings.Builder
	for _, n := range missing[:min(len(missing), 10)] {
		fmt.Fprintf(&b, "  publisher: %s\n", p.describe(n))
		for _, s := range members {
			state := ""
			if _, ok := s.doneAt[n]; ok {
				state = ", finished by it"
			} else if len(s.recv[n]) > 0 {
				state = ", never finished by it"
			}
			fmt.Fprintf(&b, "    %s: %s%s\n", s.name, s.describe(n), state)
		}
	}
	return b.String()
}

// Issue 15: with every member offline the group keeps its messages on disk, across a kill -9,
// and hands them all to the first member that comes back.
func TestSharedAllMembersOffline(t *testing.T) {
	const n = 500
	b := StartBroker(t, BrokerConfig{})
	t0 := time.Now()
	var members []*crashSubscriber
	for _, id := range []string{"offline-a", "offline-b"} {
		s := newCrashSubscriber(id, id, false, t0)
		s.filter, s.qos = sharedFilter, 1
		cc := sharedJoin(t, b.Addr, s, 0)
		cc.send(&codec.Disconnect{})
		cc.c.ExpectClosed()
		cc.close()
		members = append(members, s)
	}
	p := newCrashPublisher("offline-publisher", t0)
	p.qos, p.limit = 1, n
	cp, _ := crashConnect(t, b.Addr, p.id, codec.Level311, 0, nil)
	cp.start()
	if err := p.serve(cp, true, time.Now().Add(60*time.Second)); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	cp.close()
	if len(p.acked) != n || len(p.problems) > 0 {
		t.Fatalf("publisher: %d of %d acknowledged; problems: %v", len(p.acked), n, p.problems)
	}
	b.Kill()
	b.Start()

	s := members[1]
	cc := sharedRejoin(t, b.Addr, s, 1)
	cc.start()
	err := s.serve(cc, &crashDrain{want: p.acked, quiet: 300 * time.Millisecond, deadline: time.Now().Add(30 * time.Second)})
	cc.close()
	t.Logf("acknowledged %d with both members offline; after the kill -9 %s received %d distinct (%d PUBLISH packets)", n, s.name, s.distinct(), s.publishes)
	if missing := s.missing(p.acked); len(missing) > 0 {
		t.Fatalf("%d of %d messages acknowledged while no member was online never reached %s after the restart: %v (%v)",
			len(missing), n, s.name, crashHead(missing, 50), err)
	}
	if err != nil || len(s.problems) > 0 {
		t.Fatalf("%s: %v; problems: %v", s.name, err, s.problems)
	}
}

// Issue 15: UNSUBSCRIBE ends a member's membership and hands the messages it has not
// acknowledged back to the group, to the other member; the group's later messages all go to the
// member that is left.
func TestSharedRedeliveryOnUnsubscribe(t *testing.T) {
	const filter, first, later = "$share/u/unsub/#", 20, 6
	b := StartBroker(t, BrokerConfig{})
	var members []*crashConn // the first never acknowledges
	for _, id := range []string{"unsub-lazy", "unsub-other"} {
		cc, _ := crashConnect(t, b.Addr, id, codec.Level311, 0, nil)
		if codes := cc.c.Subscribe(1, 1, filter); codes[0] != 1 {
			t.Fatalf("%s: SUBACK %v", id, codes)
		}
		cc.start()
		t.Cleanup(cc.close)
		members = append(members, cc)
	}
	lazy, other := members[0], members[1]
	pub := mqtttest.Dial(t, b.Addr)
	pub.MustConnect("unsub-pub", true)
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			pub.Send(&codec.Publish{Topic: "unsub/x", QoS: 1, PacketID: uint16(i), Payload: []byte(strconv.Itoa(i))})
			mqtttest.Expect[*codec.Puback](pub)
		}
	}
	held, got := map[int]bool{}, map[int]bool{} // what lazy holds; what other received
	// receive takes the members' packets until done holds, failing the test with why() after
	// mqtttest.Timeout without one. The other member acknowledges what it gets; lazy does not.
	receive := func(done func() bool, why func() string) {
		t.Helper()
		for !done() {
			var pk crashPacket
			fromOther := false
			select {
			case pk = <-lazy.in:
			case pk = <-other.in:
				fromOther = true
			case <-time.After(mqtttest.Timeout):
				t.Fatalf("nothing received for %v: %s", mqtttest.Timeout, why())
			}
			if pk.err != nil {
				t.Fatal(pk.err)
			}
			switch m := pk.p.(type) {
			case *codec.Publish:
				n, _ := strconv.Atoi(string(m.Payload))
				if !fromOther {
					held[n] = true
					continue
				}
				got[n] = true
				if err := other.send(&codec.Puback{PacketID: m.PacketID}); err != nil {
					t.Fatal(err)
				}
			case *codec.Unsuback:
			default:
				t.Fatalf("got %s", mqtttest.String(pk.p))
			}
		}
	}
	spread := func() string {
		return fmt.Sprintf("the unacknowledging member holds %v, the other got %v", held, got)
	}
	publish(1, first+1)
	receive(func() bool { return len(held)+len(got) >= first }, spread)
	if len(held) == 0 || len(got) == 0 || len(held)+len(got) != first {
		t.Fatalf("before the UNSUBSCRIBE: %s; want %d messages spread over both", spread(), first)
	}
	before := len(held)

	if err := lazy.send(&codec.Unsubscribe{PacketID: 2, Filters: []string{filter}}); err != nil {
		t.Fatal(err)
	}
	var lost []int
	receive(func() bool {
		lost = lost[:0]
		for n := range held {
			if !got[n] {
				lost = append(lost, n)
			}
		}
		return len(lost) == 0
	}, func() string {
		slices.Sort(lost)
		return fmt.Sprintf("the member that unsubscribed held %d unacknowledged messages; %v never reached the other member", len(held), lost)
	})
	if len(held) != before {
		t.Fatalf("the member that unsubscribed received %d more messages", len(held)-before)
	}

	publish(first+1, first+later+1)
	receive(func() bool { return len(got) >= first+later }, func() string {
		return fmt.Sprintf("after the UNSUBSCRIBE the remaining member got %d of the %d later messages", len(got)-first, later)
	})
	select {
	case pk := <-lazy.in:
		t.Fatalf("after its UNSUBSCRIBE and the others' delivery the member got %s", mqtttest.String(pk.p))
	case <-time.After(200 * time.Millisecond):
	}
}
