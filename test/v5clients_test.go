package test

// Third-party MQTT 5 clients against the real binary (issue 14, "How it is checked"): Debian's
// mosquitto_pub and mosquitto_sub at -V 5, and the Go library github.com/eclipse/paho.golang.
// MQTT.js is in v5mqttjs_test.go.

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"
)

// mosq5Format makes mosquitto_sub print a message with its MQTT 5 properties: topic, QoS, retain,
// Payload Format Indicator, Content Type, Response Topic, Correlation Data, Message Expiry
// Interval, User Properties (name:value, space-separated, in order), payload. An absent property
// prints as nothing.
const mosq5Format = "%t|%q|%r|%F|%C|%R|%D|%E|%P|%p"

// mosq5Message is one line of mosq5Format.
type mosq5Message struct {
	topic, qos, retain, format, contentType, responseTopic, correlation, expiry, user, payload string
}

func parseMosq5(t *testing.T, line string) mosq5Message {
	t.Helper()
	f := strings.SplitN(line, "|", 10)
	if len(f) != 10 {
		t.Fatalf("mosquitto_sub printed %q, not %s", line, mosq5Format)
	}
	return mosq5Message{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]}
}

// remainingExpiry fails the test unless s, a Message Expiry Interval a subscriber received, is
// what is left of sent seconds: above 0 and not above sent [MQTT-3.3.2-6]; it returns it.
func remainingExpiry(t *testing.T, what, s string, sent uint32) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 || n > uint64(sent) {
		t.Fatalf("%s: Message Expiry Interval %q, want what remains of %d s", what, s, sent)
	}
	return uint32(n)
}

// TestMosquitto5PropertiesForwarded_MQTT_3_3_2_17: mosquitto_pub -V 5 publishes with user
// properties (a repeated name among them), Content Type, Response Topic, Correlation Data,
// Payload Format Indicator and Message Expiry Interval. A mosquitto_sub -V 5 prints them all
// unaltered [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-20], the
// user properties in order [MQTT-3.3.2-18], with what remains of the expiry [MQTT-3.3.2-6]. A
// mosquitto_sub -V mqttv311 gets the same payload without them, and a 3.1.1 publisher's message
// reaches the v5 subscriber without properties.
func TestMosquitto5PropertiesForwarded_MQTT_3_3_2_17(t *testing.T) {
	needTool(t, "mosquitto_sub", "mosquitto-clients")
	t.Parallel()
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	const base = "mosq5/props"
	const payload = "{\"héllo\": \"wörld ✓\"}"
	wait := fmt.Sprint(int(mosqWait / time.Second))
	retainMarker(t, b, base+"/ready", "ready")

	sub5 := startMosqSub(t, b, "-V", "5", "-i", "ms5-props", "-q", "1", "-t", base+"/#",
		"-C", "3", "-W", wait, "-F", mosq5Format)
	sub311 := startMosqSub(t, b, "-V", "mqttv311", "-i", "ms311-props", "-q", "1", "-t", base+"/#",
		"-C", "3", "-W", wait, "-F", mosqFormat)
	if m := parseMosq5(t, sub5.next(t)); m != (mosq5Message{topic: base + "/ready", qos: "1", retain: "1", payload: "ready"}) {
		t.Fatalf("v5 subscriber: retained marker %+v", m)
	}
	sub311.expect(t, mosqLine(base+"/ready", 1, true, "ready"))

	mosqPub(t, b, "", "-V", "5", "-i", "mp5-props", "-q", "1", "-t", base+"/from5", "-m", payload,
		"-D", "PUBLISH", "user-property", "b", "2",
		"-D", "PUBLISH", "user-property", "a", "1",
		"-D", "PUBLISH", "user-property", "b", "3",
		"-D", "PUBLISH", "content-type", "application/json",
		"-D", "PUBLISH", "response-topic", base+"/answers",
		"-D", "PUBLISH", "correlation-data", "req-42",
		"-D", "PUBLISH", "payload-format-indicator", "1",
		"-D", "PUBLISH", "message-expiry-interval", "120")
	mosqPub(t, b, "", "-V", "mqttv311", "-i", "mp311-props", "-q", "1", "-t", base+"/from311", "-m", "plain")

	// One publisher's message may overtake the other's: take them by topic.
	got := map[string]mosq5Message{}
	for range 2 {
		m := parseMosq5(t, sub5.next(t))
		got[m.topic] = m
	}
	from5 := got[base+"/from5"]
	remainingExpiry(t, "v5 subscriber", from5.expiry, 120)
	from5.expiry = ""
	want := mosq5Message{topic: base + "/from5", qos: "1", retain: "0", format: "1", contentType: "application/json",
		responseTopic: base + "/answers", correlation: "req-42", user: "b:2 a:1 b:3", payload: payload}
	if from5 != want {
		t.Errorf("v5 subscriber got the v5 message as %+v, want %+v", from5, want)
	}
	if m, want := got[base+"/from311"], (mosq5Message{topic: base + "/from311", qos: "1", retain: "0", payload: "plain"}); m != want {
		t.Errorf("v5 subscriber got the 3.1.1 message as %+v, want %+v", m, want)
	}
	sub5.wait(t)

	// A property encoded for the 3.1.1 subscriber would show in its payload.
	var lines []string
	for range 2 {
		lines = append(lines, sub311.next(t))
	}
	slices.Sort(lines)
	if want := []string{mosqLine(base+"/from311", 1, false, "plain"), mosqLine(base+"/from5", 1, false, payload)}; !slices.Equal(lines, want) {
		t.Errorf("3.1.1 subscriber printed %q, want %q", lines, want)
	}
	sub311.wait(t)
}

