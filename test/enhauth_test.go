package test

// MQTT 5 enhanced authentication against the binary: SCRAM-SHA-256 in AUTH packets, with the
// users of the password file (`holdfast passwd --scram`).

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/internal/scramtest"
)

// scramBroker serves MQTT 5 with a password file where sam and pat have SCRAM-SHA-256 entries
// and old a $7$ hash, an ACL giving each user its own tree, and extra configuration after it.
func scramBroker(t *testing.T, extra string) *Broker {
	t.Helper()
	dir := t.TempDir()
	pw, acl := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	for _, u := range []string{"sam", "pat"} {
		h, err := auth.HashSCRAM([]byte("pw-"+u), auth.DefaultSCRAMIterations)
		if err != nil {
			t.Fatal(err)
		}
		if err := auth.SetPasswordHash(pw, u, h); err != nil {
			t.Fatal(err)
		}
	}
	secSetPassword(t, pw, "old", "pw-old")
	secWriteFile(t, acl, "pattern readwrite %u/#\n")
	return StartBroker(t, BrokerConfig{MQTT5: true, Extra: fmt.Sprintf("[auth]\npassword_file = %q\nacl_file = %q\n%s", pw, acl, extra)})
}

// scramConnect dials b and starts the exchange: CONNECT naming method with user's client-first
// message. It returns the connection and the broker's first answer.
func scramConnect(t *testing.T, b *Broker, method, user string) (*mqtttest.Client, codec.Packet) {
	t.Helper()
	c := mqtttest.Dial(t, b.Addr)
	c.SetLevel(codec.Level5)
	c.Send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level5, ClientID: "x-" + user, CleanSession: true,
		Props: &codec.Properties{AuthMethod: method, AuthData: scramtest.New(user, "pw-"+user).First()}})
	return c, c.Read()
}

// expectRefused fails unless p is a CONNACK with reason want after which the broker closes the
// connection [MQTT-4.12.0-4].
func expectRefused(t *testing.T, c *mqtttest.Client, p codec.Packet, want codec.ReasonCode) {
	t.Helper()
	if ack, ok := p.(*codec.Connack); !ok || ack.Reason != want {
		t.Fatalf("got %s, want CONNACK %v", mqtttest.String(p), want)
	}
	if got := c.ExpectClosed(); len(got) > 0 {
		t.Fatalf("after the refusal: %s", mqtttest.String(got[0]))
	}
}

// [MQTT-4.12.0-2] [MQTT-4.12.0-5] a full SCRAM-SHA-256 login: CONNECT, AUTH 0x18, AUTH 0x18,
// CONNACK 0x00 naming the method with the server's signature (checked by ConnectSCRAM). The
// proven username is the client's identity for the ACL; the same entry serves a plain password.
func TestSCRAMLogin_MQTT_4_12_0_5(t *testing.T) {
	b := scramBroker(t, "")
	c := mqtttest.Dial(t, b.Addr)
	if ack := c.ConnectSCRAM(&codec.Connect{ClientID: "sam-1", CleanSession: true, KeepAlive: 60}, "sam", "pw-sam"); ack.Reason != codec.ReasonSuccess {
		t.Fatalf("CONNACK %v", ack.Reason)
	}
	codes := c.Subscribe(1, 1, "sam/in", "pat/in")
	if codes[0] != 1 || codes[1] < 0x80 {
		t.Fatalf("SUBACK %x: want sam/in granted and pat/in refused by the ACL for sam", codes)
	}
	plain := mqtttest.Dial(t, b.Addr)
	if ack := plain.Connect(&codec.Connect{ClientID: "sam-2", CleanSession: true, KeepAlive: 60,
		HasUsername: true, Username: "sam", HasPassword: true, Password: []byte("pw-sam")}); ack.ReturnCode != codec.Accepted {
		t.Fatalf("plain CONNECT with a SCRAM user's password: 0x%02x", byte(ack.ReturnCode))
	}
	secPublish(t, plain, 1, "sam/in", "hello", 1)
	if p := c.NextPublish(); p.Topic != "sam/in" || string(p.Payload) != "hello" {
		t.Fatalf("got %q on %q", p.Payload, p.Topic)
	}
}

// A wrong password, an unknown user and a user whose entry is not SCRAM's all fail at the proof
// with CONNACK 0x87 (Not authorized).
func TestSCRAMRefused_MQTT_4_12_0_4(t *testing.T) {
	b := scramBroker(t, "")
	for _, u := range []struct{ user, password string }{{"sam", "pw-pat"}, {"nobody", "pw-nobody"}, {"old", "pw-old"}} {
		c := mqtttest.Dial(t, b.Addr)
		ack := c.ConnectSCRAM(&codec.Connect{ClientID: "r-" + u.user, CleanSession: true}, u.user, u.password)
		expectRefused(t, c, ack, codec.ReasonNotAuthorized)
	}
}

// [MQTT-4.12.0-1] a method the broker does not offer gets CONNACK 0x8C at once.
func TestSCRAMUnknownMethod_MQTT_4_12_0_1(t *testing.T) {
	b := scramBroker(t, "")
	c, p := scramConnect(t, b, "SCRAM-SHA-1", "sam")
	expectRefused(t, c, p, codec.ReasonBadAuthenticationMethod)
}

