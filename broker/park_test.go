//go:build linux

package broker

import (
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// parked counts the server's connections whose reader is parked.
func (b *testBroker) parked() int {
	b.srv.mu.Lock()
	defer b.srv.mu.Unlock()
	parking.mu.Lock()
	defer parking.mu.Unlock()
	n := 0
	for c := range b.srv.conns {
		if c.parkID != 0 {
			n++
		}
	}
	return n
}

func (b *testBroker) expectParked(t *testing.T, want int, when string) {
	t.Helper()
	mqtttest.Eventually(t, 5*time.Second, when+": parked readers", func() bool { return b.parked() == want })
}

func TestQuietConnectionsParkAndWake(t *testing.T) {
	b := startBroker(t, nil)
	sub := b.dial()
	sub.MustConnect("sub", true) // keep-alive 60
	sub.Subscribe(1, 1, "park/#")
	zero := b.dial()
	zero.Send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "zero", CleanSession: true})
	mqtttest.Expect[*codec.Connack](zero)
	b.expectParked(t, 2, "after CONNECT and SUBSCRIBE")

	// A publisher's reader does not park after PUBLISH; the parked subscriber is written to and
	// its PUBACK wakes its reader.
	pub := b.dial()
	pub.MustConnect("pub", true)
	pub.Send(&codec.Publish{Topic: "park/a", Payload: []byte("x"), QoS: 1, PacketID: 7})
	mqtttest.Expect[*codec.Puback](pub)
	p := mqtttest.Expect[*codec.Publish](sub)
	if string(p.Payload) != "x" {
		t.Fatalf("parked subscriber got %q", p.Payload)
	}
	sub.Send(&codec.Puback{PacketID: p.PacketID})
	zero.Send(&codec.Pingreq{})
	mqtttest.Expect[*codec.Pingresp](zero)
	sub.Send(&codec.Pingreq{})
	mqtttest.Expect[*codec.Pingresp](sub)
	b.expectParked(t, 2, "after PINGREQ")

	// A parked client that goes away is torn down (its session ends), and so is one taken over.
	zero.Conn.Close()
	b.expectParked(t, 1, "after a parked client closed")
	again := b.dial()
	again.MustConnect("sub", true)
	sub.ExpectClosed()
	b.expectParked(t, 1, "after a take-over")
	again.Send(&codec.Pingreq{})
	mqtttest.Expect[*codec.Pingresp](again)
}

func TestParkedKeepAliveExpires(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial()
	c.Send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "ka", CleanSession: true, KeepAlive: 1})
	mqtttest.Expect[*codec.Connack](c)
	c.Send(&codec.Pingreq{})
	mqtttest.Expect[*codec.Pingresp](c)
	b.expectParked(t, 1, "after PINGREQ")
	start := time.Now()
	c.ExpectClosed()
	if took := time.Since(start); took < time.Second || took > 3*time.Second {
		t.Fatalf("a parked connection with keep-alive 1 s closed after %v, want about 1.5 s", took)
	}
}

func TestShutdownWakesParkedReaders(t *testing.T) {
	b := startBroker(t, nil)
	var cs []*mqtttest.Client
	for _, id := range []string{"a", "b", "c"} {
		c := b.dial()
		c.MustConnect(id, false)
		cs = append(cs, c)
	}
	b.expectParked(t, 3, "after CONNECT")
	b.stop() // waits for every reader's teardown
	for _, c := range cs {
		c.ExpectClosed()
	}
}
