package test

// MQTT 5.0 over the wire (issue 14), each test named after the statement it checks.

import (
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// mustConnect5 connects a level-5 client with cp, its protocol name and level filled in, and
// fails the test unless CONNACK accepts it.
func mustConnect5(t *testing.T, addr string, cp *codec.Connect) (*mqtttest.Client, *codec.Connack) {
	t.Helper()
	c := mqtttest.Dial(t, addr)
	c.SetLevel(codec.Level5)
	cp.ProtocolName, cp.ProtocolLevel = "MQTT", codec.Level5
	ack := c.Connect(cp)
	if ack.Reason != codec.ReasonSuccess {
		t.Fatalf("CONNACK %v", ack.Reason)
	}
	return c, ack
}

// dial5 connects a level-5 client with Clean Start 1; props may be nil.
func dial5(t *testing.T, addr, id string, props *codec.Properties) (*mqtttest.Client, *codec.Connack) {
	t.Helper()
	return mustConnect5(t, addr, &codec.Connect{ClientID: id, CleanSession: true, KeepAlive: 60, Props: props})
}

// expectDisconnect reads until a DISCONNECT and returns its reason.
func expectDisconnect(t *testing.T, c *mqtttest.Client) codec.ReasonCode {
	t.Helper()
	for {
		switch p := c.Read().(type) {
		case *codec.Disconnect:
			return p.Reason
		case *codec.Publish, *codec.Puback, *codec.Pubrec, *codec.Suback:
		default:
			t.Fatalf("got %s, want DISCONNECT", mqtttest.String(p))
		}
	}
}

func TestMQTT5Off(t *testing.T) {
	b := StartBroker(t, BrokerConfig{NoMQTT5: true})
	c := mqtttest.Dial(t, b.Addr)
	ack := c.Connect(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level5, ClientID: "v5", CleanSession: true})
	if ack.ReturnCode != codec.RefusedProtocolVersion {
		t.Fatalf("CONNACK %v with mqtt5 = false, want 0x01", ack.ReturnCode)
	}
}

// [MQTT-3.2.2-16] a client that sent no identifier learns the one assigned; CONNACK states the
// broker's limits.
func TestMQTT5Connack_MQTT_3_2_2_16(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	_, ack := dial5(t, b.Addr, "", nil)
	p := ack.Props
	if p == nil || p.AssignedClientID == "" || p.TopicAliasMaximum != 64 ||
		p.Has(codec.PropSubscriptionIdentifierAvailable) || p.Has(codec.PropSharedSubscriptionAvailable) { // absent: available
		t.Fatalf("CONNACK properties %+v", p)
	}
}

// [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-6] the publisher's properties reach a level-5
// subscriber unchanged, user properties in order, with what remains of the expiry interval;
// a 3.1.1 subscriber gets the message without them.
func TestMQTT5PropertiesForwarded_MQTT_3_3_2_17(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	sub, _ := dial5(t, b.Addr, "sub5", nil)
	sub.Subscribe(1, 1, "req/#")
	old := mqtttest.Dial(t, b.Addr)
	old.MustConnect("sub311", true)
	old.Subscribe(1, 1, "req/#")
	pub, _ := dial5(t, b.Addr, "pub5", nil)
	props := &codec.Properties{PayloadFormat: 1, ContentType: "application/json", ResponseTopic: "resp/1",
		CorrelationData: []byte("id-7"), MessageExpiry: 60,
		User: []codec.UserProperty{{Name: "b", Value: "2"}, {Name: "a", Value: "1"}, {Name: "b", Value: "3"}}}
	for i, qos := range []byte{0, 1} {
		pub.Send(&codec.Publish{Topic: "req/x", QoS: qos, PacketID: uint16(i + 1), Payload: []byte("{}"), Props: props})
		got := sub.NextPublish()
		g := got.Props
		if g == nil || g.PayloadFormat != 1 || g.ContentType != "application/json" || g.ResponseTopic != "resp/1" ||
			string(g.CorrelationData) != "id-7" || !slices.Equal(g.User, props.User) || g.MessageExpiry == 0 || g.MessageExpiry > 60 {
			t.Fatalf("QoS %d: properties %+v", qos, g)
		}
		if p := old.NextPublish(); string(p.Payload) != "{}" || p.Props != nil {
			t.Fatalf("QoS %d: the 3.1.1 subscriber got %+v", qos, p)
		}
	}
}

