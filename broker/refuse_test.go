package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/internal/syncbuf"
	"github.com/holdfast/holdfast/internal/testpki"
	"github.com/holdfast/holdfast/persist"
)

// testRefuser is a Refuser serving the listeners of cfg, with its log in a buffer.
type testRefuser struct {
	*Refuser
	cfg   *config.Config
	log   *syncbuf.Buffer
	addrs []string // the bound address of each listener, in the configuration's order
}

// startRefuser starts a Refuser with one tcp listener on 127.0.0.1:0 unless mutate sets others.
// It is shut down when the test ends.
func startRefuser(t *testing.T, mutate func(*config.Config)) *testRefuser {
	t.Helper()
	cfg := testConfig(t)
	cfg.Listeners = []config.Listener{{Type: "tcp", Address: "127.0.0.1:0"}}
	if mutate != nil {
		mutate(cfg)
	}
	return startRefuserWith(t, cfg)
}

func startRefuserWith(t *testing.T, cfg *config.Config) *testRefuser {
	t.Helper()
	buf := new(syncbuf.Buffer)
	r := &testRefuser{Refuser: NewRefuser(cfg, zerolog.New(buf).Level(zerolog.DebugLevel)), cfg: cfg, log: buf}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("refuser shutdown: %v", err)
		}
		if os.Getenv("HOLDFAST_TEST_LOG") != "" {
			t.Logf("refuser log:\n%s", buf)
		}
	})
	if err := r.ListenAndServe(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	for _, l := range r.listeners {
		r.addrs = append(r.addrs, l.Addr().String())
	}
	r.mu.Unlock()
	return r
}

func (r *testRefuser) dial(t *testing.T) *mqtttest.Client { return mqtttest.Dial(t, r.addrs[0]) }

// connect5 sends a level-5 CONNECT and returns the CONNACK, read at level 5.
func connect5(c *mqtttest.Client, props *codec.Properties) *codec.Connack {
	c.SetLevel(codec.Level5)
	return c.Connect(&codec.Connect{ProtocolName: codec.ProtocolName311, ProtocolLevel: codec.Level5, ClientID: "c5", CleanSession: true, Props: props})
}

// expectRefusedAndClosed fails unless the server closes c (over WebSocket, with a close frame)
// with nothing more sent.
func expectRefusedAndClosed(t *testing.T, c *mqtttest.Client) {
	t.Helper()
	got, err := c.Closed(mqtttest.Timeout, nil)
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		err = nil
	}
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want the connection closed without another packet", got, err)
	}
}

func TestRefuserRefuses3xServerUnavailable_MQTT_3_2_2_5(t *testing.T) {
	r := startRefuser(t, nil)
	r.SetLeader("127.0.0.1:1883") // 3.x has no way to say where: still 0x03
	for _, tc := range []struct {
		name  string
		proto string
		level byte
	}{
		{"3.1", codec.ProtocolName31, codec.Level31},
		{"3.1.1", codec.ProtocolName311, codec.Level311},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := r.dial(t)
			// Session Present is 0 with a non-zero return code [MQTT-3.2.2-4], whatever the
			// client asked for.
			ack := c.Connect(&codec.Connect{ProtocolName: tc.proto, ProtocolLevel: tc.level, ClientID: "p", KeepAlive: 30})
			if ack.ReturnCode != codec.RefusedServerUnavailable || ack.SessionPresent {
				t.Fatalf("CONNACK %+v, want return code 0x03 (Server unavailable), session present 0", ack)
			}
			expectRefusedAndClosed(t, c) // [MQTT-3.2.2-5]
		})
	}
}

// MQTT 5 §4.11 Server redirection: CONNACK 0x9C (Use another server) with the Server Reference
// (§3.2.2.3.16) naming the leader; a CONNACK with a reason code of 128 or more is followed by the
// close [MQTT-3.2.2-7].
func TestRefuser5UseAnotherServerWithServerReference_4_11(t *testing.T) {
	r := startRefuser(t, nil)
	for _, leader := range []string{"127.0.0.1:1883", "leader.example:8883"} {
		r.SetLeader(leader)
		c := r.dial(t)
		ack := connect5(c, nil)
		if ack.Reason != codec.ReasonUseAnotherServer || ack.SessionPresent {
			t.Fatalf("CONNACK reason %v, session present %v, want Use another server (0x9C), 0", ack.Reason, ack.SessionPresent)
		}
		if ack.Props == nil || ack.Props.ServerReference != leader {
			t.Fatalf("CONNACK properties %+v, want Server Reference %q", ack.Props, leader)
		}
		if ack.Props.ReasonString == "" {
			t.Errorf("CONNACK without a Reason String")
		}
		expectRefusedAndClosed(t, c)
	}
}

