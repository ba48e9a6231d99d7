package test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// End-to-end tests of the tls, ws and wss listeners (issue 5): third-party clients over each
// transport, WebSocket framing and subprotocol negotiation, mutual TLS, and one session registry
// shared by every listener.

// transportListeners is the Extra config of a broker with a ws listener at /mqtt and, when
// server is non-nil, a tls and a wss listener with that certificate; all on 127.0.0.1:0.
func transportListeners(server *tlsIssued) string {
	s := `
[[listener]]
type = "ws"
address = "127.0.0.1:0"
path = "/mqtt"
`
	if server != nil {
		s += fmt.Sprintf(`
[[listener]]
type = "tls"
address = "127.0.0.1:0"
cert_file = %q
key_file = %q

[[listener]]
type = "wss"
address = "127.0.0.1:0"
path = "/mqtt"
cert_file = %q
key_file = %q
`, server.CertFile, server.KeyFile, server.CertFile, server.KeyFile)
	}
	return s
}

// TestPahoWSAndTLS runs paho over ws://, wss:// and tls:// against one broker: each client
// subscribes at QoS 2 and publishes at QoS 1 and 2 to itself, and messages cross to and from a
// raw client on the TCP listener, so all four listeners feed one router.
func TestPahoWSAndTLS(t *testing.T) {
	t.Parallel()
	ca := newTLSTestCA(t, "holdfast test CA")
	server := ca.issue(t, "127.0.0.1", true)
	b := StartBroker(t, BrokerConfig{Extra: transportListeners(&server)})
	urls := map[string]string{
		"ws":  "ws://" + listenAddr(t, b, 0, "ws", 0) + "/mqtt",
		"tls": "tls://" + listenAddr(t, b, 0, "tls", 0),
		"wss": "wss://" + listenAddr(t, b, 0, "wss", 0) + "/mqtt",
	}
	for _, name := range []string{"ws", "tls", "wss"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			opts := mqtt.NewClientOptions().
				AddBroker(urls[name]).
				SetClientID("paho-" + name).
				SetProtocolVersion(4).
				SetCleanSession(true).
				SetAutoReconnect(false).
				SetConnectRetry(false).
				SetConnectTimeout(transportWait).
				SetWriteTimeout(transportWait).
				SetTLSConfig(tlsClientConfig(ca))
			in := make(chan mqtt.Message, 16)
			c := mqtt.NewClient(opts)
			waitPahoToken(t, c.Connect(), "connect "+urls[name])
			t.Cleanup(func() { c.Disconnect(0) })

			topic := "transport/" + name
			sub := c.Subscribe(topic+"/+", 2, func(_ mqtt.Client, m mqtt.Message) { in <- m })
			waitPahoToken(t, sub, "subscribe")
			if g := sub.(*mqtt.SubscribeToken).Result()[topic+"/+"]; g != 2 {
				t.Fatalf("SUBACK granted %d, want 2", g)
			}

			// A raw TCP client sees what the paho client publishes.
			raw := mqtttest.Dial(t, b.Addr)
			raw.MustConnect("raw-"+name, true)
			if rc := raw.Subscribe(1, 2, topic+"/+"); len(rc) != 1 || rc[0] != 2 {
				t.Fatalf("raw SUBACK %v, want [2]", rc)
			}

			for _, qos := range []byte{1, 2} {
				payload := fmt.Sprintf("%s qos %d \x00\xff", name, qos) // binary bytes survive the transport
				waitPahoToken(t, c.Publish(fmt.Sprintf("%s/q%d", topic, qos), qos, false, payload), fmt.Sprintf("publish qos %d", qos))
				m := pahoNextMessage(t, in)
				if m.Topic() != fmt.Sprintf("%s/q%d", topic, qos) || string(m.Payload()) != payload || m.Qos() != qos || m.Retained() || m.Duplicate() {
					t.Fatalf("paho over %s received topic %q payload %q qos %d retained %v dup %v; want topic %q payload %q qos %d, not retained, not dup",
						name, m.Topic(), m.Payload(), m.Qos(), m.Retained(), m.Duplicate(), fmt.Sprintf("%s/q%d", topic, qos), payload, qos)
				}
				p := mqtttest.Expect[*codec.Publish](raw)
				if p.Topic != fmt.Sprintf("%s/q%d", topic, qos) || string(p.Payload) != payload || p.QoS != qos {
					t.Fatalf("raw TCP subscriber received %s, want topic %s/q%d payload %q qos %d", mqtttest.String(p), topic, qos, payload, qos)
				}
				if qos == 1 {
					raw.Send(&codec.Puback{PacketID: p.PacketID})
				} else {
					raw.Send(&codec.Pubrec{PacketID: p.PacketID})
					if rel := mqtttest.Expect[*codec.Pubrel](raw); rel.PacketID != p.PacketID {
						t.Fatalf("PUBREL for %d, want %d", rel.PacketID, p.PacketID)
					}
					raw.Send(&codec.Pubcomp{PacketID: p.PacketID})
				}
			}

			// And the paho client receives what a TCP client publishes, at QoS 2.
			rawPub := mqtttest.Dial(t, b.Addr)
			rawPub.MustConnect("raw-pub-"+name, true)
			rawPub.Send(&codec.Publish{QoS: 2, PacketID: 7, Topic: topic + "/from-tcp", Payload: []byte("over tcp")})
			if rec := mqtttest.Expect[*codec.Pubrec](rawPub); rec.PacketID != 7 {
				t.Fatalf("PUBREC for %d, want 7", rec.PacketID)
			}
			rawPub.Send(&codec.Pubrel{PacketID: 7})
			if comp := mqtttest.Expect[*codec.Pubcomp](rawPub); comp.PacketID != 7 {
				t.Fatalf("PUBCOMP for %d, want 7", comp.PacketID)
			}
			m := pahoNextMessage(t, in)
			if m.Topic() != topic+"/from-tcp" || string(m.Payload()) != "over tcp" || m.Qos() != 2 {
				t.Fatalf("paho over %s received topic %q payload %q qos %d; want %s/from-tcp \"over tcp\" qos 2", name, m.Topic(), m.Payload(), m.Qos(), topic)
			}
			// The raw subscriber gets its own copy; nothing else arrives anywhere.
			if p := mqtttest.Expect[*codec.Publish](raw); p.Topic != topic+"/from-tcp" || string(p.Payload) != "over tcp" {
				t.Fatalf("raw TCP subscriber received %s", mqtttest.String(p))
			}
			select {
			case m := <-in:
				t.Fatalf("unexpected message over %s: topic %q payload %q", name, m.Topic(), m.Payload())
			case <-time.After(200 * time.Millisecond):
			}
		})
	}
}

