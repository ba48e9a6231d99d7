package broker

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/internal/scramtest"
)

// scramBroker serves MQTT 5 with a password file holding SCRAM-SHA-256 entries for users.
func scramBroker(t *testing.T, users map[string]string, mutate func(*config.Config)) *testBroker {
	t.Helper()
	file := filepath.Join(t.TempDir(), "passwd")
	for u, p := range users {
		h, err := auth.HashSCRAM([]byte(p), auth.DefaultSCRAMIterations)
		if err != nil {
			t.Fatal(err)
		}
		if err := auth.SetPasswordHash(file, u, h); err != nil {
			t.Fatal(err)
		}
	}
	return startBroker(t, func(c *config.Config) {
		c.MQTT5 = true
		c.Auth.PasswordFile = file
		if mutate != nil {
			mutate(c)
		}
	})
}

// reauth sends AUTH 0x19 and the client's final message, and returns the broker's last answer.
func reauth(t *testing.T, c *mqtttest.Client, user, password string) codec.Packet {
	t.Helper()
	sc := scramtest.New(user, password)
	c.Send(&codec.Auth{Reason: codec.ReasonReAuthenticate, Props: &codec.Properties{AuthMethod: mqtttest.SCRAM, AuthData: sc.First()}},
		&codec.Pingreq{}) // other packets flow during re-authentication
	a := mqtttest.Expect[*codec.Auth](c)
	if a.Reason != codec.ReasonContinueAuthentication {
		t.Fatalf("AUTH %v, want 0x18", a.Reason)
	}
	mqtttest.Expect[*codec.Pingresp](c)
	final, err := sc.Final(a.Props.AuthData)
	if err != nil {
		t.Fatal(err)
	}
	c.Send(&codec.Auth{Reason: codec.ReasonContinueAuthentication, Props: &codec.Properties{AuthMethod: mqtttest.SCRAM, AuthData: final}})
	p := c.Read()
	if a, ok := p.(*codec.Auth); ok && a.Reason == codec.ReasonSuccess {
		if err := sc.Verify(a.Props.AuthData); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// [MQTT-4.12.1-1] a client re-authenticates with the method it connected with: AUTH 0x19,
// AUTH 0x18 both ways, AUTH 0x00 with the server's signature; [MQTT-4.12.1-2] a failed one
// (a wrong password, or another user than the session's) ends with DISCONNECT 0x87.
func TestReauthenticate_MQTT_4_12_1_1(t *testing.T) {
	b := scramBroker(t, map[string]string{"sam": "pw-sam", "pat": "pw-pat"}, nil)
	c := b.dial()
	if ack := c.ConnectSCRAM(&codec.Connect{ClientID: "re1", CleanSession: true}, "sam", "pw-sam"); ack.Reason != codec.ReasonSuccess {
		t.Fatalf("CONNACK %v", ack.Reason)
	}
	for range 2 {
		if p := reauth(t, c, "sam", "pw-sam"); p.Type() != codec.TypeAuth {
			t.Fatalf("re-authentication: %s, want AUTH 0x00", mqtttest.String(p))
		}
	}
	for _, tc := range []struct{ user, password string }{{"sam", "wrong"}, {"pat", "pw-pat"}} {
		c := b.dial()
		if ack := c.ConnectSCRAM(&codec.Connect{ClientID: "re2", CleanSession: true}, "sam", "pw-sam"); ack.Reason != codec.ReasonSuccess {
			t.Fatalf("CONNACK %v", ack.Reason)
		}
		p := reauth(t, c, tc.user, tc.password)
		if d, ok := p.(*codec.Disconnect); !ok || d.Reason != codec.ReasonNotAuthorized {
			t.Fatalf("re-authentication as %s/%s: %s, want DISCONNECT 0x87", tc.user, tc.password, mqtttest.String(p))
		}
		c.ExpectClosed()
	}
}

// §3.15.2.2.2: AUTH with another method than CONNECT's, or from a client whose CONNECT named none
// [MQTT-4.12.0-7], or a Continue with no re-authentication under way, is a protocol error.
func TestAuthOutOfPlace_MQTT_4_12_0_7(t *testing.T) {
	b := scramBroker(t, map[string]string{"sam": "pw"}, nil)
	plain := b.dial()
	plain.SetLevel(codec.Level5)
	if ack := plain.Connect(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level5, ClientID: "p", CleanSession: true,
		HasUsername: true, Username: "sam", HasPassword: true, Password: []byte("pw")}); ack.Reason != codec.ReasonSuccess || ack.Props.AuthMethod != "" {
		t.Fatalf("plain password of a SCRAM user: CONNACK %v %+v [MQTT-4.12.0-6]", ack.Reason, ack.Props)
	}
	for i, a := range []*codec.Auth{
		{Reason: codec.ReasonReAuthenticate, Props: &codec.Properties{AuthMethod: mqtttest.SCRAM}},
		{Reason: codec.ReasonReAuthenticate, Props: &codec.Properties{AuthMethod: "SCRAM-SHA-1"}},
		{Reason: codec.ReasonContinueAuthentication, Props: &codec.Properties{AuthMethod: mqtttest.SCRAM}},
	} {
		c := plain
		if i > 0 {
			c = b.dial()
			c.ConnectSCRAM(&codec.Connect{ClientID: "s", CleanSession: true}, "sam", "pw")
		}
		c.Send(a)
		if d := mqtttest.Expect[*codec.Disconnect](c); d.Reason != codec.ReasonProtocolError {
			t.Fatalf("case %d: DISCONNECT %v, want 0x82", i, d.Reason)
		}
	}
}

// A client that stops in the middle of the exchange is closed at limits.connect_timeout from
// its first byte, like one that never sends CONNECT.
func TestAuthExchangeDeadline(t *testing.T) {
	b := scramBroker(t, map[string]string{"sam": "pw"}, func(c *config.Config) { c.Limits.ConnectTimeout.Duration = 300 * time.Millisecond })
	c := b.dial()
	c.SetLevel(codec.Level5)
	start := time.Now()
	c.Send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level5, ClientID: "slow", CleanSession: true,
		Props: &codec.Properties{AuthMethod: mqtttest.SCRAM, AuthData: scramtest.New("sam", "pw").First()}})
	mqtttest.Expect[*codec.Auth](c)
	if got := c.ExpectClosed(); len(got) != 0 {
		t.Fatalf("got %s before the close", mqtttest.String(got[0]))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v, want about limits.connect_timeout (300ms)", d)
	}
}

// The methods come with the password file: a user added to it is offered SCRAM after a reload,
// without a restart.
func TestSCRAMAfterReload(t *testing.T) {
	b := scramBroker(t, map[string]string{"sam": "pw"}, nil)
	c := b.dial()
	if ack := c.ConnectSCRAM(&codec.Connect{ClientID: "new-1", CleanSession: true}, "neo", "pw-neo"); ack.Reason != codec.ReasonNotAuthorized {
		t.Fatalf("a user not in the file yet: CONNACK %v, want 0x87", ack.Reason)
	}
	h, err := auth.HashSCRAM([]byte("pw-neo"), auth.DefaultSCRAMIterations)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.SetPasswordHash(b.cfg.Auth.PasswordFile, "neo", h); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.ReloadAuth(); err != nil {
		t.Fatal(err)
	}
	if ack := b.dial().ConnectSCRAM(&codec.Connect{ClientID: "new-2", CleanSession: true}, "neo", "pw-neo"); ack.Reason != codec.ReasonSuccess {
		t.Fatalf("after the reload: CONNACK %v", ack.Reason)
	}
}