// [MQTT-3.3.2-12] a topic alias the client sets names the topic in its later PUBLISH packets;
// [MQTT-3.3.2-9] one above the maximum ends the connection with DISCONNECT 0x94, and one used
// before it was set is a protocol error, 0x82 (§3.3.2.3.4).
func TestMQTT5TopicAliasFromClient_MQTT_3_3_2_12(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	sub := mqtttest.Dial(t, b.Addr)
	sub.MustConnect("alias-sub", true)
	sub.Subscribe(1, 0, "long/topic/name")
	pub, _ := dial5(t, b.Addr, "alias-pub", nil)
	pub.Send(&codec.Publish{Topic: "long/topic/name", Payload: []byte("1"), Props: &codec.Properties{TopicAlias: 3}},
		&codec.Publish{Payload: []byte("2"), Props: &codec.Properties{TopicAlias: 3}})
	for _, want := range []string{"1", "2"} {
		if p := sub.NextPublish(); p.Topic != "long/topic/name" || string(p.Payload) != want {
			t.Fatalf("got %q on %q, want %q", p.Payload, p.Topic, want)
		}
	}
	pub.Send(&codec.Publish{Topic: "x", Payload: []byte("3"), Props: &codec.Properties{TopicAlias: 65}})
	if r := expectDisconnect(t, pub); r != codec.ReasonTopicAliasInvalid {
		t.Fatalf("alias above the maximum: DISCONNECT %v, want 0x94", r)
	}
	unset, _ := dial5(t, b.Addr, "alias-unset", nil)
	unset.Send(&codec.Publish{Payload: []byte("4"), Props: &codec.Properties{TopicAlias: 4}})
	if r := expectDisconnect(t, unset); r != codec.ReasonProtocolError {
		t.Fatalf("alias never set: DISCONNECT %v, want 0x82", r)
	}
}

// [MQTT-3.3.2-7] [MQTT-3.1.2-26] the broker assigns topic aliases on delivery, up to the client's
// Topic Alias Maximum: the first PUBLISH of a topic names it, the next ones carry the alias alone.
func TestMQTT5TopicAliasToClient(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	sub, _ := dial5(t, b.Addr, "alias-sub5", &codec.Properties{TopicAliasMaximum: 1})
	sub.Subscribe(1, 2, "a/#")
	pub, _ := dial5(t, b.Addr, "alias-pub5", nil)
	type seen struct {
		topic string
		alias uint16
	}
	next := func() seen {
		p := sub.NextPublish()
		if p.Props == nil {
			return seen{p.Topic, 0}
		}
		return seen{p.Topic, p.Props.TopicAlias}
	}
	// QoS 0 goes straight to the connection, 1 and 2 through the session's queue: one alias table.
	pub.Send(&codec.Publish{Topic: "a/b", Payload: []byte("0")})
	if got := next(); got != (seen{"a/b", 1}) {
		t.Fatalf("first QoS 0 PUBLISH %v, want the topic and alias 1", got)
	}
	for i, qos := range []byte{1, 2, 0} {
		pub.Send(&codec.Publish{Topic: "a/b", QoS: qos, PacketID: uint16(i + 1), Payload: []byte("x")})
		if got := next(); got != (seen{"", 1}) {
			t.Fatalf("QoS %d after the alias was set: %v, want alias 1 alone", qos, got)
		}
	}
	// a/c finds the table full (maximum 1): named in full, without an alias.
	pub.Send(&codec.Publish{Topic: "a/c", QoS: 1, PacketID: 9, Payload: []byte("c")})
	if got := next(); got != (seen{"a/c", 0}) {
		t.Fatalf("a second topic with the table full: %v", got)
	}
}

// [MQTT-3.3.4-9] no more unacknowledged QoS 1 messages than the client's Receive Maximum;
// [MQTT-3.3.2-5] a message that expires while it waits is not sent.
func TestMQTT5ReceiveMaximumAndExpiry_MQTT_3_3_4_9(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	sub, _ := dial5(t, b.Addr, "slow5", &codec.Properties{ReceiveMaximum: 1})
	sub.Subscribe(1, 1, "q/#")
	pub, _ := dial5(t, b.Addr, "pub5", nil)
	pub.Send(&codec.Publish{Topic: "q/1", QoS: 1, PacketID: 1, Payload: []byte("first")},
		&codec.Publish{Topic: "q/2", QoS: 1, PacketID: 2, Payload: []byte("expires"), Props: &codec.Properties{MessageExpiry: 1}},
		&codec.Publish{Topic: "q/3", QoS: 1, PacketID: 3, Payload: []byte("last")})
	first, err := sub.TryRead(mqtttest.Timeout)
	if p, ok := first.(*codec.Publish); err != nil || !ok || string(p.Payload) != "first" {
		t.Fatalf("got %v (%v), want the first message", first, err)
	}
	// With the window full the others wait; the second outlives its expiry meanwhile.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		time.Sleep(time.Until(deadline)) // the passing of time is the event waited for
	}
	sub.Send(&codec.Puback{PacketID: first.(*codec.Publish).PacketID})
	if p := sub.NextPublish(); string(p.Payload) != "last" {
		t.Fatalf("after the expiry got %q, want only the last message", p.Payload)
	}
}

