package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// Issue 16: "Incoming connections with levels 0x83 and 0x84 are accepted as a 3.1 and 3.1.1
// bridge", and holdfast "does not echo their messages back (No Local behaviour)"; the retain flag
// is kept as published on what a bridge receives, as Mosquitto does for bridges.

// bridgeConnect is a CONNECT written byte by byte, protocol level as given (clean session, keep
// alive 60), so that the codec's own encoding of the bridge bit is not what is tested.
func bridgeConnect(name string, level byte, clientID string) []byte {
	body := []byte{0, byte(len(name))}
	body = append(body, name...)
	body = append(body, level, 0x02, 0, 60, 0, byte(len(clientID)))
	body = append(body, clientID...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

func TestBridgeInLevels0x83And0x84Accepted(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{})
	for _, tc := range []struct {
		name  string
		level byte
	}{{codec.ProtocolName31, 0x83}, {codec.ProtocolName311, 0x84}} {
		t.Run(fmt.Sprintf("%#x", tc.level), func(t *testing.T) {
			base := fmt.Sprintf("bridgein/%x", tc.level)
			id := fmt.Sprintf("edge-%x", tc.level)
			plain := mqtttest.Dial(t, b.Addr)
			plain.MustConnect("plain-"+id, true)
			plain.Subscribe(1, 1, base+"/#")

			br := mqtttest.Dial(t, b.Addr)
			br.SendRaw(bridgeConnect(tc.name, tc.level, id))
			if ack := mqtttest.Expect[*codec.Connack](br); ack.ReturnCode != codec.Accepted || ack.SessionPresent {
				t.Fatalf("CONNACK %+v, want accepted without a session", ack)
			}
			br.Subscribe(1, 1, base+"/#")
			// Both of the bridge's publishes are routed by the time its PUBACK comes back.
			br.Send(&codec.Publish{Topic: base + "/from-bridge", Payload: []byte("b0")},
				&codec.Publish{QoS: 1, PacketID: 2, Retain: true, Topic: base + "/from-bridge", Payload: []byte("b1")})
			if ack := mqtttest.Expect[*codec.Puback](br); ack.PacketID != 2 {
				t.Fatalf("PUBACK packet id %d, want 2", ack.PacketID)
			}
			for _, want := range []string{"b0", "b1"} {
				p := plain.NextPublish()
				if string(p.Payload) != want || p.Retain {
					t.Fatalf("plain subscriber got %q retain %v, want %q retain false [MQTT-3.3.1-9]", p.Payload, p.Retain, want)
				}
			}

			// A copy of b0 or b1 for the bridge would be ahead of p1 in its queue, or sent
			// straight away; p0 may overtake p1, so the two are told apart by payload.
			plain.Send(&codec.Publish{QoS: 1, PacketID: 3, Retain: true, Topic: base + "/from-plain", Payload: []byte("p1")})
			if ack := mqtttest.Expect[*codec.Puback](plain); ack.PacketID != 3 {
				t.Fatalf("PUBACK packet id %d, want 3", ack.PacketID)
			}
			plain.Send(&codec.Publish{Retain: true, Topic: base + "/from-plain", Payload: []byte("p0")})
			got := map[string]bool{}
			for range 2 {
				p := br.NextPublish()
				if !p.Retain {
					t.Errorf("bridge got %q with retain 0, want it as published (1)", p.Payload)
				}
				got[string(p.Payload)] = true
			}
			if !got["p0"] || !got["p1"] {
				t.Fatalf("bridge got %v, want p0 and p1 and none of its own messages back", got)
			}

			line, ok := b.logLine(0, 10*time.Second, func(l string) bool {
				return strings.Contains(l, `"client_id":"`+id+`"`) && strings.Contains(l, `"message":"connected"`)
			})
			if !ok || !strings.Contains(line, `"bridge":true`) {
				t.Fatalf("no log line naming %s's connection a bridge (got %q)", id, line)
			}
		})
	}
}

// 0x85 would be MQTT 5 with the bridge bit, which nothing defines: refused as an unknown level
// [MQTT-3.1.2-2], also by a broker that serves MQTT 5.
func TestBridgeInLevel0x85Refused_MQTT_3_1_2_2(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{MQTT5: true})
	c := mqtttest.Dial(t, b.Addr)
	c.SendRaw(bridgeConnect(codec.ProtocolName311, 0x85, "edge-85"))
	if ack := mqtttest.Expect[*codec.Connack](c); ack.ReturnCode != codec.RefusedProtocolVersion {
		t.Fatalf("CONNACK return code %#x, want %#x", ack.ReturnCode, codec.RefusedProtocolVersion)
	}
	c.ExpectClosed()
}
