package test

// MQTT 5 subscription options and identifiers over the wire (§3.8.3.1, §3.3.4).

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// subscribe5 sends one level-5 SUBSCRIBE and returns its reason codes.
func subscribe5(t *testing.T, c *mqtttest.Client, pid uint16, id uint32, subs ...codec.Subscription) []byte {
	t.Helper()
	p := &codec.Subscribe{PacketID: pid, Subscriptions: subs}
	if id != 0 {
		p.Props = &codec.Properties{SubscriptionIDs: []uint32{id}}
	}
	c.Send(p)
	ack := mqtttest.Expect[*codec.Suback](c)
	if ack.PacketID != pid || len(ack.ReturnCodes) != len(subs) {
		t.Fatalf("SUBACK %+v for %d filters", ack, len(subs))
	}
	return ack.ReturnCodes
}

// [MQTT-3.8.3-3] with No Local a client does not get the messages it published itself, unless
// another of its subscriptions without it matches too.
func TestMQTT5NoLocal_MQTT_3_8_3_3(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	self, _ := dial5(t, b.Addr, "self", nil)
	subscribe5(t, self, 1, 0, codec.Subscription{Filter: "nl/#", QoS: 1, NoLocal: true})
	other, _ := dial5(t, b.Addr, "other", nil)
	subscribe5(t, other, 1, 0, codec.Subscription{Filter: "nl/#", QoS: 1, NoLocal: true})
	self.Send(&codec.Publish{Topic: "nl/a", QoS: 0, Payload: []byte("0")},
		&codec.Publish{Topic: "nl/a", QoS: 1, PacketID: 1, Payload: []byte("1")})
	mqtttest.Expect[*codec.Puback](self)
	for _, want := range []string{"0", "1"} {
		if p := other.NextPublish(); string(p.Payload) != want {
			t.Fatalf("other client got %q, want %q", p.Payload, want)
		}
	}
	self.ExpectSilence(200 * time.Millisecond)

	subscribe5(t, self, 2, 0, codec.Subscription{Filter: "nl/+", QoS: 0})
	self.Send(&codec.Publish{Topic: "nl/b", QoS: 1, PacketID: 2, Payload: []byte("2")})
	if p := self.NextPublish(); string(p.Payload) != "2" || p.QoS != 0 {
		t.Fatalf("through the subscription without No Local: %q at QoS %d, want \"2\" at its QoS 0", p.Payload, p.QoS)
	}
}

// [MQTT-3.3.1-12] Retain As Published keeps RETAIN on a live copy of a retained publish; without
// it the flag is cleared [MQTT-3.3.1-13].
func TestMQTT5RetainAsPublished_MQTT_3_3_1_12(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	rap, _ := dial5(t, b.Addr, "rap", nil)
	subscribe5(t, rap, 1, 0, codec.Subscription{Filter: "rap/#", QoS: 1, RetainAsPublished: true})
	plain, _ := dial5(t, b.Addr, "plain", nil)
	subscribe5(t, plain, 1, 0, codec.Subscription{Filter: "rap/#", QoS: 1})
	pub, _ := dial5(t, b.Addr, "pub", nil)
	for i, qos := range []byte{0, 1} {
		pub.Send(&codec.Publish{Topic: "rap/x", QoS: qos, PacketID: uint16(i + 1), Retain: true, Payload: []byte{'r', byte('0' + i)}})
		if p := rap.NextPublish(); !p.Retain {
			t.Fatalf("QoS %d: Retain As Published subscriber got RETAIN 0", qos)
		}
		if p := plain.NextPublish(); p.Retain {
			t.Fatalf("QoS %d: subscriber without Retain As Published got RETAIN 1", qos)
		}
	}
}

// [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] Retain Handling: 0 sends the retained messages
// at every SUBSCRIBE, 1 only when the subscription is new, 2 never.
func TestMQTT5RetainHandling_MQTT_3_3_1_10(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	pub, _ := dial5(t, b.Addr, "pub", nil)
	pub.Send(&codec.Publish{Topic: "rh/x", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("kept")})
	mqtttest.Expect[*codec.Puback](pub)
	for _, tc := range []struct {
		handling    byte
		first, next bool
	}{{0, true, true}, {1, true, false}, {2, false, false}} {
		c, _ := dial5(t, b.Addr, "rh", nil)
		for i, want := range []bool{tc.first, tc.next} {
			subscribe5(t, c, uint16(i+1), 0, codec.Subscription{Filter: "rh/#", QoS: 1, RetainHandling: tc.handling})
			if !want {
				c.ExpectSilence(200 * time.Millisecond)
				continue
			}
			if p := c.NextPublish(); string(p.Payload) != "kept" || !p.Retain {
				t.Fatalf("Retain Handling %d, SUBSCRIBE %d: got %q retain=%v", tc.handling, i+1, p.Payload, p.Retain)
			}
		}
		c.Send(&codec.Disconnect{})
	}
}