func waitPahoToken(t *testing.T, tok mqtt.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(transportWait) {
		t.Fatalf("%s: no answer within %v", what, transportWait)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func pahoNextMessage(t *testing.T, in chan mqtt.Message) mqtt.Message {
	t.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(transportWait):
		t.Fatalf("no message within %v", transportWait)
		return nil
	}
}

// TestWSFraming sends MQTT packets over a raw WebSocket connection cut the way a browser or a
// proxy may cut them: one packet over several binary messages, several packets in one message,
// and a message holding the end of one packet and the start of the next.
func TestWSFraming(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: transportListeners(nil)})
	url := "ws://" + listenAddr(t, b, 0, "ws", 0) + "/mqtt"
	c := newWSConn(t, url, nil)

	// CONNECT in three messages: the first byte alone (the remaining length still to come), then
	// a cut in the middle of the protocol name, then the rest.
	connect := encodePackets(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level311, ClientID: "ws-framing", CleanSession: true, KeepAlive: 30})
	for _, part := range [][]byte{connect[:1], connect[1:5], connect[5:]} {
		c.SendRaw(part) // one WebSocket message each
	}
	if ack := mqtttest.Expect[*codec.Connack](c); ack.ReturnCode != codec.Accepted || ack.SessionPresent {
		t.Fatalf("CONNACK %+v, want accepted without session present", ack)
	}

	// SUBSCRIBE and a QoS 1 PUBLISH to the same topic in one message.
	c.Send(
		&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: "frames/#", QoS: 1}}},
		&codec.Publish{QoS: 1, PacketID: 2, Topic: "frames/one", Payload: []byte("two packets, one frame")},
	)
	if sa := mqtttest.Expect[*codec.Suback](c); sa.PacketID != 1 || len(sa.ReturnCodes) != 1 || sa.ReturnCodes[0] != 1 {
		t.Fatalf("SUBACK %+v, want packet id 1 granted [1]", sa)
	}
	got := expectAll(t, c, map[string]func(codec.Packet) bool{
		"PUBACK 2":                    matchPuback(2),
		"PUBLISH frames/one at qos 1": matchPublish("frames/one", "two packets, one frame", 1),
	})
	c.Send(&codec.Puback{PacketID: got["PUBLISH frames/one at qos 1"].(*codec.Publish).PacketID})

	// A PUBLISH cut in two, the second message also carrying a whole PINGREQ and the first two
	// bytes of a QoS 0 PUBLISH, whose rest comes in a third message.
	long := strings.Repeat("x", 300) // a two-byte remaining length
	pub := encodePackets(&codec.Publish{QoS: 1, PacketID: 3, Topic: "frames/two", Payload: []byte(long)})
	q0 := encodePackets(&codec.Publish{Topic: "frames/three", Payload: []byte("qos 0 across messages")})
	mid := append(append(append([]byte(nil), pub[7:]...), (&codec.Pingreq{}).Append(nil)...), q0[:2]...)
	for _, part := range [][]byte{pub[:7], mid, q0[2:]} {
		c.SendRaw(part)
	}
	got = expectAll(t, c, map[string]func(codec.Packet) bool{
		"PUBACK 3":                      matchPuback(3),
		"PUBLISH frames/two at qos 1":   matchPublish("frames/two", long, 1),
		"PINGRESP":                      matchPingresp,
		"PUBLISH frames/three at qos 0": matchPublish("frames/three", "qos 0 across messages", 0),
	})
	c.Send(&codec.Puback{PacketID: got["PUBLISH frames/two at qos 1"].(*codec.Publish).PacketID})

	// A payload larger than gorilla's default 4 KiB buffers, in one message.
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	c.Send(&codec.Publish{QoS: 1, PacketID: 4, Topic: "frames/big", Payload: []byte(big)})
	got = expectAll(t, c, map[string]func(codec.Packet) bool{
		"PUBACK 4":                    matchPuback(4),
		"PUBLISH frames/big at qos 1": matchPublish("frames/big", big, 1),
	})
	c.Send(&codec.Puback{PacketID: got["PUBLISH frames/big at qos 1"].(*codec.Publish).PacketID})
	expectOnlyPingresp(t, c)

	c.Send(&codec.Disconnect{})
	c.ExpectEnd("after DISCONNECT")
}

