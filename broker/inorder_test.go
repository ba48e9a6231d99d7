package broker

import (
	"fmt"
	"testing"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// MQTT-4.6.0-2, MQTT-4.6.0-3, MQTT-4.6.0-4: PUBACK, PUBREC and PUBREL... answers leave in the order
// the packets arrived, whichever goroutine completes them: a pipelined mix of publishes that wait
// for a commit (a persistent subscriber), publishes that wait for nothing (no subscriber, a
// duplicate QoS 2 PUBLISH), PUBRELs, and publishes whose completion hands QoS 0 copies to a
// subscriber (moved off persist's syncer) must be answered exactly in arrival order.
func TestAcknowledgementsInArrivalOrder_MQTT_4_6_0_2(t *testing.T) {
	b := startBroker(t, nil)
	durable := b.dial()
	durable.MustConnect("durable", false)
	durable.Subscribe(1, 2, "io/durable/#")
	fast := b.dial()
	fast.MustConnect("qos0", true)
	fast.Subscribe(1, 0, "io/#")

	pub := b.dial()
	pub.MustConnect("pub", true)
	type answer struct {
		kind codec.Type
		pid  uint16
	}
	var sent []codec.Packet
	var want []answer
	for i := range 300 {
		pid := uint16(i + 1)
		switch i % 6 {
		case 0, 1: // committed for the persistent subscriber, then a QoS 0 copy
			sent = append(sent, &codec.Publish{Topic: fmt.Sprintf("io/durable/%d", i), QoS: 1, PacketID: pid, Payload: []byte("x")})
			want = append(want, answer{codec.TypePuback, pid})
		case 2: // nothing to commit, but behind the ones before it
			sent = append(sent, &codec.Publish{Topic: "nobody/listens", QoS: 1, PacketID: pid})
			want = append(want, answer{codec.TypePuback, pid})
		case 3: // QoS 2 to the persistent subscriber, a duplicate of it, and its PUBREL
			p := &codec.Publish{Topic: fmt.Sprintf("io/durable/%d", i), QoS: 2, PacketID: pid, Payload: []byte("y")}
			dup := *p
			dup.Dup = true
			sent = append(sent, p, &dup, &codec.Pubrel{PacketID: pid})
			want = append(want, answer{codec.TypePubrec, pid}, answer{codec.TypePubrec, pid}, answer{codec.TypePubcomp, pid})
		case 4: // only the QoS 0 subscriber
			sent = append(sent, &codec.Publish{Topic: "io/other", QoS: 1, PacketID: pid, Payload: []byte("z")})
			want = append(want, answer{codec.TypePuback, pid})
		case 5: // retained: committed, and a QoS 0 copy
			sent = append(sent, &codec.Publish{Topic: fmt.Sprintf("io/kept/%d", i%2), QoS: 1, PacketID: pid, Retain: true, Payload: []byte("r")})
			want = append(want, answer{codec.TypePuback, pid})
		}
	}
	go func() {
		for _, p := range sent {
			if pub.Write(p) != nil {
				return
			}
		}
	}()
	for i, w := range want {
		var got answer
		switch p := pub.Read().(type) {
		case *codec.Puback:
			got = answer{codec.TypePuback, p.PacketID}
		case *codec.Pubrec:
			got = answer{codec.TypePubrec, p.PacketID}
		case *codec.Pubcomp:
			got = answer{codec.TypePubcomp, p.PacketID}
		default:
			t.Fatalf("answer %d: unexpected %s", i, mqtttest.String(p))
		}
		if got != w {
			t.Fatalf("answer %d: %s %d, want %s %d", i, got.kind, got.pid, w.kind, w.pid)
		}
	}
	// Every copy arrived too: 5 publishes of every 6 reach the QoS 0 subscriber (the duplicate is
	// not routed again), 3 of every 6 the persistent one.
	if got := receive(t, fast, 250); len(got) != 250 {
		t.Fatalf("QoS 0 subscriber got %d", len(got))
	}
	if got := receive(t, durable, 150); len(got) != 150 {
		t.Fatalf("persistent subscriber got %d", len(got))
	}
}
