package test

// Bridges across outages (issue 16): what one end acknowledged reaches the other end whatever
// happens to the link, to the remote, and to the local broker (kill -9, power loss).

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

func bridgeOutTopic(int) string { return "edge1/sensors/x" }

// TestBridgeOutageNothingLost is the outage test: R is stopped while 10,000 QoS 1
// messages are published to L, which acknowledges them meanwhile and is killed -9 once and
// restarted; R is started again, and all 10,000 reach the persistent subscriber on R.
func TestBridgeOutageNothingLost(t *testing.T) {
	const n = 10000
	r := bridgeRemote(t)
	bridgeSubscribe(t, r.Addr, "remote-sub", 1, "edge1/sensors/#")
	l := bridgeLocal(t, r.Addr, bridgeOutTopics...)
	start := time.Now()
	p := newBridgePub(t, l.Addr, "local-pub", "sensors/x")
	p.publish(n, 1000)
	r.Stop()
	down := time.Now()
	p.publish(n, 5000)
	l.Kill()
	from := len(l.Log())
	l.Start()
	p.connect(l.Addr)
	p.publish(n, n)
	// A few seconds of outage, counted in the restarted L's reconnect attempts (100 ms doubling).
	mqtttest.Eventually(t, bridgeStall, "5 failed reconnects of the bridge", func() bool {
		return strings.Count(l.Log()[from:], "bridge could not connect") >= 5
	})
	r.Start()
	t.Logf("R was down %v while L acknowledged %d messages and was killed once", time.Since(down).Round(time.Millisecond), n-1000)
	got := bridgeDrain(t, r.Addr, "remote-sub", n, bridgeOutTopic)
	_, dups := bridgeCheck(t, got, 1, n, "remote subscriber")
	t.Logf("%d messages, %d duplicates, %v in all", n, dups, time.Since(start).Round(time.Millisecond))
}

// TestBridgeOutageCycles: 20 cycles of publishing to L and killing L -9 at a random moment with
// messages in flight on both sides of it; R is down from the 8th to the 13th cycle. No message of
// any cycle is lost.
func TestBridgeOutageCycles(t *testing.T) {
	const cycles, per = 20, 300
	r := bridgeRemote(t)
	bridgeSubscribe(t, r.Addr, "remote-sub", 1, "edge1/sensors/#")
	l := bridgeLocal(t, r.Addr, bridgeOutTopics...)
	start := time.Now()
	p := newBridgePub(t, l.Addr, "local-pub", "sensors/x")
	for c := range cycles {
		switch c {
		case 8:
			r.Kill()
		case 13:
			r.Start()
		}
		last := (c + 1) * per
		p.publish(last, c*per+per/4+rand.IntN(per/2))
		l.Kill()
		l.Start()
		p.connect(l.Addr)
		p.publish(last, last)
	}
	got := bridgeDrain(t, r.Addr, "remote-sub", cycles*per, bridgeOutTopic)
	var dups int
	for c := range cycles {
		_, d := bridgeCheck(t, got, c*per+1, (c+1)*per, "cycle "+strconv.Itoa(c))
		dups += d
	}
	t.Logf("%d kill cycles of L, %d messages, %d duplicates, %v", cycles, cycles*per, dups, time.Since(start).Round(time.Millisecond))
}

// TestBridgeInOutageNothingLost: direction in. R is killed and restarted mid-way and L is killed
// -9 once; every message R acknowledged to its publisher reaches L's persistent subscriber.
func TestBridgeInOutageNothingLost(t *testing.T) {
	const n = 5000
	r := bridgeRemote(t)
	l := bridgeLocal(t, r.Addr, bridgeTopic{"cmd/#", "in", "edge1/", 1})
	// The bridge's subscription on R must be there before R acknowledges anything to route.
	lsub := mqtttest.Dial(t, l.Addr)
	lsub.MustConnect("local-sub", false)
	lsub.Subscribe(1, 1, "cmd/#")
	lw := bridgeWatch(lsub)
	probe := mqtttest.Dial(t, r.Addr)
	probe.MustConnect("remote-probe", true)
	bridgeProbe(t, probe, "edge1/cmd/probe", lw, "cmd/probe")
	lsub.Send(&codec.Disconnect{})
	lsub.Conn.Close()

	start := time.Now()
	p := newBridgePub(t, r.Addr, "remote-pub", "edge1/cmd/n")
	p.publish(n, 1500)
	r.Kill()
	r.Start()
	p.connect(r.Addr)
	p.publish(n, 3000)
	l.Kill()
	l.Start()
	p.publish(n, n)
	got := bridgeDrain(t, l.Addr, "local-sub", n, func(int) string { return "cmd/n" })
	_, dups := bridgeCheck(t, got, 1, n, "local subscriber")
	t.Logf("%d messages, %d duplicates, %v", n, dups, time.Since(start).Round(time.Millisecond))
}

