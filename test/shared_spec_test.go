package test

// Shared subscriptions (§4.8.2) at each protocol level, for what shared_test.go does not check.

import (
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// [MQTT-4.8.2-1] [MQTT-4.8.2-2] at 3.1.1: a share without a name, without a filter after it, or
// with a wildcard for a name is refused with 0x80, and a valid one beside them is granted.
func TestSharedSubscriptionMalformed311_MQTT_4_8_2_1(t *testing.T) {
	b := StartBroker(t, BrokerConfig{})
	c := mqtttest.Dial(t, b.Addr)
	c.MustConnect("bad311", true)
	codes := c.Subscribe(1, 1, "$share//a", "$share/g", "$share/g/", "$share/+/a", "$share/g/a")
	if want := []byte{0x80, 0x80, 0x80, 0x80, 1}; !slices.Equal(codes, want) {
		t.Fatalf("SUBACK % x, want % x", codes, want)
	}
}

// [MQTT-4.8.2-2] at level 5: the share name "+" gets 0x8F, though "$share/+/a" is a valid
// ordinary filter (other wildcard names make the filter malformed, which ends the connection).
func TestSharedShareNameWildcard_MQTT_4_8_2_2(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	c, _ := dial5(t, b.Addr, "wild5", nil)
	codes := subscribe5(t, c, 1, 0, codec.Subscription{Filter: "$share/+/a", QoS: 1}, codec.Subscription{Filter: "$share/g/+", QoS: 1})
	if want := []byte{byte(codec.ReasonTopicFilterInvalid), 1}; !slices.Equal(codes, want) {
		t.Fatalf("SUBACK % x, want % x", codes, want)
	}
}

// §4.8.2: a session holding $share/g/t and t has two subscriptions, and a message on t reaches it
// twice, once through each (it is the group's only member), at 3.1.1 and at level 5, where each
// copy carries the identifier of its own subscription [MQTT-3.3.4-5].
func TestSharedAndPlainSubscriptionBothDeliver(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	old := mqtttest.Dial(t, b.Addr)
	old.MustConnect("both311", true)
	if codes := old.Subscribe(1, 1, "$share/g311/both/t", "both/t"); !slices.Equal(codes, []byte{1, 1}) {
		t.Fatalf("3.1.1 SUBACK %v", codes)
	}
	v5, _ := dial5(t, b.Addr, "both5", nil)
	subscribe5(t, v5, 1, 7, codec.Subscription{Filter: "$share/g5/both/t", QoS: 1})
	subscribe5(t, v5, 2, 8, codec.Subscription{Filter: "both/t", QoS: 1})
	pub := mqtttest.Dial(t, b.Addr)
	pub.MustConnect("both-pub", true)
	pub.Send(&codec.Publish{Topic: "both/t", QoS: 1, PacketID: 1, Payload: []byte("x")})
	mqtttest.Expect[*codec.Puback](pub)

	for _, c := range []*mqtttest.Client{old, v5} {
		var ids []uint32
		for k := range 2 {
			p, err := c.TryRead(mqtttest.Timeout)
			if err != nil {
				t.Fatalf("copy %d of 2: %v (a session with both subscriptions must get a copy through each)", k+1, err)
			}
			m, ok := p.(*codec.Publish)
			if !ok || m.Topic != "both/t" || string(m.Payload) != "x" {
				t.Fatalf("copy %d of 2: got %s", k+1, mqtttest.String(p))
			}
			c.Send(&codec.Puback{PacketID: m.PacketID})
			if m.Props != nil {
				ids = append(ids, m.Props.SubscriptionIDs...)
			}
		}
		if c == v5 {
			slices.Sort(ids)
			if !slices.Equal(ids, []uint32{7, 8}) {
				t.Errorf("level 5: the two copies carried Subscription Identifiers %v, want 7 on one and 8 on the other [MQTT-3.3.4-5]", ids)
			}
		}
		c.ExpectSilence(200 * time.Millisecond)
	}
}

// An MQTT 3.1 (MQIsdp) client may be a member of a shared subscription: granted, no retained
// message on subscribing (§4.8.2), every message of the group while it is the only member.
func TestSharedSubscriptionMQTT31(t *testing.T) {
	b := StartBroker(t, BrokerConfig{})
	pub := mqtttest.Dial(t, b.Addr)
	pub.MustConnect("pub31", true)
	pub.Send(&codec.Publish{Topic: "v31/r", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("retained")})
	mqtttest.Expect[*codec.Puback](pub)

	c := mqtttest.Dial(t, b.Addr)
	ack := c.Connect(&codec.Connect{ProtocolName: codec.ProtocolName31, ProtocolLevel: codec.Level31, ClientID: "member31", CleanSession: true, KeepAlive: 60})
	if ack.ReturnCode != codec.Accepted {
		t.Fatalf("3.1 CONNECT refused: 0x%02x", ack.ReturnCode)
	}
	if codes := c.Subscribe(1, 1, "$share/g31/v31/#"); !slices.Equal(codes, []byte{1}) {
		t.Fatalf("3.1 SUBACK %v, want [1]", codes)
	}
	c.ExpectSilence(200 * time.Millisecond) // no retained message
	for i, payload := range []string{"a", "b", "c"} {
		pub.Send(&codec.Publish{Topic: "v31/x", QoS: 1, PacketID: uint16(i + 2), Payload: []byte(payload)})
		mqtttest.Expect[*codec.Puback](pub)
		if m := c.NextPublish(); string(m.Payload) != payload || m.Retain {
			t.Fatalf("3.1 member got %q (retain %v), want %q", m.Payload, m.Retain, payload)
		}
	}
	// A message on the topic "$share/g31/v31/x" is not one for the share: its filter is v31/#.
	pub.Send(&codec.Publish{Topic: "$share/g31/v31/x", QoS: 1, PacketID: 9, Payload: []byte("literal")})
	mqtttest.Expect[*codec.Puback](pub)
	c.ExpectSilence(200 * time.Millisecond)
}
