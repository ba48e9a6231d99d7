package test

// Helpers of crash_test.go: a publisher and a subscriber that keep their MQTT client-side session
// state across connections (packet identifiers, QoS 2 state), written on the raw packet-level
// client so that every packet, DUP flag and packet identifier is seen and recorded.
//
// Nothing here calls t.Fatal from a goroutine other than the test's: the workers (crashPublisher
// .serve, crashSubscriber.serve) only return errors and record problems, and the test goroutine
// judges them after it has joined the workers.
//
// Every identifier in this file starts with "crash" so that it cannot collide with helpers that
// other test files of the package define.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

const (
	crashWindow     = 16               // the publisher's in-flight window
	crashReadIdle   = 30 * time.Second // the longest one read waits for a packet
	crashDialWait   = 20 * time.Second // how long a reconnect retries the dial
	crashJoinWait   = 30 * time.Second // how long the test waits for a worker to end
	crashTopicRoot  = "crash/"
	crashFilter     = "crash/#"
	crashSlowEvery  = 8                    // the slow subscriber sleeps after this many PUBLISHes
	crashSlowSleep  = 2 * time.Millisecond // ... for this long
	crashDrainStall = 5 * time.Second      // a drain receiving nothing this long while numbers are missing has failed
)

// crashQoS is the QoS a number is published at: odd numbers QoS 1, even numbers QoS 2, so the two
// publisher QoS streams alternate.
func crashQoS(n int) byte {
	if n%2 == 1 {
		return 1
	}
	return 2
}

// crashMix is the QoS every number is published at, or 0 for crashQoS's alternation.
type crashMix byte

func (q crashMix) of(n int) byte {
	if q != 0 {
		return byte(q)
	}
	return crashQoS(n)
}

// crashTopic is the topic n is published to: its own at 3.1.1, at level 5 one for all, so that
// the publisher's topic alias stands for it.
func crashTopic(level byte, n int) string {
	if level == codec.Level5 {
		return crash5Topic
	}
	return crashTopicRoot + strconv.Itoa(n)
}

// crashPacket is what a connection's pump hands on: a packet, or the error that ended the
// connection.
type crashPacket struct {
	p   codec.Packet
	err error
}

// crashConn is one connection of a raw client with a pump goroutine, the connection's only
// reader, which hands packets to the worker over a small channel (so a slow worker slows the
// reading, and TCP pushes back on the broker). Reads are never interrupted by a short deadline,
// since the codec's reader cannot resume a packet cut by a timeout; each read is still bounded by
// crashReadIdle.
type crashConn struct {
	c     *mqtttest.Client
	level byte // the protocol level: codec.Level311 or codec.Level5
	run   int  // the broker run (0 = first start, i = after the i-th restart)
	in    chan crashPacket
	quit  chan struct{}
	done  chan struct{}
	on    bool // the pump was started

	// Level 5: topic aliases live as long as their connection [MQTT-3.3.2-7], so each crashConn
	// starts without any.
	aliasOut bool              // P has set its topic alias on this connection
	aliasIn  map[uint16]string // the aliases the broker has set towards this client
}

// crashConnect dials addr (retrying while the broker is not up) and connects as id at the protocol
// level with clean-session=0, at level 5 Clean Start 0 with the longest Session Expiry Interval
// (and a Topic Alias Maximum, so that the broker may use aliases towards the client), with the
// will w (nil: none). It returns the CONNACK's session-present flag. It runs on the test
// goroutine, so it may fail the test.
func crashConnect(t *testing.T, addr, id string, level byte, run int, w *codec.Will) (*crashConn, bool) {
	t.Helper()
	// The broker may be down (killed, restarting): a dial failure is not an error until the
	// deadline has passed.
	var c *mqtttest.Client
	var err error
	if !mqtttest.Within(crashDialWait, func() bool { c, err = mqtttest.TryDial(t, "", addr); return err == nil }) {
		t.Fatalf("run %d: reconnecting %s: still failing after %v: %v", run, id, crashDialWait, err)
	}
	cp := &codec.Connect{ClientID: id, KeepAlive: 60, Will: w}
	if level == codec.Level5 {
		c.SetLevel(level)
		cp.ProtocolName, cp.ProtocolLevel = "MQTT", level
		cp.Props = &codec.Properties{SessionExpiry: 0xFFFFFFFF, TopicAliasMaximum: crash5AliasMax}
	}
	ack := c.Connect(cp)
	if ack.ReturnCode != codec.Accepted || ack.Reason != codec.ReasonSuccess {
		t.Fatalf("run %d: CONNECT %s refused: %v %v", run, id, ack.ReturnCode, ack.Reason)
	}
	cc := &crashConn{c: c, level: level, run: run, in: make(chan crashPacket, 64), quit: make(chan struct{}), done: make(chan struct{})}
	return cc, ack.SessionPresent
}

