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
			plain.Subscribe(1, 1, base+"/from-bridge")

			br := mqtttest.Dial(t, b.Addr)
			br.SendRaw(bridgeConnect(tc.name, tc.level, id))
			if ack := mqtttest.Expect[*codec.Connack](br); ack.ReturnCode != codec.Accepted || ack.SessionPresent {
				t.Fatalf("CONNACK %+v, want accepted without a session", ack)
			}
			br.Subscribe(1, 1, base+"/#")
			// Both of the bridge's publishes are routed by the time its PUBACK comes back.
			br.Send(&codec.Publish{Topic: base + "/from-bridge", Payload: []byte("b0")},
				&codec.Publish{QoS: 1, PacketID: 2, Topic: base + "/from-bridge", Payload: []byte("b1")})
			if ack := mqtttest.Expect[*codec.Puback](br); ack.PacketID != 2 {
				t.Fatalf("PUBACK packet id %d, want 2", ack.PacketID)
			}
			for _, want := range []string{"b0", "b1"} {
				p := plain.NextPublish()
				if string(p.Payload) != want {
					t.Fatalf("plain subscriber got %q, want %q", p.Payload, want)
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

// startMosquittoBridge runs Debian's mosquitto broker on a free loopback port with a bridge to
// holdfast at b as Mosquitto users configure one (try_private, every topic both ways at QoS 1),
// waits until holdfast has logged the bridge's connection, and returns mosquitto's address and
// that log line.
func startMosquittoBridge(t *testing.T, b *Broker) (addr, logLine string) {
	t.Helper()
	addr = bridgeMosquitto(t, fmt.Sprintf("log_type all\nconnection holdfast\naddress %s\nremote_clientid mosq-bridge\nrestart_timeout 1\ntry_private true\ntopic # both 1\n", b.Addr))
	logLine, ok := b.logLine(0, mosqWait, func(l string) bool {
		return strings.Contains(l, `"client_id":"mosq-bridge"`) && strings.Contains(l, `"message":"connected"`)
	})
	if !ok {
		t.Fatalf("holdfast logged no connection of mosquitto's bridge within %v", mosqWait)
	}
	return addr, logLine
}

// mosqPayloadsUntil reads mosquitto_sub lines (mosqFormat) until one carries payload end and
// counts the payloads before it.
func mosqPayloadsUntil(t *testing.T, sub *mosqSub, end string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for {
		f := strings.SplitN(sub.next(t), "|", 4)
		if len(f) != 4 {
			t.Fatalf("mosquitto_sub printed %q, not topic|qos|retain|payload", f)
		}
		if f[3] == end {
			return n
		}
		n[f[3]]++
	}
}

// publishesUntil reads PUBLISH packets until one carries payload end and counts the payloads
// before it.
func publishesUntil(c *mqtttest.Client, end string) map[string]int {
	n := map[string]int{}
	for {
		p := c.NextPublish()
		if string(p.Payload) == end {
			return n
		}
		n[string(p.Payload)]++
	}
}

// exactlyOnce fails unless every payload prefix-00 .. prefix-(n-1) was counted once.
func exactlyOnce(t *testing.T, where string, counts map[string]int, prefix string, n int) {
	t.Helper()
	var wrong []string
	for i := range n {
		if k := fmt.Sprintf("%s-%02d", prefix, i); counts[k] != 1 {
			wrong = append(wrong, fmt.Sprintf("%s x%d", k, counts[k]))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%s: not exactly once: %s", where, strings.Join(wrong, ", "))
	}
}

// TestBridgeInFromMosquitto: Debian's mosquitto bridges into holdfast with try_private true and
// "topic # both 1". Messages cross both ways exactly once: a copy holdfast sent back to the
// bridge it came from would reach mosquitto's subscriber twice. A message published retained on
// holdfast reaches mosquitto with the flag kept, so mosquitto retains it too. holdfast's log
// names the connection a bridge.
func TestBridgeInFromMosquitto(t *testing.T) {
	needTool(t, "mosquitto_sub", "mosquitto-clients")
	t.Parallel()
	b := StartBroker(t, BrokerConfig{})
	// mosquitto_sub proves the bridge's subscription on holdfast is in place once it prints this.
	retainMarker(t, b, "bridge-ready", "ready")
	hs := mqtttest.Dial(t, b.Addr)
	hs.MustConnect("hf-sub", true)
	hs.Subscribe(1, 1, "bi/#")
	hp := mqtttest.Dial(t, b.Addr)
	hp.MustConnect("hf-pub", true)

	mosqAddr, line := startMosquittoBridge(t, b)
	if !strings.Contains(line, `"bridge":true`) {
		t.Errorf("holdfast's log does not name mosquitto's connection a bridge: %s", line)
	}
	mosq := &Broker{Addr: mosqAddr} // the address is all the mosquitto_* helpers use
	ms := startMosqSub(t, mosq, "-V", "mqttv311", "-i", "mosq-side-sub", "-q", "1",
		"-t", "bi/#", "-t", "bridge-ready", "-W", fmt.Sprint(int(2*mosqWait/time.Second)), "-F", mosqFormat)
	if l := ms.next(t); !strings.HasPrefix(l, "bridge-ready|") || !strings.HasSuffix(l, "|ready") {
		t.Fatalf("mosquitto_sub printed %q first, want the marker from holdfast", l)
	}

	const n = 50
	// holdfast -> mosquitto. "h2m-end" goes the other way, behind any copy mosquitto would have
	// sent back.
	for i := range n {
		hp.Send(&codec.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: "bi/h2m", Payload: fmt.Appendf(nil, "h2m-%02d", i)})
	}
	hp.Send(&codec.Publish{QoS: 1, PacketID: n + 1, Retain: true, Topic: "bi/kept", Payload: []byte("kept")})
	for range n + 1 {
		mqtttest.Expect[*codec.Puback](hp)
	}
	got := map[string]int{}
	for range n + 1 {
		f := strings.SplitN(ms.next(t), "|", 4)
		got[f[len(f)-1]]++
	}
	exactlyOnce(t, "mosquitto's subscriber", got, "h2m", n)
	mosqPub(t, mosq, "", "-V", "mqttv311", "-q", "1", "-t", "bi/h2m", "-m", "h2m-end")
	exactlyOnce(t, "holdfast's subscriber", publishesUntil(hs, "h2m-end"), "h2m", n)
	if t.Failed() {
		t.FailNow()
	}

	// mosquitto -> holdfast. "m2h-end" goes the other way once holdfast has routed them all, so
	// behind any copy holdfast would send back to the bridge.
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, "m2h-%02d\n", i)
	}
	mosqPub(t, mosq, lines.String(), "-V", "mqttv311", "-q", "1", "-t", "bi/m2h", "-l")
	got = map[string]int{}
	for range n {
		got[string(hs.NextPublish().Payload)]++
	}
	exactlyOnce(t, "holdfast's subscriber", got, "m2h", n)
	hp.Send(&codec.Publish{QoS: 1, PacketID: 1, Topic: "bi/m2h", Payload: []byte("m2h-end")})
	mqtttest.Expect[*codec.Puback](hp)
	exactlyOnce(t, "mosquitto's subscriber", mosqPayloadsUntil(t, ms, "m2h-end"), "m2h", n)

	// Retained by mosquitto only if holdfast kept the flag on its way out through the bridge.
	late := startMosqSub(t, mosq, "-V", "mqttv311", "-i", "mosq-late-sub", "-t", "bi/kept", "-C", "1",
		"-W", fmt.Sprint(int(mosqWait/time.Second)), "-F", mosqFormat)
	late.expect(t, mosqLine("bi/kept", 0, true, "kept"))
	late.wait(t)
}
