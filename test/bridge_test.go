package test

// Store-and-forward bridges (issue 16), black-box: a local holdfast L whose [[bridge]] connects it
// to a remote R (another holdfast, or Debian's mosquitto) on a fixed loopback port, so that R can
// be stopped and started again at the address L's configuration names.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/internal/syncbuf"
)

const (
	bridgeWindow = 32               // the publisher's in-flight window
	bridgeStall  = 30 * time.Second // a drain or wait receiving nothing this long has failed
	bridgeName   = "cloud"
)

// bridgeTopic is one [[bridge.topic]] table, without a local prefix.
type bridgeTopic struct {
	pattern, direction, remotePrefix string
	qos                              byte
}

// bridgeTOML is L's [[bridge]] section to the remote at addr. The first reconnect comes after
// 100 ms, so that a test does not wait long for the link once the remote is back.
func bridgeTOML(addr string, topics ...bridgeTopic) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[bridge]]\nname = %q\naddress = %q\nclean_session = false\nkeepalive = \"10s\"\nrestart_timeout = \"100ms\"\nprotocol = \"3.1.1\"\n", bridgeName, addr)
	for _, tp := range topics {
		fmt.Fprintf(&b, "  [[bridge.topic]]\n  pattern = %q\n  direction = %q\n  qos = %d\n  local_prefix = \"\"\n  remote_prefix = %q\n", tp.pattern, tp.direction, tp.qos, tp.remotePrefix)
	}
	return b.String()
}

// bridgeFreeAddr returns a loopback address with a port that was free a moment ago.
func bridgeFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// bridgeRemote starts a holdfast R that listens at the same address after every restart.
func bridgeRemote(t *testing.T) *Broker {
	t.Helper()
	return StartBroker(t, BrokerConfig{Listen: bridgeFreeAddr(t)})
}

// bridgeLocal starts L with a bridge to the remote at addr.
func bridgeLocal(t *testing.T, addr string, topics ...bridgeTopic) *Broker {
	t.Helper()
	return StartBroker(t, BrokerConfig{Extra: bridgeTOML(addr, topics...)})
}

// bridgeMosquitto runs Debian's mosquitto on a free loopback port, with extra lines of
// configuration, until the test ends and returns its address.
func bridgeMosquitto(t *testing.T, extra string) string {
	t.Helper()
	bin := needTool(t, "mosquitto", "mosquitto")
	addr := bridgeFreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	// max_queued_messages 0: no limit, where mosquitto's default (1000) drops what an offline
	// subscriber is sent beyond it.
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nlog_dest stderr\n%s", port, extra)
	if os.Getuid() == 0 {
		conf += "user root\n" // else it drops to user mosquitto, who cannot read t.TempDir()
	}
	path := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-c", path)
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", stderr.String())
		}
	})
	var err error
	if !mqtttest.Within(10*time.Second, func() bool {
		var c net.Conn
		if c, err = net.Dial("tcp", addr); err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("mosquitto did not listen on %s: %v\n%s", addr, err, stderr.String())
	}
	return addr
}

// bridgeMosquittoTOML is a mosquitto bridge section like bridgeTOML's (a first reconnect after 1 s,
// mosquitto's shortest).
func bridgeMosquittoTOML(addr string, topics ...bridgeTopic) string {
	var b strings.Builder
	fmt.Fprintf(&b, "connection %s\naddress %s\ncleansession false\ntry_private true\nbridge_protocol_version mqttv311\nrestart_timeout 1\nnotifications false\n", bridgeName, addr)
	for _, tp := range topics {
		fmt.Fprintf(&b, "topic %s %s %d \"\" %s\n", tp.pattern, tp.direction, tp.qos, tp.remotePrefix)
	}
	return b.String()
}

