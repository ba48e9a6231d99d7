package test

// MQTT 5 Session Expiry Interval and Will Delay Interval over the wire (§3.1.2.11.2, §3.1.3.2.2),
// also across a restart of the broker.

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// connect5 connects a level-5 client with Clean Start clean, Session Expiry Interval expiry and
// the will w (nil: none), and returns it with its CONNACK.
func connect5(t *testing.T, addr, id string, clean bool, expiry uint32, w *codec.Will) (*mqtttest.Client, *codec.Connack) {
	t.Helper()
	return mustConnect5(t, addr, &codec.Connect{ClientID: id, CleanSession: clean, KeepAlive: 60,
		Props: &codec.Properties{SessionExpiry: expiry}, Will: w})
}

// disconnect5 sends DISCONNECT, with a new Session Expiry Interval when expiry is not nil, and
// waits for the broker to close the connection.
func disconnect5(t *testing.T, c *mqtttest.Client, expiry *uint32) {
	t.Helper()
	d := &codec.Disconnect{}
	if expiry != nil {
		d.Props = &codec.Properties{SessionExpiry: *expiry}
		d.Props.Include(codec.PropSessionExpiryInterval)
	}
	c.Send(d)
	c.ExpectClosed()
}

// [MQTT-3.1.2-23] a session with an expiry interval outlives its connection for that long, and no
// longer; one with 0 ends with its connection even when it resumed a stored session.
func TestMQTT5SessionExpiry_MQTT_3_1_2_23(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	c, _ := connect5(t, b.Addr, "exp", true, 1, nil)
	subscribe5(t, c, 1, 0, codec.Subscription{Filter: "exp/#", QoS: 1})
	disconnect5(t, c, nil)
	pub, _ := dial5(t, b.Addr, "exp-pub", nil)
	pub.Send(&codec.Publish{Topic: "exp/a", QoS: 1, PacketID: 1, Payload: []byte("kept")})
	mqtttest.Expect[*codec.Puback](pub)

	c, ack := connect5(t, b.Addr, "exp", false, 0, nil)
	if !ack.SessionPresent {
		t.Fatal("session not present within its expiry interval")
	}
	if p := c.NextPublish(); string(p.Payload) != "kept" {
		t.Fatalf("got %q", p.Payload)
	}
	c.Send(&codec.Puback{PacketID: 1})
	disconnect5(t, c, nil) // resumed with expiry 0: ends now
	if _, ack := connect5(t, b.Addr, "exp", false, 1, nil); ack.SessionPresent {
		t.Fatal("a session resumed with expiry 0 outlived its connection")
	}

	c, _ = connect5(t, b.Addr, "exp2", true, 1, nil)
	from := len(b.Log())
	disconnect5(t, c, nil)
	gone := time.Now()
	if _, ok := b.logLine(from, 5*time.Second, func(l string) bool {
		return strings.Contains(l, `"session expired"`) && strings.Contains(l, `"exp2"`)
	}); !ok {
		t.Fatal("the session did not expire within 5 s of a 1 s interval")
	}
	if d := time.Since(gone); d < time.Second {
		t.Fatalf("a 1 s session expired after %v", d)
	}
	if _, ack := connect5(t, b.Addr, "exp2", false, 1, nil); ack.SessionPresent {
		t.Fatal("session present after it expired")
	}
}

// [MQTT-3.14.2-2] DISCONNECT may change the expiry interval, to 0 to end the session now, but not
// from 0 to anything else: that is a protocol error.
func TestMQTT5DisconnectSessionExpiry_MQTT_3_14_2_2(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	c, _ := connect5(t, b.Addr, "d", true, 600, nil)
	zero := uint32(0)
	disconnect5(t, c, &zero)
	if _, ack := connect5(t, b.Addr, "d", false, 600, nil); ack.SessionPresent {
		t.Fatal("DISCONNECT with expiry 0 did not end the session")
	}

	c, _ = connect5(t, b.Addr, "z", true, 0, nil)
	ten := uint32(10)
	c.Send(&codec.Disconnect{Props: &codec.Properties{SessionExpiry: ten}})
	if r := expectDisconnect(t, c); r != codec.ReasonProtocolError {
		t.Fatalf("DISCONNECT %v, want 0x82", r)
	}
}