// start runs the pump. It is separate from crashConnect so that a test can still read the SUBACK
// with the mqtttest client before the pump takes over the connection.
func (cc *crashConn) start() {
	cc.on = true
	go func() {
		defer close(cc.done)
		for {
			p, err := cc.c.TryRead(crashReadIdle)
			select {
			case cc.in <- crashPacket{p, err}:
			case <-cc.quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()
}

// close ends the connection and waits for the pump.
func (cc *crashConn) close() {
	close(cc.quit)
	cc.c.Conn.Close()
	if cc.on {
		<-cc.done
	}
}

// send encodes packets and writes them in one write, bounded by mqtttest.Timeout. It never fails
// the test: a write to a broker that was just killed fails, and the worker then ends.
func (cc *crashConn) send(ps ...codec.Packet) error {
	if len(ps) == 0 {
		return nil
	}
	return cc.c.Write(ps...)
}

// errCrashShutdown is how the broker ends a level-5 connection when it stops: DISCONNECT 0x8B.
var errCrashShutdown = errors.New("DISCONNECT: server shutting down")

// crashDisconnect is a worker's answer to a DISCONNECT from the broker (level 5): the end of the
// connection, an error of its own unless the broker is shutting down.
func crashDisconnect(d *codec.Disconnect) error {
	if d.Reason == codec.ReasonServerShuttingDown {
		return errCrashShutdown
	}
	return fmt.Errorf("the broker closed the connection with DISCONNECT %v", d.Reason)
}

// crashEnded reports whether err is the end of a connection (broker killed, stopped or closed by
// us) rather than a protocol problem.
func crashEnded(err error) bool {
	var oe *net.OpError
	return errors.Is(err, net.ErrClosed) || errors.Is(err, errCrashShutdown) || errors.As(err, &oe) || errors.Is(err, os.ErrDeadlineExceeded) ||
		strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "connection reset")
}

// ---- publisher ----

// crashOut is one of the publisher's unfinished messages.
type crashOut struct {
	num int
	qos byte
	pid uint16
	rec bool // QoS 2: PUBREC received, PUBREL (re)sent, PUBCOMP awaited
}

// crashSend is one transmission of a PUBLISH by the publisher.
type crashSend struct {
	run int
	pid uint16
	dup bool
	at  time.Duration // since the scenario began
}

// crashPublisher is P: clean-session=0, so it keeps its session across crashes and, as
// [MQTT-4.4.0-1] requires of a client, re-sends every unacknowledged PUBLISH (DUP=1, same packet
// identifier) and every unanswered PUBREL on each reconnect, in their original order.
type crashPublisher struct {
	id       string
	t0       time.Time
	qos      crashMix
	limit    int             // the last number to publish; 0: no limit
	onAck    func(acked int) // called on the serving goroutine with len(acked) after each new acknowledgement
	next     int             // the next number to publish (the first is 1)
	lastPID  uint16
	inflight map[uint16]*crashOut

	sends       map[int][]crashSend // every transmission of each number
	acked       map[int]bool        // PUBACK (QoS 1) or PUBREC (QoS 2) received: the broker's promise
	ackedRun    map[int]int         // the run whose connection carried the acknowledgement
	ackedAt     map[int]time.Duration
	completed   int // QoS 2 messages whose PUBCOMP arrived
	retransmits int // PUBLISHes re-sent with DUP=1
	pubrelsSent int
	aliasSets   int      // level 5: PUBLISH packets that set the topic alias, one per connection
	strays      []string // acknowledgements for unknown packet identifiers (logged, not failures)
	problems    []string // protocol violations the broker committed towards the publisher
}

func newCrashPublisher(id string, t0 time.Time) *crashPublisher {
	return &crashPublisher{
		id: id, t0: t0, next: 1,
		inflight: make(map[uint16]*crashOut),
		sends:    make(map[int][]crashSend),
		acked:    make(map[int]bool),
		ackedRun: make(map[int]int),
		ackedAt:  make(map[int]time.Duration),
	}
}

func (p *crashPublisher) published() int { return p.next - 1 }

// pid returns a packet identifier not in use by an unfinished message [MQTT-2.3.1-2].
func (p *crashPublisher) pid() uint16 {
	for {
		p.lastPID++
		if p.lastPID == 0 {
			p.lastPID = 1
		}
		if _, busy := p.inflight[p.lastPID]; !busy {
			return p.lastPID
		}
	}
}

func (p *crashPublisher) unfinished() []*crashOut {
	out := make([]*crashOut, 0, len(p.inflight))
	for _, m := range p.inflight {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].num < out[j].num })
	return out
}