// [MQTT-3.1.2-30] in the middle of the exchange the client may send only AUTH or DISCONNECT, and
// [MQTT-4.12.0-3] its AUTH must say Continue authentication: anything else is a protocol error,
// answered with CONNACK 0x82 (no DISCONNECT before a successful CONNACK [MQTT-3.14.0-1]).
func TestSCRAMMidExchange_MQTT_3_1_2_30(t *testing.T) {
	b := scramBroker(t, "")
	for _, next := range []codec.Packet{
		&codec.Publish{Topic: "sam/in", Payload: []byte("early")},
		&codec.Pingreq{},
		&codec.Auth{Reason: codec.ReasonReAuthenticate, Props: &codec.Properties{AuthMethod: mqtttest.SCRAM, AuthData: []byte("x")}},
		&codec.Auth{Reason: codec.ReasonContinueAuthentication, Props: &codec.Properties{AuthMethod: "PLAIN", AuthData: []byte("x")}},
	} {
		c, p := scramConnect(t, b, mqtttest.SCRAM, "sam")
		if a, ok := p.(*codec.Auth); !ok || a.Reason != codec.ReasonContinueAuthentication {
			t.Fatalf("got %s, want AUTH 0x18", mqtttest.String(p))
		}
		c.Send(next)
		expectRefused(t, c, c.Read(), codec.ReasonProtocolError)
	}
}

// The exchange runs before the connection stops counting toward
// limits.max_pending_connects_per_address: a client stopped in the middle of it holds its
// address's slot (until limits.connect_timeout), and releases it once CONNACK is sent.
func TestSCRAMExchangeIsPending(t *testing.T) {
	b := scramBroker(t, "[limits]\nmax_pending_connects_per_address = 1\n")
	c := mqtttest.DialFrom(t, "127.0.0.7", b.Addr)
	c.SetLevel(codec.Level5)
	sc := scramtest.New("sam", "pw-sam")
	c.Send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level5, ClientID: "pending", CleanSession: true,
		Props: &codec.Properties{AuthMethod: mqtttest.SCRAM, AuthData: sc.First()}})
	a := mqtttest.Expect[*codec.Auth](c)
	if !floodClosedAtOnce(mqtttest.DialFrom(t, "127.0.0.7", b.Addr)) {
		t.Fatal("a second socket from 127.0.0.7 was let in while the first was authenticating (limit 1)")
	}
	final, err := sc.Final(a.Props.AuthData)
	if err != nil {
		t.Fatal(err)
	}
	c.Send(&codec.Auth{Reason: codec.ReasonContinueAuthentication, Props: &codec.Properties{AuthMethod: mqtttest.SCRAM, AuthData: final}})
	if ack := mqtttest.Expect[*codec.Connack](c); ack.Reason != codec.ReasonSuccess {
		t.Fatalf("CONNACK %v", ack.Reason)
	}
	next := mqtttest.DialFrom(t, "127.0.0.7", b.Addr)
	if ack := next.ConnectSCRAM(&codec.Connect{ClientID: "after", CleanSession: true}, "pat", "pw-pat"); ack.Reason != codec.ReasonSuccess {
		t.Fatalf("after the first client's CONNACK: CONNACK %v", ack.Reason)
	}
}

// The username the exchange proved owns the session: another user cannot take its client id
// (CONNACK 0x87), the same user over SCRAM resumes it.
func TestSCRAMSessionOwner(t *testing.T) {
	b := scramBroker(t, "")
	persistent := func() *codec.Connect {
		return &codec.Connect{ClientID: "dev-1", KeepAlive: 60, Props: &codec.Properties{SessionExpiry: 3600}}
	}
	c := mqtttest.Dial(t, b.Addr)
	if ack := c.ConnectSCRAM(persistent(), "sam", "pw-sam"); ack.Reason != codec.ReasonSuccess {
		t.Fatalf("CONNACK %v", ack.Reason)
	}
	c.Send(&codec.Disconnect{})
	c.ExpectClosed()
	other := mqtttest.Dial(t, b.Addr)
	expectRefused(t, other, other.ConnectSCRAM(persistent(), "pat", "pw-pat"), codec.ReasonNotAuthorized)
	again := mqtttest.Dial(t, b.Addr)
	if ack := again.ConnectSCRAM(persistent(), "sam", "pw-sam"); ack.Reason != codec.ReasonSuccess || !ack.SessionPresent {
		t.Fatalf("sam again: CONNACK %v, session present %v", ack.Reason, ack.SessionPresent)
	}
}

// scramResult is what test/js/scram.js prints.
type scramResult struct {
	Connected      bool   `json:"connected"`
	ServerVerified bool   `json:"serverVerified"`
	Received       string `json:"received"`
	ReasonCode     *int   `json:"reasonCode"`
	Error          string `json:"error"`
}

// TestNodeMQTTjsSCRAM: a third-party MQTT 5 client, MQTT.js under Node.js, runs the SCRAM-SHA-256
// exchange through its enhanced authentication hook (the SCRAM steps written on Node's crypto),
// checks the broker's signature in CONNACK and publishes and receives as the proven user; a wrong
// password gets CONNACK 0x87.
func TestNodeMQTTjsSCRAM(t *testing.T) {
	node := needTool(t, "node", "nodejs")
	needNodeModule(t, "mqtt/package.json")
	b := scramBroker(t, "")
	url := "mqtt://" + b.Addr
	var ok scramResult
	if diag, err := runNodeJSON(t, node, "scram.js", &ok, url, "sam", "pw-sam", "sam/js"); err != nil || ok.Error != "" ||
		!ok.Connected || !ok.ServerVerified || ok.Received != "via SCRAM" {
		t.Fatalf("sam: exit %v, result %+v; %s", err, ok, diag)
	}
	var refused scramResult
	if diag, err := runNodeJSON(t, node, "scram.js", &refused, url, "sam", "pw-pat", "sam/js"); err != nil || refused.Connected ||
		refused.ReasonCode == nil || *refused.ReasonCode != int(codec.ReasonNotAuthorized) {
		t.Fatalf("wrong password: exit %v, result %+v, want refused with 0x87; %s", err, refused, diag)
	}
}
