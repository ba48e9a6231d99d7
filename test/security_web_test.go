package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/holdfast/holdfast/internal/mqtttest"
)

// Issue 11 items 3 and 4, against the binary: what a web page in the operator's browser can
// reach. Browsers send Origin on a WebSocket upgrade and a Host header naming what the page
// asked for; these tests send the same headers a page would.

// wsUpgrade opens a WebSocket to url with the given Origin and Host headers ("" = none, or the
// URL's) and returns the connection as an MQTT client, or the refusal's status and body.
func wsUpgrade(t *testing.T, url, origin, host string) (c *mqtttest.Client, status int, body string) {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	if host != "" {
		h.Set("Host", host)
	}
	d := websocket.Dialer{HandshakeTimeout: transportWait, Subprotocols: []string{"mqtt"}}
	ws, resp, err := d.Dial(url, h)
	if err == nil {
		return mqtttest.New(t, mqtttest.WebSocket(ws)), resp.StatusCode, ""
	}
	if resp == nil {
		t.Fatalf("WebSocket dial %s (Origin %q): %v", url, origin, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return nil, resp.StatusCode, string(b)
}

// waitLog polls the broker's log until it holds every one of wants on one line.
func waitLog(t *testing.T, b *Broker, wants ...string) {
	t.Helper()
	if _, ok := b.logLine(0, transportWait, func(line string) bool {
		for _, w := range wants {
			if !strings.Contains(line, w) {
				return false
			}
		}
		return true
	}); !ok {
		t.Fatalf("no log line with %q within %v:\n%s", wants, transportWait, b.Log())
	}
}

// TestSecurity03_WebSocketOriginDefault: with allowed_origins unset, a page of another site, of
// another port of this host, or of a name rebound to 127.0.0.1 gets 403 and a warning naming its
// origin; a client without Origin and a page of the listener's own host and port connect.
func TestSecurity03_WebSocketOriginDefault(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: transportListeners(nil)})
	addr := listenAddr(t, b, 0, "ws", 0)
	_, port, _ := net.SplitHostPort(addr)
	url := "ws://" + addr + "/mqtt"

	for _, tc := range []struct{ name, origin, host string }{
		{"foreign site", "https://evil.example", ""},
		{"another port of this host", "http://127.0.0.1:1", ""},
		{"rebound name", "http://evil.example:" + port, "evil.example:" + port},
		{"sandboxed page", "null", ""},
	} {
		if c, status, body := wsUpgrade(t, url, tc.origin, tc.host); c != nil || status != http.StatusForbidden {
			t.Errorf("%s (Origin %q): status %d %q, want 403", tc.name, tc.origin, status, body)
		}
	}
	waitLog(t, b, `"level":"warn"`, `"origin":"https://evil.example"`)

	for i, tc := range []struct{ name, origin, host string }{
		{"no Origin", "", ""},
		{"own origin", "http://" + addr, ""},
		{"localhost", "http://localhost:" + port, "localhost:" + port},
	} {
		c, status, body := wsUpgrade(t, url, tc.origin, tc.host)
		if c == nil {
			t.Errorf("%s (Origin %q): status %d %q, want an upgrade", tc.name, tc.origin, status, body)
			continue
		}
		c.MustConnect(fmt.Sprintf("origin-ok-%d", i), true)
	}
}

// TestSecurity03_BrowserOtherOriginRefused: the attack itself. A page served from another
// origin than the broker's (here another port of 127.0.0.1, as a local dev server or any site
// would be) runs MQTT.js in headless Chromium against a broker with default settings: the
// upgrade is refused, the page gets no CONNACK, and the broker warns with the page's origin.
func TestSecurity03_BrowserOtherOriginRefused(t *testing.T) {
	t.Parallel()
	chromium := needTool(t, "chromium", "chromium")
	bundle := needNodeModule(t, "mqtt/dist/mqtt.min.js")
	page := filepath.Join(jsTestDir, "browser.html")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/page.html":
			http.ServeFile(w, r, page)
		case "/mqtt.min.js":
			http.ServeFile(w, r, bundle)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	b := StartBroker(t, BrokerConfig{Extra: transportListeners(nil)})
	wsURL := "ws://" + listenAddr(t, b, 0, "ws", 0) + "/mqtt"
	br := startChromium(t, chromium)
	tab := br.open(srv.URL + "/page.html?" + url.Values{
		"broker":  {wsURL},
		"id":      {"cross-site"},
		"topic":   {"stolen"},
		"payload": {"x"},
	}.Encode())
	if st := tab.waitFor(`document.getElementById("status").textContent`, func(s string) bool {
		return s == "failed" || s == "connected" || s == "subscribed" || s == "waiting" || s == "done"
	}); st != "failed" {
		t.Fatalf("a page of origin %s reached the broker: status %q", srv.URL, st)
	}
	if res, _ := tab.eval(`document.getElementById("result").textContent`); !strings.Contains(res, `"connack":null`) {
		t.Fatalf("page result %s, want no CONNACK", res)
	}
	waitLog(t, b, `"level":"warn"`, `"origin":"`+srv.URL+`"`)
}

