package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/syncbuf"

	"github.com/gorilla/websocket"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// A real browser: headless Chromium (Debian's chromium) loads a page that runs MQTT.js (the npm
// package mqtt, installed in test/js by `npm ci`) against holdfast's WebSocket listener.
//
// The test reads the page through the Chrome DevTools Protocol rather than `chromium
// --dump-dom`: --dump-dom prints the DOM as soon as the page has loaded, before the WebSocket has
// even connected, and --virtual-time-budget does not wait for WebSocket traffic either (both
// were tried: the result element was still empty). Over CDP the test polls the page until it has
// written its result, with a real deadline.

// jsTestDir holds package.json, package-lock.json, the page and the Node.js scripts.
const jsTestDir = "js"

// needNodeModule returns the path of a file of an npm package installed in test/js, skipping the
// test when it is missing and failing it under CI, where .ci/run installs it.
func needNodeModule(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(jsTestDir, "node_modules", rel)
	if _, err := os.Stat(p); err == nil {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	msg := fmt.Sprintf("%s not found: run `npm ci` in test/js (Debian packages nodejs and npm)", p)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestBrowserMQTTjs: MQTT.js in headless Chromium connects over ws://127.0.0.1, subscribes,
// publishes at QoS 1 and receives its own message and one published by a Go client over TCP; a
// Go subscriber on TCP receives the browser's message byte for byte.
func TestBrowserMQTTjs(t *testing.T) {
	t.Parallel()
	chromium := needTool(t, "chromium", "chromium")
	bundle := needNodeModule(t, "mqtt/dist/mqtt.min.js")
	page, err := os.ReadFile(filepath.Join(jsTestDir, "browser.html"))
	if err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/page.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	mux.HandleFunc("/mqtt.min.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeFile(w, r, bundle)
	})
	mux.HandleFunc("/favicon.ico", http.NotFound)
	srv := httptest.NewServer(mux) // 127.0.0.1:0
	t.Cleanup(srv.Close)

	// The page's origin is the test server's, not the broker's own host:port: list it.
	b := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf("\n[[listener]]\ntype = \"ws\"\naddress = \"127.0.0.1:0\"\npath = \"/mqtt\"\nallowed_origins = [%q]\n", srv.URL)})
	wsURL := "ws://" + listenAddr(t, b, 0, "ws", 0) + "/mqtt"
	const topic = "browser/mqttjs"
	const fromBrowser = "héllo from Chromium ✓"
	const fromGo = "hello from Go over TCP"

	goSub := mqtttest.Dial(t, b.Addr)
	goSub.MustConnect("go-sub", true)
	if rc := goSub.Subscribe(1, 1, topic); len(rc) != 1 || rc[0] != 1 {
		t.Fatalf("SUBACK %v, want [1]", rc)
	}

	pageURL := srv.URL + "/page.html?" + url.Values{
		"broker":  {wsURL},
		"id":      {"chromium-mqttjs"},
		"topic":   {topic},
		"payload": {fromBrowser},
	}.Encode()

	br := startChromium(t, chromium)
	tab := br.open(pageURL)

	// The page's own message came back: publish one from Go for it.
	if st := tab.waitFor(`document.getElementById("status").textContent`, func(s string) bool {
		return s == "waiting" || s == "failed"
	}); st == "failed" {
		res, _ := tab.eval(`document.getElementById("result").textContent`)
		t.Fatalf("page failed before receiving its own message: %s; console:\n%s", res, tab.console())
	}
	m := mqtttest.Expect[*codec.Publish](goSub)
	if m.Topic != topic || string(m.Payload) != fromBrowser || m.QoS != 1 || m.Retain || m.Dup {
		t.Fatalf("Go subscriber received %s, want %q at qos 1", mqtttest.String(m), fromBrowser)
	}
	goSub.Send(&codec.Puback{PacketID: m.PacketID})
	goPub := mqtttest.Dial(t, b.Addr)
	goPub.MustConnect("go-pub", true)
	goPub.Send(&codec.Publish{QoS: 1, PacketID: 1, Topic: topic, Payload: []byte(fromGo)})
	mqtttest.Expect[*codec.Puback](goPub)

	raw := tab.waitFor(`document.getElementById("result").textContent`, func(s string) bool { return s != "" })
	var res struct {
		Error   string
		Connack *struct {
			SessionPresent bool
			ReturnCode     int
		}
		Granted  []int
		Puback   bool
		Messages []struct {
			Topic, Payload string
			QoS            int
			Retain, Dup    bool
		}
	}
	if err := json.Unmarshal([]byte(raw), &res); err != nil {
		t.Fatalf("page result %q: %v", raw, err)
	}
	if res.Error != "" {
		t.Fatalf("page failed: %s (result %s; console:\n%s)", res.Error, raw, tab.console())
	}
	if res.Connack == nil || res.Connack.ReturnCode != 0 || res.Connack.SessionPresent {
		t.Fatalf("page CONNACK %+v, want return code 0 without session present (result %s)", res.Connack, raw)
	}
	if len(res.Granted) != 1 || res.Granted[0] != 1 {
		t.Fatalf("page SUBACK granted %v, want [1]", res.Granted)
	}
	if !res.Puback {
		t.Fatalf("page's QoS 1 publish not acknowledged (result %s)", raw)
	}
	want := []string{fromBrowser, fromGo}
	if len(res.Messages) != len(want) {
		t.Fatalf("page received %d messages, want %d: %s", len(res.Messages), len(want), raw)
	}
	for i, m := range res.Messages {
		if m.Topic != topic || m.Payload != want[i] || m.QoS != 1 || m.Retain || m.Dup {
			t.Fatalf("page message %d: %+v, want topic %q payload %q qos 1, not retained, not dup", i, m, topic, want[i])
		}
	}
	// The Go subscriber also got the Go message, and nothing else.
	if m := mqtttest.Expect[*codec.Publish](goSub); string(m.Payload) != fromGo {
		t.Fatalf("Go subscriber received %s, want %q", mqtttest.String(m), fromGo)
	}
	goSub.ExpectSilence(100 * time.Millisecond)
}

