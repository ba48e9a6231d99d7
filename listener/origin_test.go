package listener

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/internal/syncbuf"
	"github.com/holdfast/holdfast/internal/testpki"
)

// upgradeStatus dials a WebSocket upgrade with the given Origin ("" = none) and Host ("" = the
// listener's address) and returns the HTTP status: 101 when the upgrade succeeded, in which case
// the connection is accepted on l and closed.
func upgradeStatus(t *testing.T, l net.Listener, tc *tls.Config, origin, host string) (int, string) {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	if host != "" {
		h.Set("Host", host) // gorilla sends it as the request's Host
	}
	scheme := "ws"
	if tc != nil {
		scheme = "wss"
	}
	ws, resp, err := dialWS(wsURL(l, scheme, "/mqtt"), []string{"mqtt"}, tc, h)
	if err == nil {
		accept(t, l).Close()
		ws.Close()
		return resp.StatusCode, ""
	}
	if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
		t.Fatalf("origin %q host %q: %v", origin, host, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

// TestSecurity03_WebSocketOriginDefault: with allowed_origins unset, a browser page of another
// origin (another site, another port of this host, a name rebound to 127.0.0.1, a sandboxed
// frame) is refused with 403 and a warning naming the origin; clients without Origin and pages
// of the listener's own host and port get in.
func TestSecurity03_WebSocketOriginDefault(t *testing.T) {
	logs := &syncbuf.Buffer{}
	l, err := Open(Config{Type: "ws", Address: "127.0.0.1:0"}, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	_, port, _ := net.SplitHostPort(l.Addr().String())
	other := "1"
	if port == other {
		other = "2"
	}
	for _, tc := range []struct {
		name, origin, host string
		status             int
	}{
		{"foreign site", "https://evil.example", "", 403},
		{"another port of this host", "http://127.0.0.1:" + other, "", 403},
		{"rebound name", "http://evil.example:" + port, "evil.example:" + port, 403},
		{"opaque origin", "null", "", 403},
		{"non-web scheme", "chrome-extension://abcdef", "", 403},
		{"no Origin", "", "", 101},
		{"own origin", "http://127.0.0.1:" + port, "", 101},
		{"own origin, https page", "https://127.0.0.1:" + port, "", 101},
		{"localhost", "http://localhost:" + port, "localhost:" + port, 101},
		{"case", "HTTP://LocalHost:" + port, "LOCALHOST:" + port, 101},
		{"loopback name, other Host", "http://127.0.0.1:" + port, "localhost:" + port, 101},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := upgradeStatus(t, l, nil, tc.origin, tc.host)
			if status != tc.status {
				t.Fatalf("status %d (%s), want %d", status, body, tc.status)
			}
			if status == 403 && !strings.Contains(body, "allowed_origins") {
				t.Fatalf("body %q does not name allowed_origins", body)
			}
		})
	}
	if log := logs.String(); !strings.Contains(log, `"level":"warn"`) || !strings.Contains(log, `"origin":"https://evil.example"`) {
		t.Fatalf("no warning naming the refused origin in the log:\n%s", log)
	}
}

// TestSecurity03_WebSocketOriginWSS: on wss the own origin is the https page of the same host
// and port, and a Host without a port means 443.
func TestSecurity03_WebSocketOriginWSS(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	f := testpki.NewServerFiles(t, ca, "server")
	l := open(t, Config{Type: "wss", CertFile: f.Cert, KeyFile: f.Key})
	tc := &tls.Config{RootCAs: ca.Pool}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	if status, body := upgradeStatus(t, l, tc, "https://127.0.0.1:"+port, ""); status != 101 {
		t.Fatalf("own origin: %d %s", status, body)
	}
	if status, body := upgradeStatus(t, l, tc, "https://evil.example", ""); status != 403 {
		t.Fatalf("foreign origin: %d %s", status, body)
	}
	// Host "localhost" means localhost:443, which is not the page https://localhost:PORT.
	if status, body := upgradeStatus(t, l, tc, "https://localhost", "localhost"); status != 101 {
		t.Fatalf("https://localhost with Host localhost: %d %s", status, body)
	}
	if status, body := upgradeStatus(t, l, tc, "http://localhost", "localhost"); status != 403 {
		t.Fatalf("http://localhost (port 80) with Host localhost (443 on wss): %d %s", status, body)
	}
}

// TestSecurity03_WebSocketOriginAny: allowed_origins = ["*"] is the explicit opt-out.
func TestSecurity03_WebSocketOriginAny(t *testing.T) {
	l := open(t, Config{Type: "ws", AllowedOrigins: []string{"*"}})
	for _, origin := range []string{"https://evil.example", "null", ""} {
		if status, body := upgradeStatus(t, l, nil, origin, ""); status != 101 {
			t.Fatalf("origin %q: %d %s, want 101", origin, status, body)
		}
	}
}

// TestSecurity03_WebSocketOriginList: a list replaces the own-host rule, and origins compare as
// origins: case and an explicit default port do not matter.
func TestSecurity03_WebSocketOriginList(t *testing.T) {
	l := open(t, Config{Type: "ws", AllowedOrigins: []string{"https://Dash.example:443", "http://localhost:3000"}})
	_, port, _ := net.SplitHostPort(l.Addr().String())
	for _, tc := range []struct {
		origin string
		status int
	}{
		{"https://dash.example", 101},
		{"http://localhost:3000", 101},
		{"http://dash.example", 403},
		{"https://dash.example:8443", 403},
		{"http://localhost:3001", 403},
		{"http://127.0.0.1:" + port, 403}, // the list is the whole policy
		{"", 101},
	} {
		if status, body := upgradeStatus(t, l, nil, tc.origin, ""); status != tc.status {
			t.Errorf("origin %q: %d %s, want %d", tc.origin, status, body, tc.status)
		}
	}
}

// TestOriginPolicyNetworkListener: a listener bound to a network address cannot know the names
// it is reached by, so a page whose origin matches the Host header is its own; on loopback only
// loopback names count (a name resolving to 127.0.0.1 may be a rebound one).
func TestOriginPolicyNetworkListener(t *testing.T) {
	network := newOriginPolicy(Config{Type: "ws", Address: "0.0.0.0:8080"}, &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 8080})
	named := newOriginPolicy(Config{Type: "ws", Address: "mybox:8080"}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8080})
	for _, tc := range []struct {
		p            originPolicy
		origin, host string
		want         bool
	}{
		{network, "https://mqtt.example.com:8080", "mqtt.example.com:8080", true},
		{network, "http://192.0.2.10:8080", "192.0.2.10:8080", true},
		{network, "http://192.0.2.10:8080", "other.example:8080", true}, // the bound address
		{network, "http://0.0.0.0:8080", "0.0.0.0:8080", true},          // as the browser asked for it
		{network, "http://0.0.0.0:8080", "192.0.2.10:8080", false},
		{network, "https://evil.example", "mqtt.example.com:8080", false},
		{network, "http://mqtt.example.com", "mqtt.example.com:8080", false},
		{named, "http://mybox:8080", "mybox:8080", true}, // the configured name
		{named, "http://evil.example:8080", "evil.example:8080", false},
		{named, "http://[::1]:8080", "[::1]:8080", true},
	} {
		if got := tc.p.allow(tc.origin, tc.host); got != tc.want {
			t.Errorf("%+v: allow(%q, %q) = %v, want %v", tc.p.own, tc.origin, tc.host, got, tc.want)
		}
	}
}