// TestWSPingPong checks that WebSocket ping control frames are answered with a pong carrying
// the same data, between MQTT packets.
func TestWSPingPong(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: transportListeners(nil)})
	ws, _, err := wsDial(t, "ws://"+listenAddr(t, b, 0, "ws", 0)+"/mqtt", nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	pongs := make(chan string, 1)
	ws.SetPongHandler(func(data string) error { pongs <- data; return nil })
	c := mqtttest.New(t, mqtttest.WebSocket(ws))
	c.MustConnect("ws-ping", true)
	if err := ws.WriteControl(websocket.PingMessage, []byte("holdfast?"), time.Now().Add(transportWait)); err != nil {
		t.Fatal(err)
	}
	c.Send(&codec.Pingreq{})
	mqtttest.Expect[*codec.Pingresp](c) // reading runs gorilla's pong handler
	select {
	case data := <-pongs:
		if data != "holdfast?" {
			t.Fatalf("pong data %q, want %q", data, "holdfast?")
		}
	default:
		t.Fatal("no pong received before the PINGRESP sent after the ping")
	}
}

// TestWSTextMessageRefused: MQTT over WebSocket is binary; a text message closes the connection
// with 1003 (unsupported data).
func TestWSTextMessageRefused(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: transportListeners(nil)})
	ws, _, err := wsDial(t, "ws://"+listenAddr(t, b, 0, "ws", 0)+"/mqtt", nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	c := mqtttest.New(t, mqtttest.WebSocket(ws))
	c.MustConnect("ws-text", true)
	if err := ws.WriteMessage(websocket.TextMessage, (&codec.Pingreq{}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	err = c.ExpectEnd("after a text message")
	if !websocket.IsCloseError(err, websocket.CloseUnsupportedData) {
		t.Fatalf("connection ended with %v, want close code %d (unsupported data)", err, websocket.CloseUnsupportedData)
	}
}

// TestWSSubprotocols: "mqtt" and "mqttv3.1" are negotiated; a client offering neither, or no
// subprotocol at all, is refused with HTTP 400 and a body naming the accepted ones; a plain GET
// gets 400 and another path 404.
func TestWSSubprotocols(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: transportListeners(nil)})
	addr := listenAddr(t, b, 0, "ws", 0)
	url := "ws://" + addr + "/mqtt"

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			offered []string
			body    string
		}{
			{"wrong", []string{"mqttv5.0"}, "unsupported WebSocket subprotocol mqttv5.0"},
			{"wrong-two", []string{"chat", "wamp"}, "unsupported WebSocket subprotocol"},
			{"none", nil, "no WebSocket subprotocol offered"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ws, resp, err := wsDial(t, url, nil, tc.offered...)
				if err == nil {
					t.Fatalf("offering %q: upgraded with subprotocol %q, want HTTP 400", tc.offered, ws.Subprotocol())
				}
				if resp == nil {
					t.Fatalf("offering %q: %v with no HTTP response, want HTTP 400", tc.offered, err)
				}
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("offering %q: HTTP %s, want 400", tc.offered, resp.Status)
				}
				if !strings.Contains(string(body), tc.body) || !strings.Contains(string(body), "mqtt, mqttv3.1") {
					t.Fatalf("offering %q: body %q, want it to contain %q and name mqtt, mqttv3.1", tc.offered, body, tc.body)
				}
			})
		}
	})

	t.Run("plain-get", func(t *testing.T) {
		hc := &http.Client{Timeout: transportWait}
		resp, err := hc.Get("http://" + addr + "/mqtt")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "WebSocket") {
			t.Fatalf("plain GET: HTTP %s %q, want 400 explaining the WebSocket endpoint", resp.Status, body)
		}
		resp, err = hc.Get("http://" + addr + "/elsewhere")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET /elsewhere: HTTP %s, want 404", resp.Status)
		}
	})

	t.Run("negotiated", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			offered []string
			want    string
			connect *codec.Connect
		}{
			{"mqtt", []string{"mqtt"}, "mqtt", &codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level311, ClientID: "sp-311", CleanSession: true}},
			{"mqttv3.1", []string{"mqttv3.1"}, "mqttv3.1", &codec.Connect{ProtocolName: "MQIsdp", ProtocolLevel: codec.Level31, ClientID: "sp-31", CleanSession: true}},
			{"unknown-first", []string{"chat", "mqtt"}, "mqtt", &codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level311, ClientID: "sp-mixed", CleanSession: true}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ws, resp, err := wsDial(t, url, nil, tc.offered...)
				if err != nil {
					status := ""
					if resp != nil {
						status = resp.Status
					}
					t.Fatalf("offering %q: %v %s", tc.offered, err, status)
				}
				if ws.Subprotocol() != tc.want {
					t.Fatalf("offering %q: negotiated %q, want %q", tc.offered, ws.Subprotocol(), tc.want)
				}
				c := mqtttest.New(t, mqtttest.WebSocket(ws))
				c.Send(tc.connect)
				if ack := mqtttest.Expect[*codec.Connack](c); ack.ReturnCode != codec.Accepted {
					t.Fatalf("CONNACK %+v, want accepted", ack)
				}
			})
		}
	})
}