func TestRefuser5NoLeaderServerUnavailable_MQTT_3_2_2_7(t *testing.T) {
	r := startRefuser(t, nil)
	for _, step := range []string{"never a leader", "leader lost"} {
		c := r.dial(t)
		ack := connect5(c, nil)
		if ack.Reason != codec.ReasonServerUnavailable {
			t.Fatalf("%s: CONNACK reason %v, want Server unavailable (0x88)", step, ack.Reason)
		}
		if ack.Props != nil && ack.Props.ServerReference != "" {
			t.Fatalf("%s: Server Reference %q without a leader", step, ack.Props.ServerReference)
		}
		expectRefusedAndClosed(t, c)
		r.SetLeader("127.0.0.1:1883")
		r.SetLeader("")
	}
}

// The Reason String goes when it would make CONNACK exceed the client's Maximum Packet Size
// [MQTT-3.1.2-25]; the Server Reference stays.
func TestRefuser5ReasonStringDroppedForMaximumPacketSize_MQTT_3_1_2_25(t *testing.T) {
	r := startRefuser(t, nil)
	const leader = "127.0.0.1:1883"
	r.SetLeader(leader)
	want := (&codec.Connack{Reason: codec.ReasonUseAnotherServer, Props: &codec.Properties{ServerReference: leader}}).AppendLevel(nil, codec.Level5)
	c := r.dial(t)
	ack := connect5(c, &codec.Properties{MaximumPacketSize: uint32(len(want))})
	if ack.Reason != codec.ReasonUseAnotherServer || ack.Props == nil || ack.Props.ServerReference != leader {
		t.Fatalf("CONNACK %+v %+v, want 0x9C with Server Reference %q", ack, ack.Props, leader)
	}
	if ack.Props.ReasonString != "" {
		t.Fatalf("Reason String %q sent to a client whose Maximum Packet Size is %d", ack.Props.ReasonString, len(want))
	}
	expectRefusedAndClosed(t, c)
}

// A node that does not serve MQTT 5 answers a level-5 CONNECT as the broker does: 0x01 in 3.1.1's
// form [MQTT-3.1.2-2].
func TestRefuserWithoutMQTT5RefusesLevel5_MQTT_3_1_2_2(t *testing.T) {
	r := startRefuser(t, func(cfg *config.Config) { cfg.MQTT5 = false })
	r.SetLeader("127.0.0.1:1883")
	c := r.dial(t)
	c.Send(&codec.Connect{ProtocolName: codec.ProtocolName311, ProtocolLevel: codec.Level5, ClientID: "c5", CleanSession: true})
	ack := mqtttest.Expect[*codec.Connack](c)
	if ack.ReturnCode != codec.RefusedProtocolVersion {
		t.Fatalf("CONNACK return code 0x%02x, want 0x01", ack.ReturnCode)
	}
	expectRefusedAndClosed(t, c)
}

// A malformed level-5 CONNECT is answered with CONNACK 0x81 before the close [MQTT-4.13.1-1], as
// the broker answers it.
func TestRefuserMalformed5Connect_MQTT_4_13_1_1(t *testing.T) {
	r := startRefuser(t, nil)
	c := r.dial(t)
	c.SetLevel(codec.Level5)
	// Connect flags 0x03: the reserved bit set [MQTT-3.1.2-3].
	c.SendRaw([]byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x03, 0, 60, 0, 0, 1, 'x'})
	ack := mqtttest.Expect[*codec.Connack](c)
	if ack.Reason != codec.ReasonMalformedPacket {
		t.Fatalf("CONNACK reason %v, want Malformed Packet (0x81)", ack.Reason)
	}
	expectRefusedAndClosed(t, c)
}

