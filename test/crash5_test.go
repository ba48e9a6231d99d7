package test

// What the crash scenario (crash_test.go) adds at protocol level 5 (issue 14), checked across
// every down:
//
//   - every client connects with Clean Start 0 and a Session Expiry Interval, and session-present
//     stays 1 (D3);
//   - P sends a User Property carrying the message's number, a Content Type, Correlation Data and
//     a long Message Expiry Interval with every message: each delivery must carry them unchanged
//     [MQTT-3.3.2-17] [MQTT-3.3.2-18], with what remains of the interval, never more than it
//     [MQTT-3.3.2-6], and the Subscription Identifier of the subscription it came through
//     [MQTT-3.3.4-3];
//   - P sets a topic alias with the first PUBLISH of each connection and sends the alias alone
//     after it; the subscribers accept aliases from the broker, which must set each one again on
//     every new connection before it uses it [MQTT-3.3.2-7];
//   - in every run X publishes a message with a 1 s Message Expiry Interval to S1 (offline): none
//     may reach S1, which comes back once every interval has passed, across the restarts in
//     between [MQTT-3.3.2-5]; a message without expiry on the same subscription, which must
//     arrive, shows that the subscription and its queue survived;
//   - in every run a client W with a will delayed 1 s is online at the down: S2 receives each
//     will once (at QoS 2, so a second copy is a second publication), neither lost nor published
//     again after a later restart.

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
	crash5Topic       = crashTopicRoot + "v5" // P's one topic at level 5, under crashFilter
	crash5Alias       = 1                     // P's topic alias for it
	crash5AliasMax    = 8                     // the Topic Alias Maximum every client offers the broker
	crash5Expiry      = 3600                  // P's Message Expiry Interval, seconds
	crash5ContentType = "text/plain; crash"
	crash5UserName    = "n" // P's User Property: the message's number
	crash5ExtraRoot   = "crash5x/"
	crash5ExpiryRoot  = crash5ExtraRoot + "expiry/"
	crash5Control     = crash5ExpiryRoot + "control" // X's message without expiry
	crash5WillRoot    = crash5ExtraRoot + "will/"
	crash5Short       = 1 // X's Message Expiry Interval, seconds
	crash5WillDelay   = 1 // W's Will Delay Interval, seconds
)

// crash5Subscription is what a subscriber subscribes to at level 5 besides crashFilter.
type crash5Subscription struct {
	subID   uint32 // the Subscription Identifier of its subscription to crashFilter
	extra   string // a filter of crash5ExtraRoot's topics
	extraID uint32 // ... and its Subscription Identifier
}

// crash5Props are the properties P publishes n with.
func crash5Props(n int) *codec.Properties {
	return &codec.Properties{
		MessageExpiry:   crash5Expiry,
		ContentType:     crash5ContentType,
		CorrelationData: crash5Correlation(n),
		User:            []codec.UserProperty{{Name: crash5UserName, Value: strconv.Itoa(n)}},
	}
}

func crash5Correlation(n int) []byte { return []byte("corr-" + strconv.Itoa(n)) }

// crash5Check returns what is wrong with the properties of a delivery of n through the
// subscription with identifier subID.
func crash5Check(g *codec.Properties, n int, subID uint32) []string {
	if g == nil {
		return []string{"no properties"}
	}
	var out []string
	if want := crash5Props(n).User; !slices.Equal(g.User, want) {
		out = append(out, fmt.Sprintf("User Properties %v, want %v [MQTT-3.3.2-17] [MQTT-3.3.2-18]", g.User, want))
	}
	if g.ContentType != crash5ContentType {
		out = append(out, fmt.Sprintf("Content Type %q, want %q", g.ContentType, crash5ContentType))
	}
	if want := crash5Correlation(n); !slices.Equal(g.CorrelationData, want) {
		out = append(out, fmt.Sprintf("Correlation Data %q, want %q", g.CorrelationData, want))
	}
	if g.MessageExpiry == 0 || g.MessageExpiry > crash5Expiry {
		out = append(out, fmt.Sprintf("Message Expiry Interval %d, want 1 to %d [MQTT-3.3.2-6]", g.MessageExpiry, crash5Expiry))
	}
	if !slices.Equal(g.SubscriptionIDs, []uint32{subID}) {
		out = append(out, fmt.Sprintf("Subscription Identifiers %v, want [%d] [MQTT-3.3.4-3]", g.SubscriptionIDs, subID))
	}
	return out
}

