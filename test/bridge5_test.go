package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// A bridge that speaks MQTT 5 (protocol = "5") to a holdfast remote: QoS 2 messages cross out
// exactly once with the prefix, and what the remote publishes on the in side arrives here.
func TestBridgeMQTT5HoldfastToHoldfast(t *testing.T) {
	remote := bridgeRemote(t)
	local := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf(`
[[bridge]]
name = "v5"
address = %q
protocol = "5"
restart_timeout = "100ms"
  [[bridge.topic]]
  pattern = "up/#"
  direction = "out"
  qos = 2
  remote_prefix = "e/"
  [[bridge.topic]]
  pattern = "down/#"
  direction = "in"
  qos = 2
  remote_prefix = "e/"
`, remote.Addr)})
	rsub := mqtttest.Dial(t, remote.Addr)
	rsub.MustConnect("v5-rsub", true)
	rsub.Subscribe(1, 2, "e/up/#")
	lsub := mqtttest.Dial(t, local.Addr)
	lsub.MustConnect("v5-lsub", true)
	lsub.Subscribe(1, 2, "down/#")
	lpub := mqtttest.Dial(t, local.Addr)
	lpub.MustConnect("v5-lpub", true)
	rpub := mqtttest.Dial(t, remote.Addr)
	rpub.MustConnect("v5-rpub", true)

	// The link is up once a message from the remote crosses in.
	untilCrossed(t, "the MQTT 5 bridge's in subscription", rpub, "e/down/x", lsub, "down/x")
	const n = 200
	for i := range n {
		lpub.Send(&codec.Publish{Topic: "up/t", QoS: 2, PacketID: uint16(i + 1), Payload: fmt.Appendf(nil, "%d", i)})
		mqtttest.Expect[*codec.Pubrec](lpub)
		lpub.Send(&codec.Pubrel{PacketID: uint16(i + 1)})
		mqtttest.Expect[*codec.Pubcomp](lpub)
	}
	got := map[string]int{}
	for len(got) < n {
		p, err := rsub.TryRead(bridgeStall)
		if err != nil {
			t.Fatalf("after %d of %d: %v", len(got), n, err)
		}
		pub, ok := p.(*codec.Publish)
		if !ok {
			if rel, ok := p.(*codec.Pubrel); ok {
				rsub.Send(&codec.Pubcomp{PacketID: rel.PacketID})
			}
			continue
		}
		if pub.Topic != "e/up/t" || pub.QoS != 2 {
			t.Fatalf("got %s at QoS %d, want e/up/t at 2", pub.Topic, pub.QoS)
		}
		if got[string(pub.Payload)]++; got[string(pub.Payload)] > 1 && !pub.Dup {
			t.Fatalf("message %s arrived twice as new", pub.Payload)
		}
		rsub.Send(&codec.Pubrec{PacketID: pub.PacketID})
	}
}

// address takes a list tried in turn: with the first address dead, the bridge comes up on the
// second, logging in to a remote that requires a password with the one in password_file.
func TestBridgeAddressListAndPasswordFile(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	for user, password := range map[string]string{"edge": "s3cret", "watcher": "w"} {
		h, err := auth.HashPasswordIterations([]byte(password), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if err := auth.SetPasswordHash(pw, user, h); err != nil {
			t.Fatal(err)
		}
	}
	remote := StartBroker(t, BrokerConfig{Listen: bridgeFreeAddr(t), Extra: fmt.Sprintf("[auth]\npassword_file = %q\n", pw)})
	dead := bridgeFreeAddr(t) // nothing listens there
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	local := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf(`
[[bridge]]
name = "list"
address = [%q, %q]
username = "edge"
password_file = %q
restart_timeout = "50ms"
  [[bridge.topic]]
  pattern = "list/#"
  qos = 1
`, dead, remote.Addr, secret)})
	rsub := mqtttest.Dial(t, remote.Addr)
	if ack := rsub.Connect(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, ClientID: "list-rsub",
		Username: "watcher", HasUsername: true, Password: []byte("w"), HasPassword: true}); ack.ReturnCode != codec.Accepted {
		t.Fatalf("the watcher was refused: %d", ack.ReturnCode)
	}
	rsub.Subscribe(1, 1, "list/#")
	lpub := mqtttest.Dial(t, local.Addr)
	lpub.MustConnect("list-lpub", true)
	untilCrossed(t, "a message over the second address", lpub, "list/x", rsub, "list/x")
	if !strings.Contains(local.Log(), dead) {
		t.Errorf("the log does not show the bridge trying %s first", dead)
	}
}

