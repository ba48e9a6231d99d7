package config

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Bridge is one store-and-forward bridge to a remote broker ([[bridge]]): Mosquitto's bridge
// semantics in TOML. Keys left out take the defaults that Defaults fills in.
type Bridge struct {
	Name           string    `toml:"name"`
	Address        Addresses `toml:"address"` // "host:port", or a list tried in turn
	ClientID       string    `toml:"client_id"`
	CleanSession   bool      `toml:"clean_session"`
	KeepAlive      Duration  `toml:"keepalive"`
	RestartTimeout Duration  `toml:"restart_timeout"` // first reconnect delay; doubles with jitter up to a minute
	Protocol       string    `toml:"protocol"`        // 3.1 | 3.1.1 | 5
	Username       string    `toml:"username"`
	Password       string    `toml:"password"`
	PasswordFile   string    `toml:"password_file"`
	CAFile         string    `toml:"ca_file"`
	CertFile       string    `toml:"cert_file"`
	KeyFile        string    `toml:"key_file"`
	Insecure       bool      `toml:"insecure"` // TLS without verifying the remote's certificate
	TryPrivate     *bool     `toml:"try_private"`
	Notifications  *bool     `toml:"notifications"`
	QueueQoS0      bool      `toml:"queue_qos0"`

	MaxQueuedMessages int   `toml:"max_queued_messages"` // 0: limits.max_queued_messages
	MaxQueuedBytes    int64 `toml:"max_queued_bytes"`    // 0: limits.max_queued_bytes
	// MaxInflight is how many QoS 1/2 messages the bridge leaves unacknowledged by the remote: a
	// link between brokers crosses a network round trip and the remote's fsync for every window,
	// so it wants a wider one than a client's (limits.max_inflight). The remote's Receive Maximum
	// caps it at MQTT 5.
	MaxInflight int `toml:"max_inflight"`

	Topics []BridgeTopic `toml:"topic"`
}

// BridgeTopic is one [[bridge.topic]]: which messages cross the bridge, which way, at most at
// which QoS, and how their topics change on the way.
type BridgeTopic struct {
	Pattern      string `toml:"pattern"`
	Direction    string `toml:"direction"` // out | in | both
	QoS          byte   `toml:"qos"`
	LocalPrefix  string `toml:"local_prefix"`
	RemotePrefix string `toml:"remote_prefix"`
}

// Out and In report the directions the topic crosses.
func (t *BridgeTopic) Out() bool { return t.Direction == "out" || t.Direction == "both" }
func (t *BridgeTopic) In() bool  { return t.Direction == "in" || t.Direction == "both" }

// Addresses is one "host:port" or a list of them.
type Addresses []string

// UnmarshalTOML takes a string or an array of strings.
func (a *Addresses) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*a = Addresses{v}
	case []any:
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("want \"host:port\" strings, not %v", x)
			}
			*a = append(*a, s)
		}
	default:
		return fmt.Errorf("want \"host:port\" or a list of them, not %v", v)
	}
	return nil
}

// Level is the MQTT protocol level the bridge speaks.
func (b *Bridge) Level() byte {
	switch b.Protocol {
	case "3.1":
		return 3
	case "5":
		return 5
	}
	return 4
}

// Private reports whether the bridge announces itself (try_private, default true).
func (b *Bridge) Private() bool { return b.TryPrivate == nil || *b.TryPrivate }

// Notify reports whether the bridge publishes its state under $SYS (notifications, default true).
func (b *Bridge) Notify() bool { return b.Notifications == nil || *b.Notifications }

// TLS reports whether the link uses TLS: a CA file, a client certificate, or insecure is set.
func (b *Bridge) TLS() bool { return b.CAFile != "" || b.CertFile != "" || b.Insecure }

// Secret returns the password: password, or the first line of password_file.
func (b *Bridge) Secret() (string, error) {
	if b.PasswordFile == "" {
		return b.Password, nil
	}
	data, err := os.ReadFile(b.PasswordFile)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimRight(line, "\r"), nil
}

func (c *Config) validateBridges() error {
	seen := make(map[string]bool)
	for i := range c.Bridges {
		b := &c.Bridges[i]
		key := fmt.Sprintf("bridge[%d]", i)
		if b.Name == "" || strings.ContainsAny(b.Name, "/+#\x00") {
			return keyError(key+".name", "must be set, without '/', '+' or '#': it names the bridge's session and $SYS topic")
		}
		if seen[b.Name] {
			return keyError(key+".name", "%q is used by another bridge", b.Name)
		}
		seen[b.Name] = true
		if len(b.Address) == 0 {
			return keyError(key+".address", "needs a \"host:port\"")
		}
		for _, a := range b.Address {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return keyError(key+".address", "%q is not host:port: %v", a, err)
			}
		}
		if b.ClientID == "" {
			host, _ := os.Hostname()
			b.ClientID = host + "." + b.Name
		}
		if b.KeepAlive.Duration == 0 {
			b.KeepAlive.Duration = 30 * time.Second
		}
		if b.KeepAlive.Duration < time.Second || b.KeepAlive.Duration > 65535*time.Second {
			return keyError(key+".keepalive", "must be between 1s and 65535s, not %s", b.KeepAlive.Duration)
		}
		if b.RestartTimeout.Duration <= 0 {
			b.RestartTimeout.Duration = time.Second
		}
		switch b.Protocol {
		case "":
			b.Protocol = "3.1.1"
		case "3.1", "3.1.1", "5":
		default:
			return keyError(key+".protocol", "must be 3.1, 3.1.1 or 5, not %q", b.Protocol)
		}
		if b.Password != "" && b.PasswordFile != "" {
			return keyError(key+".password_file", "set password or password_file, not both")
		}
		if (b.Password != "" || b.PasswordFile != "") && b.Username == "" && b.Protocol != "5" {
			return keyError(key+".username", "MQTT 3.x sends a password only with a user name [MQTT-3.1.2-22]")
		}
		if (b.CertFile == "") != (b.KeyFile == "") {
			return keyError(key+".cert_file", "cert_file and key_file go together")
		}
		if b.MaxInflight == 0 {
			b.MaxInflight = 256
		}
		if b.MaxInflight < 1 || b.MaxInflight > 65535 {
			return keyError(key+".max_inflight", "must be between 1 and 65535, not %d", b.MaxInflight)
		}
		if b.MaxQueuedMessages < 0 || b.MaxQueuedBytes < 0 {
			return keyError(key+".max_queued_messages", "must be >= 0")
		}
		if len(b.Topics) == 0 {
			return keyError(key+".topic", "at least one [[bridge.topic]] is needed")
		}
		for j := range b.Topics {
			t := &b.Topics[j]
			tk := fmt.Sprintf("%s.topic[%d]", key, j)
			if t.Pattern == "" {
				return keyError(tk+".pattern", "must be set")
			}
			switch t.Direction {
			case "":
				t.Direction = "out"
			case "out", "in", "both":
			default:
				return keyError(tk+".direction", "must be out, in or both, not %q", t.Direction)
			}
			if t.QoS > 2 {
				return keyError(tk+".qos", "must be 0, 1 or 2, not %d", t.QoS)
			}
		}
	}
	return nil
}