func (p *crashPublisher) publishPacket(cc *crashConn, m *crashOut, dup bool) *codec.Publish {
	p.sends[m.num] = append(p.sends[m.num], crashSend{run: cc.run, pid: m.pid, dup: dup, at: time.Since(p.t0)})
	pk := &codec.Publish{Dup: dup, QoS: m.qos, Topic: crashTopic(cc.level, m.num), PacketID: m.pid, Payload: []byte(strconv.Itoa(m.num))}
	if cc.level == codec.Level5 {
		pk.Props = crash5Props(m.num)
		// The alias is set by the first PUBLISH of each connection, re-sent ones included, and
		// stands for the topic in the later ones.
		pk.Props.TopicAlias = crash5Alias
		if cc.aliasOut {
			pk.Topic = ""
		} else {
			cc.aliasOut = true
			p.aliasSets++
		}
	}
	return pk
}

// serve runs P on one connection. It first re-sends what is unfinished, then, when publish is
// true, publishes new numbers keeping up to crashWindow unfinished, until the connection ends
// or, with a limit, until the limit is published and finished (nil). When publish is false it
// returns nil once nothing is unfinished, or an error at deadline.
func (p *crashPublisher) serve(cc *crashConn, publish bool, deadline time.Time) error {
	var resend []codec.Packet
	for _, m := range p.unfinished() {
		if m.rec {
			resend = append(resend, &codec.Pubrel{PacketID: m.pid}) // [MQTT-4.4.0-1]
			p.pubrelsSent++
		} else {
			resend = append(resend, p.publishPacket(cc, m, true)) // [MQTT-3.3.1-1] DUP on re-delivery
			p.retransmits++
		}
	}
	if err := cc.send(resend...); err != nil {
		return err
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		if publish {
			var batch []codec.Packet
			for len(p.inflight) < crashWindow && (p.limit == 0 || p.next <= p.limit) {
				m := &crashOut{num: p.next, qos: p.qos.of(p.next), pid: p.pid()}
				p.next++
				p.inflight[m.pid] = m
				batch = append(batch, p.publishPacket(cc, m, false))
			}
			if err := cc.send(batch...); err != nil {
				return err
			}
		}
		if len(p.inflight) == 0 && (!publish || p.limit > 0 && p.next > p.limit) {
			return nil
		}
		select {
		case pk := <-cc.in:
			if pk.err != nil {
				return pk.err
			}
			if err := p.handle(cc, pk.p); err != nil {
				return err
			}
		case <-timer.C:
			return fmt.Errorf("publisher: %d messages still unfinished at the deadline", len(p.inflight))
		}
	}
}