func TestValidateOrigins(t *testing.T) {
	for _, ok := range [][]string{nil, {"*"}, {"https://dash.example"}, {"http://localhost:3000", "https://a.example/"}, {"chrome-extension://abc"}} {
		if err := ValidateOrigins(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, tc := range []struct {
		origins []string
		want    string
	}{
		{[]string{"*", "https://dash.example"}, "only entry"},
		{[]string{"dash.example"}, "not an origin"},
		{[]string{"https://dash.example/app"}, "no user, path"},
		{[]string{"null"}, "not an origin"},
		{[]string{"https://"}, "not an origin"},
	} {
		if err := ValidateOrigins(tc.origins); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error saying %q", tc.origins, err, tc.want)
		}
	}
	if _, err := Open(Config{Type: "ws", Address: "127.0.0.1:0", AllowedOrigins: []string{"dash.example"}}, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "allowed_origins") {
		t.Fatalf("Open with a bad origin: %v", err)
	}
}

func TestSplitAuthority(t *testing.T) {
	for _, tc := range []struct {
		in, host, port string
		ok             bool
	}{
		{"127.0.0.1:8080", "127.0.0.1", "8080", true},
		{"LocalHost", "localhost", "80", true},
		{"example.com:", "example.com", "80", true},
		{"[::1]:8080", "::1", "8080", true},
		{"[::1]", "::1", "80", true},
		{"[::1", "", "", false},
		{"::1", "", "", false},
		{"[evil.example]", "", "", false},
		{"a:b:c", "", "", false},
		{":8080", "", "", false},
		{"", "", "", false},
	} {
		host, port, ok := SplitAuthority(tc.in, "80")
		if host != tc.host || port != tc.port || ok != tc.ok {
			t.Errorf("SplitAuthority(%q) = %q, %q, %v; want %q, %q, %v", tc.in, host, port, ok, tc.host, tc.port, tc.ok)
		}
	}
}
