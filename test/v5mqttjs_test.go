package test

// MQTT.js (the npm package mqtt, installed in test/js) at protocol level 5: test/js/v5_roundtrip.js
// under Node.js over TCP and WebSocket, and in headless Chromium over WebSocket.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// v5jsWait bounds a run of v5_roundtrip.js (it gives up after 15 s itself).
const v5jsWait = 30 * time.Second

// v5jsMessage is a message as v5_roundtrip.js reports it, with the properties MQTT.js decoded.
type v5jsMessage struct {
	Topic, Payload string
	QoS            int
	Retain         bool
	Properties     struct {
		PayloadFormatIndicator *bool
		MessageExpiryInterval  *uint32
		ContentType            string
		ResponseTopic          string
		CorrelationData        *string
		UserProperties         map[string]any // a repeated name has a list of values
	}
}

// v5jsResult is what v5_roundtrip.js reports.
type v5jsResult struct {
	Connack *struct {
		SessionPresent bool
		ReasonCode     int
	}
	Granted     []int
	Puback      int
	Echo, Reply *v5jsMessage
	Error       string
}

// TestMQTTjsV5_MQTT_3_3_2_17: MQTT.js with protocolVersion 5 connects, subscribes, publishes a
// message with every property it can set and receives it back unaltered [MQTT-3.3.2-4]
// [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-20], as a Go subscriber sees it
// too, user properties in order [MQTT-3.3.2-18]; then it sends a request whose Response Topic
// and Correlation Data a Go responder uses to answer it, and receives the answer with that
// Correlation Data (request/response, §4.10). Under Node.js over TCP and WebSocket, and in
// headless Chromium over WebSocket.
func TestMQTTjsV5_MQTT_3_3_2_17(t *testing.T) {
	t.Parallel()
	bundle := needNodeModule(t, "mqtt/dist/mqtt.min.js")
	script, err := filepath.Abs(filepath.Join(jsTestDir, "v5_roundtrip.js"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for path, file := range map[string]string{
		"/page.html":       filepath.Join(jsTestDir, "browser5.html"),
		"/mqtt.min.js":     bundle,
		"/v5_roundtrip.js": script,
	} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, file) })
	}
	mux.HandleFunc("/favicon.ico", http.NotFound)
	srv := httptest.NewServer(mux) // 127.0.0.1:0
	t.Cleanup(srv.Close)

	// The page's origin is the test server's: list it (Node.js sends no Origin).
	b := StartBroker(t, BrokerConfig{MQTT5: true, Extra: fmt.Sprintf(
		"\n[[listener]]\ntype = \"ws\"\naddress = \"127.0.0.1:0\"\npath = \"/mqtt\"\nallowed_origins = [%q]\n", srv.URL)})
	wsURL := "ws://" + listenAddr(t, b, 0, "ws", 0) + "/mqtt"

	node := func(url string) func(t *testing.T, id, base string) func() v5jsResult {
		return func(t *testing.T, id, base string) func() v5jsResult {
			return startNodeV5(t, needTool(t, "node", "nodejs"), script, url, id, base)
		}
	}
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, id, base string) func() v5jsResult
	}{
		{"node-tcp", node("mqtt://" + b.Addr)},
		{"node-ws", node(wsURL)},
		{"chromium-ws", func(t *testing.T, id, base string) func() v5jsResult {
			tab := startChromium(t, needTool(t, "chromium", "chromium")).open(srv.URL + "/page.html?" + url.Values{
				"broker": {wsURL}, "id": {id}, "base": {base}}.Encode())
			return func() v5jsResult {
				raw := tab.waitFor(`document.getElementById("result").textContent`, func(s string) bool { return s != "" })
				var res v5jsResult
				if err := json.Unmarshal([]byte(raw), &res); err != nil {
					t.Fatalf("page result %q: %v", raw, err)
				}
				if res.Error != "" {
					t.Logf("page console:\n%s", tab.console())
				}
				return res
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, base := "mqttjs5-"+tc.name, "mqttjs5/"+tc.name
			responder, _ := dial5(t, b.Addr, "responder-"+tc.name, nil)
			if rc := responder.Subscribe(1, 1, base+"/echo", base+"/req"); !slices.Equal(rc, []byte{1, 1}) {
				t.Fatalf("responder: SUBACK %v, want [1 1]", rc)
			}
			wait := tc.start(t, id, base)
			answerV5Request(t, responder, id, base)
			checkV5jsResult(t, wait(), id, base)
		})
	}
}

// startNodeV5 runs v5_roundtrip.js under Node.js and returns a function that waits for its report.
func startNodeV5(t *testing.T, node, script, url, id, base string) func() v5jsResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), v5jsWait)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, node, script, url, id, base)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() v5jsResult {
		t.Helper()
		runErr := cmd.Wait()
		out := strings.TrimSpace(stdout.String())
		var res v5jsResult
		if err := json.Unmarshal([]byte(out), &res); err != nil || runErr != nil {
			t.Fatalf("node v5_roundtrip.js %s: exit %v; stdout %q (%v); stderr:\n%s", url, runErr, out, err, stderr.String())
		}
		return res
	}
}