// [MQTT-3.1.2-21] a client asking for no keep-alive, or a longer one than limits.max_keepalive,
// gets the maximum in CONNACK (Server Keep Alive) and is held to it; a shorter one is its own.
func TestMQTT5ServerKeepAlive_MQTT_3_1_2_21(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true, Extra: "[limits]\nmax_keepalive = \"1s\""})
	for _, tc := range []struct {
		asked uint16
		told  bool
	}{{0, true}, {60, true}, {1, false}} {
		c, ack := mustConnect5(t, b.Addr, &codec.Connect{ClientID: "ka", CleanSession: true, KeepAlive: tc.asked})
		if told := ack.Props != nil && ack.Props.ServerKeepAlive == 1; told != tc.told {
			t.Errorf("keep-alive %d s asked: CONNACK properties %+v, want Server Keep Alive 1 s: %v", tc.asked, ack.Props, tc.told)
		}
		if tc.asked == 0 {
			// Silent for longer than 1.5 x the maximum: closed with DISCONNECT 0x8D.
			if r := expectDisconnect(t, c); r != codec.ReasonKeepAliveTimeout {
				t.Errorf("a silent client: DISCONNECT %v, want 0x8D", r)
			}
		}
	}
}

// A PUBLISH the ACL refuses is answered with 0x87 at level 5 (3.1.1 can only say success).
func TestMQTT5NotAuthorizedPublish(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	pub, _ := dial5(t, b.Addr, "sys-writer", nil)
	pub.Send(&codec.Publish{Topic: "$SYS/broker/fake", QoS: 1, PacketID: 9, Payload: []byte("x")})
	if a := mqtttest.Expect[*codec.Puback](pub); a.PacketID != 9 || a.Reason != codec.ReasonNotAuthorized {
		t.Fatalf("PUBACK %+v, want 0x87", a)
	}
}

// The server tells a level-5 client why it closes: [MQTT-3.1.4-3] take-over 0x8E, a second
// CONNECT 0x82, a malformed packet 0x81, shutting down 0x8B.
func TestMQTT5ServerDisconnectReasons(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	first, _ := dial5(t, b.Addr, "twice", nil)
	dial5(t, b.Addr, "twice", nil)
	if r := expectDisconnect(t, first); r != codec.ReasonSessionTakenOver {
		t.Errorf("take-over: DISCONNECT %v, want 0x8E", r)
	}
	again, _ := dial5(t, b.Addr, "again", nil)
	again.Send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level5, ClientID: "again", CleanSession: true})
	if r := expectDisconnect(t, again); r != codec.ReasonProtocolError {
		t.Errorf("second CONNECT: DISCONNECT %v, want 0x82", r)
	}
	bad, _ := dial5(t, b.Addr, "bad", nil)
	bad.SendRaw([]byte{0x30, 0x05, 0x00, 0x01, 't', 0x02, 0x99}) // a property 0x99 that does not exist
	if r := expectDisconnect(t, bad); r != codec.ReasonMalformedPacket {
		t.Errorf("malformed: DISCONNECT %v, want 0x81", r)
	}
	last, _ := dial5(t, b.Addr, "last", nil)
	b.Stop()
	if r := expectDisconnect(t, last); r != codec.ReasonServerShuttingDown {
		t.Errorf("shutdown: DISCONNECT %v, want 0x8B", r)
	}
}

// [MQTT-3.14.4-3] DISCONNECT with reason 0x04 publishes the will, any other reason discards it.
func TestMQTT5DisconnectWithWill_MQTT_3_14_4_3(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	watch := mqtttest.Dial(t, b.Addr)
	watch.MustConnect("watch", true)
	watch.Subscribe(1, 0, "will/#")
	for _, tc := range []struct {
		reason codec.ReasonCode
		topic  string
	}{{codec.ReasonNormalDisconnection, "will/normal"}, {codec.ReasonDisconnectWithWill, "will/with"}} {
		c, _ := mustConnect5(t, b.Addr, &codec.Connect{ClientID: "w", CleanSession: true,
			Will: &codec.Will{Topic: tc.topic, Payload: []byte("bye")}})
		c.Send(&codec.Disconnect{Reason: tc.reason})
		c.ExpectClosed()
	}
	if p := watch.NextPublish(); p.Topic != "will/with" {
		t.Fatalf("got the will on %q, want only will/with's", p.Topic)
	}
}
