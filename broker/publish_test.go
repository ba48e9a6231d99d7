package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// receive reads n PUBLISH packets, acknowledging QoS 1 and 2 completely (it returns only once
// every QoS 2 handshake it began is complete), and returns them.
func receive(t *testing.T, c *mqtttest.Client, n int) []*codec.Publish {
	t.Helper()
	var got []*codec.Publish
	open := 0 // QoS 2 messages awaiting PUBREL
	for len(got) < n || open > 0 {
		switch p := c.Read().(type) {
		case *codec.Publish:
			got = append(got, p)
			switch p.QoS {
			case 1:
				c.Send(&codec.Puback{PacketID: p.PacketID})
			case 2:
				c.Send(&codec.Pubrec{PacketID: p.PacketID})
				open++
			}
		case *codec.Pubrel:
			c.Send(&codec.Pubcomp{PacketID: p.PacketID})
			open--
		default:
			t.Fatalf("unexpected %s", mqtttest.String(p))
		}
	}
	return got
}

// publish sends a PUBLISH at qos and completes its handshake as a publisher.
func publish(t *testing.T, c *mqtttest.Client, pid uint16, topic, payload string, qos byte, retain bool) {
	t.Helper()
	c.Send(&codec.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, PacketID: pid, Retain: retain})
	switch qos {
	case 1:
		if a := mqtttest.Expect[*codec.Puback](c); a.PacketID != pid {
			t.Fatalf("PUBACK %d, want %d", a.PacketID, pid)
		}
	case 2:
		if a := mqtttest.Expect[*codec.Pubrec](c); a.PacketID != pid {
			t.Fatalf("PUBREC %d, want %d", a.PacketID, pid)
		}
		c.Send(&codec.Pubrel{PacketID: pid})
		if a := mqtttest.Expect[*codec.Pubcomp](c); a.PacketID != pid {
			t.Fatalf("PUBCOMP %d, want %d", a.PacketID, pid)
		}
	}
}

func TestQoSDowngrade_MQTT_3_8_4_6(t *testing.T) {
	for _, durable := range []bool{false, true} {
		for pubQoS := byte(0); pubQoS <= 2; pubQoS++ {
			for subQoS := byte(0); subQoS <= 2; subQoS++ {
				name := fmt.Sprintf("persistent=%v/pub%d/sub%d", durable, pubQoS, subQoS)
				t.Run(name, func(t *testing.T) {
					b := startBroker(t, nil)
					sub := b.dial()
					sub.MustConnect("sub", !durable)
					if codes := sub.Subscribe(1, subQoS, "q"); codes[0] != subQoS {
						t.Fatalf("granted %d, want %d [MQTT-3.9.3-1]", codes[0], subQoS)
					}
					pub := b.dial()
					pub.MustConnect("pub", true)
					publish(t, pub, 5, "q", "m", pubQoS, false)
					p := receive(t, sub, 1)[0]
					if want := min(pubQoS, subQoS); p.QoS != want {
						t.Fatalf("delivered at QoS %d, want %d", p.QoS, want)
					}
					if p.Retain || p.Dup {
						t.Fatalf("flags %+v on a first forward", p)
					}
				})
			}
		}
	}
}

func TestOverlappingSubscriptionsDeliverOnce_MQTT_3_3_5_1(t *testing.T) {
	b := startBroker(t, nil)
	sub := b.dial()
	sub.MustConnect("sub", true)
	sub.Subscribe(1, 0, "a/+")
	sub.Subscribe(2, 2, "a/#")
	sub.Subscribe(3, 1, "a/b")
	pub := b.dial()
	pub.MustConnect("pub", true)
	publish(t, pub, 1, "a/b", "x", 2, false)
	p := receive(t, sub, 1)[0]
	if p.QoS != 2 {
		t.Fatalf("QoS %d, want the highest granted, 2", p.QoS)
	}
	sub.ExpectSilence(200 * time.Millisecond)
}

