package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

const oneBridge = `
[[bridge]]
name = "cloud"
address = "127.0.0.1:1884"
  [[bridge.topic]]
  pattern = "sensors/#"
`

func TestBridgeDefaults(t *testing.T) {
	c, err := Load(defaults(t), "my.toml", []byte(oneBridge))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Bridges[0]
	host, _ := os.Hostname()
	if b.ClientID != host+".cloud" || b.KeepAlive.Duration != 30*time.Second || b.RestartTimeout.Duration != time.Second ||
		b.Protocol != "3.1.1" || b.Level() != 4 || b.MaxInflight != 256 || !b.Private() || !b.Notify() || b.CleanSession || b.TLS() {
		t.Errorf("defaults: %+v", b)
	}
	if tp := b.Topics[0]; tp.Direction != "out" || !tp.Out() || tp.In() || tp.QoS != 0 {
		t.Errorf("topic defaults: %+v", tp)
	}
}

func TestBridgeAddressList(t *testing.T) {
	c, err := Load(defaults(t), "my.toml", []byte(strings.Replace(oneBridge, `"127.0.0.1:1884"`, `["a:1", "b:2"]`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Bridges[0].Address; len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Errorf("address %v", got)
	}
}

func TestBadBridgeNamesKey(t *testing.T) {
	for _, tc := range []struct{ old, new, key string }{
		{`name = "cloud"`, `name = "a/b"`, "bridge[0].name"},
		{`address = "127.0.0.1:1884"`, `address = "nohost"`, "bridge[0].address"},
		{`address = "127.0.0.1:1884"`, `address = 5`, "address"},
		{`pattern = "sensors/#"`, "pattern = \"s/#\"\n  direction = \"sideways\"", "bridge[0].topic[0].direction"},
		{`pattern = "sensors/#"`, "pattern = \"s/#\"\n  qos = 3", "bridge[0].topic[0].qos"},
		{`pattern = "sensors/#"`, `pattern = ""`, "bridge[0].topic[0].pattern"},
		{`name = "cloud"`, "name = \"cloud\"\nprotocol = \"4\"", "bridge[0].protocol"},
		{`name = "cloud"`, "name = \"cloud\"\ncert_file = \"c.pem\"", "bridge[0].cert_file"},
		{`name = "cloud"`, "name = \"cloud\"\npassword = \"x\"\npassword_file = \"f\"", "bridge[0].password_file"},
		{`name = "cloud"`, "name = \"cloud\"\npassword = \"x\"", "bridge[0].username"},
		{`name = "cloud"`, "name = \"cloud\"\nkeepalive = \"100ms\"", "bridge[0].keepalive"},
	} {
		_, err := Load(defaults(t), "my.toml", []byte(strings.Replace(oneBridge, tc.old, tc.new, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), "my.toml") {
			t.Errorf("%s: got %v, want an error naming %s and the file", tc.new, err, tc.key)
		}
	}
	_, err := Load(defaults(t), "my.toml", []byte(oneBridge+oneBridge))
	if err == nil || !strings.Contains(err.Error(), "bridge[1].name") {
		t.Errorf("two bridges named alike: %v", err)
	}
}
