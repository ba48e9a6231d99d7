package mqtttest

import (
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/scramtest"
)

// SCRAM is the Authentication Method of SCRAM-SHA-256.
const SCRAM = "SCRAM-SHA-256"

// ConnectSCRAM sends cp at level 5 with SCRAM-SHA-256 as its Authentication Method and runs the
// exchange as user: CONNECT, AUTH 0x18 from the broker, AUTH 0x18 back [MQTT-4.12.0-2]
// [MQTT-4.12.0-3]. It returns the CONNACK; when that is a success it has checked that it names
// the method [MQTT-4.12.0-5] and carries the server's signature.
func (c *Client) ConnectSCRAM(cp *codec.Connect, user, password string) *codec.Connack {
	c.t.Helper()
	c.SetLevel(codec.Level5)
	sc := scramtest.New(user, password)
	cp.ProtocolName, cp.ProtocolLevel = "MQTT", codec.Level5
	if cp.Props == nil {
		cp.Props = &codec.Properties{}
	}
	cp.Props.AuthMethod, cp.Props.AuthData = SCRAM, sc.First()
	c.Send(cp)
	a := Expect[*codec.Auth](c)
	if a.Reason != codec.ReasonContinueAuthentication || a.Props == nil || a.Props.AuthMethod != SCRAM {
		c.t.Fatalf("got %s, want AUTH 0x18 naming %s", String(a), SCRAM)
	}
	final, err := sc.Final(a.Props.AuthData)
	if err != nil {
		c.t.Fatal(err)
	}
	c.Send(&codec.Auth{Reason: codec.ReasonContinueAuthentication, Props: &codec.Properties{AuthMethod: SCRAM, AuthData: final}})
	ack := Expect[*codec.Connack](c)
	if ack.Reason != codec.ReasonSuccess {
		return ack
	}
	if ack.Props == nil || ack.Props.AuthMethod != SCRAM {
		c.t.Fatalf("CONNACK without Authentication Method %s: %+v", SCRAM, ack.Props)
	}
	if err := sc.Verify(ack.Props.AuthData); err != nil {
		c.t.Fatal(err)
	}
	return ack
}