func (p *crashPublisher) handle(cc *crashConn, pk codec.Packet) error {
	switch a := pk.(type) {
	case *codec.Puback:
		m := p.inflight[a.PacketID]
		switch {
		case m == nil:
			p.strays = append(p.strays, fmt.Sprintf("run %d: PUBACK for packet id %d, which is not in flight", cc.run, a.PacketID))
		case m.qos != 1:
			p.problems = append(p.problems, fmt.Sprintf("run %d: PUBACK for packet id %d, which carries QoS 2 message %d", cc.run, a.PacketID, m.num))
		case a.Reason >= 0x80:
			p.problems = append(p.problems, fmt.Sprintf("run %d: message %d refused: PUBACK %v", cc.run, m.num, a.Reason))
			delete(p.inflight, a.PacketID)
		default:
			p.ack(m.num, cc.run)
			delete(p.inflight, a.PacketID)
		}
	case *codec.Pubrec:
		m := p.inflight[a.PacketID]
		switch {
		case m == nil:
			p.strays = append(p.strays, fmt.Sprintf("run %d: PUBREC for packet id %d, which is not in flight", cc.run, a.PacketID))
		case m.qos != 2:
			p.problems = append(p.problems, fmt.Sprintf("run %d: PUBREC for packet id %d, which carries QoS 1 message %d", cc.run, a.PacketID, m.num))
		case a.Reason >= 0x80: // the exchange ends here (§4.3.3)
			p.problems = append(p.problems, fmt.Sprintf("run %d: message %d refused: PUBREC %v", cc.run, m.num, a.Reason))
			delete(p.inflight, a.PacketID)
		default:
			if !m.rec {
				p.ack(m.num, cc.run)
				m.rec = true
			}
			p.pubrelsSent++
			return cc.send(&codec.Pubrel{PacketID: a.PacketID}) // [MQTT-4.3.3-1]
		}
	case *codec.Pubcomp:
		m := p.inflight[a.PacketID]
		switch {
		case m == nil:
			p.strays = append(p.strays, fmt.Sprintf("run %d: PUBCOMP for packet id %d, which is not in flight", cc.run, a.PacketID))
		case !m.rec:
			p.problems = append(p.problems, fmt.Sprintf("run %d: PUBCOMP for packet id %d (message %d) before any PUBREC", cc.run, a.PacketID, m.num))
		default:
			p.completed++
			delete(p.inflight, a.PacketID)
		}
	case *codec.Disconnect:
		return crashDisconnect(a)
	default:
		p.problems = append(p.problems, fmt.Sprintf("run %d: unexpected %s", cc.run, mqtttest.String(pk)))
	}
	return nil
}

func (p *crashPublisher) ack(n, run int) {
	p.acked[n] = true
	p.ackedRun[n] = run
	p.ackedAt[n] = time.Since(p.t0)
	if p.onAck != nil {
		p.onAck(len(p.acked))
	}
}

// sentRuns returns the runs in which n was transmitted, first to last.
func (p *crashPublisher) sentRuns(n int) (first, last int) {
	s := p.sends[n]
	return s[0].run, s[len(s)-1].run
}

// describe is the publisher's history of n, for failure messages.
func (p *crashPublisher) describe(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d (QoS %d): sent", n, p.qos.of(n))
	for _, s := range p.sends[n] {
		fmt.Fprintf(&b, " [run %d pid %d dup=%v at %v]", s.run, s.pid, s.dup, s.at.Round(time.Millisecond))
	}
	if p.acked[n] {
		fmt.Fprintf(&b, "; acknowledged in run %d at %v", p.ackedRun[n], p.ackedAt[n].Round(time.Millisecond))
	} else {
		b.WriteString("; never acknowledged")
	}
	return b.String()
}

// ---- subscriber ----

// crashRecv is one PUBLISH a subscriber received.
type crashRecv struct {
	run int
	pid uint16
	qos byte
	dup bool
	at  time.Duration
	new bool // received as a new message (not a re-delivery of a QoS 2 message awaiting PUBREL)
}

// crashSubscriber is S1 or S2: a clean-session=0 receiver that keeps its QoS 2 state (packet
// identifiers whose PUBREL it awaits, [MQTT-4.3.3-2] method B) across connections, as a real
// client must, and records every delivery.
type crashSubscriber struct {
	name, id string
	t0       time.Time
	slow     bool
	filter   string             // what it subscribes to: crashFilter, or a shared subscription to it
	qos      crashMix           // the publisher's
	v5       crash5Subscription // level 5: its subscriptions' identifiers and its second filter

	awaitRel  map[uint16]int // QoS 2: PUBREC sent, PUBREL not yet received: packet id -> number
	completed map[int]bool   // QoS 2 numbers whose PUBCOMP we sent
	recv      map[int][]crashRecv
	doneAt    map[int]time.Duration // when the subscriber first finished with a number: PUBACK or PUBCOMP written
	first     [3][]int              // per delivered QoS: numbers in the order of their first delivery

	publishes    int        // PUBLISH packets received
	redeliveries int        // QoS 2 re-deliveries of a message awaiting PUBREL (allowed)
	strayPubrels int        // PUBREL for a packet id not awaiting one (allowed after a crash: answered with PUBCOMP)
	dups1        []crashDup // QoS 1 numbers received as new more than once (allowed)
	dups2        []crashDup // QoS 2 numbers received as new more than once (a D4 violation)
	problems     []string

	extra    map[string][]crashRecv // level 5: deliveries on the topics of crash5_test.go, by topic
	extraRel map[uint16]string      // ... and their QoS 2 exchanges awaiting PUBREL: packet id -> topic
}