// [MQTT-3.3.4-3] a message that matches several subscriptions of one client goes out once, with
// the identifiers of all of them [MQTT-3.3.4-4]; a retained message sent for a new subscription
// carries its identifier too.
func TestMQTT5SubscriptionIdentifiers_MQTT_3_3_4_3(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	pub, _ := dial5(t, b.Addr, "pub", nil)
	pub.Send(&codec.Publish{Topic: "id/r", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("r")})
	mqtttest.Expect[*codec.Puback](pub)

	sub, _ := dial5(t, b.Addr, "sub", nil)
	subscribe5(t, sub, 1, 7, codec.Subscription{Filter: "id/#", QoS: 1})
	if p := sub.NextPublish(); string(p.Payload) != "r" || p.Props == nil || !slices.Equal(p.Props.SubscriptionIDs, []uint32{7}) {
		t.Fatalf("retained message: %+v", p)
	}
	subscribe5(t, sub, 2, 9, codec.Subscription{Filter: "id/+", QoS: 0, RetainHandling: 2})
	subscribe5(t, sub, 3, 0, codec.Subscription{Filter: "id/x", QoS: 0}) // no identifier
	for i, qos := range []byte{0, 1, 2} {
		pub.Send(&codec.Publish{Topic: "id/x", QoS: qos, PacketID: uint16(i + 2), Payload: []byte{byte('0' + qos)}})
		p := sub.NextPublish()
		if p.Props == nil || !slices.Equal(p.Props.SubscriptionIDs, []uint32{7, 9}) {
			t.Fatalf("QoS %d: identifiers %+v, want [7 9] in one PUBLISH", qos, p.Props)
		}
	}
	sub.ExpectSilence(200 * time.Millisecond) // one copy each

	// One identifier on two overlapping subscriptions is sent once.
	same, _ := dial5(t, b.Addr, "same", nil)
	subscribe5(t, same, 1, 42, codec.Subscription{Filter: "id/#", QoS: 1, RetainHandling: 2}, codec.Subscription{Filter: "id/+", QoS: 1, RetainHandling: 2})
	pub.Send(&codec.Publish{Topic: "id/y", Payload: []byte("y")})
	if p := same.NextPublish(); p.Props == nil || !slices.Equal(p.Props.SubscriptionIDs, []uint32{42}) {
		t.Fatalf("one identifier on two subscriptions: %+v, want [42]", p.Props)
	}
	c := mqtttest.Dial(t, b.Addr)
	c.MustConnect("old", true)
	c.Subscribe(1, 1, "id/#")
	if p := c.NextPublish(); p.Props != nil {
		t.Fatalf("a 3.1.1 subscriber got properties %+v", p.Props)
	}
}

// [MQTT-3.11.3-1] UNSUBACK has a reason code per filter: 0x11 for one that was not subscribed.
func TestMQTT5UnsubackReasons_MQTT_3_11_3_1(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	c, _ := dial5(t, b.Addr, "u", nil)
	subscribe5(t, c, 1, 0, codec.Subscription{Filter: "u/a", QoS: 1})
	c.Send(&codec.Unsubscribe{PacketID: 2, Filters: []string{"u/a", "u/b"}})
	ack := mqtttest.Expect[*codec.Unsuback](c)
	if !slices.Equal(ack.Reasons, []codec.ReasonCode{codec.ReasonSuccess, codec.ReasonNoSubscriptionExisted}) {
		t.Fatalf("UNSUBACK reasons %v", ack.Reasons)
	}
}

// [MQTT-3.3.4-8] a client may not have more QoS 1/2 PUBLISH packets unacknowledged than the
// broker's Receive Maximum (CONNACK, limits.receive_maximum): one more ends the connection with
// DISCONNECT 0x93 (§4.9). Finished exchanges give their place back.
func TestMQTT5ReceiveMaximum_MQTT_3_3_4_8(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true, Extra: "[limits]\nreceive_maximum = 3\n"})
	c, ack := dial5(t, b.Addr, "rm", nil)
	if ack.Props == nil || ack.Props.ReceiveMaximum != 3 {
		t.Fatalf("CONNACK Receive Maximum %+v, want 3", ack.Props)
	}
	// QoS 2 exchanges completed one by one never hold more than one place.
	for i := range uint16(10) {
		c.Send(&codec.Publish{Topic: "rm/x", QoS: 2, PacketID: i + 1, Payload: []byte("x")})
		mqtttest.Expect[*codec.Pubrec](c)
		c.Send(&codec.Pubrel{PacketID: i + 1})
		mqtttest.Expect[*codec.Pubcomp](c)
	}
	// Three QoS 2 messages left at PUBREC hold all three places; a fourth is one too many.
	for i := range uint16(4) {
		c.Send(&codec.Publish{Topic: "rm/x", QoS: 2, PacketID: 100 + i, Payload: []byte("x")})
	}
	if r := expectDisconnect(t, c); r != codec.ReasonReceiveMaximumExceeded {
		t.Fatalf("DISCONNECT %v, want 0x93", r)
	}
}

