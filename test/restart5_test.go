package test

// What MQTT 5 adds to a session is there after kill -9 (and a clean stop): subscription options
// and identifiers, the messages' properties and expiry, the session's expiry interval counted
// from its last disconnect, and a will with a delay, published once.

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

func TestMQTT5StateSurvivesKill(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})

	// A: a session with options, offline while messages are queued for it.
	a, _ := connect5(t, b.Addr, "r5-a", true, 600, nil)
	subscribe5(t, a, 1, 42, codec.Subscription{Filter: "r5/#", QoS: 1, NoLocal: true, RetainAsPublished: true})
	a.Send(&codec.Publish{Topic: "r5/own", QoS: 1, PacketID: 9, Payload: []byte("own")}) // No Local: never for A
	mqtttest.Expect[*codec.Puback](a)
	disconnect5(t, a, nil)
	pub, _ := dial5(t, b.Addr, "r5-pub", nil)
	props := &codec.Properties{ContentType: "application/json", ResponseTopic: "r5/reply", CorrelationData: []byte{1, 2},
		User: []codec.UserProperty{{Name: "z", Value: "1"}, {Name: "a", Value: "2"}}, MessageExpiry: 600}
	props.Include(codec.PropMessageExpiryInterval)
	short := &codec.Properties{MessageExpiry: 1}
	short.Include(codec.PropMessageExpiryInterval)
	for i, p := range []*codec.Publish{
		{Topic: "r5/kept", QoS: 1, Payload: []byte("kept"), Props: props},
		{Topic: "r5/short", QoS: 1, Payload: []byte("short"), Props: short},
		{Topic: "r5/retained", QoS: 1, Retain: true, Payload: []byte("retained"), Props: props},
	} {
		p.PacketID = uint16(i + 1)
		pub.Send(p)
		mqtttest.Expect[*codec.Puback](pub)
	}
	published := time.Now()

	// B: a session that ends 2 s after its disconnect, wherever the broker is by then.
	bc, _ := connect5(t, b.Addr, "r5-b", true, 2, nil)
	disconnect5(t, bc, nil)
	bGone := time.Now()

	// C: online at the kill, with a will delayed 2 s.
	will := &codec.Will{Topic: "r5will/c", Payload: []byte("c is gone"), QoS: 1, Props: &codec.Properties{WillDelay: 2}}
	connect5(t, b.Addr, "r5-c", true, 600, will)

	b.Kill()
	b.Start()
	killed := time.Now()

	watch, _ := connect5(t, b.Addr, "r5-watch", true, 600, nil)
	subscribe5(t, watch, 1, 0, codec.Subscription{Filter: "r5will/#", QoS: 1})
	p := watch.NextPublish()
	if string(p.Payload) != "c is gone" {
		t.Fatalf("watcher got %q", p.Payload)
	}
	if d := time.Since(killed); d < 1500*time.Millisecond {
		t.Fatalf("the will of a client online at the kill came %v after the restart, before its 2 s delay", d)
	}
	watch.Send(&codec.Puback{PacketID: p.PacketID})

	time.Sleep(time.Until(published.Add(1100 * time.Millisecond))) // r5/short's interval runs out
	a, ack := connect5(t, b.Addr, "r5-a", false, 600, nil)
	if !ack.SessionPresent {
		t.Fatal("A's session is gone after the kill")
	}
	var got []string
	for range 2 {
		p := a.NextPublish()
		got = append(got, string(p.Payload))
		g := p.Props
		if g == nil || g.ContentType != "application/json" || g.ResponseTopic != "r5/reply" || string(g.CorrelationData) != "\x01\x02" ||
			!slices.Equal(g.User, props.User) || g.MessageExpiry == 0 || g.MessageExpiry > 600 || !slices.Equal(g.SubscriptionIDs, []uint32{42}) {
			t.Fatalf("%q after the kill: properties %+v", p.Payload, g)
		}
		if want := p.Topic == "r5/retained"; p.Retain != want {
			t.Fatalf("%q: RETAIN %v for a Retain As Published subscription", p.Payload, p.Retain)
		}
		a.Send(&codec.Puback{PacketID: p.PacketID})
	}
	if !slices.Equal(got, []string{"kept", "retained"}) {
		t.Fatalf("A got %q, want kept and retained (short expired, own excluded)", got)
	}
	a.ExpectSilence(300 * time.Millisecond)

	time.Sleep(time.Until(bGone.Add(2100 * time.Millisecond)))
	if _, ok := b.logLine(0, 3*time.Second, func(l string) bool {
		return strings.Contains(l, `"r5-b"`) && strings.Contains(l, `"session expired"`)
	}); !ok {
		t.Fatal("B's session did not expire 2 s after its disconnect, across the kill")
	}
	if _, ack := connect5(t, b.Addr, "r5-b", false, 0, nil); ack.SessionPresent {
		t.Fatal("B's session outlived its expiry interval across the kill")
	}

	// The will went out once: not again after another restart.
	disconnect5(t, watch, nil)
	b.Kill()
	b.Start()
	watch, ack = connect5(t, b.Addr, "r5-watch", false, 600, nil)
	if !ack.SessionPresent {
		t.Fatal("the watcher's session is gone")
	}
	watch.ExpectSilence(3 * time.Second)
}