// TestTLSMutual checks mutual TLS on tls and wss listeners: a client certificate from the
// configured CA is accepted; no certificate, or one from another CA, ends the connection before
// any CONNACK (at the handshake in TLS 1.2; in TLS 1.3 the client's handshake completes first
// and the server's alert arrives on the first read).
func TestTLSMutual(t *testing.T) {
	t.Parallel()
	ca := newTLSTestCA(t, "holdfast test CA")
	other := newTLSTestCA(t, "some other CA")
	server := ca.issue(t, "127.0.0.1", true)
	good := ca.issue(t, "device-42", false)
	stranger := other.issue(t, "device-42", false)
	extra := fmt.Sprintf(`
[[listener]]
type = "tls"
address = "127.0.0.1:0"
cert_file = %[1]q
key_file = %[2]q
client_ca_file = %[3]q
require_client_cert = true

[[listener]]
type = "tls"
address = "127.0.0.1:0"
cert_file = %[1]q
key_file = %[2]q
client_ca_file = %[3]q
require_client_cert = true
cert_cn_as_username = true

[[listener]]
type = "tls"
address = "127.0.0.1:0"
cert_file = %[1]q
key_file = %[2]q
client_ca_file = %[3]q

[[listener]]
type = "wss"
address = "127.0.0.1:0"
path = "/mqtt"
cert_file = %[1]q
key_file = %[2]q
client_ca_file = %[3]q
require_client_cert = true
`, server.CertFile, server.KeyFile, ca.File)
	b := StartBroker(t, BrokerConfig{Extra: extra})
	required := listenAddr(t, b, 0, "tls", 0)
	cnUser := listenAddr(t, b, 0, "tls", 1)
	optional := listenAddr(t, b, 0, "tls", 2)
	wss := "wss://" + listenAddr(t, b, 0, "wss", 0) + "/mqtt"

	versions := map[string]uint16{"tls1.2": tls.VersionTLS12, "tls1.3": tls.VersionTLS13}
	for vname, v := range versions {
		t.Run(vname, func(t *testing.T) {
			t.Parallel()
			cfg := func(certs ...tls.Certificate) *tls.Config {
				c := tlsClientConfig(ca, certs...)
				c.MinVersion, c.MaxVersion = v, v
				return c
			}
			accepted := func(t *testing.T, addr, id string, c *tls.Config) {
				t.Helper()
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: transportWait}, "tcp", addr, c)
				if err != nil {
					t.Fatalf("TLS handshake with %s: %v", addr, err)
				}
				pc := mqtttest.New(t, conn)
				if pc.MustConnect(id, true) {
					t.Fatal("session present on a clean session")
				}
				pc.Send(&codec.Pingreq{})
				mqtttest.Expect[*codec.Pingresp](pc)
			}
			refused := func(t *testing.T, addr, id string, c *tls.Config) {
				t.Helper()
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: transportWait}, "tcp", addr, c)
				if err != nil {
					t.Logf("refused at the handshake: %v", err)
					return
				}
				pc := mqtttest.New(t, conn)
				if err := pc.Write(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level311, ClientID: id, CleanSession: true}); err != nil {
					t.Logf("refused at the first write: %v", err)
					return
				}
				t.Logf("refused after the handshake: %v", pc.ExpectEnd("client certificate not acceptable"))
			}

			t.Run("required/ca-cert", func(t *testing.T) { accepted(t, required, "mtls-good-"+vname, cfg(good.TLS)) })
			t.Run("required/no-cert", func(t *testing.T) { refused(t, required, "mtls-none-"+vname, cfg()) })
			t.Run("required/other-ca", func(t *testing.T) { refused(t, required, "mtls-other-"+vname, cfg(stranger.TLS)) })
			t.Run("cn-as-username/ca-cert", func(t *testing.T) { accepted(t, cnUser, "mtls-cn-"+vname, cfg(good.TLS)) })
			t.Run("cn-as-username/other-ca", func(t *testing.T) { refused(t, cnUser, "mtls-cn-other-"+vname, cfg(stranger.TLS)) })
			t.Run("optional/no-cert", func(t *testing.T) { accepted(t, optional, "mtls-opt-none-"+vname, cfg()) })
			t.Run("optional/ca-cert", func(t *testing.T) { accepted(t, optional, "mtls-opt-good-"+vname, cfg(good.TLS)) })
			t.Run("optional/other-ca", func(t *testing.T) { refused(t, optional, "mtls-opt-other-"+vname, cfg(stranger.TLS)) })

			t.Run("wss/ca-cert", func(t *testing.T) {
				c := newWSConn(t, wss, cfg(good.TLS))
				c.MustConnect("mtls-wss-good-"+vname, true)
			})
			for name, certs := range map[string][]tls.Certificate{"wss/no-cert": nil, "wss/other-ca": {stranger.TLS}} {
				t.Run(name, func(t *testing.T) {
					ws, resp, err := wsDial(t, wss, cfg(certs...), "mqtt")
					if err == nil {
						t.Fatalf("upgraded with subprotocol %q, want the TLS handshake refused", ws.Subprotocol())
					}
					if resp != nil {
						t.Fatalf("HTTP %s, want the TLS handshake refused before any HTTP answer (%v)", resp.Status, err)
					}
					t.Logf("refused: %v", err)
				})
			}
		})
	}
}