func TestDollarTopicsNotMatchedByWildcards_MQTT_4_7_2_1(t *testing.T) {
	b := startBroker(t, nil)
	sub := b.dial()
	sub.MustConnect("sub", true)
	sub.Subscribe(1, 0, "#")
	sub.Subscribe(2, 0, "+/x")
	pub := b.dial()
	pub.MustConnect("pub", true)
	publish(t, pub, 1, "$app/x", "hidden", 1, false)
	publish(t, pub, 2, "app/x", "seen", 1, false)
	if p := receive(t, sub, 1)[0]; p.Topic != "app/x" {
		t.Fatalf("got %q, want only app/x", p.Topic)
	}
	sub.ExpectSilence(200 * time.Millisecond)
}

func TestRetained(t *testing.T) {
	b := startBroker(t, nil)
	pub := b.dial()
	pub.MustConnect("pub", true)
	live := b.dial()
	live.MustConnect("live", true)
	live.Subscribe(1, 1, "r/#")

	publish(t, pub, 1, "r/a", "one", 1, true)
	if p := receive(t, live, 1)[0]; p.Retain {
		t.Fatal("retain flag set on a message forwarded to an existing subscriber [MQTT-3.3.1-9]")
	}
	publish(t, pub, 2, "r/a", "two", 1, true) // replaces [MQTT-3.3.1-5]
	receive(t, live, 1)
	publish(t, pub, 3, "r/b", "b", 0, true)
	receive(t, live, 1)

	late := b.dial()
	late.MustConnect("late", true)
	late.Subscribe(1, 2, "r/#")
	got := map[string]string{}
	for _, p := range receive(t, late, 2) {
		if !p.Retain {
			t.Fatalf("retained message sent without the retain flag [MQTT-3.3.1-8]: %s", mqtttest.String(p))
		}
		got[p.Topic] = string(p.Payload)
	}
	if got["r/a"] != "two" || got["r/b"] != "b" {
		t.Fatalf("retained on subscribe: %v", got)
	}

	publish(t, pub, 4, "r/a", "", 1, true) // clears [MQTT-3.3.1-10]
	receive(t, live, 1)
	receive(t, late, 1)
	again := b.dial()
	again.MustConnect("again", true)
	again.Subscribe(1, 0, "r/a")
	again.ExpectSilence(200 * time.Millisecond)

	// Retained messages survive a restart.
	b.restart()
	c := b.dial()
	c.MustConnect("after", true)
	c.Subscribe(1, 0, "r/#")
	if p := receive(t, c, 1)[0]; p.Topic != "r/b" || string(p.Payload) != "b" {
		t.Fatalf("after restart got %s", mqtttest.String(p))
	}
	c.ExpectSilence(200 * time.Millisecond)
}

func TestUnsubscribe_MQTT_3_10_4(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial()
	c.MustConnect("u", false)
	c.Subscribe(1, 1, "x")
	c.Send(&codec.Unsubscribe{PacketID: 9, Filters: []string{"x", "never-subscribed"}})
	if a := mqtttest.Expect[*codec.Unsuback](c); a.PacketID != 9 {
		t.Fatalf("UNSUBACK %d, want 9", a.PacketID)
	}
	publish(t, c, 1, "x", "m", 1, false)
	c.ExpectSilence(200 * time.Millisecond)
}

func TestInflightWindow(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.Limits.MaxInflight = 2 })
	sub := b.dial()
	sub.MustConnect("sub", false)
	sub.Subscribe(1, 1, "w")
	pub := b.dial()
	pub.MustConnect("pub", true)
	for i := 1; i <= 5; i++ {
		publish(t, pub, uint16(i), "w", fmt.Sprint(i), 1, false)
	}
	var got []*codec.Publish
	for i := 0; i < 2; i++ {
		got = append(got, mqtttest.Expect[*codec.Publish](sub))
	}
	sub.ExpectSilence(200 * time.Millisecond) // the window is full
	for _, p := range got {
		sub.Send(&codec.Puback{PacketID: p.PacketID})
	}
	got = append(got, receive(t, sub, 3)...)
	for i, p := range got {
		if want := fmt.Sprint(i + 1); string(p.Payload) != want {
			t.Fatalf("message %d is %q, want %q (order [MQTT-4.6.0-6])", i, p.Payload, want)
		}
	}
}