func TestRefuserWebSocketAndTLS(t *testing.T) {
	ca := testpki.NewCA(t, "refuser test CA")
	files := testpki.NewServerFiles(t, ca, "127.0.0.1")
	r := startRefuser(t, func(cfg *config.Config) {
		cfg.Listeners = []config.Listener{
			{Type: "ws", Address: "127.0.0.1:0", Path: "/mqtt"},
			{Type: "tls", Address: "127.0.0.1:0", CertFile: files.Cert, KeyFile: files.Key},
			{Type: "wss", Address: "127.0.0.1:0", CertFile: files.Cert, KeyFile: files.Key},
		}
	})
	r.SetLeader("127.0.0.1:1883")
	tlsc := &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	dialWS := func(t *testing.T, url string) *mqtttest.Client {
		d := websocket.Dialer{HandshakeTimeout: mqtttest.Timeout, Subprotocols: []string{"mqtt"}, TLSClientConfig: tlsc}
		ws, _, err := d.Dial(url, nil)
		if err != nil {
			t.Fatalf("WebSocket dial %s: %v", url, err)
		}
		return mqtttest.New(t, mqtttest.WebSocket(ws))
	}
	for _, tc := range []struct {
		name string
		dial func(t *testing.T) *mqtttest.Client
	}{
		{"ws", func(t *testing.T) *mqtttest.Client { return dialWS(t, "ws://"+r.addrs[0]+"/mqtt") }},
		{"tls", func(t *testing.T) *mqtttest.Client {
			nc, err := tls.DialWithDialer(&net.Dialer{Timeout: mqtttest.Timeout}, "tcp", r.addrs[1], tlsc)
			if err != nil {
				t.Fatal(err)
			}
			return mqtttest.New(t, nc)
		}},
		{"wss", func(t *testing.T) *mqtttest.Client { return dialWS(t, "wss://"+r.addrs[2]+"/mqtt") }},
	} {
		t.Run(tc.name+"/3.1.1", func(t *testing.T) {
			c := tc.dial(t)
			if ack := c.Connect(&codec.Connect{ClientID: "w", CleanSession: true}); ack.ReturnCode != codec.RefusedServerUnavailable {
				t.Fatalf("CONNACK return code 0x%02x, want 0x03", ack.ReturnCode)
			}
			expectRefusedAndClosed(t, c)
		})
		t.Run(tc.name+"/5", func(t *testing.T) {
			c := tc.dial(t)
			if ack := connect5(c, nil); ack.Reason != codec.ReasonUseAnotherServer || ack.Props.ServerReference != "127.0.0.1:1883" {
				t.Fatalf("CONNACK %+v %+v, want 0x9C with the Server Reference", ack, ack.Props)
			}
			expectRefusedAndClosed(t, c)
		})
	}
}

func TestRefuserConnectTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	r := startRefuser(t, func(cfg *config.Config) { cfg.Limits.ConnectTimeout.Duration = timeout })
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"silent", nil},
		{"half a CONNECT", []byte{0x10, 13, 0, 4, 'M', 'Q'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c := r.dial(t)
			if tc.send != nil {
				c.SendRaw(tc.send)
			}
			got, err := c.Closed(10*timeout, nil)
			if err != nil || len(got) != 0 {
				t.Fatalf("got %v, %v; want the connection closed without a packet", got, err)
			}
			if took := time.Since(start); took < timeout {
				t.Fatalf("closed after %v, before limits.connect_timeout %v", took, timeout)
			}
		})
	}
	mqtttest.Eventually(t, time.Second, "the log line", func() bool {
		return strings.Count(r.log.String(), "no CONNECT within limits.connect_timeout") == 2
	})
}

// Bytes that are no CONNECT close the connection without an answer [MQTT-3.1.0-1]
// [MQTT-3.1.2-1], and the log says why.
func TestRefuserClosesOnGarbage_MQTT_3_1_0_1(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes []byte
		why   string
	}{
		{"bad remaining length", []byte{0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, "malformed packet"},
		{"PUBLISH first", (&codec.Publish{Topic: "a", Payload: []byte("x")}).Append(nil), "first packet is not CONNECT [MQTT-3.1.0-1]"},
		{"not MQTT", []byte{0x10, 12, 0, 4, 'H', 'T', 'T', 'P', 4, 0x02, 0, 60, 0, 0}, "malformed packet"},
		{"larger than any CONNECT", []byte{0x10, 0x80, 0x80, 0x80, 0x01}, "first packet larger than the largest legal CONNECT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRefuser(t, nil)
			c := r.dial(t)
			c.SendRaw(tc.bytes)
			expectRefusedAndClosed(t, c)
			mqtttest.Eventually(t, time.Second, "the log line", func() bool { return strings.Contains(r.log.String(), tc.why) })
		})
	}
}