// TestMosquitto5SubscriptionIdentifier_MQTT_3_3_4_3: a mosquitto_sub -V 5 that subscribes with
// Subscription Identifier 42 prints it with every message of that subscription, the retained
// one it gets on subscribing and a live one [MQTT-3.3.4-3]; one that gave none prints none.
func TestMosquitto5SubscriptionIdentifier_MQTT_3_3_4_3(t *testing.T) {
	needTool(t, "mosquitto_sub", "mosquitto-clients")
	t.Parallel()
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	const base = "mosq5/subid"
	const format = "%t|%S|%p"
	wait := fmt.Sprint(int(mosqWait / time.Second))
	retainMarker(t, b, base+"/ready", "ready")
	with := startMosqSub(t, b, "-V", "5", "-i", "ms5-subid", "-t", base+"/#", "-D", "SUBSCRIBE", "subscription-identifier", "42",
		"-C", "2", "-W", wait, "-F", format)
	without := startMosqSub(t, b, "-V", "5", "-i", "ms5-nosubid", "-t", base+"/#", "-C", "2", "-W", wait, "-F", format)
	with.expect(t, base+"/ready|42|ready")
	without.expect(t, base+"/ready||ready")
	mosqPub(t, b, "", "-V", "5", "-i", "mp5-subid", "-q", "1", "-t", base+"/live", "-m", "now")
	with.expect(t, base+"/live|42|now")
	without.expect(t, base+"/live||now")
	with.wait(t)
	without.wait(t)
}

// TestMosquitto5QueuedExpiry_MQTT_3_3_2_5: a mosquitto_sub -V 5 -c (Session Expiry Interval
// never) subscribes and leaves. Two messages are queued for it: the first with a Message Expiry
// Interval of 1 s, the second of an hour. Once the first has expired the session resumes: only
// the second is delivered [MQTT-3.3.2-5], with what remains of its hour [MQTT-3.3.2-6] and its
// other properties.
func TestMosquitto5QueuedExpiry_MQTT_3_3_2_5(t *testing.T) {
	needTool(t, "mosquitto_sub", "mosquitto-clients")
	t.Parallel()
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	const base, id = "mosq5/queued", "ms5-queued"
	wait := fmt.Sprint(int(mosqWait / time.Second))
	retainMarker(t, b, base+"/ready", "ready")
	first := startMosqSub(t, b, "-V", "5", "-i", id, "-c", "-q", "1", "-t", base+"/#", "-C", "1", "-W", wait, "-F", mosq5Format)
	if m := parseMosq5(t, first.next(t)); m.topic != base+"/ready" {
		t.Fatalf("first connection: %+v, want the retained marker", m)
	}
	first.wait(t)

	published := time.Now()
	mosqPub(t, b, "", "-V", "5", "-i", "mp5-queued-1", "-q", "1", "-t", base+"/short", "-m", "expires",
		"-D", "PUBLISH", "message-expiry-interval", "1")
	mosqPub(t, b, "", "-V", "5", "-i", "mp5-queued-2", "-q", "1", "-t", base+"/long", "-m", "lasts",
		"-D", "PUBLISH", "message-expiry-interval", "3600", "-D", "PUBLISH", "content-type", "text/plain",
		"-D", "PUBLISH", "user-property", "k", "v")
	<-time.After(time.Until(published.Add(2 * time.Second))) // the passing of time is the event waited for

	// -R: the retained marker sent again on the new SUBSCRIBE is not printed.
	again := startMosqSub(t, b, "-V", "5", "-i", id, "-c", "-q", "1", "-t", base+"/#", "-R", "-C", "1", "-W", wait, "-F", mosq5Format)
	m := parseMosq5(t, again.next(t))
	if m.topic != base+"/long" {
		t.Fatalf("resumed session: first message %+v, want the one on %s/long (the expired one must not come)", m, base)
	}
	if left := remainingExpiry(t, "resumed session", m.expiry, 3600); left < 3600-60 {
		t.Errorf("resumed session: %d s left of 3600 after about 2 s", left)
	}
	if m.contentType != "text/plain" || m.user != "k:v" || m.payload != "lasts" {
		t.Errorf("resumed session: got %+v, want content type text/plain, user property k:v, payload lasts", m)
	}
	again.wait(t)
}

