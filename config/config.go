// Package config reads holdfast's TOML configuration. The defaults are the embedded config.toml
// (decoded first); a user file is decoded on top of them, so a missing key keeps its default.
// Unknown keys and out-of-range values are errors that name the key and the file.
package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/holdfast/holdfast/listener"
	"github.com/holdfast/holdfast/session"
)

// Config is the whole configuration.
type Config struct {
	DataDir    string     `toml:"data_dir"`
	Durability string     `toml:"durability"`
	MQTT5      bool       `toml:"mqtt5"` // serve protocol level 5 beside 3 and 4
	Log        Log        `toml:"log"`
	Listeners  []Listener `toml:"listener"`
	Auth       Auth       `toml:"auth"`
	Limits     Limits     `toml:"limits"`
	Store      Store      `toml:"store"`
	Admin      Admin      `toml:"admin"`
	Shared     Shared     `toml:"shared"`
	Bridges    []Bridge   `toml:"bridge"`
	Cluster    Cluster    `toml:"cluster"`
}

// Shared configures the shared subscription groups.
type Shared struct {
	Strategy        string `toml:"strategy"`         // see session.ParseStrategy
	MaxRedeliveries int    `toml:"max_redeliveries"` // 0: never dropped
	// After a restart, how long a QoS 2 message that was in flight to a member waits for that
	// member to reconnect (and get it again with DUP) before it goes to another member.
	ReconnectGrace Duration `toml:"reconnect_grace"`
}

// Log configures zerolog.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Listener is one socket the broker accepts MQTT connections on.
type Listener struct {
	Type    string `toml:"type"`    // tcp | tls | ws | wss
	Address string `toml:"address"` // host:port
	Path    string `toml:"path"`    // ws, wss: URL path

	CertFile          string `toml:"cert_file"`           // tls, wss
	KeyFile           string `toml:"key_file"`            // tls, wss
	ClientCAFile      string `toml:"client_ca_file"`      // tls, wss: verify client certificates (mutual TLS)
	RequireClientCert bool   `toml:"require_client_cert"` // with client_ca_file: refuse clients without one
	CertCNAsUsername  bool   `toml:"cert_cn_as_username"` // the client certificate's CN is the MQTT username
	MinTLSVersion     string `toml:"min_tls_version"`     // "1.2" | "1.3"

	AllowedOrigins []string `toml:"allowed_origins"` // ws, wss: browser pages let in; empty = own host:port only, ["*"] = any
	BehindProxy    bool     `toml:"behind_proxy"`    // ws, wss: trust X-Forwarded-For
}

