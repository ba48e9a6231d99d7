package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

func defaults(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDefaults(t *testing.T) {
	c, err := Load(defaults(t), "config.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Durability != "sync" || c.DataDir != "data" || c.Limits.MaxInflight != 20 ||
		c.Limits.ConnectTimeout.Duration != 10*time.Second || len(c.Listeners) != 2 || c.Listeners[1].Path != "/mqtt" ||
		c.Listeners[0].Address != "127.0.0.1:1883" || !c.Limits.StrictClientID {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestUserFileOverridesOnlyWhatItSays(t *testing.T) {
	c, err := Load(defaults(t), "my.toml", []byte("durability = \"async\"\n[limits]\nmax_inflight = 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Durability != "async" || c.Limits.MaxInflight != 5 || c.Limits.MaxQueuedMessages != 100000 || len(c.Listeners) != 2 {
		t.Fatalf("merge wrong: %+v", c)
	}
}

func TestListenersReplaceDefaults(t *testing.T) {
	c, err := Load(defaults(t), "my.toml", []byte("[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:2883\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listeners) != 1 || c.Listeners[0].Address != "127.0.0.1:2883" {
		t.Fatalf("listeners %+v", c.Listeners)
	}
}

func TestBadConfigNamesKeyAndFile(t *testing.T) {
	for _, tc := range []struct{ name, toml, want string }{
		{"unknown key", "[limits]\nmax_inflite = 3\n", "limits.max_inflite"},
		{"unknown table", "[nope]\nx = 1\n", "nope"},
		{"bad durability", "durability = \"fast\"\n", "durability"},
		{"bad duration", "[limits]\nconnect_timeout = \"soon\"\n", "connect_timeout"},
		{"zero inflight", "[limits]\nmax_inflight = 0\n", "limits.max_inflight"},
		{"bad level", "[log]\nlevel = \"loud\"\n", "log.level"},
		{"bad listener type", "[[listener]]\ntype = \"udp\"\naddress = \"127.0.0.1:1\"\n", "listener[0].type"},
		{"bad address", "[[listener]]\ntype = \"tcp\"\naddress = \"nowhere\"\n", "listener[0].address"},
		{"gc ratio", "[store]\ngc_discard_ratio = 1.5\n", "store.gc_discard_ratio"},
		{"wrong type", "[limits]\nmax_inflight = \"many\"\n", "max_inflight"},
		{"syntax", "durability = \n", "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(defaults(t), "my.toml", []byte(tc.toml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "my.toml") {
				t.Fatalf("error %q does not name %q and the file", err, tc.want)
			}
		})
	}
}

func TestAnonymousDefaults(t *testing.T) {
	c, err := Load(defaults(t), "my.toml", nil)
	if err != nil || !c.Auth.Anonymous() {
		t.Fatalf("loopback default: anonymous=%v err=%v, want allowed", c != nil && c.Auth.Anonymous(), err)
	}
	open := "[[listener]]\ntype = \"tcp\"\naddress = \"0.0.0.0:1883\"\n"
	if _, err := Load(defaults(t), "my.toml", []byte(open)); err == nil || !strings.Contains(err.Error(), "auth.allow_anonymous") {
		t.Fatalf("network listener without auth: err=%v, want one naming auth.allow_anonymous", err)
	}
	c, err = Load(defaults(t), "my.toml", []byte(open+"[auth]\nallow_anonymous = true\n"))
	if err != nil || !c.Auth.Anonymous() {
		t.Fatalf("said out loud: err=%v", err)
	}
	c, err = Load(defaults(t), "my.toml", []byte(open+"[auth]\npassword_file = \"pw\"\n"))
	if err != nil || c.Auth.Anonymous() {
		t.Fatalf("with a password file: err=%v anonymous=%v, want refused", err, c != nil && c.Auth.Anonymous())
	}
}

func TestTLSListenerNeedsCertificate(t *testing.T) {
	_, err := Load(defaults(t), "my.toml", []byte("[[listener]]\ntype = \"tls\"\naddress = \"127.0.0.1:8883\"\n"))
	if err == nil || !strings.Contains(err.Error(), "listener[0].cert_file") {
		t.Fatalf("err=%v", err)
	}
}

// The production example in deploy/ is a valid configuration: every key it shows exists.
func TestDeployExampleLoads(t *testing.T) {
	data, err := os.ReadFile("../deploy/config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(defaults(t), "config.example.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	if !c.MQTT5 || c.Limits.ReceiveMaximum != 1024 {
		t.Errorf("mqtt5 %v, receive_maximum %d", c.MQTT5, c.Limits.ReceiveMaximum)
	}
}
