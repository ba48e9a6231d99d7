package broker

import (
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

func TestFirstPacketMustBeConnect_MQTT_3_1_0_1(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial()
	c.Send(&codec.Publish{Topic: "a", Payload: []byte("x")})
	if got := c.ExpectClosed(); len(got) != 0 {
		t.Fatalf("got %v before close, want nothing", got)
	}
}

func TestSecondConnectClosesConnection_MQTT_3_1_0_2(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial()
	c.MustConnect("twice", true)
	c.Send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "twice", CleanSession: true})
	c.ExpectClosed()
}

func TestUnsupportedProtocolLevel_MQTT_3_1_2_2(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial()
	// A CONNECT with protocol level 6 written by hand (the codec refuses to encode one).
	c.SendRaw([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 6, 0x02, 0, 60, 0, 1, 'x'})
	ack := mqtttest.Expect[*codec.Connack](c)
	if ack.ReturnCode != codec.RefusedProtocolVersion {
		t.Fatalf("CONNACK 0x%02x, want 0x01", ack.ReturnCode)
	}
	c.ExpectClosed()
}

func TestEmptyClientIDPersistentRefused_MQTT_3_1_3_8(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial()
	ack := c.Connect(&codec.Connect{CleanSession: false})
	if ack.ReturnCode != codec.RefusedIdentifierRejected {
		t.Fatalf("CONNACK 0x%02x, want 0x02", ack.ReturnCode)
	}
	c.ExpectClosed()
}

func TestEmptyClientIDCleanAssigned_MQTT_3_1_3_6(t *testing.T) {
	b := startBroker(t, nil)
	c1, c2 := b.dial(), b.dial()
	for _, c := range []*mqtttest.Client{c1, c2} {
		if ack := c.Connect(&codec.Connect{CleanSession: true}); ack.ReturnCode != codec.Accepted {
			t.Fatalf("CONNACK 0x%02x, want accepted", ack.ReturnCode)
		}
	}
	// Two anonymous clients got different ids: both stay connected and both receive.
	c1.Subscribe(1, 0, "anon")
	c2.Subscribe(1, 0, "anon")
	c1.Send(&codec.Publish{Topic: "anon", Payload: []byte("hi")})
	for _, c := range []*mqtttest.Client{c1, c2} {
		if p := mqtttest.Expect[*codec.Publish](c); string(p.Payload) != "hi" {
			t.Fatalf("payload %q", p.Payload)
		}
	}
}

func TestMQTT31EmptyClientIDRefused(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial()
	ack := c.Connect(&codec.Connect{ProtocolName: "MQIsdp", ProtocolLevel: codec.Level31, CleanSession: true})
	if ack.ReturnCode != codec.RefusedIdentifierRejected {
		t.Fatalf("CONNACK 0x%02x, want 0x02", ack.ReturnCode)
	}
}

func TestClientIDLength(t *testing.T) {
	long := strings.Repeat("x", 24)
	t.Run("3.1 strict refuses 24 bytes", func(t *testing.T) {
		b := startBroker(t, nil)
		c := b.dial()
		ack := c.Connect(&codec.Connect{ProtocolName: "MQIsdp", ProtocolLevel: codec.Level31, ClientID: long, CleanSession: true})
		if ack.ReturnCode != codec.RefusedIdentifierRejected {
			t.Fatalf("CONNACK 0x%02x, want 0x02", ack.ReturnCode)
		}
	})
	t.Run("3.1 lenient accepts 24 bytes", func(t *testing.T) {
		b := startBroker(t, func(c *config.Config) { c.Limits.StrictClientID = false })
		c := b.dial()
		ack := c.Connect(&codec.Connect{ProtocolName: "MQIsdp", ProtocolLevel: codec.Level31, ClientID: long, CleanSession: true})
		if ack.ReturnCode != codec.Accepted {
			t.Fatalf("CONNACK 0x%02x, want accepted", ack.ReturnCode)
		}
	})
	t.Run("3.1.1 accepts 65535 bytes", func(t *testing.T) {
		b := startBroker(t, nil)
		c := b.dial()
		ack := c.Connect(&codec.Connect{ClientID: strings.Repeat("y", 65535), CleanSession: true})
		if ack.ReturnCode != codec.Accepted {
			t.Fatalf("CONNACK 0x%02x, want accepted", ack.ReturnCode)
		}
	})
	t.Run("3.1.1 persistent session with a 60000-byte id", func(t *testing.T) {
		b := startBroker(t, nil)
		c := b.dial()
		ack := c.Connect(&codec.Connect{ClientID: strings.Repeat("z", 60000), CleanSession: false})
		if ack.ReturnCode != codec.Accepted {
			t.Fatalf("CONNACK 0x%02x, want accepted", ack.ReturnCode)
		}
	})
}