// TestSecurity03_WebSocketOriginConfigured: allowed_origins = ["*"] lets every page in; a list
// lets in exactly its origins, and no others, the listener's own included.
func TestSecurity03_WebSocketOriginConfigured(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: `
[[listener]]
type = "ws"
address = "127.0.0.1:0"
allowed_origins = ["*"]

[[listener]]
type = "ws"
address = "127.0.0.1:0"
allowed_origins = ["https://dashboard.example"]
`})
	anyAddr := listenAddr(t, b, 0, "ws", 0)
	listAddr := listenAddr(t, b, 0, "ws", 1)

	c, status, body := wsUpgrade(t, "ws://"+anyAddr+"/mqtt", "https://evil.example", "")
	if c == nil {
		t.Fatalf(`["*"], foreign origin: status %d %q, want an upgrade`, status, body)
	}
	c.MustConnect("origin-any", true)

	c, status, body = wsUpgrade(t, "ws://"+listAddr+"/mqtt", "https://dashboard.example", "")
	if c == nil {
		t.Fatalf("listed origin: status %d %q, want an upgrade", status, body)
	}
	c.MustConnect("origin-listed", true)
	for _, origin := range []string{"https://evil.example", "http://dashboard.example", "http://" + listAddr} {
		if c, status, body := wsUpgrade(t, "ws://"+listAddr+"/mqtt", origin, ""); c != nil || status != http.StatusForbidden {
			t.Errorf("unlisted origin %q: status %d %q, want 403", origin, status, body)
		}
	}
}

// adminRequest sends one GET to the admin listener at addr with the given Host header and
// returns the status and the start of the body.
func adminRequest(t *testing.T, addr, host, path string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(transportWait))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", path, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	return resp.StatusCode, string(b)
}

// TestSecurity04_AdminHostHeader: on a loopback admin listener without a token, a request whose
// Host is a name a page has rebound to 127.0.0.1 gets 403 on every endpoint (the probes too),
// and the same request addressed to 127.0.0.1:PORT or localhost is served.
func TestSecurity04_AdminHostHeader(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: "[admin]\naddress = \"127.0.0.1:0\"\nsys_interval = \"0s\"\n"})
	addr := opsAdminAddr(t, b)
	_, port, _ := net.SplitHostPort(addr)
	paths := []string{"/backup", "/metrics", "/inspect", "/healthz", "/readyz"}
	for _, path := range paths {
		for _, host := range []string{"evil.example", "evil.example:" + port} {
			if status, body := adminRequest(t, addr, host, path); status != http.StatusForbidden {
				t.Errorf("GET %s with Host %s: %d %q, want 403", path, host, status, body)
			}
		}
		for _, host := range []string{addr, "localhost:" + port} {
			if status, body := adminRequest(t, addr, host, path); status != http.StatusOK {
				t.Errorf("GET %s with Host %s: %d %q, want 200", path, host, status, body)
			}
		}
	}
	waitLog(t, b, `"level":"warn"`, `"host":"evil.example"`)
}

// TestSecurity04_AdminTokenRequiredOffLoopback: an admin listener on a network address without
// admin.token stops start-up with exit code 2, naming the key and the file, before anything
// listens.
func TestSecurity04_AdminTokenRequiredOffLoopback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	// 192.0.2.1 (TEST-NET-1) is no address of this machine: nothing could listen there anyway.
	body := fmt.Sprintf("data_dir = %q\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"192.0.2.1:9883\"\n", filepath.Join(dir, "data"))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	opsFailCmd(t, 2, []string{"admin.token", cfg}, "-c", cfg)
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("the data directory was created before the configuration was refused: %v", err)
	}
}