// v5jsRead returns the next PUBLISH the responder receives, acknowledged, waiting up to v5jsWait
// (a browser takes a while to start).
func v5jsRead(t *testing.T, c *mqtttest.Client) *codec.Publish {
	t.Helper()
	p, err := c.TryRead(v5jsWait)
	if err != nil {
		t.Fatalf("responder: %v", err)
	}
	pub, ok := p.(*codec.Publish)
	if !ok {
		t.Fatalf("responder: got %s, want PUBLISH", mqtttest.String(p))
	}
	if pub.QoS == 1 {
		c.Send(&codec.Puback{PacketID: pub.PacketID})
	}
	return pub
}

// answerV5Request plays the other side of v5_roundtrip.js from Go, at level 5: it checks the
// properties of the message MQTT.js published to BASE/echo as they arrive on the wire, then
// answers its request on BASE/req at the Response Topic with the Correlation Data.
func answerV5Request(t *testing.T, c *mqtttest.Client, id, base string) {
	t.Helper()
	echo := v5jsRead(t, c)
	want := &codec.Properties{PayloadFormat: 1, ContentType: "application/json; charset=utf-8",
		ResponseTopic: base + "/elsewhere", CorrelationData: []byte("echo-" + id),
		User: []codec.UserProperty{{Name: "first", Value: "1"}, {Name: "second", Value: "2"}, {Name: "second", Value: "2 again"}, {Name: "ünï", Value: "cødé"}}}
	if g := echo.Props; echo.Topic != base+"/echo" || g == nil || g.MessageExpiry == 0 || g.MessageExpiry > 300 {
		t.Fatalf("responder: got %s, want the echo message with what remains of 300 s", mqtttest.String(echo))
	}
	g := *echo.Props
	g.MessageExpiry, g.TopicAlias = 0, 0
	g.SubscriptionIDs = nil
	if !reflect.DeepEqual(&g, want) {
		t.Fatalf("responder: the echo message's properties are %+v, want %+v", g, *want)
	}

	req := v5jsRead(t, c)
	if req.Topic != base+"/req" || req.Props == nil || req.Props.ResponseTopic != base+"/reply/"+id ||
		string(req.Props.CorrelationData) != "corr-"+id+"-✓" || !slices.Equal(req.Props.User, []codec.UserProperty{{Name: "kind", Value: "request"}}) {
		t.Fatalf("responder: got %s, want the request with its response topic and correlation data", mqtttest.String(req))
	}
	c.Send(&codec.Publish{Topic: req.Props.ResponseTopic, QoS: 1, PacketID: 7, Payload: []byte("it is time"),
		Props: &codec.Properties{CorrelationData: req.Props.CorrelationData, User: []codec.UserProperty{{Name: "kind", Value: "response"}}}})
	if ack := mqtttest.Expect[*codec.Puback](c); ack.PacketID != 7 || ack.Reason != codec.ReasonSuccess {
		t.Fatalf("responder: PUBACK %+v, want packet 7 accepted", ack)
	}
}

// checkV5jsResult judges what v5_roundtrip.js received.
func checkV5jsResult(t *testing.T, res v5jsResult, id, base string) {
	t.Helper()
	if res.Error != "" {
		t.Fatalf("MQTT.js: %s (result %+v)", res.Error, res)
	}
	if res.Connack == nil || res.Connack.ReasonCode != 0 || res.Connack.SessionPresent {
		t.Fatalf("MQTT.js: CONNACK %+v, want success without a session", res.Connack)
	}
	if !slices.Equal(res.Granted, []int{1, 1}) || res.Puback != 2 {
		t.Fatalf("MQTT.js: granted %v and %d PUBACKs, want [1 1] and 2", res.Granted, res.Puback)
	}

	e := res.Echo
	if e == nil || e.Topic != base+"/echo" || e.Payload != `{"hello":"wörld"}` || e.QoS != 1 || e.Retain {
		t.Fatalf("MQTT.js: echo %+v, want its own message back at QoS 1", e)
	}
	p := e.Properties
	wantUser := map[string]any{"first": "1", "second": []any{"2", "2 again"}, "ünï": "cødé"}
	if p.PayloadFormatIndicator == nil || !*p.PayloadFormatIndicator || p.ContentType != "application/json; charset=utf-8" ||
		p.ResponseTopic != base+"/elsewhere" || p.CorrelationData == nil || *p.CorrelationData != "echo-"+id ||
		!reflect.DeepEqual(p.UserProperties, wantUser) {
		t.Fatalf("MQTT.js: echo properties %+v, want those it sent", p)
	}
	if p.MessageExpiryInterval == nil || *p.MessageExpiryInterval == 0 || *p.MessageExpiryInterval > 300 {
		t.Fatalf("MQTT.js: echo Message Expiry Interval %v, want what remains of 300 s [MQTT-3.3.2-6]", p.MessageExpiryInterval)
	}

	r := res.Reply
	if r == nil || r.Topic != base+"/reply/"+id || r.Payload != "it is time" || r.QoS != 1 {
		t.Fatalf("MQTT.js: reply %+v, want the answer on its response topic", r)
	}
	if c := r.Properties.CorrelationData; c == nil || *c != "corr-"+id+"-✓" || !reflect.DeepEqual(r.Properties.UserProperties, map[string]any{"kind": "response"}) {
		t.Fatalf("MQTT.js: reply properties %+v, want its correlation data back", r.Properties)
	}
}