func newCrashSubscriber(name, id string, slow bool, t0 time.Time) *crashSubscriber {
	return &crashSubscriber{
		name: name, id: id, slow: slow, t0: t0, filter: crashFilter,
		awaitRel:  make(map[uint16]int),
		completed: make(map[int]bool),
		recv:      make(map[int][]crashRecv),
		doneAt:    make(map[int]time.Duration),
		extra:     make(map[string][]crashRecv),
		extraRel:  make(map[uint16]string),
	}
}

// crashDup is a number a subscriber received as new more than once, with its history.
type crashDup struct {
	num  int
	what string
}

// crashDupReport renders dups with the publisher's history of each, which tells whether the copy
// came from P re-sending a message the broker had already routed (inbound de-duplication) or
// from the broker re-delivering on its own (outbound state).
func crashDupReport(dups []crashDup, p *crashPublisher, k int) (report string, resent int) {
	lines := make([]string, len(dups))
	for i, d := range dups {
		lines[i] = d.what + "; publisher: " + p.describe(d.num)
		if len(p.sends[d.num]) > 1 {
			resent++
		}
	}
	return crashSample(lines, k), resent
}

// crashDrain tells a subscriber when it has drained: every wanted number received, and at level
// 5 a message on every topic of extra, no QoS 2 exchange open, and nothing received for quiet.
type crashDrain struct {
	want     map[int]bool
	extra    []string
	quiet    time.Duration
	deadline time.Time
}

// drained reports whether s has everything d waits for, and no QoS 2 exchange open.
func (d *crashDrain) drained(s *crashSubscriber) bool {
	for _, topic := range d.extra {
		if len(s.extra[topic]) == 0 {
			return false
		}
	}
	return len(s.awaitRel) == 0 && len(s.extraRel) == 0 && len(s.missing(d.want)) == 0
}

// serve receives on one connection until it ends or, with drain, until drained (nil) or the
// drain deadline passes (an error).
func (s *crashSubscriber) serve(cc *crashConn, drain *crashDrain) error {
	var tick <-chan time.Time
	if drain != nil {
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		tick = tk.C
	}
	last := time.Now()
	for {
		select {
		case pk := <-cc.in:
			if pk.err != nil {
				return pk.err
			}
			last = time.Now()
			if err := s.handle(cc, pk.p); err != nil {
				return err
			}
			if s.slow && s.publishes%crashSlowEvery == 0 {
				time.Sleep(crashSlowSleep) // paces the slow subscriber's reading
			}
		case now := <-tick:
			if now.Sub(last) >= drain.quiet && drain.drained(s) {
				return nil
			}
			if stalled := now.Sub(last); stalled >= crashDrainStall {
				return fmt.Errorf("%s: nothing received for %v with %d wanted numbers missing and %d QoS 2 exchanges open",
					s.name, stalled.Round(time.Millisecond), len(s.missing(drain.want)), len(s.awaitRel)+len(s.extraRel))
			}
			if now.After(drain.deadline) {
				return fmt.Errorf("%s: not drained by the deadline: %d wanted numbers missing, %d QoS 2 exchanges open",
					s.name, len(s.missing(drain.want)), len(s.awaitRel)+len(s.extraRel))
			}
		}
	}
}

func (s *crashSubscriber) handle(cc *crashConn, pk codec.Packet) error {
	switch m := pk.(type) {
	case *codec.Publish:
		return s.handlePublish(cc, m)
	case *codec.Pubrel:
		n, ok := s.awaitRel[m.PacketID]
		if ok {
			delete(s.awaitRel, m.PacketID)
			s.completed[n] = true
		} else if _, extra := s.extraRel[m.PacketID]; extra {
			delete(s.extraRel, m.PacketID)
		} else {
			s.strayPubrels++
		}
		err := cc.send(&codec.Pubcomp{PacketID: m.PacketID}) // [MQTT-4.3.3-2]
		if ok && err == nil {
			s.done(n)
		}
		return err
	case *codec.Disconnect:
		return crashDisconnect(m)
	default:
		s.problems = append(s.problems, fmt.Sprintf("run %d: unexpected %s", cc.run, mqtttest.String(pk)))
	}
	return nil
}

