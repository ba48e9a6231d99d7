package test

import (
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// Interop with github.com/eclipse/paho.mqtt.golang, a third-party client, against the child
// broker at both protocol levels: 3 (MQTT 3.1, "MQIsdp") and 4 (MQTT 3.1.1).

const pahoWait = 10 * time.Second

var pahoVersions = []uint{3, 4}

// pahoInbox collects the messages a paho client receives, in delivery order.
type pahoInbox chan mqtt.Message

func newPahoInbox() pahoInbox { return make(pahoInbox, 256) }

func (in pahoInbox) handler(_ mqtt.Client, m mqtt.Message) { in <- m }

// expect fails the test unless the next message has exactly these properties.
func (in pahoInbox) expect(t *testing.T, topic, payload string, qos byte, retained bool) mqtt.Message {
	t.Helper()
	select {
	case m := <-in:
		if m.Topic() != topic || string(m.Payload()) != payload || m.Qos() != qos || m.Retained() != retained {
			t.Fatalf("received topic %q payload %q qos %d retained %v; want topic %q payload %q qos %d retained %v",
				m.Topic(), m.Payload(), m.Qos(), m.Retained(), topic, payload, qos, retained)
		}
		return m
	case <-time.After(pahoWait):
		t.Fatalf("no message within %v; want topic %q payload %q", pahoWait, topic, payload)
		return nil
	}
}

// expectNone fails the test if a message arrives within d.
func (in pahoInbox) expectNone(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-in:
		t.Fatalf("unexpected message: topic %q payload %q qos %d retained %v dup %v",
			m.Topic(), m.Payload(), m.Qos(), m.Retained(), m.Duplicate())
	case <-time.After(d):
	}
}

// pahoOptions returns options for a client of the broker at b with auto-reconnect off, so that a
// lost connection stays lost.
func pahoOptions(b *Broker, id string, version uint) *mqtt.ClientOptions {
	return mqtt.NewClientOptions().
		AddBroker("tcp://" + b.Addr).
		SetClientID(id).
		SetProtocolVersion(version).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(pahoWait).
		SetWriteTimeout(pahoWait)
}

// pahoConnect connects a client and disconnects it when the test ends; it returns the client and
// the CONNACK's session-present flag as paho saw it.
func pahoConnect(t *testing.T, opts *mqtt.ClientOptions) (mqtt.Client, bool) {
	t.Helper()
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	pahoWaitToken(t, tok, "connect "+opts.ClientID)
	t.Cleanup(func() {
		if c.IsConnectionOpen() {
			c.Disconnect(0)
		}
	})
	return c, tok.(*mqtt.ConnectToken).SessionPresent()
}

func pahoWaitToken(t *testing.T, tok mqtt.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(pahoWait) {
		t.Fatalf("%s: no answer within %v", what, pahoWait)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func pahoSubscribe(t *testing.T, c mqtt.Client, filter string, qos byte, in pahoInbox) {
	t.Helper()
	var cb mqtt.MessageHandler
	if in != nil {
		cb = in.handler
	}
	tok := c.Subscribe(filter, qos, cb)
	pahoWaitToken(t, tok, "subscribe "+filter)
	granted := tok.(*mqtt.SubscribeToken).Result()[filter]
	if granted != qos {
		t.Fatalf("SUBACK for %q granted %d, want %d", filter, granted, qos)
	}
}

func pahoPublish(t *testing.T, c mqtt.Client, topic string, qos byte, retained bool, payload string) {
	t.Helper()
	pahoWaitToken(t, c.Publish(topic, qos, retained, payload), "publish "+topic)
}

// TestPahoQoSRoundTrip_MQTT_3_8_4_6 publishes at QoS 0, 1 and 2 to a subscriber granted the same
// QoS at each protocol level: every message arrives once, in order [MQTT-4.6.0-6], at the
// minimum of the published and granted QoS [MQTT-3.8.4-6], with RETAIN 0 because it matched an
// established subscription [MQTT-3.3.1-9] and DUP 0 on first delivery.
func TestPahoQoSRoundTrip_MQTT_3_8_4_6(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{})
	for _, v := range pahoVersions {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("v%d/qos%d", v, qos), func(t *testing.T) {
				t.Parallel()
				topic := fmt.Sprintf("paho/rt/v%d/q%d", v, qos)
				in := newPahoInbox()
				sub, _ := pahoConnect(t, pahoOptions(b, fmt.Sprintf("rt-sub-%d-%d", v, qos), v))
				pahoSubscribe(t, sub, topic, qos, in)
				pub, _ := pahoConnect(t, pahoOptions(b, fmt.Sprintf("rt-pub-%d-%d", v, qos), v))
				const n = 20
				for i := range n {
					pahoPublish(t, pub, topic, qos, false, fmt.Sprintf("v%d-q%d-%02d", v, qos, i))
				}
				for i := range n {
					m := in.expect(t, topic, fmt.Sprintf("v%d-q%d-%02d", v, qos, i), qos, false)
					if m.Duplicate() {
						t.Fatalf("message %d delivered with DUP set on first delivery", i)
					}
				}
				in.expectNone(t, 200*time.Millisecond)
			})
		}
	}
}