// [MQTT-3.1.3-9] a will with a delay goes out after it, not when the connection breaks, and not at
// all if the session resumes in time; it goes out early when the session ends first.
func TestMQTT5WillDelay_MQTT_3_1_3_9(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	watch, _ := dial5(t, b.Addr, "watch", nil)
	subscribe5(t, watch, 1, 0, codec.Subscription{Filter: "will/#", QoS: 1})
	will := func(topic string, delay uint32) *codec.Will {
		return &codec.Will{Topic: topic, Payload: []byte(topic), QoS: 1, Props: &codec.Properties{WillDelay: delay}}
	}

	start := time.Now()
	c, _ := connect5(t, b.Addr, "late", true, 60, will("will/late", 2))
	c.Conn.Close()
	p := watch.NextPublish()
	if string(p.Payload) != "will/late" || time.Since(start) < 2*time.Second {
		t.Fatalf("will %q after %v, want will/late after its 2 s delay", p.Payload, time.Since(start))
	}
	watch.Send(&codec.Puback{PacketID: p.PacketID})

	c, _ = connect5(t, b.Addr, "back", true, 60, will("will/back", 2))
	c.Conn.Close()
	c, _ = connect5(t, b.Addr, "back", false, 60, nil)
	watch.ExpectSilence(3 * time.Second)
	c.Send(&codec.Disconnect{})

	start = time.Now()
	c, _ = connect5(t, b.Addr, "short", true, 1, will("will/short", 30))
	c.Conn.Close()
	if p := watch.NextPublish(); string(p.Payload) != "will/short" || time.Since(start) > 4*time.Second {
		t.Fatalf("will %q after %v, want will/short when the session ends after 1 s", p.Payload, time.Since(start))
	}
}

// A session outlives a change of protocol level: a level-5 session resumed by a 3.1.1 client
// (clean session 0) gets its queued message without properties, and back at level 5 with them.
func TestMQTT5SessionAcrossLevels(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	c, _ := connect5(t, b.Addr, "mixed", true, 600, nil)
	subscribe5(t, c, 1, 5, codec.Subscription{Filter: "mix/#", QoS: 1})
	disconnect5(t, c, nil)
	pub, _ := dial5(t, b.Addr, "pub", nil)
	props := &codec.Properties{ContentType: "text/plain", User: []codec.UserProperty{{Name: "k", Value: "v"}}}
	send := func(pid uint16, payload string) {
		pub.Send(&codec.Publish{Topic: "mix/a", QoS: 1, PacketID: pid, Payload: []byte(payload), Props: props})
		mqtttest.Expect[*codec.Puback](pub)
	}
	send(1, "for 3.1.1")

	old := mqtttest.Dial(t, b.Addr)
	if !old.MustConnect("mixed", false) {
		t.Fatal("a 3.1.1 client did not find the level-5 session")
	}
	if p := old.NextPublish(); string(p.Payload) != "for 3.1.1" || p.Props != nil {
		t.Fatalf("3.1.1 got %q with properties %+v", p.Payload, p.Props)
	} else {
		old.Send(&codec.Puback{PacketID: p.PacketID})
	}
	old.Send(&codec.Disconnect{})
	old.ExpectClosed()
	send(2, "for 5")

	c, ack := connect5(t, b.Addr, "mixed", false, 600, nil)
	if !ack.SessionPresent {
		t.Fatal("the session did not come back at level 5")
	}
	p := c.NextPublish()
	if string(p.Payload) != "for 5" || p.Props == nil || p.Props.ContentType != "text/plain" || !slices.Equal(p.Props.SubscriptionIDs, []uint32{5}) {
		t.Fatalf("level 5 got %q with %+v", p.Payload, p.Props)
	}
}
