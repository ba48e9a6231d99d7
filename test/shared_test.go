package test

// Shared subscriptions, $share/{name}/{filter} (MQTT 5 §4.8.2; also served to 3.1.1 clients).

import (
	"fmt"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// [MQTT-4.8.2-3] each message goes to one member of each group: the members share the load, and
// an ordinary subscriber to the same filter gets every message. Retained messages are not sent
// for a shared subscription.
func TestSharedSubscription_MQTT_4_8_2_3(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	pub, _ := dial5(t, b.Addr, "pub", nil)
	pub.Send(&codec.Publish{Topic: "sh/retained", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("r")})
	mqtttest.Expect[*codec.Puback](pub)

	var members []*mqtttest.Client
	for i := range 2 {
		c, _ := dial5(t, b.Addr, fmt.Sprint("m5-", i), nil)
		subscribe5(t, c, 1, 0, codec.Subscription{Filter: "$share/g/sh/#", QoS: 1})
		members = append(members, c)
	}
	old := mqtttest.Dial(t, b.Addr)
	old.MustConnect("m311", true)
	if codes := old.Subscribe(1, 1, "$share/g/sh/#"); codes[0] != 1 {
		t.Fatalf("3.1.1 SUBACK %v", codes)
	}
	members = append(members, old)
	all, _ := dial5(t, b.Addr, "all", nil)
	subscribe5(t, all, 1, 0, codec.Subscription{Filter: "sh/#", QoS: 1, RetainHandling: 2})
	for _, m := range members {
		m.ExpectSilence(100 * time.Millisecond) // no retained message
	}

	const n = 30
	for i := range n {
		pub.Send(&codec.Publish{Topic: "sh/x", QoS: 1, PacketID: uint16(i + 2), Payload: fmt.Appendf(nil, "%d", i)})
		mqtttest.Expect[*codec.Puback](pub)
	}
	for range n {
		all.NextPublish()
	}
	got := map[string]int{}
	for k, m := range members {
		for {
			p, err := m.TryRead(300 * time.Millisecond)
			if mqtttest.IsTimeout(err) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			pub, ok := p.(*codec.Publish)
			if !ok {
				t.Fatalf("member %d got %s", k, mqtttest.String(p))
			}
			got[string(pub.Payload)]++
			m.Send(&codec.Puback{PacketID: pub.PacketID})
			if got[string(pub.Payload)] > 1 {
				t.Fatalf("message %s reached two members of the group", pub.Payload)
			}
		}
		if len(got) == 0 {
			t.Fatalf("member %d got nothing", k)
		}
	}
	if len(got) != n {
		t.Fatalf("the group got %d of %d messages", len(got), n)
	}
}

// [MQTT-4.8.2-1] a share name must be there and be followed by a filter: otherwise the
// subscription is refused with 0x8F. (A name with a wildcard is a malformed filter already.)
func TestSharedSubscriptionMalformed_MQTT_4_8_2_2(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	c, _ := dial5(t, b.Addr, "bad", nil)
	codes := subscribe5(t, c, 1, 0, codec.Subscription{Filter: "$share//a"}, codec.Subscription{Filter: "$share/g"},
		codec.Subscription{Filter: "$share/g/a", QoS: 1})
	if codes[0] != byte(codec.ReasonTopicFilterInvalid) || codes[1] != byte(codec.ReasonTopicFilterInvalid) || codes[2] != 1 {
		t.Fatalf("SUBACK %v, want [0x8F 0x8F 1]", codes)
	}
}