// bridgeSubscribe leaves a persistent session id on addr subscribed to filter at qos, offline.
func bridgeSubscribe(t *testing.T, addr, id string, qos byte, filter string) {
	t.Helper()
	c := mqtttest.Dial(t, addr)
	c.MustConnect(id, false)
	c.Subscribe(1, qos, filter)
	c.Send(&codec.Disconnect{})
	c.ExpectClosed()
}

// bridgePub publishes numbered QoS 1 (or 2) messages (the payload is the number) to one topic
// with a window, on the test goroutine; after a reconnect it sends again what was not
// acknowledged (PUBACK, PUBCOMP).
type bridgePub struct {
	t     *testing.T
	id    string
	topic string
	qos   byte
	c     *mqtttest.Client
	next  int            // the next number never sent
	out   map[uint16]int // in flight on c: packet identifier -> number
	again []int          // numbers whose connection ended before their PUBACK
	acked map[int]bool
	pid   uint16
}

func newBridgePub(t *testing.T, addr, id, topic string) *bridgePub {
	p := &bridgePub{t: t, id: id, topic: topic, qos: 1, next: 1, acked: map[int]bool{}}
	p.connect(addr)
	return p
}

// connect connects afresh, retrying the dial while the broker starts.
func (p *bridgePub) connect(addr string) {
	p.t.Helper()
	if p.c != nil {
		p.c.Conn.Close()
	}
	for _, n := range p.out {
		p.again = append(p.again, n)
	}
	slices.Sort(p.again)
	p.out = map[uint16]int{}
	var err error
	if !mqtttest.Within(20*time.Second, func() bool { p.c, err = mqtttest.TryDial(p.t, "", addr); return err == nil }) {
		p.t.Fatalf("%s: %v", p.id, err)
	}
	p.c.MustConnect(p.id, true)
}

// publish sends the numbers up to last and returns once until of them are acknowledged, leaving
// the rest in flight.
func (p *bridgePub) publish(last, until int) {
	p.t.Helper()
	for len(p.acked) < until {
		for len(p.out) < bridgeWindow && (len(p.again) > 0 || p.next <= last) {
			n := p.next
			if len(p.again) > 0 {
				n, p.again = p.again[0], p.again[1:]
			} else {
				p.next++
			}
			p.pid = p.pid%65535 + 1
			p.out[p.pid] = n
			p.c.Send(&codec.Publish{QoS: p.qos, Topic: p.topic, PacketID: p.pid, Payload: []byte(strconv.Itoa(n))})
		}
		pk, err := p.c.TryRead(bridgeStall)
		if err != nil {
			p.t.Fatalf("%s: %d of %d acknowledged: %v", p.id, len(p.acked), until, err)
		}
		var pid uint16
		switch ack := pk.(type) {
		case *codec.Pubrec:
			p.c.Send(&codec.Pubrel{PacketID: ack.PacketID})
			continue
		case *codec.Puback:
			pid = ack.PacketID
		case *codec.Pubcomp:
			pid = ack.PacketID
		default:
			p.t.Fatalf("%s: got %s, want an acknowledgement", p.id, mqtttest.String(pk))
		}
		n, ok := p.out[pid]
		if !ok {
			p.t.Fatalf("%s: %s for packet identifier %d, not in flight", p.id, pk.Type(), pid)
		}
		delete(p.out, pid)
		p.acked[n] = true
	}
}