// resolveAlias replaces the topic alias of a PUBLISH from the broker by the topic it stands for
// on this connection, recording a problem when the broker had not set it on this connection.
func (s *crashSubscriber) resolveAlias(cc *crashConn, m *codec.Publish) {
	if m.Props == nil || m.Props.TopicAlias == 0 {
		return
	}
	a := m.Props.TopicAlias
	switch topic, ok := cc.aliasIn[a]; {
	case a > crash5AliasMax:
		s.problems = append(s.problems, fmt.Sprintf("run %d: topic alias %d above the Topic Alias Maximum %d the client sent", cc.run, a, crash5AliasMax))
	case m.Topic != "":
		if cc.aliasIn == nil {
			cc.aliasIn = make(map[uint16]string)
		}
		cc.aliasIn[a] = m.Topic
	case ok:
		m.Topic = topic
	default:
		s.problems = append(s.problems, fmt.Sprintf("run %d: PUBLISH with topic alias %d alone, which the broker had not set on this connection [MQTT-3.3.2-7]", cc.run, a))
	}
}

// recordExtra records a delivery on a topic of crash5ExtraRoot: an expiring message, the control
// message or a will. A QoS 2 re-delivery of one awaiting PUBREL is not counted as new.
func (s *crashSubscriber) recordExtra(cc *crashConn, m *codec.Publish) {
	s.publishes++
	r := crashRecv{run: cc.run, pid: m.PacketID, qos: m.QoS, dup: m.Dup, at: time.Since(s.t0), new: true}
	if !strings.HasPrefix(m.Topic, strings.TrimSuffix(s.v5.extra, "#")) {
		s.problems = append(s.problems, fmt.Sprintf("run %d: PUBLISH on %q, which %s did not subscribe to", cc.run, m.Topic, s.v5.extra))
	}
	if m.Props == nil || !slices.Equal(m.Props.SubscriptionIDs, []uint32{s.v5.extraID}) {
		s.problems = append(s.problems, fmt.Sprintf("run %d: PUBLISH on %q with properties %+v, want Subscription Identifier %d [MQTT-3.3.4-3]", cc.run, m.Topic, m.Props, s.v5.extraID))
	}
	if m.QoS == 2 {
		if n, ok := s.awaitRel[m.PacketID]; ok {
			s.problems = append(s.problems, fmt.Sprintf("run %d: packet id %d reused for %q while message %d still awaits PUBREL [MQTT-2.3.1-2]", cc.run, m.PacketID, m.Topic, n))
			delete(s.awaitRel, m.PacketID)
		}
		if prev, ok := s.extraRel[m.PacketID]; ok && prev == m.Topic {
			r.new = false
			s.redeliveries++
		}
		s.extraRel[m.PacketID] = m.Topic
	}
	s.extra[m.Topic] = append(s.extra[m.Topic], r)
}

// crash5News is how many times s received a message on topic as new.
func (s *crashSubscriber) crash5News(topic string) int {
	n := 0
	for _, r := range s.extra[topic] {
		if r.new {
			n++
		}
	}
	return n
}

// crash5Extras drives X and the W clients of one level-5 scenario.
type crash5Extras struct {
	short     []string  // the topics of X's acknowledged expiring messages, one per run
	lastShort time.Time // when the last one's PUBACK arrived
	wills     []string  // the will topics, one per run
	w         *crashConn
}

func crash5ShortTopic(run int) string { return crash5ExpiryRoot + "short-" + strconv.Itoa(run) }
func crash5WillTopic(run int) string  { return crash5WillRoot + strconv.Itoa(run) }