// TestSessionTakeOverAcrossListeners: every listener shares one session registry. A persistent
// session made over TCP is resumed over WebSocket with its queue; then a TCP connection takes
// the client id over from the live WebSocket connection.
func TestSessionTakeOverAcrossListeners(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: transportListeners(nil)})
	url := "ws://" + listenAddr(t, b, 0, "ws", 0) + "/mqtt"
	const id, topic = "roamer", "across/queue"

	tcp := mqtttest.Dial(t, b.Addr)
	if tcp.MustConnect(id, false) {
		t.Fatal("session present on the first connection")
	}
	if rc := tcp.Subscribe(1, 1, topic); len(rc) != 1 || rc[0] != 1 {
		t.Fatalf("SUBACK %v, want [1]", rc)
	}
	tcp.Send(&codec.Disconnect{})
	tcp.ExpectClosed()

	pub := mqtttest.Dial(t, b.Addr)
	pub.MustConnect("roamer-pub", true)
	want := []string{"queued-1", "queued-2", "queued-3"}
	for i, p := range want {
		pub.Send(&codec.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: topic, Payload: []byte(p)})
		if ack := mqtttest.Expect[*codec.Puback](pub); ack.PacketID != uint16(i+1) {
			t.Fatalf("PUBACK %d, want %d", ack.PacketID, i+1)
		}
	}

	ws := newWSConn(t, url, nil)
	if !ws.MustConnect(id, false) {
		t.Fatal("over WebSocket: CONNACK session-present 0, want 1 for the session made over TCP")
	}
	for _, p := range want {
		m := mqtttest.Expect[*codec.Publish](ws)
		if !matchPublish(topic, p, 1)(m) {
			t.Fatalf("got %s, want a first delivery of %q on %s at QoS 1", mqtttest.String(m), p, topic)
		}
		ws.Send(&codec.Puback{PacketID: m.PacketID})
	}
	expectOnlyPingresp(t, ws)

	// Live take-over, the other way: a TCP connection with the same id while the WebSocket one
	// is up. The WebSocket connection is closed; the subscription and new messages follow.
	tcp2 := mqtttest.Dial(t, b.Addr)
	if !tcp2.MustConnect(id, false) {
		t.Fatal("TCP take-over: CONNACK session-present 0, want 1")
	}
	ws.ExpectEnd("WebSocket connection after a TCP take-over of its client id")
	pub.Send(&codec.Publish{QoS: 1, PacketID: 9, Topic: topic, Payload: []byte("after take-over")})
	mqtttest.Expect[*codec.Puback](pub)
	m := mqtttest.Expect[*codec.Publish](tcp2)
	if m.Topic != topic || string(m.Payload) != "after take-over" || m.QoS != 1 || m.Dup {
		t.Fatalf("after take-over got %s, want %q at qos 1", mqtttest.String(m), "after take-over")
	}
	tcp2.Send(&codec.Puback{PacketID: m.PacketID})
	tcp2.ExpectSilence(200 * time.Millisecond)
}