// Loopback reports whether the listener is reachable from this machine only.
func (l Listener) Loopback() bool {
	host, _, err := net.SplitHostPort(l.Address)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Auth says who may connect.
type Auth struct {
	// AllowAnonymous lets clients in without a username. Unset, it is true when every listener is
	// on loopback and no password file is given, and false otherwise: opening the broker to the
	// network without authentication has to be said out loud.
	AllowAnonymous *bool  `toml:"allow_anonymous"`
	PasswordFile   string `toml:"password_file"` // Mosquitto format
	ACLFile        string `toml:"acl_file"`      // Mosquitto format

	// ClientIDPrefixFromUsername confines an authenticated client to client ids that start with
	// its username and a separator, so that no user can squat another's ids.
	ClientIDPrefixFromUsername bool `toml:"client_id_prefix_from_username"`

	PasswordWorkers         int `toml:"password_workers"`           // password hashes computed at once; 0 = half the CPUs
	PasswordQueue           int `toml:"password_queue"`             // CONNECTs waiting for a worker; past it CONNACK 0x03
	PasswordQueuePerAddress int `toml:"password_queue_per_address"` // of those, from one source IP
	PasswordCache           int `toml:"password_cache"`             // recent successful logins remembered; 0 = none
}

// Admin is the operators' HTTP listener.
type Admin struct {
	Address     string   `toml:"address"`      // "" = off
	Token       string   `toml:"token"`        // bearer token required when set; required off loopback
	SysInterval Duration `toml:"sys_interval"` // $SYS topics period; 0 = off
}

// validateAdmin refuses an admin listener reachable from the network without a token: /backup
// hands out the whole database.
func (c *Config) validateAdmin() error {
	a := c.Admin
	if a.Address == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(a.Address); err != nil {
		return keyError("admin.address", "not host:port: %q", a.Address)
	}
	if a.Token == "" && !(Listener{Address: a.Address}).Loopback() {
		return keyError("admin.token", "must be set: admin.address %q is not a loopback address, and without a token anyone who reaches it can download the whole store (/backup)", a.Address)
	}
	return nil
}

// Limits bound what one client can cost the broker.
type Limits struct {
	MaxConnections    int      `toml:"max_connections"`
	MaxPacketSize     int      `toml:"max_packet_size"`
	MaxInflight       int      `toml:"max_inflight"`
	MaxQueuedMessages int      `toml:"max_queued_messages"`
	MaxQueuedBytes    int64    `toml:"max_queued_bytes"`
	MaxOutboundBytes  int      `toml:"max_outbound_bytes"`
	QueueQoS0Offline  bool     `toml:"queue_qos0_offline"`
	SessionExpiry     Duration `toml:"session_expiry"`
	ConnectTimeout    Duration `toml:"connect_timeout"`
	WriteTimeout      Duration `toml:"write_timeout"`
	StrictClientID    bool     `toml:"strict_client_id"`
	MaxSubscriptions  int      `toml:"max_subscriptions"`   // per client; 0 = unlimited
	MaxTopicLevels    int      `toml:"max_topic_levels"`    // in topic names and filters; 0 = unlimited
	TopicAliasMaximum int      `toml:"topic_alias_maximum"` // MQTT 5: aliases a client may set per connection; 0 = none
	ReceiveMaximum    int      `toml:"receive_maximum"`     // MQTT 5: QoS 1/2 PUBLISH packets a client may have unacknowledged
	MaxKeepAlive      Duration `toml:"max_keepalive"`       // MQTT 5: the longest keep-alive a client gets; 0 = its own

	MaxPendingConnects           int `toml:"max_pending_connects"`             // per listener: sockets without CONNECT; the oldest is closed past it
	MaxPendingConnectsPerAddress int `toml:"max_pending_connects_per_address"` // per listener and source IP: new sockets refused past it

	MaxRetainedMessages  int   `toml:"max_retained_messages"`   // whole broker; 0 = unlimited
	MaxRetainedBytes     int64 `toml:"max_retained_bytes"`      // topic + payload bytes, whole broker; 0 = unlimited
	MaxRetainedPerClient int   `toml:"max_retained_per_client"` // retained messages one client id holds; 0 = unlimited
}

// Store tunes the Badger store behind persist.
type Store struct {
	AsyncInterval    Duration `toml:"async_interval"`
	MemTableSize     int64    `toml:"memtable_size"`
	NumMemtables     int      `toml:"num_memtables"`
	BlockCacheSize   int64    `toml:"block_cache_size"`
	IndexCacheSize   int64    `toml:"index_cache_size"`
	ValueLogFileSize int64    `toml:"value_log_file_size"`
	GCInterval       Duration `toml:"gc_interval"`
	GCDiscardRatio   float64  `toml:"gc_discard_ratio"`
	MinFreeBytes     int64    `toml:"min_free_bytes"` // below it, new work that needs disk is refused; 0 = no check
}

// Duration is a time.Duration written as a Go duration string ("10s", "5m").
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. \"10s\", \"5m\"): %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Load decodes defaults, then the user's file contents (data may be nil), and validates the result.
// name is the file name used in error messages.
func Load(defaults []byte, name string, data []byte) (*Config, error) {
	var c Config
	if err := decode(defaults, "embedded config.toml", &c); err != nil {
		return nil, err
	}
	if data != nil {
		// A file that declares listeners replaces the default list rather than adding to it.
		defaultListeners := c.Listeners
		c.Listeners = nil
		if err := decode(data, name, &c); err != nil {
			return nil, err
		}
		if c.Listeners == nil {
			c.Listeners = defaultListeners
		}
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}

func decode(data []byte, name string, c *Config) error {
	md, err := toml.Decode(string(data), c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("%s: %s", name, perr.ErrorWithPosition())
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("%s: unknown key %s", name, strings.Join(keys, ", "))
	}
	return nil
}

// keyError names the offending key.
func keyError(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
}

func (c *Config) validate() error {
	switch c.Durability {
	case "sync", "async", "none":
	default:
		return keyError("durability", "must be \"sync\", \"async\" or \"none\", not %q", c.Durability)
	}
	if c.DataDir == "" && c.Durability != "none" {
		return keyError("data_dir", "must not be empty unless durability = \"none\"")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return keyError("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "console", "json":
	default:
		return keyError("log.format", "must be auto, console or json, not %q", c.Log.Format)
	}
	if len(c.Listeners) == 0 {
		return keyError("listener", "at least one listener is needed")
	}
	for i := range c.Listeners {
		if err := c.Listeners[i].validate(fmt.Sprintf("listener[%d]", i)); err != nil {
			return err
		}
	}
	if err := c.validateAuth(); err != nil {
		return err
	}
	if err := c.validateAdmin(); err != nil {
		return err
	}
	if err := c.validateBridges(); err != nil {
		return err
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	if _, err := session.ParseStrategy(c.Shared.Strategy); err != nil {
		return keyError("shared.strategy", "%v", err)
	}
	if c.Shared.ReconnectGrace.Duration < 0 {
		return keyError("shared.reconnect_grace", "must be >= 0, not %s", c.Shared.ReconnectGrace.Duration)
	}
	if c.Shared.MaxRedeliveries < 0 {
		return keyError("shared.max_redeliveries", "must be >= 0, not %d", c.Shared.MaxRedeliveries)
	}
	lim := &c.Limits
	if lim.MaxConnections < 0 {
		return keyError("limits.max_connections", "must be >= 0, not %d", lim.MaxConnections)
	}
	if lim.MaxPacketSize < 2 || lim.MaxPacketSize > 268435455+5 {
		return keyError("limits.max_packet_size", "must be between 2 and 268435460, not %d", lim.MaxPacketSize)
	}
	if lim.MaxInflight < 1 || lim.MaxInflight > 65535 {
		return keyError("limits.max_inflight", "must be between 1 and 65535, not %d", lim.MaxInflight)
	}
	if lim.MaxQueuedMessages < 1 {
		return keyError("limits.max_queued_messages", "must be >= 1, not %d", lim.MaxQueuedMessages)
	}
	if lim.MaxQueuedBytes < 0 {
		return keyError("limits.max_queued_bytes", "must be >= 0, not %d", lim.MaxQueuedBytes)
	}
	if lim.MaxSubscriptions < 0 {
		return keyError("limits.max_subscriptions", "must be >= 0, not %d", lim.MaxSubscriptions)
	}
	if ka := lim.MaxKeepAlive.Duration; ka < 0 || ka > 65535*time.Second || ka%time.Second != 0 {
		return keyError("limits.max_keepalive", "must be whole seconds between 0 and 65535s, not %s", ka)
	}
	if lim.ReceiveMaximum < 1 || lim.ReceiveMaximum > 65535 {
		return keyError("limits.receive_maximum", "must be between 1 and 65535, not %d", lim.ReceiveMaximum)
	}
	if lim.TopicAliasMaximum < 0 || lim.TopicAliasMaximum > 65535 {
		return keyError("limits.topic_alias_maximum", "must be between 0 and 65535, not %d", lim.TopicAliasMaximum)
	}
	if lim.MaxTopicLevels < 0 {
		return keyError("limits.max_topic_levels", "must be >= 0, not %d", lim.MaxTopicLevels)
	}
	if lim.MaxPendingConnects < 0 {
		return keyError("limits.max_pending_connects", "must be >= 0, not %d", lim.MaxPendingConnects)
	}
	if lim.MaxPendingConnectsPerAddress < 0 {
		return keyError("limits.max_pending_connects_per_address", "must be >= 0, not %d", lim.MaxPendingConnectsPerAddress)
	}
	if lim.MaxRetainedMessages < 0 {
		return keyError("limits.max_retained_messages", "must be >= 0, not %d", lim.MaxRetainedMessages)
	}
	if lim.MaxRetainedBytes < 0 {
		return keyError("limits.max_retained_bytes", "must be >= 0, not %d", lim.MaxRetainedBytes)
	}
	if lim.MaxRetainedPerClient < 0 {
		return keyError("limits.max_retained_per_client", "must be >= 0, not %d", lim.MaxRetainedPerClient)
	}
	if lim.MaxOutboundBytes < 1024 {
		return keyError("limits.max_outbound_bytes", "must be >= 1024, not %d", lim.MaxOutboundBytes)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
		min time.Duration
	}{
		{"limits.session_expiry", lim.SessionExpiry.Duration, 0},
		{"limits.connect_timeout", lim.ConnectTimeout.Duration, time.Millisecond},
		{"limits.write_timeout", lim.WriteTimeout.Duration, time.Millisecond},
		{"store.async_interval", c.Store.AsyncInterval.Duration, time.Millisecond},
		{"store.gc_interval", c.Store.GCInterval.Duration, time.Second},
		{"admin.sys_interval", c.Admin.SysInterval.Duration, 0},
	} {
		if d.v < d.min {
			return keyError(d.key, "must be at least %s, not %s", d.min, d.v)
		}
	}
	st := &c.Store
	if st.MemTableSize < 1<<20 {
		return keyError("store.memtable_size", "must be at least 1 MiB, not %d", st.MemTableSize)
	}
	if st.NumMemtables < 1 {
		return keyError("store.num_memtables", "must be >= 1, not %d", st.NumMemtables)
	}
	if st.BlockCacheSize < 0 {
		return keyError("store.block_cache_size", "must be >= 0, not %d", st.BlockCacheSize)
	}
	if st.IndexCacheSize < 0 {
		return keyError("store.index_cache_size", "must be >= 0, not %d", st.IndexCacheSize)
	}
	if st.ValueLogFileSize < 1<<20 || st.ValueLogFileSize >= 2<<30 {
		return keyError("store.value_log_file_size", "must be between 1 MiB and 2 GiB, not %d", st.ValueLogFileSize)
	}
	if st.MinFreeBytes < 0 {
		return keyError("store.min_free_bytes", "must be >= 0, not %d", st.MinFreeBytes)
	}
	if st.GCDiscardRatio <= 0 || st.GCDiscardRatio >= 1 {
		return keyError("store.gc_discard_ratio", "must be between 0 and 1 (exclusive), not %g", st.GCDiscardRatio)
	}
	return nil
}

func (l *Listener) validate(key string) error {
	switch l.Type {
	case "tcp", "tls", "ws", "wss":
	default:
		return keyError(key+".type", "must be tcp, tls, ws or wss, not %q", l.Type)
	}
	if _, _, err := net.SplitHostPort(l.Address); err != nil {
		return keyError(key+".address", "not host:port: %q", l.Address)
	}
	web := l.Type == "ws" || l.Type == "wss"
	secure := l.Type == "tls" || l.Type == "wss"
	if web && l.Path == "" {
		l.Path = "/mqtt"
	}
	if web && !strings.HasPrefix(l.Path, "/") {
		return keyError(key+".path", "must start with '/', not %q", l.Path)
	}
	if !web && (l.Path != "" || len(l.AllowedOrigins) > 0 || l.BehindProxy) {
		return keyError(key, "path, allowed_origins and behind_proxy apply to ws and wss listeners only")
	}
	if err := listener.ValidateOrigins(l.AllowedOrigins); err != nil {
		return keyError(key+".allowed_origins", "%v", err)
	}
	if secure && (l.CertFile == "" || l.KeyFile == "") {
		return keyError(key+".cert_file", "a %s listener needs cert_file and key_file", l.Type)
	}
	if !secure && (l.CertFile != "" || l.KeyFile != "" || l.ClientCAFile != "" || l.MinTLSVersion != "") {
		return keyError(key, "cert_file, key_file, client_ca_file and min_tls_version apply to tls and wss listeners only")
	}
	if (l.RequireClientCert || l.CertCNAsUsername) && l.ClientCAFile == "" {
		return keyError(key+".client_ca_file", "require_client_cert and cert_cn_as_username need client_ca_file")
	}
	switch l.MinTLSVersion {
	case "", "1.2", "1.3":
	default:
		return keyError(key+".min_tls_version", "must be \"1.2\" or \"1.3\", not %q", l.MinTLSVersion)
	}
	return nil
}

// validateAuth settles allow_anonymous and refuses an open network listener nobody asked for.
func (c *Config) validateAuth() error {
	for _, k := range []struct {
		key string
		v   int
		min int
	}{
		{"auth.password_workers", c.Auth.PasswordWorkers, 0},
		{"auth.password_queue", c.Auth.PasswordQueue, 1},
		{"auth.password_queue_per_address", c.Auth.PasswordQueuePerAddress, 1},
		{"auth.password_cache", c.Auth.PasswordCache, 0},
	} {
		if k.v < k.min {
			return keyError(k.key, "must be >= %d, not %d", k.min, k.v)
		}
	}
	allLoopback := true
	for _, l := range c.Listeners {
		allLoopback = allLoopback && l.Loopback()
	}
	if c.Auth.AllowAnonymous == nil {
		anon := allLoopback && c.Auth.PasswordFile == ""
		c.Auth.AllowAnonymous = &anon
	}
	if *c.Auth.AllowAnonymous || c.Auth.PasswordFile != "" {
		return nil
	}
	for _, l := range c.Listeners {
		if !l.CertCNAsUsername {
			return keyError("auth.allow_anonymous", "no password_file and allow_anonymous = false: listener %s %s would admit nobody", l.Type, l.Address)
		}
	}
	return nil
}

// Anonymous reports whether clients without a username are let in.
func (a Auth) Anonymous() bool { return a.AllowAnonymous != nil && *a.AllowAnonymous }