// TestBridgePowerCutUplinkDown: L on the power-cut file system, the uplink down: L acknowledges
// 2,000 QoS 1 messages (and more), the power is cut, L and then R start again, and every message
// L acknowledged reaches the persistent subscriber on R. Three cycles.
func TestBridgePowerCutUplinkDown(t *testing.T) {
	const cycles = 3
	r := bridgeRemote(t)
	bridgeSubscribe(t, r.Addr, "remote-sub", 1, "edge1/faultfs/#")
	l, cut := powerCutBroker(t, BrokerConfig{Durability: "sync", Extra: bridgeTOML(r.Addr, bridgeTopic{"faultfs/#", "out", "edge1/", 1})})
	acked := 0
	for cycle := range cycles {
		r.Stop()
		pub := faultfsPublish(t, l.Addr, cycle*100000)
		mqtttest.Eventually(t, 60*time.Second, "2,000 PUBACKs", func() bool { return len(pub.ackedNumbers()) >= 2000 })
		cut(l)
		<-pub.done
		want := pub.ackedNumbers()
		acked += len(want)
		l.Start()
		r.Start()
		faultfsDrain(t, r.Addr, "remote-sub", want).Send(&codec.Disconnect{})
		t.Logf("cycle %d: %d acknowledged before the cut, %d written", cycle, len(want), pub.started.Load())
	}
	t.Logf("%d power cuts of L with the uplink down, %d acknowledged messages, none lost", cycles, acked)
}

// TestBridgeQoS2ExactlyOnceAcrossRestarts: a QoS 2 out topic. L holds 3,000 QoS 2 messages for the
// bridge while R is down, then forwards them while L and R are killed -9 in turn, 10 times, each
// time once the queue has shrunk by another eleventh: "QoS 2 outbound state is stored, so a
// restart of either side neither loses nor duplicates a QoS 2 message" — each reaches R's
// persistent QoS 2 subscriber exactly once.
func TestBridgeQoS2ExactlyOnceAcrossRestarts(t *testing.T) {
	const n, kills = 3000, 10
	r := bridgeRemote(t)
	bridgeSubscribe(t, r.Addr, "remote-sub", 2, "edge1/sensors/#")
	admin := bridgeFreeAddr(t) // the same after every restart of L
	l := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf("[admin]\naddress = %q\ntoken = %q\nsys_interval = \"0s\"\n", admin, opsToken) +
		bridgeTOML(r.Addr, bridgeTopic{"sensors/#", "out", "edge1/", 2})})
	// The admin listener comes up after the MQTT one that Start waits for.
	adminUp := func(from int) {
		t.Helper()
		if _, ok := l.logLine(from, 20*time.Second, func(line string) bool { return strings.Contains(line, `"admin listening"`) }); !ok {
			t.Fatal("no admin listener within 20 s")
		}
	}
	adminUp(0)
	queued := func() float64 {
		return opsScrape(t, "http://"+admin)[`holdfast_bridge_queued_messages{bridge="`+bridgeName+`"}`]
	}
	r.Stop()
	p := newBridgePub(t, l.Addr, "local-pub", "sensors/x")
	p.qos = 2
	p.publish(n, n)
	if q := queued(); q != n {
		t.Errorf("holdfast_bridge_queued_messages %v with the link down, want %d", q, n)
	}

	r.Start()
	var stake []float64 // the queue's length at each kill
	for k := range kills {
		below := float64(n - (k+1)*n/(kills+1))
		var q float64
		mqtttest.Eventually(t, bridgeStall, fmt.Sprintf("the bridge's queue at %v or less", below), func() bool { q = queued(); return q <= below })
		stake = append(stake, q)
		if k%2 == 0 {
			l.Kill()
			from := len(l.Log())
			l.Start()
			adminUp(from)
		} else {
			r.Kill()
			r.Start()
		}
	}
	mqtttest.Eventually(t, bridgeStall, "the bridge's queue empty", func() bool { return queued() == 0 })
	// R delivers its subscriber's queue in order: a copy stored after the marker cannot come.
	m := mqtttest.Dial(t, r.Addr)
	m.MustConnect("marker", true)
	m.Send(&codec.Publish{QoS: 1, Topic: bridgeOutTopic(n + 1), PacketID: 1, Payload: []byte(strconv.Itoa(n + 1))})
	mqtttest.Expect[*codec.Puback](m)
	got := bridgeDrain(t, r.Addr, "remote-sub", n+1, bridgeOutTopic)
	_, dups := bridgeCheck(t, got, 1, n+1, "remote subscriber")
	if dups > 0 {
		t.Errorf("%d QoS 2 messages arrived twice", dups)
	}
	t.Logf("queue lengths at the %d kills: %v", kills, stake)
}