func TestSessionPresent_MQTT_3_2_2_2(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial()
	if c.MustConnect("sp", false) {
		t.Fatal("first connect: session present 1, want 0 [MQTT-3.2.2-3]")
	}
	c.Send(&codec.Disconnect{})
	c.ExpectClosed()
	c = b.dial()
	if !c.MustConnect("sp", false) {
		t.Fatal("second connect: session present 0, want 1 [MQTT-3.2.2-2]")
	}
	c.Send(&codec.Disconnect{})
	c.ExpectClosed()
	c = b.dial()
	if c.MustConnect("sp", true) {
		t.Fatal("clean connect: session present 1, want 0 [MQTT-3.2.2-1]")
	}
}

func TestSessionPresentReservedForMQTT31(t *testing.T) {
	b := startBroker(t, nil)
	for i := 0; i < 2; i++ {
		c := b.dial()
		ack := c.Connect(&codec.Connect{ProtocolName: "MQIsdp", ProtocolLevel: codec.Level31, ClientID: "v31", CleanSession: false})
		if ack.ReturnCode != codec.Accepted || ack.SessionPresent {
			t.Fatalf("connect %d: %+v, want accepted with the reserved byte 0", i, ack)
		}
		c.Send(&codec.Disconnect{})
		c.ExpectClosed()
	}
}

func TestPublishPipelinedBeforeConnack(t *testing.T) {
	b := startBroker(t, nil)
	sub := b.dial()
	sub.MustConnect("sub", true)
	sub.Subscribe(1, 1, "pipe/#")

	pub := b.dial()
	// CONNECT and three publishes in one write, without waiting for CONNACK.
	pub.Send(
		&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "pub", CleanSession: true},
		&codec.Publish{Topic: "pipe/1", Payload: []byte("1")},
		&codec.Publish{Topic: "pipe/2", Payload: []byte("2"), QoS: 1, PacketID: 7},
		&codec.Publish{Topic: "pipe/3", Payload: []byte("3"), QoS: 2, PacketID: 8},
	)
	if ack := mqtttest.Expect[*codec.Connack](pub); ack.ReturnCode != codec.Accepted {
		t.Fatalf("CONNACK %+v", ack)
	}
	if a := mqtttest.Expect[*codec.Puback](pub); a.PacketID != 7 {
		t.Fatalf("PUBACK %d", a.PacketID)
	}
	if a := mqtttest.Expect[*codec.Pubrec](pub); a.PacketID != 8 {
		t.Fatalf("PUBREC %d", a.PacketID)
	}
	for _, want := range []string{"1", "2", "3"} {
		p := mqtttest.Expect[*codec.Publish](sub)
		if string(p.Payload) != want {
			t.Fatalf("got %q, want %q", p.Payload, want)
		}
		if p.QoS == 1 {
			sub.Send(&codec.Puback{PacketID: p.PacketID})
		}
	}
}

func TestKeepAliveExpiry_MQTT_3_1_2_24(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial()
	c.Send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "ka", CleanSession: true, KeepAlive: 1})
	mqtttest.Expect[*codec.Connack](c)
	start := time.Now()
	c.ExpectClosed()
	if took := time.Since(start); took < 1400*time.Millisecond || took > 3*time.Second {
		t.Fatalf("closed after %v, want about 1.5 s", took)
	}
}