// handlePublish records a PUBLISH and acknowledges it (after recording: a message counts as
// received when it arrives, whether or not the acknowledgement reaches the broker).
func (s *crashSubscriber) handlePublish(cc *crashConn, m *codec.Publish) error {
	if cc.level == codec.Level5 {
		s.resolveAlias(cc, m)
		if strings.HasPrefix(m.Topic, crash5ExtraRoot) {
			s.recordExtra(cc, m)
			if m.QoS == 2 {
				return cc.send(&codec.Pubrec{PacketID: m.PacketID})
			}
			return cc.send(&codec.Puback{PacketID: m.PacketID})
		}
	}
	switch m.QoS {
	case 1:
		s.record(cc, m)
		err := cc.send(&codec.Puback{PacketID: m.PacketID}) // [MQTT-4.3.2-2]
		if n, perr := strconv.Atoi(string(m.Payload)); err == nil && perr == nil {
			s.done(n)
		}
		return err
	case 2:
		s.record(cc, m)
		return cc.send(&codec.Pubrec{PacketID: m.PacketID}) // [MQTT-4.3.3-2]
	}
	s.record(cc, m)
	return nil
}

// done records that the subscriber has written its last packet of n's exchange, after which the
// broker may forget n for this session.
func (s *crashSubscriber) done(n int) {
	if _, ok := s.doneAt[n]; !ok {
		s.doneAt[n] = time.Since(s.t0)
	}
}

func (s *crashSubscriber) record(cc *crashConn, m *codec.Publish) {
	s.publishes++
	n, err := strconv.Atoi(string(m.Payload))
	if err != nil || n <= 0 || m.Topic != crashTopic(cc.level, n) {
		s.problems = append(s.problems, fmt.Sprintf("run %d: PUBLISH with topic %q and payload %q, not one of ours", cc.run, m.Topic, m.Payload))
		return
	}
	if cc.level == codec.Level5 {
		for _, p := range crash5Check(m.Props, n, s.v5.subID) {
			s.problems = append(s.problems, fmt.Sprintf("run %d: message %d (dup=%v): %s", cc.run, n, m.Dup, p))
		}
	}
	if want := min(s.qos.of(n), 2); m.QoS != want { // granted QoS 2: delivered at min(published, granted)
		s.problems = append(s.problems, fmt.Sprintf("run %d: message %d delivered at QoS %d, want %d [MQTT-3.8.4-6]", cc.run, n, m.QoS, want))
	}
	if m.Retain {
		s.problems = append(s.problems, fmt.Sprintf("run %d: message %d delivered with RETAIN set [MQTT-3.3.1-9]", cc.run, n))
	}
	r := crashRecv{run: cc.run, pid: m.PacketID, qos: m.QoS, dup: m.Dup, at: time.Since(s.t0), new: true}
	if m.QoS == 2 {
		if topic, ok := s.extraRel[m.PacketID]; ok {
			s.problems = append(s.problems, fmt.Sprintf("run %d: packet id %d reused for message %d while the message on %s still awaits PUBREL [MQTT-2.3.1-2]", cc.run, m.PacketID, n, topic))
			delete(s.extraRel, m.PacketID)
		}
		if prev, ok := s.awaitRel[m.PacketID]; ok {
			// Still awaiting PUBREL for this packet identifier: a re-delivery, not a new message
			// (method B). The broker must have set DUP [MQTT-3.3.1-1] and must not have reused the
			// identifier for another message [MQTT-2.3.1-2].
			r.new = false
			s.redeliveries++
			if prev != n {
				s.problems = append(s.problems, fmt.Sprintf("run %d: packet id %d reused for message %d while message %d still awaits PUBREL [MQTT-2.3.1-2]", cc.run, m.PacketID, n, prev))
				r.new = true
			} else if !m.Dup {
				s.problems = append(s.problems, fmt.Sprintf("run %d: message %d re-delivered on packet id %d without DUP [MQTT-3.3.1-1]", cc.run, n, m.PacketID))
			}
		}
		s.awaitRel[m.PacketID] = n
	}
	prev := s.recv[n]
	s.recv[n] = append(prev, r)
	if !r.new {
		return
	}
	news := 0
	for _, p := range prev {
		if p.new {
			news++
		}
	}
	if news == 0 {
		s.first[m.QoS] = append(s.first[m.QoS], n)
		return
	}
	what := fmt.Sprintf("%d: received as new %d times: %s", n, news+1, s.describe(n))
	if m.QoS == 2 {
		if s.completed[n] {
			what += " (the receiver had completed the first exchange: PUBCOMP sent)"
		} else {
			what += fmt.Sprintf(" (the first exchange, on packet id %d, was still open and this came on packet id %d)", prev[0].pid, m.PacketID)
		}
		s.dups2 = append(s.dups2, crashDup{n, what})
	} else {
		s.dups1 = append(s.dups1, crashDup{n, what})
	}
}