// chromium is a headless Chromium driven over the Chrome DevTools Protocol.
type chromium struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	exited chan struct{}
	ws     *websocket.Conn
	wmu    sync.Mutex
	nextID int64

	mu      sync.Mutex
	pending map[int64]chan cdpMessage
	events  []cdpMessage // Runtime.consoleAPICalled, Runtime.exceptionThrown, Log.entryAdded
	readErr error
}

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// startChromium runs headless Chromium with a fresh profile and a DevTools port of its own
// choosing, read from the DevToolsActivePort file it writes into the profile. The browser is
// closed, and its process group killed, when the test ends.
func startChromium(t *testing.T, path string) *chromium {
	t.Helper()
	profile, err := os.MkdirTemp("", "holdfast-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	c := &chromium{t: t, stderr: &syncbuf.Buffer{}, exited: make(chan struct{}), pending: map[int64]chan cdpMessage{}}
	c.cmd = exec.Command(path,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-dev-shm-usage", "--no-default-browser-check",
		"--disable-crash-reporter", "--disable-breakpad",
		"--user-data-dir="+profile, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"about:blank")
	c.cmd.Stdout, c.cmd.Stderr = c.stderr, c.stderr
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // renderers and zygotes die with it
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(profile)
		t.Fatalf("start chromium: %v", err)
	}
	go func() {
		c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.close()
		os.RemoveAll(profile)
		if t.Failed() {
			t.Logf("chromium output:\n%s", c.stderr.String())
		}
	})

	// DevToolsActivePort: the port on the first line, the browser target's path on the second.
	var endpoint string
	deadline := time.Now().Add(20 * time.Second)
	for endpoint == "" {
		if data, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort")); err == nil {
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			if len(lines) == 2 {
				if _, err := strconv.Atoi(lines[0]); err == nil {
					endpoint = "ws://127.0.0.1:" + lines[0] + strings.TrimSpace(lines[1])
				}
			}
		}
		if endpoint != "" {
			break
		}
		select {
		case <-c.exited:
			t.Fatalf("chromium exited before opening its DevTools port:\n%s", c.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium wrote no DevToolsActivePort within 20 s:\n%s", c.stderr.String())
		}
	}
	d := websocket.Dialer{HandshakeTimeout: transportWait}
	ws, _, err := d.Dial(endpoint, nil)
	if err != nil {
		t.Fatalf("connect to chromium's DevTools at %s: %v", endpoint, err)
	}
	c.ws = ws
	go c.readLoop()
	return c
}