// paho5Client is a github.com/eclipse/paho.golang client on one connection, collecting the
// messages it receives (it acknowledges them itself).
type paho5Client struct {
	*paho.Client
	msgs chan *paho.Publish
}

// paho5Connect connects a level-5 client to addr; st carries a persistent session's client-side
// state from one connection to the next (nil: a new one). The client disconnects when the test
// ends, if it has not already.
func paho5Connect(t *testing.T, addr string, st *state.State, cp *paho.Connect) (*paho5Client, *paho.Connack) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, pahoWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	pc := &paho5Client{msgs: make(chan *paho.Publish, 64)}
	cfg := paho.ClientConfig{
		ClientID: cp.ClientID,
		Conn:     nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			pc.msgs <- r.Packet
			return true, nil
		}},
	}
	if st != nil {
		cfg.Session = st
	}
	pc.Client = paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), pahoWait)
	defer cancel()
	ack, err := pc.Connect(ctx, cp)
	if err != nil {
		t.Fatalf("paho: CONNECT %s: %v (CONNACK %+v)", cp.ClientID, err, ack)
	}
	t.Cleanup(func() { pc.Disconnect(&paho.Disconnect{}) })
	return pc, ack
}

// next returns the next message the client received.
func (pc *paho5Client) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-pc.msgs:
		return m
	case <-time.After(pahoWait):
		t.Fatalf("paho: no message within %v", pahoWait)
		return nil
	}
}

// leave disconnects normally and waits until the connection is gone.
func (pc *paho5Client) leave(t *testing.T) {
	t.Helper()
	if err := pc.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatalf("paho: DISCONNECT: %v", err)
	}
	select {
	case <-pc.Done():
	case <-time.After(pahoWait):
		t.Fatalf("paho: connection still up %v after DISCONNECT", pahoWait)
	}
}

func (pc *paho5Client) publish(t *testing.T, p *paho.Publish) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pahoWait)
	defer cancel()
	resp, err := pc.Publish(ctx, p)
	if err != nil {
		t.Fatalf("paho: PUBLISH %s at QoS %d: %v", p.Topic, p.QoS, err)
	}
	if p.QoS > 0 && resp.ReasonCode != 0 {
		t.Fatalf("paho: PUBLISH %s at QoS %d acknowledged with reason 0x%02x", p.Topic, p.QoS, resp.ReasonCode)
	}
}

func (pc *paho5Client) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pahoWait)
	defer cancel()
	ack, err := pc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		t.Fatalf("paho: SUBSCRIBE %s: %v", filter, err)
	}
	if !slices.Equal(ack.Reasons, []byte{qos}) {
		t.Fatalf("paho: SUBACK %v, want [%d]", ack.Reasons, qos)
	}
}

