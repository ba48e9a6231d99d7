package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// nodeResult is what test/js/persistent_session.js prints.
type nodeResult struct {
	SessionPresent *bool  `json:"sessionPresent"`
	Granted        []int  `json:"granted"`
	Error          string `json:"error"`
	Messages       []struct {
		Topic   string `json:"topic"`
		Payload string `json:"payload"`
		QoS     int    `json:"qos"`
		Dup     bool   `json:"dup"`
		Retain  bool   `json:"retain"`
	} `json:"messages"`
}

// runNodeScript runs test/js/persistent_session.js with args and fails the test unless it
// reports success.
func runNodeScript(t *testing.T, node string, args ...string) nodeResult {
	t.Helper()
	var res nodeResult
	if diag, err := runNodeJSON(t, node, "persistent_session.js", &res, args...); err != nil || res.Error != "" {
		t.Fatalf("node %s: exit %v, error %q; %s", strings.Join(args, " "), err, res.Error, diag)
	}
	return res
}

// runNodeJSON runs script of test/js with args under a 30 s limit and decodes the JSON line it
// prints last into res, failing the test when there is none. It returns the script's exit error
// and its output, for the caller's messages.
func runNodeJSON(t *testing.T, node, script string, res any, args ...string) (diag string, runErr error) {
	t.Helper()
	path, err := filepath.Abs(filepath.Join(jsTestDir, script))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{path}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr = cmd.Run()
	out := strings.TrimSpace(stdout.String())
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	diag = fmt.Sprintf("stdout %s; stderr:\n%s", stdout.String(), stderr.String())
	if err := json.Unmarshal([]byte(out), res); err != nil {
		t.Fatalf("node %s %s: %v after %v (%v); %s", script, strings.Join(args, " "), runErr, time.Since(start).Round(time.Millisecond), err, diag)
	}
	return diag, runErr
}

// TestNodeMQTTjsPersistentQoS2: MQTT.js under Node.js over ws:// with a persistent session at
// QoS 2. A first run subscribes and leaves; QoS 2 messages are published while it is away; the
// broker restarts (its WebSocket port changes); a second run resumes the session and receives
// every message exactly once, in order. After another restart nothing is delivered again: the
// PUBCOMPs were recorded.
func TestNodeMQTTjsPersistentQoS2(t *testing.T) {
	t.Parallel()
	node := needTool(t, "node", "nodejs")
	needNodeModule(t, "mqtt/package.json")
	b := StartBroker(t, BrokerConfig{Extra: transportListeners(nil)})
	const id, topic, n = "node-mqttjs-persistent", "node/qos2/stream", 12

	first := runNodeScript(t, node, "subscribe", "ws://"+listenAddr(t, b, 0, "ws", 0)+"/mqtt", id, "node/qos2/#")
	if first.SessionPresent == nil || *first.SessionPresent {
		t.Fatalf("first connection: session present %v, want false", first.SessionPresent)
	}
	if len(first.Granted) != 1 || first.Granted[0] != 2 {
		t.Fatalf("first connection: SUBACK granted %v, want [2]", first.Granted)
	}

	// Publish at QoS 2 from a raw TCP client, the whole exchange, while the Node client is away.
	pub := mqtttest.Dial(t, b.Addr)
	pub.MustConnect("node-test-publisher", true)
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("qos2 #%02d ✓", i)
		pid := uint16(100 + i)
		pub.Send(&codec.Publish{QoS: 2, PacketID: pid, Topic: topic, Payload: []byte(want[i])})
		if rec := mqtttest.Expect[*codec.Pubrec](pub); rec.PacketID != pid {
			t.Fatalf("PUBREC %d, want %d", rec.PacketID, pid)
		}
		pub.Send(&codec.Pubrel{PacketID: pid})
		if comp := mqtttest.Expect[*codec.Pubcomp](pub); comp.PacketID != pid {
			t.Fatalf("PUBCOMP %d, want %d", comp.PacketID, pid)
		}
	}
	pub.Send(&codec.Disconnect{})
	pub.ExpectClosed()

	from := len(b.Log())
	b.Stop()
	b.Start()
	second := runNodeScript(t, node, "receive", "ws://"+listenAddr(t, b, from, "ws", 0)+"/mqtt", id, fmt.Sprint(n))
	if second.SessionPresent == nil || !*second.SessionPresent {
		t.Fatalf("after the restart: session present %v, want true", second.SessionPresent)
	}
	if len(second.Messages) != n {
		t.Fatalf("after the restart: received %d messages, want exactly %d: %+v", len(second.Messages), n, second.Messages)
	}
	for i, m := range second.Messages {
		if m.Topic != topic || m.Payload != want[i] || m.QoS != 2 || m.Dup || m.Retain {
			t.Fatalf("message %d: %+v; want topic %q payload %q qos 2, not dup, not retained", i, m, topic, want[i])
		}
	}

	// Everything was acknowledged with PUBCOMP and that was recorded: after another restart the
	// session is still there with nothing to deliver.
	b.Stop()
	b.Start()
	c := mqtttest.Dial(t, b.Addr)
	if !c.MustConnect(id, false) {
		t.Fatal("after the second restart: session present 0, want 1")
	}
	c.ExpectSilence(300 * time.Millisecond)
}