func (c *chromium) readLoop() {
	for {
		var m cdpMessage
		if err := c.ws.ReadJSON(&m); err != nil {
			c.mu.Lock()
			c.readErr = err
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		if m.ID != 0 {
			if ch, ok := c.pending[m.ID]; ok {
				ch <- m
				delete(c.pending, m.ID)
			}
		} else if m.Method == "Runtime.consoleAPICalled" || m.Method == "Runtime.exceptionThrown" || m.Method == "Log.entryAdded" {
			c.events = append(c.events, m)
		}
		c.mu.Unlock()
	}
}

// call sends a CDP command (to a page when session is not empty) and returns its result.
func (c *chromium) call(session, method string, params any, result any) error {
	c.mu.Lock()
	if c.readErr != nil {
		err := c.readErr
		c.mu.Unlock()
		return fmt.Errorf("%s: DevTools connection lost: %w", method, err)
	}
	c.nextID++
	id := c.nextID
	ch := make(chan cdpMessage, 1)
	c.pending[id] = ch
	c.mu.Unlock()

	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	c.ws.SetWriteDeadline(time.Now().Add(transportWait))
	err = c.ws.WriteJSON(cdpMessage{ID: id, SessionID: session, Method: method, Params: p})
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: DevTools connection lost", method)
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-time.After(transportWait):
		return fmt.Errorf("%s: no answer within %v", method, transportWait)
	}
}

// close asks the browser to quit, then kills its process group if it lingers.
func (c *chromium) close() {
	if c.ws != nil {
		done := make(chan struct{})
		go func() {
			c.call("", "Browser.close", struct{}{}, nil)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
	}
	// Whatever is left of the group (the main process if Browser.close failed, helpers that
	// outlived it).
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.exited
	if c.ws != nil {
		c.ws.Close()
	}
}

// chromiumTab is one page attached with a flat CDP session.
type chromiumTab struct {
	br      *chromium
	session string
}

// open creates a tab, enables console reporting, and navigates it to u.
func (c *chromium) open(u string) *chromiumTab {
	c.t.Helper()
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := c.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		c.t.Fatal(err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := c.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		c.t.Fatal(err)
	}
	tab := &chromiumTab{br: c, session: att.SessionID}
	for _, m := range []string{"Runtime.enable", "Log.enable"} {
		if err := c.call(tab.session, m, struct{}{}, nil); err != nil {
			c.t.Fatal(err)
		}
	}
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	if err := c.call(tab.session, "Page.navigate", map[string]any{"url": u}, &nav); err != nil {
		c.t.Fatal(err)
	}
	if nav.ErrorText != "" {
		c.t.Fatalf("navigate to %s: %s", u, nav.ErrorText)
	}
	return tab
}

// eval evaluates a JavaScript expression whose value is a string.
func (tab *chromiumTab) eval(expr string) (string, error) {
	var r struct {
		Result struct {
			Type  string          `json:"type"`
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := tab.br.call(tab.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r); err != nil {
		return "", err
	}
	if r.ExceptionDetails != nil {
		return "", errors.New(r.ExceptionDetails.Text)
	}
	var s string
	if r.Result.Type != "string" || json.Unmarshal(r.Result.Value, &s) != nil {
		return "", fmt.Errorf("%s is a %s, not a string", expr, r.Result.Type)
	}
	return s, nil
}

// waitFor polls expr until done accepts its value, for at most 20 s.
func (tab *chromiumTab) waitFor(expr string, done func(string) bool) string {
	t := tab.br.t
	t.Helper()
	var last string
	var lastErr error
	if mqtttest.Within(20*time.Second, func() bool {
		last, lastErr = tab.eval(expr)
		return lastErr == nil && done(last)
	}) {
		return last
	}
	status, _ := tab.eval(`document.getElementById("status") ? document.getElementById("status").textContent : "no status element"`)
	t.Fatalf("page: %s still %q (error %v) after 20 s; status %q; console:\n%s", expr, last, lastErr, status, tab.console())
	return ""
}

// console renders what the page logged, for failure messages.
func (tab *chromiumTab) console() string {
	tab.br.mu.Lock()
	defer tab.br.mu.Unlock()
	var sb strings.Builder
	for _, e := range tab.br.events {
		if e.SessionID != tab.session {
			continue
		}
		fmt.Fprintf(&sb, "  %s %s\n", e.Method, e.Params)
	}
	return sb.String()
}