func TestQoS2RetransmissionNotRoutedTwice_MQTT_4_3_3_2(t *testing.T) {
	b := startBroker(t, nil)
	sub := b.dial()
	sub.MustConnect("sub", true)
	sub.Subscribe(1, 2, "once")
	pub := b.dial()
	pub.MustConnect("pub", false)
	pub.Send(&codec.Publish{Topic: "once", Payload: []byte("x"), QoS: 2, PacketID: 3})
	mqtttest.Expect[*codec.Pubrec](pub)
	pub.Send(&codec.Publish{Topic: "once", Payload: []byte("x"), QoS: 2, PacketID: 3, Dup: true})
	mqtttest.Expect[*codec.Pubrec](pub)
	pub.Send(&codec.Pubrel{PacketID: 3})
	mqtttest.Expect[*codec.Pubcomp](pub)
	receive(t, sub, 1)
	sub.ExpectSilence(300 * time.Millisecond)
}

func TestRedeliveryWithDupOnReconnect_MQTT_4_4_0_1(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			b := startBroker(t, nil)
			sub := b.dial()
			sub.MustConnect("sub", false)
			sub.Subscribe(1, 2, "re/#")
			pub := b.dial()
			pub.MustConnect("pub", true)
			publish(t, pub, 1, "re/1", "one", 1, false)
			publish(t, pub, 2, "re/2", "two", 2, false)
			publish(t, pub, 3, "re/3", "three", 2, false)
			// Take them but acknowledge only the third as far as PUBREC.
			p1 := mqtttest.Expect[*codec.Publish](sub)
			p2 := mqtttest.Expect[*codec.Publish](sub)
			p3 := mqtttest.Expect[*codec.Publish](sub)
			sub.Send(&codec.Pubrec{PacketID: p3.PacketID})
			if r := mqtttest.Expect[*codec.Pubrel](sub); r.PacketID != p3.PacketID {
				t.Fatalf("PUBREL %d, want %d", r.PacketID, p3.PacketID)
			}
			sub.Conn.Close()
			if restart {
				b.restart()
			}
			sub = b.dial()
			if !sub.MustConnect("sub", false) {
				t.Fatal("session present 0")
			}
			r1 := mqtttest.Expect[*codec.Publish](sub)
			r2 := mqtttest.Expect[*codec.Publish](sub)
			rel := mqtttest.Expect[*codec.Pubrel](sub)
			if !r1.Dup || !r2.Dup || r1.PacketID != p1.PacketID || r2.PacketID != p2.PacketID || string(r1.Payload) != "one" || string(r2.Payload) != "two" {
				t.Fatalf("redelivered %s, %s; want DUP copies of %d and %d", mqtttest.String(r1), mqtttest.String(r2), p1.PacketID, p2.PacketID)
			}
			if rel.PacketID != p3.PacketID {
				t.Fatalf("PUBREL %d, want %d", rel.PacketID, p3.PacketID)
			}
			sub.Send(&codec.Puback{PacketID: r1.PacketID}, &codec.Pubrec{PacketID: r2.PacketID}, &codec.Pubcomp{PacketID: rel.PacketID})
			mqtttest.Expect[*codec.Pubrel](sub)
			sub.Send(&codec.Pubcomp{PacketID: r2.PacketID})
			sub.ExpectSilence(300 * time.Millisecond)
		})
	}
}

func TestOfflineQueueSurvivesRestart(t *testing.T) {
	b := startBroker(t, nil)
	sub := b.dial()
	sub.MustConnect("offline", false)
	sub.Subscribe(1, 1, "q/#")
	sub.Send(&codec.Disconnect{})
	sub.ExpectClosed()
	pub := b.dial()
	pub.MustConnect("pub", true)
	const n = 1000
	for i := 0; i < n; i++ {
		publish(t, pub, uint16(i%60000+1), "q/x", fmt.Sprint(i), byte(1+i%2), false)
	}
	b.restart()
	sub = b.dial()
	if !sub.MustConnect("offline", false) {
		t.Fatal("session present 0 after restart")
	}
	for i, p := range receive(t, sub, n) {
		if string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q: order lost", i, p.Payload)
		}
	}
	sub.ExpectSilence(300 * time.Millisecond)
}