// [MQTT-3.1.2-29] a client that sets Request Problem Information to 0 gets no Reason String on
// acknowledgements; one that leaves it at its default 1 learns why a publish or a subscription was
// refused. DISCONNECT carries one either way.
func TestMQTT5RequestProblemInformation_MQTT_3_1_2_29(t *testing.T) {
	acl := filepath.Join(t.TempDir(), "acl")
	secWriteFile(t, acl, "topic readwrite open/#\n")
	b := StartBroker(t, BrokerConfig{MQTT5: true, Extra: fmt.Sprintf("[auth]\nacl_file = %q\n", acl)})
	for _, want := range []bool{true, false} {
		var props *codec.Properties
		if !want {
			props = &codec.Properties{}
			props.Include(codec.PropRequestProblemInformation) // 0
		}
		c, _ := dial5(t, b.Addr, "problem", props)
		c.Send(&codec.Publish{Topic: "closed/x", QoS: 1, PacketID: 1, Payload: []byte("x")})
		ack := mqtttest.Expect[*codec.Puback](c)
		if ack.Reason != codec.ReasonNotAuthorized || (ack.Props != nil && ack.Props.ReasonString != "") != want {
			t.Fatalf("problem information %v: PUBACK %v %+v", want, ack.Reason, ack.Props)
		}
		c.Send(&codec.Subscribe{PacketID: 2, Subscriptions: []codec.Subscription{{Filter: "closed/#", QoS: 1}}})
		sack := mqtttest.Expect[*codec.Suback](c)
		if sack.ReturnCodes[0] != codec.SubackFailure || (sack.Props != nil && sack.Props.ReasonString != "") != want {
			t.Fatalf("problem information %v: SUBACK %v %+v", want, sack.ReturnCodes, sack.Props)
		}
		c.Send(&codec.Publish{Topic: "open/x", Payload: []byte("x"), Props: &codec.Properties{TopicAlias: 60000}})
		d := mqtttest.Expect[*codec.Disconnect](c)
		if d.Reason != codec.ReasonTopicAliasInvalid || d.Props == nil || d.Props.ReasonString == "" {
			t.Fatalf("problem information %v: DISCONNECT %v %+v, want 0x94 with a reason string", want, d.Reason, d.Props)
		}
	}
}

// [MQTT-3.3.2-5] a retained message keeps its properties and its expiry: a new subscriber gets
// them with what remains of the interval, and nothing once it has run out.
func TestMQTT5RetainedExpiry_MQTT_3_3_2_5(t *testing.T) {
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	pub, _ := dial5(t, b.Addr, "pub", nil)
	props := &codec.Properties{MessageExpiry: 1, ContentType: "text/plain", User: []codec.UserProperty{{Name: "k", Value: "v"}}}
	props.Include(codec.PropMessageExpiryInterval)
	pub.Send(&codec.Publish{Topic: "rx/a", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("soon gone"), Props: props})
	mqtttest.Expect[*codec.Puback](pub)
	published := time.Now()
	sub, _ := dial5(t, b.Addr, "sub", nil)
	subscribe5(t, sub, 1, 0, codec.Subscription{Filter: "rx/#", QoS: 1})
	p := sub.NextPublish()
	if !p.Retain || p.Props == nil || p.Props.ContentType != "text/plain" || len(p.Props.User) != 1 || p.Props.MessageExpiry != 1 {
		t.Fatalf("retained message %+v props %+v", p, p.Props)
	}
	time.Sleep(time.Until(published.Add(1100 * time.Millisecond))) // the interval runs out
	late, _ := dial5(t, b.Addr, "late", nil)
	subscribe5(t, late, 1, 0, codec.Subscription{Filter: "rx/#", QoS: 1})
	late.ExpectSilence(200 * time.Millisecond)
}

// The reason codes sent to level-5 clients are counted in /metrics by packet and code.
func TestMQTT5ReasonCodeMetrics(t *testing.T) {
	acl := filepath.Join(t.TempDir(), "acl")
	secWriteFile(t, acl, "topic readwrite open/#\n")
	b := StartBroker(t, BrokerConfig{MQTT5: true, Extra: fmt.Sprintf("[auth]\nacl_file = %q\n", acl) + opsAdminExtra("0s")})
	base := "http://" + opsAdminAddr(t, b)
	c, _ := dial5(t, b.Addr, "counted", nil)
	for i := range uint16(3) {
		c.Send(&codec.Publish{Topic: "closed/x", QoS: 1, PacketID: i + 1, Payload: []byte("x")})
		mqtttest.Expect[*codec.Puback](c)
	}
	c.Send(&codec.Unsubscribe{PacketID: 9, Filters: []string{"never/subscribed"}})
	mqtttest.Expect[*codec.Unsuback](c)
	m := opsScrape(t, base)
	for k, want := range map[string]float64{
		`holdfast_reason_codes_sent_total{code="0x87",packet="PUBACK",reason="Not authorized"}`:            3,
		`holdfast_reason_codes_sent_total{code="0x11",packet="UNSUBACK",reason="No subscription existed"}`: 1,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
}