// missing returns the numbers of want this subscriber never received, in order.
func (s *crashSubscriber) missing(want map[int]bool) []int {
	var out []int
	for n := range want {
		if len(s.recv[n]) == 0 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// distinct is how many different numbers were received.
func (s *crashSubscriber) distinct() int { return len(s.recv) }

// describe is n's delivery history, for failure messages.
func (s *crashSubscriber) describe(n int) string {
	rs := s.recv[n]
	if len(rs) == 0 {
		return "never received"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("[run %d pid %d QoS %d dup=%v new=%v at %v]", r.run, r.pid, r.qos, r.dup, r.new, r.at.Round(time.Millisecond))
	}
	return strings.Join(parts, " ")
}

// orderViolations checks, per delivered QoS, that first deliveries come in increasing number
// order, excusing a number the publisher re-sent in a later run than the larger number's first
// transmission (the broker may then have received it, for the first time, after the larger one).
func (s *crashSubscriber) orderViolations(p *crashPublisher) []string {
	var out []string
	for qos, seq := range s.first {
		maxSoFar := 0
		for _, n := range seq {
			if n > maxSoFar {
				maxSoFar = n
				continue
			}
			if len(p.sends[n]) == 0 || len(p.sends[maxSoFar]) == 0 {
				continue // not ours: reported as a problem already
			}
			_, lastN := p.sentRuns(n)
			firstMax, _ := p.sentRuns(maxSoFar)
			if lastN > firstMax {
				continue
			}
			out = append(out, fmt.Sprintf("QoS %d stream: %d first delivered %s, after %d first delivered %s; publisher: %s; %s",
				qos, n, s.firstOf(n), maxSoFar, s.firstOf(maxSoFar), p.describe(n), p.describe(maxSoFar)))
		}
	}
	return out
}

func (s *crashSubscriber) firstOf(n int) string {
	r := s.recv[n][0]
	return fmt.Sprintf("[run %d pid %d dup=%v at %v]", r.run, r.pid, r.dup, r.at.Round(time.Millisecond))
}

// neighbours describes what the subscriber received of the numbers of n's QoS stream just
// around n, for failure messages.
func (s *crashSubscriber) neighbours(n int) string {
	var parts []string
	for _, k := range []int{n - 4, n - 2, n + 2, n + 4} {
		if k > 0 {
			parts = append(parts, fmt.Sprintf("%d: %s", k, s.describe(k)))
		}
	}
	return strings.Join(parts, "; ")
}

// ---- broker log ----

// crashLogTail returns the last lines (at most max) of the broker log of one run, given the
// offsets at which each run's log begins.
func crashLogTail(log string, starts []int, run, max int) string {
	return crashLogLines(log, starts, run, max, false)
}

// crashLogHead is crashLogTail for the first lines (start-up and recovery).
func crashLogHead(log string, starts []int, run, max int) string {
	return crashLogLines(log, starts, run, max, true)
}

func crashLogLines(log string, starts []int, run, max int, head bool) string {
	if run < 0 || run >= len(starts) {
		return ""
	}
	end := len(log)
	if run+1 < len(starts) {
		end = starts[run+1]
	}
	lines := strings.Split(strings.TrimRight(log[starts[run]:end], "\n"), "\n")
	if head && len(lines) > max {
		lines = append(lines[:max:max], fmt.Sprintf("... (%d later lines)", len(lines)-max))
	} else if len(lines) > max {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-max)}, lines[len(lines)-max:]...)
	}
	return strings.Join(lines, "\n")
}

// crashSample returns at most k items of list, with a count of the rest.
func crashSample(list []string, k int) string {
	if len(list) <= k {
		return strings.Join(list, "\n  ")
	}
	return strings.Join(list[:k], "\n  ") + fmt.Sprintf("\n  ... and %d more", len(list)-k)
}