// bridgeDrain connects the persistent subscriber id to addr (its session must be there) and
// acknowledges what it is sent until every number up to last has arrived on topic(n), or nothing
// has come for bridgeStall. It returns how many times each number arrived (a QoS 2 PUBLISH sent
// again before its PUBREL counts once); probes are left out.
func bridgeDrain(t *testing.T, addr, id string, last int, topic func(n int) string) map[int]int {
	t.Helper()
	c := mqtttest.Dial(t, addr)
	if !c.MustConnect(id, false) {
		t.Fatalf("%s: session-present is false", id)
	}
	got := map[int]int{}
	received := map[uint16]bool{} // QoS 2: PUBREC sent, PUBREL not yet received
	for len(got) < last {
		pk, err := c.TryRead(bridgeStall)
		if err != nil {
			t.Logf("%s: %d of %d numbers arrived, then: %v", id, len(got), last, err)
			break
		}
		if rel, ok := pk.(*codec.Pubrel); ok {
			delete(received, rel.PacketID)
			c.Send(&codec.Pubcomp{PacketID: rel.PacketID})
			continue
		}
		pub, ok := pk.(*codec.Publish)
		if !ok {
			continue
		}
		switch pub.QoS {
		case 1:
			c.Send(&codec.Puback{PacketID: pub.PacketID})
		case 2:
			c.Send(&codec.Pubrec{PacketID: pub.PacketID})
			if received[pub.PacketID] {
				continue
			}
			received[pub.PacketID] = true
		}
		if strings.HasSuffix(pub.Topic, "/probe") {
			continue
		}
		n, err := strconv.Atoi(string(pub.Payload))
		if err != nil || n < 1 || n > last || pub.Topic != topic(n) {
			t.Errorf("%s: unexpected PUBLISH to %q: %q", id, pub.Topic, pub.Payload)
			continue
		}
		got[n]++
	}
	c.Send(&codec.Disconnect{})
	return got
}

// bridgeCheck fails the test for every number in [from, to] that never arrived, and returns how
// many were lost and how many arrived more than once (which at QoS 1 is allowed).
func bridgeCheck(t *testing.T, got map[int]int, from, to int, what string) (lost, dups int) {
	t.Helper()
	var some []int
	for n := from; n <= to; n++ {
		switch k := got[n]; {
		case k == 0:
			if lost++; len(some) < 5 {
				some = append(some, n)
			}
		case k > 1:
			dups += k - 1
		}
	}
	if lost > 0 {
		t.Errorf("%s: %d of %d messages lost, e.g. %v", what, lost, to-from+1, some)
	}
	return lost, dups
}

// bridgeWatcher reads a connection in a goroutine, acknowledging QoS 1 PUBLISHes, and hands the
// PUBLISHes on; the test goroutine counts them by topic as it waits.
type bridgeWatcher struct {
	ch   chan *codec.Publish
	seen map[string]int
}

func bridgeWatch(c *mqtttest.Client) *bridgeWatcher {
	w := &bridgeWatcher{ch: make(chan *codec.Publish, 64), seen: map[string]int{}}
	go func() {
		defer close(w.ch)
		for {
			pk, err := c.TryRead(time.Hour)
			if err != nil {
				return
			}
			if pub, ok := pk.(*codec.Publish); ok {
				if pub.QoS == 1 && c.Write(&codec.Puback{PacketID: pub.PacketID}) != nil {
					return
				}
				w.ch <- pub
			}
		}
	}()
	return w
}

// await waits for a PUBLISH to topic, counting all it reads.
func (w *bridgeWatcher) await(t *testing.T, topic string) *codec.Publish {
	t.Helper()
	timeout := time.After(bridgeStall)
	for {
		select {
		case pub, ok := <-w.ch:
			if !ok {
				t.Fatalf("the connection ended while waiting for %q", topic)
			}
			if w.seen[pub.Topic]++; pub.Topic == topic {
				return pub
			}
		case <-timeout:
			t.Fatalf("no PUBLISH to %q within %v (seen: %v)", topic, bridgeStall, w.seen)
		}
	}
}