// An out topic removed from the configuration: what was queued under it while the remote was
// down is dropped when its turn comes, and the link stays up for the rules that remain (a
// message no rule maps must never go out with an empty topic, which the remote would take for a
// malformed packet and end the link over, again and again).
func TestBridgeRemovedTopicQueueDropped(t *testing.T) {
	remoteAddr := bridgeFreeAddr(t) // nothing listens yet: the remote is down
	rules := func(topics ...string) string {
		s := fmt.Sprintf("[[bridge]]\nname = \"cfg\"\naddress = %q\nrestart_timeout = \"50ms\"\n", remoteAddr)
		for _, tp := range topics {
			s += fmt.Sprintf("  [[bridge.topic]]\n  pattern = %q\n  qos = 1\n", tp)
		}
		return s
	}
	local := StartBroker(t, BrokerConfig{Extra: rules("old/#", "kept/#")})
	pub := mqtttest.Dial(t, local.Addr)
	pub.MustConnect("cfg-pub", true)
	for i, topic := range []string{"old/a", "old/b", "kept/a"} {
		pub.Send(&codec.Publish{Topic: topic, QoS: 1, PacketID: uint16(i + 1), Payload: []byte(topic)})
		mqtttest.Expect[*codec.Puback](pub) // queued for the bridge, on disk
	}
	local.Stop()
	cfg, err := os.ReadFile(local.Config)
	if err != nil {
		t.Fatal(err)
	}
	newCfg := strings.Replace(string(cfg), rules("old/#", "kept/#"), rules("kept/#"), 1)
	if newCfg == string(cfg) {
		t.Fatal("the bridge section was not found in the configuration")
	}
	if err := os.WriteFile(local.Config, []byte(newCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	remote := StartBroker(t, BrokerConfig{Listen: remoteAddr})
	sub := mqtttest.Dial(t, remote.Addr)
	sub.MustConnect("cfg-sub", true)
	sub.Subscribe(1, 1, "#")
	local.Start()
	p, err := sub.TryRead(bridgeStall)
	if err != nil {
		t.Fatalf("nothing crossed: %v", err)
	}
	if got := p.(*codec.Publish); got.Topic != "kept/a" {
		t.Fatalf("got %q first, want kept/a (old/... are no longer bridged)", got.Topic)
	}
	sub.Send(&codec.Puback{PacketID: p.(*codec.Publish).PacketID})
	pub = mqtttest.Dial(t, local.Addr)
	pub.MustConnect("cfg-pub", true)
	pub.Send(&codec.Publish{Topic: "kept/b", QoS: 1, PacketID: 1, Payload: []byte("after")})
	mqtttest.Expect[*codec.Puback](pub)
	if p := sub.NextPublish(); p.Topic != "kept/b" {
		t.Fatalf("got %q, want kept/b over the same link", p.Topic)
	}
	if n := strings.Count(local.Log(), "bridge connected"); n != 1 {
		t.Errorf("the bridge connected %d times after the restart, want once", n)
	}
}

// untilCrossed publishes QoS 1 messages on topic through pub until sub gets one on want: the
// bridge between their brokers is up (it comes up at its own time after the broker starts).
func untilCrossed(t *testing.T, what string, pub *mqtttest.Client, topic string, sub *mqtttest.Client, want string) {
	t.Helper()
	mqtttest.Eventually(t, 15*time.Second, what, func() bool {
		pub.Send(&codec.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte("probe")})
		mqtttest.Expect[*codec.Puback](pub)
		p, err := sub.TryRead(300 * time.Millisecond)
		return err == nil && p.(*codec.Publish).Topic == want
	})
}