// TestWSGracefulShutdown: SIGTERM closes open WebSocket connections with a close frame (the
// hijacked connections are tracked, http.Server.Shutdown alone would leave them open), the
// broker exits cleanly and promptly, and the persistent session is there after the restart.
func TestWSGracefulShutdown(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: transportListeners(nil)})
	ws, _, err := wsDial(t, "ws://"+listenAddr(t, b, 0, "ws", 0)+"/mqtt", nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	c := mqtttest.New(t, mqtttest.WebSocket(ws))
	c.MustConnect("ws-shutdown", false)
	if rc := c.Subscribe(1, 1, "shutdown/#"); len(rc) != 1 || rc[0] != 1 {
		t.Fatalf("SUBACK %v, want [1]", rc)
	}

	ended := make(chan error, 1)
	go func() {
		_, err := c.TryRead(transportWait)
		ended <- err
	}()
	start := time.Now()
	b.Stop() // fails the test unless holdfast exits 0 within 30 s
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("holdfast took %v to stop with one WebSocket client", d)
	}
	err = <-ended
	if !websocket.IsCloseError(err, websocket.CloseGoingAway, websocket.CloseNormalClosure) {
		t.Fatalf("WebSocket client saw %v at shutdown, want a close frame (1001 going away or 1000)", err)
	}
	t.Logf("client saw: %v", err)

	from := len(b.Log())
	b.Start()
	c2 := newWSConn(t, "ws://"+listenAddr(t, b, from, "ws", 0)+"/mqtt", nil)
	if !c2.MustConnect("ws-shutdown", false) {
		t.Fatal("after the restart: session present 0, want 1")
	}
}