// listenAndServeBroker starts a Server on the listeners of cfg with a store of its own.
func listenAndServeBroker(t *testing.T, cfg *config.Config) (*Server, *persist.Store) {
	t.Helper()
	o := persist.DefaultOptions(t.TempDir())
	o.MemTableSize = cfg.Store.MemTableSize
	o.BlockCacheSize = cfg.Store.BlockCacheSize
	o.IndexCacheSize = cfg.Store.IndexCacheSize
	o.Logger = zerolog.Nop()
	store, err := persist.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := LoadAuth(cfg.Auth, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, store, rules, "holdfast test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return srv, store
}

// A node's role change: the Refuser's Shutdown closes what it holds and frees the ports at once,
// a Server binds the same addresses right after, and a Refuser binds them again right after the
// Server's Shutdown.
func TestRefuserSwapsWithServerOnTheSameAddresses(t *testing.T) {
	r := startRefuser(t, func(cfg *config.Config) {
		cfg.Listeners = []config.Listener{{Type: "tcp", Address: "127.0.0.1:0"}, {Type: "ws", Address: "127.0.0.1:0", Path: "/mqtt"}}
	})
	cfg := *r.cfg
	cfg.Listeners = []config.Listener{{Type: "tcp", Address: r.addrs[0]}, {Type: "ws", Address: r.addrs[1], Path: "/mqtt"}}
	// Sockets the refuser holds: one silent, one lingering after its refusal.
	silent := r.dial(t)
	refused := r.dial(t)
	if ack := refused.Connect(&codec.Connect{ClientID: "x", CleanSession: true}); ack.ReturnCode != codec.RefusedServerUnavailable {
		t.Fatalf("CONNACK 0x%02x, want 0x03", ack.ReturnCode)
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Refuser.Shutdown took %v", took)
	}
	if _, err := silent.Closed(time.Second, nil); err != nil {
		t.Fatalf("silent socket after Shutdown: %v", err)
	}
	if _, err := refused.Closed(time.Second, nil); err != nil {
		t.Fatalf("refused socket after Shutdown: %v", err)
	}
	if err := r.ListenAndServe(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe after Shutdown: %v, want ErrServerClosed", err)
	}

	srv, store := listenAndServeBroker(t, &cfg)
	if err := srv.ListenAndServe(); err != nil {
		t.Fatalf("Server binding the Refuser's addresses right after its Shutdown: %v", err)
	}
	c := mqtttest.Dial(t, cfg.Listeners[0].Address)
	c.MustConnect("leader-client", true)
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	r2 := startRefuserWith(t, &cfg)
	c = mqtttest.Dial(t, r2.addrs[0])
	if ack := c.Connect(&codec.Connect{ClientID: "x", CleanSession: true}); ack.ReturnCode != codec.RefusedServerUnavailable {
		t.Fatalf("CONNACK 0x%02x from the second Refuser, want 0x03", ack.ReturnCode)
	}
}

func TestRefuserListenErrorNamesTheAddress(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := testConfig(t)
	cfg.Listeners = []config.Listener{{Type: "tcp", Address: taken.Addr().String()}}
	r := NewRefuser(cfg, zerolog.Nop())
	defer r.Shutdown(context.Background())
	err = r.ListenAndServe()
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("ListenAndServe on a taken address: %v, want an error naming %s", err, taken.Addr())
	}
}

// paho.mqtt.golang, given a list of servers, moves on to the next one when a server answers
// CONNECT with 0x03: without an explicit protocol version it first tries 3.1 on the same server
// (and is refused again), then the next server.
func TestPahoMovesOnAfterServerUnavailable(t *testing.T) {
	b := startBroker(t, nil)
	for _, tc := range []struct {
		name     string
		version  uint
		connects int // the CONNECT packets the refuser receives
	}{
		{"default version", 0, 2},
		{"3.1.1", 4, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRefuser(t, nil)
			opts := paho.NewClientOptions().
				AddBroker("tcp://" + r.addrs[0]).
				AddBroker("tcp://" + b.addr).
				SetClientID("paho-" + strings.ReplaceAll(tc.name, " ", "-")).
				SetAutoReconnect(false).
				SetConnectTimeout(mqtttest.Timeout)
			if tc.version != 0 {
				opts.SetProtocolVersion(tc.version)
			}
			cl := paho.NewClient(opts)
			tok := cl.Connect()
			if !tok.WaitTimeout(2*mqtttest.Timeout) || tok.Error() != nil {
				t.Fatalf("paho connect: %v", tok.Error())
			}
			defer cl.Disconnect(100)
			mqtttest.Eventually(t, mqtttest.Timeout, "the broker to count the client", func() bool {
				return b.srv.Stats().Connections.Load() >= 1
			})
			if got := strings.Count(r.log.String(), "CONNECT refused"); got != tc.connects {
				t.Fatalf("the refuser refused %d CONNECTs, want %d", got, tc.connects)
			}
		})
	}
}