// TestPahoRetained_MQTT_3_3_1_8 stores a retained message: a subscriber that was already there
// receives it with RETAIN 0 [MQTT-3.3.1-9]; a new subscription receives it with RETAIN 1
// [MQTT-3.3.1-6], [MQTT-3.3.1-8], at the granted QoS.
func TestPahoRetained_MQTT_3_3_1_8(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{})
	for _, v := range pahoVersions {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			t.Parallel()
			topic := fmt.Sprintf("paho/ret/v%d/x", v)
			filter := fmt.Sprintf("paho/ret/v%d/#", v)
			payload := fmt.Sprintf("retained-v%d", v)

			early := newPahoInbox()
			ec, _ := pahoConnect(t, pahoOptions(b, fmt.Sprintf("ret-early-%d", v), v))
			pahoSubscribe(t, ec, filter, 1, early)

			pub, _ := pahoConnect(t, pahoOptions(b, fmt.Sprintf("ret-pub-%d", v), v))
			pahoPublish(t, pub, topic, 1, true, payload)
			early.expect(t, topic, payload, 1, false)

			for _, qos := range []byte{0, 1, 2} {
				late := newPahoInbox()
				lc, _ := pahoConnect(t, pahoOptions(b, fmt.Sprintf("ret-late-%d-%d", v, qos), v))
				pahoSubscribe(t, lc, filter, qos, late)
				late.expect(t, topic, payload, min(qos, 1), true)
				late.expectNone(t, 100*time.Millisecond)
			}

			// A retained message with an empty payload removes it [MQTT-3.3.1-10].
			pahoPublish(t, pub, topic, 1, true, "")
			early.expect(t, topic, "", 1, false)
			gone := newPahoInbox()
			gc, _ := pahoConnect(t, pahoOptions(b, fmt.Sprintf("ret-gone-%d", v), v))
			pahoSubscribe(t, gc, filter, 1, gone)
			gone.expectNone(t, 300*time.Millisecond)
		})
	}
}

// killableDialer opens paho's connections itself so the test can cut one without paho sending
// DISCONNECT.
type killableDialer struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (d *killableDialer) open(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", u.Host, pahoWait)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	return c, nil
}

// kill closes every connection opened so far; with reset it aborts them with RST (SO_LINGER 0)
// instead of FIN.
func (d *killableDialer) kill(t *testing.T, reset bool) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.conns) == 0 {
		t.Fatal("killableDialer: no connection to kill")
	}
	for _, c := range d.conns {
		if reset {
			if err := c.(*net.TCPConn).SetLinger(0); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
	}
}