// bridgeProbe publishes QoS 0 messages to remote on pub every 100 ms until one reaches w as local:
// the bridge has subscribed on the remote. Only probes (late ones of an earlier probe too) may
// arrive meanwhile.
func bridgeProbe(t *testing.T, pub *mqtttest.Client, remote string, w *bridgeWatcher, local string) {
	t.Helper()
	deadline := time.Now().Add(bridgeStall)
	for time.Now().Before(deadline) {
		pub.Send(&codec.Publish{Topic: remote, Payload: []byte("probe")})
		select {
		case p, ok := <-w.ch:
			if !ok {
				t.Fatal("the connection ended while probing the bridge")
			}
			if w.seen[p.Topic]++; p.Topic == local {
				return
			}
			if !strings.HasSuffix(p.Topic, "/probe") {
				t.Fatalf("got a PUBLISH to %q while probing the bridge", p.Topic)
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("no probe sent to %q reached %q within %v", remote, local, bridgeStall)
}

var bridgeOutTopics = []bridgeTopic{{"sensors/#", "out", "edge1/", 1}}

// TestBridgeOutHoldfastToHoldfast: out topic "sensors/#" with remote_prefix "edge1/" to another
// holdfast.
func TestBridgeOutHoldfastToHoldfast(t *testing.T) {
	r := bridgeRemote(t)
	bridgeOut(t, r.Addr, func() string { return bridgeLocal(t, r.Addr, bridgeOutTopics...).Addr })
}

// TestBridgeOutHoldfastToMosquitto: the same to Debian's mosquitto.
func TestBridgeOutHoldfastToMosquitto(t *testing.T) {
	r := bridgeMosquitto(t, "")
	bridgeOut(t, r, func() string { return bridgeLocal(t, r, bridgeOutTopics...).Addr })
}

// TestBridgeOutMosquittoToHoldfast: the same from a mosquitto bridge with try_private to holdfast.
func TestBridgeOutMosquittoToHoldfast(t *testing.T) {
	r := bridgeRemote(t)
	bridgeOut(t, r.Addr, func() string { return bridgeMosquitto(t, bridgeMosquittoTOML(r.Addr, bridgeOutTopics...)) })
}

// bridgeOut: once the remote has a persistent subscriber, startLocal starts L with the out
// bridge and returns its address; 1,000 QoS 1 messages published on L to sensors/x all reach a persistent subscriber
// on the remote at edge1/sensors/x, then one retained message to sensors/r; the retain flag is
// kept as published: on the remote edge1/sensors/r is retained and edge1/sensors/x is not.
func bridgeOut(t *testing.T, remote string, startLocal func() string) {
	const n = 1000
	bridgeSubscribe(t, remote, "remote-sub", 1, "edge1/sensors/#")
	local := startLocal()
	start := time.Now()
	p := newBridgePub(t, local, "local-pub", "sensors/x")
	p.publish(n, n)
	p.c.Send(&codec.Publish{QoS: 1, Retain: true, Topic: "sensors/r", PacketID: 1, Payload: []byte(strconv.Itoa(n + 1))})
	mqtttest.Expect[*codec.Puback](p.c)
	got := bridgeDrain(t, remote, "remote-sub", n+1, func(k int) string {
		if k == n+1 {
			return "edge1/sensors/r"
		}
		return "edge1/sensors/x"
	})
	_, dups := bridgeCheck(t, got, 1, n+1, "remote subscriber")
	t.Logf("%d messages across the bridge in %v, %d duplicates", n+1, time.Since(start).Round(time.Millisecond), dups)

	// A new subscription gets the retained messages right after the SUBACK, then its own marker.
	c := mqtttest.Dial(t, remote)
	c.MustConnect("retain-check", true)
	c.Subscribe(1, 1, "edge1/sensors/#")
	c.Send(&codec.Publish{Topic: "edge1/sensors/marker", Payload: []byte("m")})
	var retained []string
	for {
		pub := mqtttest.Expect[*codec.Publish](c)
		if pub.QoS == 1 {
			c.Send(&codec.Puback{PacketID: pub.PacketID})
		}
		if pub.Topic == "edge1/sensors/marker" {
			break
		}
		retained = append(retained, fmt.Sprintf("%s retain=%v %s", pub.Topic, pub.Retain, pub.Payload))
	}
	if want := []string{fmt.Sprintf("edge1/sensors/r retain=true %d", n+1)}; !slices.Equal(retained, want) {
		t.Errorf("retained on the remote: %q, want %q", retained, want)
	}
}

// TestBridgeInHoldfastToHoldfast: a publish on R to edge1/cmd/a reaches a subscriber of L at
// cmd/a (in topic "cmd/#", remote_prefix "edge1/"); and nothing loops: on a "both" topic a
// message published on L reaches R once and does not come back to L, and one published on R
// reaches L once and does not go back to R.
func TestBridgeInHoldfastToHoldfast(t *testing.T) {
	r := bridgeRemote(t)
	bridgeIn(t, bridgeLocal(t, r.Addr, bridgeInTopics...).Addr, r.Addr)
}

var bridgeInTopics = []bridgeTopic{{"cmd/#", "in", "edge1/", 1}, {"loop/#", "both", "edge1/", 1}}

// TestBridgeInHoldfastToMosquitto: the same with Debian's mosquitto as the remote, which knows the
// bridge protocol level (try_private).
func TestBridgeInHoldfastToMosquitto(t *testing.T) {
	r := bridgeMosquitto(t, "")
	bridgeIn(t, bridgeLocal(t, r, bridgeInTopics...).Addr, r)
}

// TestBridgeInMosquittoToHoldfast: the same from a mosquitto bridge with try_private to holdfast,
// which must take it for a bridge and not send it back what it sent.
func TestBridgeInMosquittoToHoldfast(t *testing.T) {
	r := bridgeRemote(t)
	bridgeIn(t, bridgeMosquitto(t, bridgeMosquittoTOML(r.Addr, bridgeInTopics...)), r.Addr)
}

// bridgeIn runs TestBridgeInHoldfastToHoldfast's checks on a local broker bridged to remote with
// bridgeInTopics.
func bridgeIn(t *testing.T, local, remote string) {
	lsub := mqtttest.Dial(t, local)
	lsub.MustConnect("local-sub", true)
	lsub.Subscribe(1, 1, "cmd/#", "loop/#")
	lw := bridgeWatch(lsub)
	rsub := mqtttest.Dial(t, remote)
	rsub.MustConnect("remote-sub", true)
	rsub.Subscribe(1, 1, "edge1/loop/#")
	rw := bridgeWatch(rsub)
	rpub := mqtttest.Dial(t, remote)
	rpub.MustConnect("remote-pub", true)
	lpub := mqtttest.Dial(t, local)
	lpub.MustConnect("local-pub", true)

	bridgeProbe(t, rpub, "edge1/cmd/probe", lw, "cmd/probe")
	rpub.Send(&codec.Publish{QoS: 1, Topic: "edge1/cmd/a", PacketID: 1, Payload: []byte("a")})
	mqtttest.Expect[*codec.Puback](rpub)
	if got := lw.await(t, "cmd/a"); string(got.Payload) != "a" {
		t.Errorf("cmd/a on L carries %q, want %q", got.Payload, "a")
	}

	bridgeProbe(t, rpub, "edge1/loop/probe", lw, "loop/probe")
	lpub.Send(&codec.Publish{QoS: 1, Topic: "loop/1", PacketID: 1, Payload: []byte("1")})
	mqtttest.Expect[*codec.Puback](lpub)
	rw.await(t, "edge1/loop/1")
	// R sends the bridge what it routes in order, and L routes it in order: had loop/1 come back,
	// it would reach L's subscriber before a marker published on R after it reached R.
	rpub.Send(&codec.Publish{QoS: 1, Topic: "edge1/loop/marker", PacketID: 2, Payload: []byte("m")})
	mqtttest.Expect[*codec.Puback](rpub)
	lw.await(t, "loop/marker")
	// The same the other way round for the message that came in.
	lpub.Send(&codec.Publish{QoS: 1, Topic: "loop/marker2", PacketID: 2, Payload: []byte("m2")})
	mqtttest.Expect[*codec.Puback](lpub)
	rw.await(t, "edge1/loop/marker2")
	lw.await(t, "loop/marker2")
	rpub.Send(&codec.Publish{QoS: 1, Topic: "edge1/loop/marker3", PacketID: 3, Payload: []byte("m3")})
	mqtttest.Expect[*codec.Puback](rpub)
	lw.await(t, "loop/marker3")
	rw.await(t, "edge1/loop/marker3")

	for _, c := range []struct {
		w      *bridgeWatcher
		prefix string
	}{{lw, ""}, {rw, "edge1/"}} {
		for _, topic := range []string{"loop/1", "loop/marker", "loop/marker2"} {
			if k := c.w.seen[c.prefix+topic]; k != 1 {
				t.Errorf("%s%s arrived %d times, want once", c.prefix, topic, k)
			}
		}
	}
}

// TestBridgeLinkStateObservable: the link's state shows on L in $SYS/broker/connection/<name>/state
// (retained, 1 / 0) and in holdfast_bridge_connected, /readyz does not depend on it, and what L
// queued while the link was down is counted in holdfast_bridge_queued_messages, then in
// holdfast_bridge_sent_total and holdfast_bridge_acknowledged_total once the link is back.
func TestBridgeLinkStateObservable(t *testing.T) {
	const n = 100
	r := bridgeRemote(t)
	bridgeSubscribe(t, r.Addr, "remote-sub", 1, "edge1/sensors/#")
	l := StartBroker(t, BrokerConfig{Extra: opsAdminExtra("0s") + bridgeTOML(r.Addr, bridgeOutTopics...)})
	base := "http://" + opsAdminAddr(t, l)
	metric := func(name string) float64 { return opsScrape(t, base)[name+`{bridge="`+bridgeName+`"}`] }
	const stateTopic = "$SYS/broker/connection/" + bridgeName + "/state"
	live := mqtttest.Dial(t, l.Addr)
	live.MustConnect("state-live", true)
	live.Subscribe(1, 1, stateTopic)
	w := bridgeWatch(live)
	// state waits for the metric to say want, then checks that a new subscriber gets want as the
	// retained state and that the subscriber of all along was sent it too.
	state := func(want string) {
		t.Helper()
		mqtttest.Eventually(t, bridgeStall, "holdfast_bridge_connected "+want, func() bool {
			return strconv.FormatFloat(metric("holdfast_bridge_connected"), 'f', -1, 64) == want
		})
		c := mqtttest.Dial(t, l.Addr)
		c.MustConnect("state-new", true)
		c.Subscribe(1, 1, stateTopic)
		c.Send(&codec.Publish{Topic: "state/marker"}) // not subscribed: only to be answered after the retained
		c.Send(&codec.Pingreq{})
		var got []string
		for pk := c.Read(); pk.Type() != codec.TypePingresp; pk = c.Read() {
			if pub, ok := pk.(*codec.Publish); ok {
				got = append(got, fmt.Sprintf("%s retain=%v", pub.Payload, pub.Retain))
			}
		}
		c.Conn.Close()
		if wantRet := []string{want + " retain=true"}; !slices.Equal(got, wantRet) {
			t.Errorf("a new subscriber to %s got %q, want %q", stateTopic, got, wantRet)
		}
		timeout := time.After(mqtttest.Timeout)
		for {
			select {
			case pub := <-w.ch:
				if string(pub.Payload) != want {
					continue
				}
			case <-timeout:
				t.Errorf("the subscriber of all along was not sent %s %q within %v of the metric", stateTopic, want, mqtttest.Timeout)
			}
			return
		}
	}
	state("1")

	r.Stop()
	state("0")
	if code := opsStatus(t, base+"/readyz", ""); code != 200 {
		t.Errorf("/readyz with the uplink down: %d, want 200", code)
	}
	sent, acked := metric("holdfast_bridge_sent_total"), metric("holdfast_bridge_acknowledged_total")
	p := newBridgePub(t, l.Addr, "local-pub", "sensors/x")
	p.publish(n, n)
	if q := metric("holdfast_bridge_queued_messages"); q != n {
		t.Errorf("holdfast_bridge_queued_messages %v after %d PUBACKs with the link down, want %d", q, n, n)
	}

	r.Start()
	state("1")
	bridgeCheck(t, bridgeDrain(t, r.Addr, "remote-sub", n, bridgeOutTopic), 1, n, "remote subscriber")
	mqtttest.Eventually(t, bridgeStall, "the queue counted empty, and its messages sent and acknowledged", func() bool {
		m := opsScrape(t, base)
		label := `{bridge="` + bridgeName + `"}`
		return m["holdfast_bridge_queued_messages"+label] == 0 &&
			m["holdfast_bridge_sent_total"+label]-sent >= n && m["holdfast_bridge_acknowledged_total"+label]-acked >= n
	})
}

// TestBridgeQueueLimitAndQoS0WhileDown: with the uplink down, a bridge with max_queued_messages =
// 100 keeps the first 100 of 150 QoS 1 messages (the publisher is acknowledged for all, as with a
// session's limits) and drops the QoS 0 ones (queue_qos0 = false); once R is back, exactly those
// 100 reach R's subscriber, and nothing else before probes published on L after them.
func TestBridgeQueueLimitAndQoS0WhileDown(t *testing.T) {
	const limit, n = 100, 150
	r := bridgeRemote(t)
	bridgeSubscribe(t, r.Addr, "remote-sub", 1, "edge1/sensors/#")
	// Bridge keys go before the first [[bridge.topic]], which starts a table of its own.
	cfg := strings.Replace(bridgeTOML(r.Addr, bridgeOutTopics...), "  [[bridge.topic]]", fmt.Sprintf("max_queued_messages = %d\n  [[bridge.topic]]", limit), 1)
	l := StartBroker(t, BrokerConfig{Extra: cfg})
	if _, ok := l.logLine(0, bridgeStall, func(line string) bool { return strings.Contains(line, `"bridge connected"`) }); !ok {
		t.Fatal("the bridge did not connect")
	}
	from := len(l.Log())
	r.Stop()
	if _, ok := l.logLine(from, bridgeStall, func(line string) bool { return strings.Contains(line, `"bridge disconnected"`) }); !ok {
		t.Fatal("L did not see the link go down")
	}
	p := newBridgePub(t, l.Addr, "local-pub", "sensors/x")
	p.publish(n, n)
	for i := range 10 {
		p.c.Send(&codec.Publish{Topic: "sensors/q0", Payload: []byte(strconv.Itoa(i))})
	}

	r.Start()
	c := mqtttest.Dial(t, r.Addr)
	if !c.MustConnect("remote-sub", false) {
		t.Fatal("remote-sub: session-present is false")
	}
	w := bridgeWatch(c)
	got := map[int]int{}
	timeout := time.After(bridgeStall)
	for len(got) < limit {
		select {
		case pub, ok := <-w.ch:
			if !ok {
				t.Fatal("the remote subscriber's connection ended")
			}
			k, err := strconv.Atoi(string(pub.Payload))
			if pub.Topic != bridgeOutTopic(k) || err != nil || k < 1 || k > limit {
				t.Fatalf("R's subscriber got %q %q, want the numbers 1 to %d on %s", pub.Topic, pub.Payload, limit, bridgeOutTopic(0))
			}
			got[k]++
		case <-timeout:
			t.Fatalf("%d of the %d queued messages reached R within %v", len(got), limit, bridgeStall)
		}
	}
	bridgeProbe(t, p.c, "sensors/probe", w, "edge1/sensors/probe")
}