// paho5Session is a CONNECT for a session that outlives its connections by an hour
// [MQTT-3.1.2-23]: Clean Start on the first connection only.
func paho5Session(id string, cleanStart bool) *paho.Connect {
	expiry := uint32(3600)
	return &paho.Connect{ClientID: id, CleanStart: cleanStart, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
}

// paho5Message is a PUBLISH carrying every message property a publisher sets.
func paho5Message(topic string, qos byte, n int) *paho.Publish {
	format, expiry := byte(1), uint32(3600)
	return &paho.Publish{Topic: topic, QoS: qos, Payload: fmt.Appendf(nil, "message %d at QoS %d ✓", n, qos),
		Properties: &paho.PublishProperties{
			PayloadFormat: &format, MessageExpiry: &expiry, ContentType: "text/plain; charset=utf-8",
			ResponseTopic: "paho5/answers/" + strconv.Itoa(n), CorrelationData: []byte{0, byte(n), 0xff},
			User: paho.UserProperties{{Key: "n", Value: strconv.Itoa(n)}, {Key: "tag", Value: "x"}, {Key: "n", Value: "again"}},
		}}
}

// checkPaho5Message fails the test unless got is sent as a subscriber at maxQoS receives it: the
// same payload and properties [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17]
// [MQTT-3.3.2-20], user properties in order [MQTT-3.3.2-18], the remaining expiry
// [MQTT-3.3.2-6], at min(QoS, maxQoS).
func checkPaho5Message(t *testing.T, what string, got, sent *paho.Publish, maxQoS byte) {
	t.Helper()
	g, s := got.Properties, sent.Properties
	switch {
	case got.Topic != sent.Topic || string(got.Payload) != string(sent.Payload) || got.QoS != min(sent.QoS, maxQoS) || got.Retain:
		t.Fatalf("%s: got %q on %s at QoS %d (retain %v), want %q on %s at QoS %d", what, got.Payload, got.Topic, got.QoS, got.Retain,
			sent.Payload, sent.Topic, min(sent.QoS, maxQoS))
	case g == nil:
		t.Fatalf("%s: %q arrived without properties", what, got.Payload)
	case g.PayloadFormat == nil || *g.PayloadFormat != *s.PayloadFormat || g.ContentType != s.ContentType ||
		g.ResponseTopic != s.ResponseTopic || string(g.CorrelationData) != string(s.CorrelationData) || !slices.Equal(g.User, s.User):
		t.Fatalf("%s: %q arrived with properties %s, want %s", what, got.Payload, paho5Props(g), paho5Props(s))
	case g.MessageExpiry == nil || *g.MessageExpiry == 0 || *g.MessageExpiry > *s.MessageExpiry:
		t.Fatalf("%s: %q arrived with properties %s, want what remains of Message Expiry Interval %d", what, got.Payload, paho5Props(g), *s.MessageExpiry)
	}
}

func paho5Props(p *paho.PublishProperties) string {
	s := fmt.Sprintf("content type %q, response topic %q, correlation data %x, user %v", p.ContentType, p.ResponseTopic, p.CorrelationData, p.User)
	if p.PayloadFormat != nil {
		s += fmt.Sprintf(", payload format %d", *p.PayloadFormat)
	}
	if p.MessageExpiry != nil {
		s += fmt.Sprintf(", message expiry %d", *p.MessageExpiry)
	}
	return s
}

// TestPahoGoV5QoS12_MQTT_3_3_2_17: paho.golang publishes at QoS 1 and 2 with every message
// property; a paho.golang subscriber at QoS 2 receives both with their QoS and properties
// unaltered, and one at QoS 1 receives them at QoS 1.
func TestPahoGoV5QoS12_MQTT_3_3_2_17(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	sub2, ack := paho5Connect(t, b.Addr, nil, &paho.Connect{ClientID: "paho5-sub2", CleanStart: true, KeepAlive: 30})
	if ack.ReasonCode != 0 || ack.SessionPresent {
		t.Fatalf("CONNACK %+v, want success without a session", ack)
	}
	sub2.subscribe(t, "paho5/qos/#", 2)
	sub1, _ := paho5Connect(t, b.Addr, nil, &paho.Connect{ClientID: "paho5-sub1", CleanStart: true, KeepAlive: 30})
	sub1.subscribe(t, "paho5/qos/#", 1)
	pub, _ := paho5Connect(t, b.Addr, nil, &paho.Connect{ClientID: "paho5-pub", CleanStart: true, KeepAlive: 30})
	sent := []*paho.Publish{paho5Message("paho5/qos/one", 1, 1), paho5Message("paho5/qos/two", 2, 2)}
	for _, m := range sent {
		pub.publish(t, m)
	}
	for _, m := range sent {
		checkPaho5Message(t, "subscriber at QoS 2", sub2.next(t), m, 2)
		checkPaho5Message(t, "subscriber at QoS 1", sub1.next(t), m, 1)
	}
}

// TestPahoGoV5PersistentSession_MQTT_3_1_2_23: a paho.golang client with a Session Expiry
// Interval of an hour subscribes at QoS 2 and disconnects; the broker keeps its session
// [MQTT-3.1.2-23] and queues QoS 1 and 2 messages for it. Reconnecting with Clean Start 0 it
// finds its session [MQTT-3.2.2-3] and receives them in order with their properties; so again
// after the broker restarts on the same data directory while it is away.
func TestPahoGoV5PersistentSession_MQTT_3_1_2_23(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	const id = "paho5-persistent"
	st := state.NewInMemory()
	t.Cleanup(func() { st.Close() })
	sub, ack := paho5Connect(t, b.Addr, st, paho5Session(id, true))
	if ack.SessionPresent {
		t.Fatal("first connection with Clean Start 1: session present")
	}
	sub.subscribe(t, "paho5/persist/#", 2)
	sub.leave(t)

	n := 0
	queue := func() []*paho.Publish {
		pub, _ := paho5Connect(t, b.Addr, nil, &paho.Connect{ClientID: "paho5-persist-pub", CleanStart: true, KeepAlive: 30})
		var sent []*paho.Publish
		for _, qos := range []byte{1, 2, 1} {
			n++
			m := paho5Message("paho5/persist/"+strconv.Itoa(n), qos, n)
			pub.publish(t, m)
			sent = append(sent, m)
		}
		pub.leave(t)
		return sent
	}
	for _, restart := range []bool{false, true} {
		sent := queue()
		what := "resumed"
		if restart {
			what = "resumed after a restart"
			b.Stop()
			b.Start()
		}
		sub, ack := paho5Connect(t, b.Addr, st, paho5Session(id, false))
		if !ack.SessionPresent {
			t.Fatalf("%s: CONNACK session present 0, want 1 [MQTT-3.2.2-3]", what)
		}
		// Order holds per topic and QoS [MQTT-4.6.0-5], not across them: a persistent session's QoS 2
		// message goes out once its packet identifier is on disk, so a QoS 1 one may pass it.
		byTopic := map[string]*paho.Publish{}
		for _, m := range sent {
			byTopic[m.Topic] = m
		}
		for i := range sent {
			got := sub.next(t)
			m := byTopic[got.Topic]
			if m == nil {
				t.Fatalf("%s, message %d of %d: %q on %s, not sent or sent twice", what, i+1, len(sent), got.Payload, got.Topic)
			}
			delete(byTopic, got.Topic)
			checkPaho5Message(t, fmt.Sprintf("%s, message %d of %d", what, i+1, len(sent)), got, m, 2)
		}
		sub.leave(t)
	}
}

// TestPahoGoV5QueuedExpiry_MQTT_3_3_2_5: while a paho.golang client with a persistent session
// is away, a message with a Message Expiry Interval of 1 s and then one of an hour are queued
// for it. Once the first has expired it reconnects: only the second is delivered
// [MQTT-3.3.2-5], with what remains of its hour [MQTT-3.3.2-6]; so too when the broker restarted
// meanwhile, which must neither lose the expiry nor restart its clock.
func TestPahoGoV5QueuedExpiry_MQTT_3_3_2_5(t *testing.T) {
	t.Parallel()
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "running", true: "restarted"}[restart], func(t *testing.T) {
			t.Parallel()
			b := StartBroker(t, BrokerConfig{MQTT5: true})
			id := "paho5-expiry-" + strconv.FormatBool(restart)
			st := state.NewInMemory()
			t.Cleanup(func() { st.Close() })
			sub, _ := paho5Connect(t, b.Addr, st, paho5Session(id, true))
			sub.subscribe(t, "paho5/expiry/#", 1)
			sub.leave(t)

			pub, _ := paho5Connect(t, b.Addr, nil, &paho.Connect{ClientID: "paho5-expiry-pub", CleanStart: true, KeepAlive: 30})
			short := paho5Message("paho5/expiry/short", 1, 1)
			*short.Properties.MessageExpiry = 1
			long := paho5Message("paho5/expiry/long", 1, 2)
			pub.publish(t, short)
			published := time.Now() // after its PUBACK: the broker's clock for it started before this
			pub.publish(t, long)
			pub.leave(t)
			if restart {
				b.Stop()
				b.Start()
			}
			<-time.After(time.Until(published.Add(2 * time.Second))) // the passing of time is the event waited for

			sub, ack := paho5Connect(t, b.Addr, st, paho5Session(id, false))
			if !ack.SessionPresent {
				t.Fatal("CONNACK session present 0, want 1 [MQTT-3.2.2-3]")
			}
			got := sub.next(t) // delivered in order [MQTT-4.6.0-6]: the expired one would come first
			checkPaho5Message(t, "after the first expired", got, long, 1)
			if left := *got.Properties.MessageExpiry; left < 3600-60 {
				t.Errorf("%d s left of 3600 after about 2 s", left)
			}
		})
	}
}