// TestPahoWill_MQTT_3_1_2_8 connects paho clients with a will. One disconnects with DISCONNECT,
// so its will is discarded [MQTT-3.1.2-10]; the other loses its TCP connection (FIN at level 3,
// RST at level 4) and its will is published [MQTT-3.1.2-8] with the will's QoS and RETAIN 0 to an
// existing subscriber.
func TestPahoWill_MQTT_3_1_2_8(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{})
	for _, v := range pahoVersions {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			t.Parallel()
			base := fmt.Sprintf("paho/will/v%d", v)
			in := newPahoInbox()
			watcher, _ := pahoConnect(t, pahoOptions(b, fmt.Sprintf("will-watch-%d", v), v))
			pahoSubscribe(t, watcher, base+"/#", 2, in)

			// The clean goodbye: its will must never appear.
			polite, _ := pahoConnect(t, pahoOptions(b, fmt.Sprintf("will-polite-%d", v), v).
				SetWill(base+"/polite", "polite-will", 1, false))
			polite.Disconnect(100)

			d := &killableDialer{}
			opts := pahoOptions(b, fmt.Sprintf("will-victim-%d", v), v).
				SetWill(base+"/victim", fmt.Sprintf("victim-gone-v%d", v), 1, false).
				SetCustomOpenConnectionFn(d.open)
			victim, _ := pahoConnect(t, opts)
			// Make sure the victim is fully established (a round trip) before the cut.
			pahoPublish(t, victim, base+"/alive", 1, false, "alive")
			in.expect(t, base+"/alive", "alive", 1, false)

			d.kill(t, v == 4)
			in.expect(t, base+"/victim", fmt.Sprintf("victim-gone-v%d", v), 1, false)
			in.expectNone(t, 300*time.Millisecond)
		})
	}
}

// TestPahoPersistentSession_MQTT_3_1_2_5 subscribes with CleanSession 0 at QoS 1, goes offline,
// and receives the QoS 1 messages published meanwhile [MQTT-3.1.2-4], [MQTT-3.1.2-5]: first
// without a restart, then with one published before and one after a broker Stop+Start. At level 4
// CONNACK says session present [MQTT-3.2.2-2]; at level 3 that byte is reserved and must be 0.
func TestPahoPersistentSession_MQTT_3_1_2_5(t *testing.T) {
	t.Parallel()
	for _, v := range pahoVersions {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			t.Parallel()
			b := StartBroker(t, BrokerConfig{})
			id := fmt.Sprintf("paho-persist-%d", v)
			topic := fmt.Sprintf("paho/persist/v%d", v)

			connectSub := func(in pahoInbox) (mqtt.Client, bool) {
				t.Helper()
				opts := pahoOptions(b, id, v).SetCleanSession(false)
				if in != nil {
					// Messages of the resumed session arrive before any Subscribe call: paho
					// routes them to the default handler.
					opts.SetDefaultPublishHandler(in.handler)
				}
				return pahoConnect(t, opts)
			}
			// publish uses our raw client, so the publisher is independent of paho's state and
			// the PUBACK it waits for means the message is durable.
			publish := func(pid uint16, payload string) {
				t.Helper()
				c := mqtttest.Dial(t, b.Addr)
				c.MustConnect(fmt.Sprintf("persist-pub-%d-%d", v, pid), true)
				c.Send(&codec.Publish{QoS: 1, Topic: topic, PacketID: pid, Payload: []byte(payload)})
				if ack := mqtttest.Expect[*codec.Puback](c); ack.PacketID != pid {
					t.Fatalf("PUBACK packet id %d, want %d", ack.PacketID, pid)
				}
				c.Send(&codec.Disconnect{})
				c.ExpectClosed()
			}

			sub, present := connectSub(nil)
			if present {
				t.Fatal("first CONNECT of a new client id reported session present")
			}
			pahoSubscribe(t, sub, topic, 1, nil)
			sub.Disconnect(100)

			// Offline, no restart.
			publish(1, "offline-1")
			in := newPahoInbox()
			sub, present = connectSub(in)
			if want := v == 4; present != want {
				t.Fatalf("CONNACK session present = %v, want %v at level %d", present, want, v)
			}
			in.expect(t, topic, "offline-1", 1, false)
			in.expectNone(t, 200*time.Millisecond)
			sub.Disconnect(100)

			// Offline across a restart: one message before Stop, one after Start.
			publish(2, "before-restart")
			b.Stop()
			b.Start()
			publish(3, "after-restart")
			in = newPahoInbox()
			sub, present = connectSub(in)
			if want := v == 4; present != want {
				t.Fatalf("after restart: CONNACK session present = %v, want %v at level %d", present, want, v)
			}
			in.expect(t, topic, "before-restart", 1, false)
			in.expect(t, topic, "after-restart", 1, false)
			in.expectNone(t, 200*time.Millisecond)

			// The subscription itself survived the restart: a message published while the client
			// is online is delivered live.
			publish(4, "online")
			in.expect(t, topic, "online", 1, false)
			sub.Disconnect(100)
		})
	}
}