func TestQueueLimitDropsForThatSessionOnly(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.Limits.MaxQueuedMessages = 3 })
	full := b.dial()
	full.MustConnect("full", false)
	full.Subscribe(1, 1, "lim")
	full.Send(&codec.Disconnect{})
	full.ExpectClosed()
	other := b.dial()
	other.MustConnect("other", true)
	other.Subscribe(1, 1, "lim")
	pub := b.dial()
	pub.MustConnect("pub", true)
	for i := 1; i <= 5; i++ {
		publish(t, pub, uint16(i), "lim", fmt.Sprint(i), 1, false) // never failed for the publisher
		receive(t, other, 1)                                       // other keeps up, so its queue never fills
	}
	if d := b.srv.Stats().Dropped[DropQueueFull].Load(); d != 2 {
		t.Fatalf("dropped %d, want 2", d)
	}
	full = b.dial()
	full.MustConnect("full", false)
	for i, p := range receive(t, full, 3) {
		if string(p.Payload) != fmt.Sprint(i+1) {
			t.Fatalf("got %q", p.Payload)
		}
	}
	full.ExpectSilence(200 * time.Millisecond)
}

func TestSessionExpiry(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.Limits.SessionExpiry.Duration = 300 * time.Millisecond })
	c := b.dial()
	c.MustConnect("expires", false)
	c.Subscribe(1, 1, "e")
	c.Send(&codec.Disconnect{})
	c.ExpectClosed()
	mqtttest.Eventually(t, 5*time.Second, "session expiry", func() bool { return b.srv.sessions.get("expires") == nil })
	b.restart()
	c = b.dial()
	if c.MustConnect("expires", false) {
		t.Fatal("expired session came back after restart")
	}
}

func TestSubscriptionLimits(t *testing.T) {
	b := startBroker(t, func(c *config.Config) {
		c.Limits.MaxSubscriptions = 2
		c.Limits.MaxTopicLevels = 3
	})
	c := b.dial()
	c.MustConnect("lim", true)
	if codes := c.Subscribe(1, 1, "a", "b", "c"); codes[0] != 1 || codes[1] != 1 || codes[2] != codec.SubackFailure {
		t.Fatalf("SUBACK %v, want [1 1 0x80]: a third subscription is over limits.max_subscriptions", codes)
	}
	if codes := c.Subscribe(2, 2, "a"); codes[0] != 2 {
		t.Fatalf("re-subscribing an existing filter at the limit: %v", codes)
	}
	c.Send(&codec.Unsubscribe{PacketID: 3, Filters: []string{"b"}})
	mqtttest.Expect[*codec.Unsuback](c)
	if codes := c.Subscribe(4, 0, "x/y/z/w"); codes[0] != codec.SubackFailure {
		t.Fatalf("4-level filter with max_topic_levels=3: %v", codes)
	}
	// A publish with too many levels is acknowledged and dropped.
	publish(t, c, 5, "a/b/c/d", "m", 1, false)
	if got := b.srv.Stats().Dropped[DropTopicLevels].Load(); got != 1 {
		t.Fatalf("dropped %d, want 1", got)
	}
	// A 3.1 client gets its requested QoS back (no failure code in 3.1) but is not subscribed.
	old := b.dial()
	if ack := old.Connect(&codec.Connect{ProtocolName: "MQIsdp", ProtocolLevel: codec.Level31, ClientID: "v31", CleanSession: true}); ack.ReturnCode != 0 {
		t.Fatal(ack)
	}
	if codes := old.Subscribe(1, 1, "m1", "m2", "m3"); codes[2] != 1 {
		t.Fatalf("3.1 SUBACK %v, want the requested QoS for the refused third filter", codes)
	}
	publish(t, c, 6, "m3", "m", 1, false)
	old.ExpectSilence(200 * time.Millisecond)
	publish(t, c, 7, "m2", "m", 1, false)
	if p := mqtttest.Expect[*codec.Publish](old); p.Topic != "m2" {
		t.Fatalf("got %s", mqtttest.String(p))
	}
}
