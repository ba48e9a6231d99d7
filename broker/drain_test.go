package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// A persistent session reconnecting to a queue of several pages drains it in order, once each,
// while it acknowledges a window at a time in one write (the removals of one read go to the
// store together), and the store holds none of the acknowledged entries afterwards, nor after a
// restart. A connection that ends while a page is read ahead gives it back.
func TestDrainAcknowledgedInBursts(t *testing.T) {
	b := startBroker(t, nil)
	window := b.cfg.Limits.MaxInflight
	sub := b.dial()
	sub.MustConnect("drainer", false)
	sub.Subscribe(1, 1, "drain/#")
	sub.Conn.Close()

	// Three pages of the session's reads (memory window plus in-flight window) and a bit.
	n := 3*(max(256, window)+window) + 7
	pub := b.dial()
	pub.MustConnect("pub", true)
	for i := 0; i < n; {
		var burst []codec.Packet
		for ; i < n && len(burst) < 100; i++ {
			burst = append(burst, &codec.Publish{Topic: "drain/x", Payload: []byte(fmt.Sprint(i)), QoS: 1, PacketID: uint16(i%60000 + 1)})
		}
		pub.Send(burst...)
		for range burst {
			mqtttest.Expect[*codec.Puback](pub)
		}
	}

	// A first connection takes one window and goes: the page read ahead meanwhile is given back.
	sub = b.dial()
	if !sub.MustConnect("drainer", false) {
		t.Fatal("session not present")
	}
	mqtttest.Expect[*codec.Publish](sub)
	if n := b.srv.readAheads.Load(); n != 1 {
		t.Fatalf("%d pages read ahead after the first page was loaded, want 1", n)
	}
	sub.Conn.Close()
	mqtttest.Eventually(t, 5*time.Second, "the page read ahead to be given back", func() bool {
		return b.srv.readAheads.Load() == 0
	})

	sub = b.dial()
	if !sub.MustConnect("drainer", false) {
		t.Fatal("session not present")
	}
	next := 0
	for next < n {
		var acks []codec.Packet
		for len(acks) < min(window, n-next) {
			p := mqtttest.Expect[*codec.Publish](sub)
			// The first window went to the first connection: DUP now.
			if p.Dup != (next < window) || string(p.Payload) != fmt.Sprint(next) {
				t.Fatalf("got %q (dup %v), want %d", p.Payload, p.Dup, next)
			}
			next++
			acks = append(acks, &codec.Puback{PacketID: p.PacketID})
		}
		sub.Send(acks...)
	}
	empty := func() bool {
		q, err := b.store.ReadQueue("drainer", 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		return len(q) == 0
	}
	mqtttest.Eventually(t, 5*time.Second, "the acknowledged entries to leave the store", empty)
	b.restart()
	if !empty() {
		t.Fatal("acknowledged entries came back after a restart")
	}
}
