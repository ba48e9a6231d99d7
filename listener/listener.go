// Package listener opens the sockets holdfast accepts MQTT connections on: plain TCP, TLS
// (optionally mutual), WebSocket and WebSocket over TLS. Whatever the transport, a Listener is a
// net.Listener whose connections are plain MQTT byte streams, so the broker serves them all alike.
//
// TLS handshakes run in a goroutine per connection, off the Accept path, so one slow client never
// holds up the others. WebSocket connections are upgraded by an http.Server and wrapped in a
// net.Conn adapter that turns binary messages into a byte stream; because http.Server.Shutdown
// neither closes nor waits for hijacked connections (golang/go#17721), the WebSocket listener
// tracks every upgraded connection itself and closes them in Close.
package listener

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"
)

// Config is one [[listener]] table of config.toml (the config package copies its fields in).
type Config struct {
	Type    string // "tcp" | "tls" | "ws" | "wss"
	Address string // host:port
	Path    string // ws/wss: URL path, default "/mqtt"

	CertFile, KeyFile string // tls/wss
	ClientCAFile      string // tls/wss: if set, client certificates are verified against it (mutual TLS)
	RequireClientCert bool   // with ClientCAFile: refuse clients without a certificate
	CertCNAsUsername  bool   // the verified client certificate's CommonName becomes the MQTT username
	MinTLSVersion     string // "1.2" (default) | "1.3"

	// AllowedOrigins (ws/wss) are the browser pages (Origin headers) let in: empty = pages of the
	// listener's own host and port only, ["*"] = any, else exactly these. Requests without an
	// Origin (not from a browser) are always let in.
	AllowedOrigins []string
	BehindProxy    bool // ws/wss: take the client address from X-Forwarded-For (the left-most entry)

	Gate *Gate // admits sockets as they are accepted, before any handshake; nil = no limits
}

// Listener is a net.Listener that yields MQTT byte streams, whatever the transport.
type Listener interface {
	net.Listener
	// Reload re-reads the certificate and key (and client CA) from disk; connections already open
	// keep working, new handshakes use the new certificate. A broken file returns an error and
	// keeps the old one. Listeners without TLS return nil.
	Reload() error
}

// DefaultPath is the URL path of a WebSocket listener whose Config.Path is empty.
const DefaultPath = "/mqtt"

// Subprotocols are the WebSocket subprotocols a ws/wss listener negotiates, in order of
// preference: "mqtt" (MQTT 3.1.1, IANA-registered) and "mqttv3.1" (MQTT 3.1).
var Subprotocols = []string{"mqtt", "mqttv3.1"}

// Timeouts. Variables rather than constants so that tests can shorten them.
var (
	handshakeTimeout  = 10 * time.Second       // TLS handshake, HTTP request header, WebSocket upgrade
	closeFrameTimeout = 500 * time.Millisecond // best-effort WebSocket close frame
	shutdownTimeout   = time.Second            // graceful http.Server.Shutdown before Close
)

// Open validates c and starts listening. Errors name the listener's type and address and say
// what is wrong.
func Open(c Config, log zerolog.Logger) (Listener, error) {
	log = log.With().Str("type", c.Type).Str("address", c.Address).Logger()
	if err := c.validate(); err != nil {
		return nil, c.errorf("%w", err)
	}
	var certs *certSource
	if c.Type == "tls" || c.Type == "wss" {
		var err error
		if certs, err = newCertSource(c, log); err != nil {
			return nil, c.errorf("%w", err)
		}
	}
	raw, err := net.Listen("tcp", c.Address)
	if err != nil {
		return nil, c.errorf("%w", err)
	}
	raw = c.Gate.Wrap(raw)
	var l Listener
	switch c.Type {
	case "tcp":
		l = tcpListener{raw}
	case "tls":
		l = newTLSListener(raw, certs, log)
	case "ws", "wss":
		l = newWSListener(raw, c, certs, log)
	}
	log.Debug().Str("bound", raw.Addr().String()).Msg("listener open")
	return l, nil
}

func (c Config) errorf(format string, args ...any) error {
	return fmt.Errorf("listener %s %s: "+format, append([]any{c.Type, c.Address}, args...)...)
}

func (c Config) validate() error {
	switch c.Type {
	case "tcp", "tls", "ws", "wss":
	case "":
		return errors.New("type is missing (tcp, tls, ws or wss)")
	default:
		return fmt.Errorf("unknown type %q (tcp, tls, ws or wss)", c.Type)
	}
	if c.Address == "" {
		return errors.New("address is missing (host:port)")
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return fmt.Errorf("address: %w", err)
	}
	isTLS := c.Type == "tls" || c.Type == "wss"
	if isTLS {
		if c.CertFile == "" {
			return errors.New("cert_file is required")
		}
		if c.KeyFile == "" {
			return errors.New("key_file is required")
		}
		if _, err := tlsVersion(c.MinTLSVersion); err != nil {
			return err
		}
		if c.RequireClientCert && c.ClientCAFile == "" {
			return errors.New("require_client_cert needs client_ca_file to verify the certificates against")
		}
		if c.CertCNAsUsername && c.ClientCAFile == "" {
			return errors.New("cert_cn_as_username needs client_ca_file: only a verified certificate names a user")
		}
	} else if c.CertFile != "" || c.KeyFile != "" || c.ClientCAFile != "" || c.RequireClientCert || c.CertCNAsUsername || c.MinTLSVersion != "" {
		return fmt.Errorf("TLS settings given but type %q does not use TLS (use tls or wss)", c.Type)
	}
	isWS := c.Type == "ws" || c.Type == "wss"
	if isWS {
		if c.Path != "" && c.Path[0] != '/' {
			return fmt.Errorf("path %q must start with /", c.Path)
		}
		if err := ValidateOrigins(c.AllowedOrigins); err != nil {
			return fmt.Errorf("allowed_origins: %w", err)
		}
	} else if c.Path != "" || len(c.AllowedOrigins) > 0 || c.BehindProxy {
		return fmt.Errorf("WebSocket settings (path, allowed_origins, behind_proxy) given but type %q is not ws or wss", c.Type)
	}
	return nil
}

// PeerIdentity returns the username taken from a verified client certificate's CommonName for a
// connection accepted from a tls or wss listener with CertCNAsUsername, and ok=false otherwise
// (other listeners, no certificate, or an empty CommonName).
func PeerIdentity(conn net.Conn) (username string, ok bool) {
	switch c := conn.(type) {
	case *tlsConn:
		return c.username, c.hasUsername
	case *wsConn:
		return c.username, c.hasUsername
	}
	return "", false
}

// tcpListener is a plain TCP listener; it has nothing to reload.
type tcpListener struct{ net.Listener }

func (tcpListener) Reload() error { return nil }
