package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// A bridge to a TLS listener verifies the remote's certificate against ca_file: with the CA that
// signed it the link comes up and messages cross; with another CA it does not (the log says
// why); insecure = true skips the check.
func TestBridgeTLSVerifiesRemote(t *testing.T) {
	ca := newTLSTestCA(t, "bridge-ca")
	server := ca.issue(t, "remote", true)
	remote := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf(`
[[listener]]
type = "tls"
address = "127.0.0.1:0"
cert_file = %q
key_file = %q
`, server.CertFile, server.KeyFile)})
	tlsAddr := listenAddr(t, remote, 0, "tls", 0)
	other := newTLSTestCA(t, "other-ca")

	bridgeTo := func(name, tlsKeys string) string {
		return fmt.Sprintf(`
[[bridge]]
name = %q
address = %q
restart_timeout = "100ms"
%s
  [[bridge.topic]]
  pattern = "sensors/#"
  direction = "out"
  qos = 1
  remote_prefix = %q
`, name, tlsAddr, tlsKeys, name+"/")
	}
	local := StartBroker(t, BrokerConfig{Extra: bridgeTo("verified", fmt.Sprintf("ca_file = %q", ca.File)) +
		bridgeTo("wrongca", fmt.Sprintf("ca_file = %q", other.File)) +
		bridgeTo("insecure", "insecure = true")})

	sub := mqtttest.Dial(t, remote.Addr)
	sub.MustConnect("tls-sub", true)
	sub.Subscribe(1, 1, "+/sensors/#")
	pub := mqtttest.Dial(t, local.Addr)
	pub.MustConnect("tls-pub", true)
	got := map[string]bool{}
	// Published until both links that should be up have carried one (a link comes up after the
	// local broker has started, at its own time).
	mqtttest.Eventually(t, 15*time.Second, "messages over the verified and the insecure bridge", func() bool {
		pub.Send(&codec.Publish{Topic: "sensors/t", QoS: 1, PacketID: 1, Payload: []byte("x")})
		mqtttest.Expect[*codec.Puback](pub)
		for {
			p, err := sub.TryRead(200 * time.Millisecond)
			if err != nil {
				break
			}
			if m, ok := p.(*codec.Publish); ok {
				got[m.Topic] = true
				sub.Send(&codec.Puback{PacketID: m.PacketID})
			}
		}
		return got["verified/sensors/t"] && got["insecure/sensors/t"]
	})
	if got["wrongca/sensors/t"] {
		t.Fatal("the bridge whose ca_file did not sign the remote's certificate delivered anyway")
	}
	mqtttest.Eventually(t, 10*time.Second, "the wrong-CA bridge's refusal in the log", func() bool {
		for _, line := range strings.Split(local.Log(), "\n") {
			if strings.Contains(line, `"bridge":"wrongca"`) && strings.Contains(line, "could not connect") && strings.Contains(line, "certificate") {
				return true
			}
		}
		return false
	})
}