// startRun publishes X's expiring message of the run (in run 0 the control message too) and
// connects the run's W, which stays online until the down. connect connects X, checking D3 after
// the first run.
func (x *crash5Extras) startRun(t *testing.T, addr string, run int, connect func(name, id string, run int) *crashConn) {
	t.Helper()
	var c *crashConn
	if run == 0 {
		var sp bool
		if c, sp = crashConnect(t, addr, "crash-expiring-publisher", codec.Level5, run, nil); sp {
			t.Fatal("X: session-present = 1 on its very first connection")
		}
	} else {
		c = connect("X", "crash-expiring-publisher", run)
	}
	short := &codec.Properties{MessageExpiry: crash5Short}
	msgs := []*codec.Publish{{Topic: crash5ShortTopic(run), QoS: 1, PacketID: 1, Payload: []byte("expires"), Props: short}}
	if run == 0 {
		msgs = append(msgs, &codec.Publish{Topic: crash5Control, QoS: 1, PacketID: 2, Payload: []byte("control")})
	}
	for _, m := range msgs {
		c.c.Send(m)
		// Success, not 0x10 (no matching subscribers): S1's subscription is there.
		if a := mqtttest.Expect[*codec.Puback](c.c); a.PacketID != m.PacketID || a.Reason != codec.ReasonSuccess {
			t.Fatalf("run %d: X's PUBLISH on %s answered with %+v", run, m.Topic, a)
		}
	}
	x.short = append(x.short, crash5ShortTopic(run))
	x.lastShort = time.Now()
	c.c.Send(&codec.Disconnect{})
	c.c.ExpectClosed()
	c.close()

	will := &codec.Will{Topic: crash5WillTopic(run), Payload: []byte("will " + strconv.Itoa(run)), QoS: 2,
		Props: &codec.Properties{WillDelay: crash5WillDelay}}
	var sp bool
	if x.w, sp = crashConnect(t, addr, "crash-will-"+strconv.Itoa(run), codec.Level5, run, will); sp {
		t.Fatalf("run %d: W: session-present = 1 on its very first connection", run)
	}
	x.wills = append(x.wills, will.Topic)
}

// down closes the connection of the run's W, which the down has ended.
func (x *crash5Extras) down() {
	x.w.close()
}

// awaitExpiry returns once every expiring message's interval has passed, with a margin for
// the broker's whole seconds.
func (x *crash5Extras) awaitExpiry() {
	time.Sleep(time.Until(x.lastShort.Add(crash5Short*time.Second + 200*time.Millisecond))) // the passing of time is the event waited for
}

// report is the level-5 line of the scenario's log.
func (x *crash5Extras) report(p *crashPublisher, s1, s2 *crashSubscriber) string {
	willsOnce := 0
	for _, w := range x.wills {
		if s2.crash5News(w) == 1 {
			willsOnce++
		}
	}
	expired := 0
	for _, topic := range x.short {
		expired += len(s1.extra[topic])
	}
	return fmt.Sprintf("level 5: P set its topic alias %d times (once per connection); expiring messages acknowledged %d, delivered after their %d s %d; control message delivered %d times; wills received once %d of %d",
		p.aliasSets, len(x.short), crash5Short, expired, len(s1.extra[crash5Control]), willsOnce, len(x.wills))
}

// verdict returns what went wrong with the expiring messages and the wills.
func (x *crash5Extras) verdict(s1, s2 *crashSubscriber) []string {
	var out []string
	for _, topic := range x.short {
		if rs := s1.extra[topic]; len(rs) > 0 {
			out = append(out, fmt.Sprintf("%s: the message on %s was delivered %d times (first in run %d) after its %d s Message Expiry Interval had passed [MQTT-3.3.2-5]",
				s1.name, topic, len(rs), rs[0].run, crash5Short))
		}
	}
	if len(s1.extra[crash5Control]) == 0 {
		out = append(out, fmt.Sprintf("%s: X's message without expiry never arrived: the subscription to %s or its queue did not survive", s1.name, s1.v5.extra))
	}
	for _, w := range x.wills {
		if n := s2.crash5News(w); n != 1 {
			out = append(out, fmt.Sprintf("%s: the will on %s received as new %d times, want once: %v", s2.name, w, n, s2.extra[w]))
		}
	}
	return out
}