func TestPingKeepsConnectionAlive_MQTT_3_12_4_1(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial()
	c.Send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "ping", CleanSession: true, KeepAlive: 1})
	mqtttest.Expect[*codec.Connack](c)
	for i := 0; i < 4; i++ {
		time.Sleep(600 * time.Millisecond)
		c.Send(&codec.Pingreq{})
		mqtttest.Expect[*codec.Pingresp](c)
	}
}

func TestConnectTimeout(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.Limits.ConnectTimeout.Duration = 300 * time.Millisecond })
	c := b.dial()
	start := time.Now()
	c.ExpectClosed()
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("closed after %v, want about 300 ms", took)
	}
}

func TestTakeOver_MQTT_3_1_4_2(t *testing.T) {
	b := startBroker(t, nil)
	old := b.dial()
	old.MustConnect("same", false)
	old.Subscribe(1, 1, "take/over")

	nw := b.dial()
	if !nw.MustConnect("same", false) {
		t.Fatal("session present 0 after take-over, want 1")
	}
	old.ExpectClosed()

	pub := b.dial()
	pub.MustConnect("pub", true)
	pub.Send(&codec.Publish{Topic: "take/over", Payload: []byte("x"), QoS: 1, PacketID: 1})
	mqtttest.Expect[*codec.Puback](pub)
	if p := mqtttest.Expect[*codec.Publish](nw); string(p.Payload) != "x" {
		t.Fatalf("new connection got %q", p.Payload)
	}
}

func TestWill(t *testing.T) {
	b := startBroker(t, nil)
	watcher := b.dial()
	watcher.MustConnect("watcher", true)
	watcher.Subscribe(1, 1, "will/#")

	t.Run("published on abnormal close [MQTT-3.1.2-8]", func(t *testing.T) {
		c := b.dial()
		c.Connect(&codec.Connect{ClientID: "dies", CleanSession: true, Will: &codec.Will{Topic: "will/dies", Payload: []byte("gone"), QoS: 1}})
		c.Conn.Close()
		p := mqtttest.Expect[*codec.Publish](watcher)
		if p.Topic != "will/dies" || string(p.Payload) != "gone" || p.QoS != 1 {
			t.Fatalf("got %s", mqtttest.String(p))
		}
		watcher.Send(&codec.Puback{PacketID: p.PacketID})
	})
	t.Run("discarded on DISCONNECT [MQTT-3.1.2-10]", func(t *testing.T) {
		c := b.dial()
		c.Connect(&codec.Connect{ClientID: "leaves", CleanSession: true, Will: &codec.Will{Topic: "will/leaves", Payload: []byte("gone")}})
		c.Send(&codec.Disconnect{})
		c.ExpectClosed()
		watcher.ExpectSilence(300 * time.Millisecond)
	})
	t.Run("retained will [MQTT-3.1.2-17]", func(t *testing.T) {
		c := b.dial()
		c.Connect(&codec.Connect{ClientID: "dies2", CleanSession: true, Will: &codec.Will{Topic: "will/kept", Payload: []byte("r"), Retain: true}})
		c.Conn.Close()
		mqtttest.Expect[*codec.Publish](watcher)
		late := b.dial()
		late.MustConnect("late", true)
		late.Subscribe(1, 0, "will/kept")
		if p := mqtttest.Expect[*codec.Publish](late); !p.Retain || string(p.Payload) != "r" {
			t.Fatalf("got %s, want the retained will", mqtttest.String(p))
		}
	})
}

func TestKeepAliveZeroHasNoReadDeadline(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.Limits.ConnectTimeout.Duration = 200 * time.Millisecond })
	c := b.dial()
	c.MustConnect("forever", true) // MustConnect uses keep-alive 60; send our own with 0
	c2 := b.dial()
	c2.Send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "zero", CleanSession: true})
	mqtttest.Expect[*codec.Connack](c2)
	time.Sleep(500 * time.Millisecond) // past the CONNECT deadline
	c2.Send(&codec.Pingreq{})
	mqtttest.Expect[*codec.Pingresp](c2)
}
