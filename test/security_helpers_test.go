package test

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// Helpers of the security tests (security_test.go). Every name starts with "sec" so that it
// cannot collide with the helpers of the other files of this package.

// secIterations is the PBKDF2 iteration count of the fixtures the tests write themselves: low,
// so that a CONNECT costs little CPU under the race detector. The hash format is the one
// `holdfast passwd` and mosquitto_passwd write; only the count differs.
const secIterations = 1000

// secLogWait bounds how long a test waits for a log line after SIGHUP.
const secLogWait = 10 * time.Second

// secWriteFile writes a configuration file the broker reads.
func secWriteFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// secSetPassword adds or replaces user in the password file at path, with a $7$ hash of
// secIterations iterations.
func secSetPassword(t *testing.T, path, user, password string) {
	t.Helper()
	h, err := auth.HashPasswordIterations([]byte(password), secIterations)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.SetPasswordHash(path, user, h); err != nil {
		t.Fatal(err)
	}
}

// secCreds is a CONNECT of protocol 3.1.1 (unless level says otherwise), clean session unless
// persistent is set.
type secCreds struct {
	id         string
	user       string // "" = no username flag
	password   string
	noPassword bool // with user: username flag without password flag
	level      byte // 0 = 3.1.1
	persistent bool
	will       *codec.Will
}

func (c secCreds) packet() *codec.Connect {
	cp := &codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level311, ClientID: c.id,
		CleanSession: !c.persistent, KeepAlive: 60, Will: c.will}
	if c.level == codec.Level31 {
		cp.ProtocolName, cp.ProtocolLevel = "MQIsdp", codec.Level31
	}
	if c.user != "" {
		cp.HasUsername, cp.Username = true, c.user
		if !c.noPassword {
			cp.HasPassword, cp.Password = true, []byte(c.password)
		}
	}
	return cp
}

// secConnect dials b, sends the CONNECT and returns the connection and the CONNACK. When the
// CONNACK refuses, it also checks that the broker then closes the connection [MQTT-3.2.2-5].
func secConnect(t *testing.T, b *Broker, cr secCreds) (*mqtttest.Client, *codec.Connack) {
	t.Helper()
	c := mqtttest.Dial(t, b.Addr)
	c.Send(cr.packet())
	p, err := c.TryRead(mqtttest.Timeout)
	if err != nil {
		t.Fatalf("CONNECT id=%q user=%q: no CONNACK: %v", cr.id, cr.user, err)
	}
	ack, ok := p.(*codec.Connack)
	if !ok {
		t.Fatalf("CONNECT id=%q user=%q: got %s, want CONNACK", cr.id, cr.user, mqtttest.String(p))
	}
	if ack.ReturnCode != codec.Accepted {
		if ack.SessionPresent {
			t.Errorf("CONNACK 0x%02x with session present 1 [MQTT-3.2.2-4]", byte(ack.ReturnCode))
		}
		if got := c.ExpectClosed(); len(got) > 0 {
			t.Errorf("after refusing CONNECT the broker sent %s", mqtttest.String(got[0]))
		}
	}
	return c, ack
}

// secExpectCode connects and fails the test unless the CONNACK has the code want.
func secExpectCode(t *testing.T, b *Broker, cr secCreds, want codec.ConnackCode) *mqtttest.Client {
	t.Helper()
	c, ack := secConnect(t, b, cr)
	if ack.ReturnCode != want {
		t.Fatalf("CONNECT id=%q user=%q: CONNACK 0x%02x (%s), want 0x%02x (%s)",
			cr.id, cr.user, byte(ack.ReturnCode), ack.ReturnCode, byte(want), want)
	}
	return c
}

// secMustConnect connects and fails the test unless accepted.
func secMustConnect(t *testing.T, b *Broker, cr secCreds) *mqtttest.Client {
	t.Helper()
	return secExpectCode(t, b, cr, codec.Accepted)
}

// secSubscribe subscribes to (filter, qos) pairs and fails unless the SUBACK holds want. Like
// every helper here it takes the calling test's t, so that a subtest can use a connection of its
// parent.
func secSubscribe(t *testing.T, c *mqtttest.Client, pid uint16, want []byte, subs ...codec.Subscription) {
	t.Helper()
	c = c.For(t)
	c.Send(&codec.Subscribe{PacketID: pid, Subscriptions: subs})
	ack := c.Await(codec.TypeSuback).(*codec.Suback)
	if ack.PacketID != pid {
		t.Fatalf("SUBACK packet id %d, want %d", ack.PacketID, pid)
	}
	if string(ack.ReturnCodes) != string(want) {
		t.Fatalf("SUBACK %v to %v, want %v", ack.ReturnCodes, subs, want)
	}
}

// secSub is a one-filter subscription.
func secSub(filter string, qos byte) codec.Subscription {
	return codec.Subscription{Filter: filter, QoS: qos}
}

// secPublish publishes and completes the publisher's side of the handshake: PUBACK for QoS 1,
// PUBREC-PUBREL-PUBCOMP for QoS 2, and for QoS 0 a PINGREQ-PINGRESP round trip, so that when it
// returns the broker has handled the PUBLISH (routed it or dropped it) in every case.
func secPublish(t *testing.T, c *mqtttest.Client, pid uint16, topic, payload string, qos byte) {
	t.Helper()
	c = c.For(t)
	c.Send(&codec.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, PacketID: pid})
	switch qos {
	case 0:
		c.Send(&codec.Pingreq{})
		c.Await(codec.TypePingresp)
	case 1:
		if a := c.Await(codec.TypePuback).(*codec.Puback); a.PacketID != pid {
			t.Fatalf("PUBACK %d, want %d", a.PacketID, pid)
		}
	case 2:
		if a := c.Await(codec.TypePubrec).(*codec.Pubrec); a.PacketID != pid {
			t.Fatalf("PUBREC %d, want %d", a.PacketID, pid)
		}
		c.Send(&codec.Pubrel{PacketID: pid})
		if a := c.Await(codec.TypePubcomp).(*codec.Pubcomp); a.PacketID != pid {
			t.Fatalf("PUBCOMP %d, want %d", a.PacketID, pid)
		}
	}
}

// secExpectNext fails unless the next PUBLISH c receives is payload on topic. Tests publish a
// marker after something that must not be delivered: as the broker had already handled the
// refused message when the marker was sent, the marker arriving first proves the refused message
// was not delivered.
func secExpectNext(t *testing.T, c *mqtttest.Client, topic, payload string) *codec.Publish {
	t.Helper()
	p := c.For(t).NextPublish()
	if p.Topic != topic || string(p.Payload) != payload {
		t.Fatalf("received PUBLISH %q %q, want %q %q (a message the ACL refuses was delivered, or the expected one was lost)",
			p.Topic, p.Payload, topic, payload)
	}
	return p
}

// secPing fails unless the connection answers PINGREQ with PINGRESP, with no PUBLISH waiting.
func secPing(t *testing.T, c *mqtttest.Client) {
	t.Helper()
	c = c.For(t)
	c.Send(&codec.Pingreq{})
	c.Await(codec.TypePingresp)
	if s := c.Stashed(); len(s) > 0 {
		t.Fatalf("unexpected PUBLISH %q %q", s[0].Topic, s[0].Payload)
	}
}

// secLogLine is one JSON line of the broker's log.
type secLogLine struct {
	raw     string
	Level   string `json:"level"`
	Message string `json:"message"`
	Error   string `json:"error"`
}

// secLogLines returns the broker's log lines from the n-th on.
func secLogLines(b *Broker, from int) []secLogLine {
	lines := strings.Split(strings.TrimSuffix(b.Log(), "\n"), "\n")
	var out []secLogLine
	for i := from; i < len(lines); i++ {
		out = append(out, secParseLine(lines[i]))
	}
	return out
}

func secParseLine(raw string) secLogLine {
	l := secLogLine{raw: raw}
	json.Unmarshal([]byte(raw), &l)
	return l
}

// secLogLen is the number of lines the broker has logged so far.
func secLogLen(b *Broker) int {
	return len(strings.Split(strings.TrimSuffix(b.Log(), "\n"), "\n"))
}

// secWaitReady waits for the broker's "holdfast ready" line: a test that changes a file the
// broker reads at start must not race its start-up.
func secWaitReady(t *testing.T, b *Broker) {
	t.Helper()
	if _, ok := b.logLine(0, secLogWait, func(l string) bool { return strings.Contains(l, `"message":"holdfast ready"`) }); !ok {
		t.Fatalf("no \"holdfast ready\" line within %v", secLogWait)
	}
}

// secSIGHUP sends SIGHUP to the broker and waits for the first log line written after it that
// match accepts. It returns that line, or fails the test (Errorf, so that the rest of the test
// still reports what it sees) and returns nil.
func secSIGHUP(t *testing.T, b *Broker, what string, match func(secLogLine) bool) *secLogLine {
	t.Helper()
	from := len(b.Log())
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP: %v", err)
	}
	if raw, ok := b.logLine(from, secLogWait, func(raw string) bool { return match(secParseLine(raw)) }); ok {
		l := secParseLine(raw)
		return &l
	}
	t.Errorf("no log line %s within %v of SIGHUP; the broker logged after SIGHUP:\n%s", what, secLogWait, b.Log()[from:])
	return nil
}

// secReloaded matches the line ReloadAuth writes on success.
func secReloaded(l secLogLine) bool { return l.Message == "auth files reloaded" }
