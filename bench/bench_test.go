package bench

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// runMain runs Main and returns its result line parsed into a map.
func runMain(t *testing.T, args ...string) (map[string]string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := Main(args, &stdout, &stderr)
	out := strings.TrimSuffix(stdout.String(), "\n")
	if strings.Contains(out, "\n") {
		t.Fatalf("more than one line on stdout:\n%s", out)
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(out) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("field %q is not key=value in %q", f, out)
		}
		kv[k] = v
	}
	if testing.Verbose() {
		t.Logf("%s\nstderr: %s", out, stderr.String())
	}
	return kv, err
}

func num(t *testing.T, kv map[string]string, key string) float64 {
	t.Helper()
	v, ok := kv[key]
	if !ok {
		t.Fatalf("no %s in %v", key, kv)
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(v, "s"), 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", key, v, err)
	}
	return f
}

func TestFlowsAgainstFakeBroker(t *testing.T) {
	b := newFakeBroker(t)
	cases := []struct {
		name string
		args []string
		want float64 // received
	}{
		{"fanin qos0", []string{"fanin", "-qos", "0", "-count", "3000"}, 3000},
		{"fanin qos1", []string{"fanin", "-qos", "1", "-count", "3000", "-inflight", "4"}, 3000},
		{"fanin qos2", []string{"fanin", "-qos", "2", "-count", "2000", "-pubs", "3"}, 2000},
		{"fanin qos1 persistent v3", []string{"fanin", "-qos", "1", "-count", "1000", "-clean=false", "-v", "3"}, 1000},
		{"fanout qos1", []string{"fanout", "-qos", "1", "-subs", "3", "-count", "1000"}, 3000},
		{"fanin by duration", []string{"fanin", "-qos", "1", "-duration", "300ms"}, -1},
		{"latency", []string{"latency", "-qos", "1", "-rate", "2000", "-count", "200"}, 200},
		{"fanin qos0 v5", []string{"fanin", "-v", "5", "-qos", "0", "-count", "3000"}, 3000},
		{"fanin qos1 v5", []string{"fanin", "-v", "5", "-qos", "1", "-count", "3000", "-inflight", "4"}, 3000},
		{"fanin qos2 v5", []string{"fanin", "-v", "5", "-qos", "2", "-count", "2000", "-pubs", "3"}, 2000},
		{"fanin qos1 persistent v5", []string{"fanin", "-v", "5", "-qos", "1", "-count", "1000", "-clean=false"}, 1000},
		{"fanout qos2 v5", []string{"fanout", "-v", "5", "-qos", "2", "-subs", "3", "-count", "1000"}, 3000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kv, err := runMain(t, append(c.args, "-addr", b.addr())...)
			if err != nil {
				t.Fatal(err)
			}
			if c.want >= 0 && num(t, kv, "received") != c.want {
				t.Errorf("received=%s, want %v", kv["received"], c.want)
			}
			if num(t, kv, "received") == 0 || num(t, kv, "lost") != 0 || num(t, kv, "dup") != 0 || num(t, kv, "stray") != 0 {
				t.Errorf("got %v", kv)
			}
			if p99, p999, maxMs := num(t, kv, "p99_ms"), num(t, kv, "p999_ms"), num(t, kv, "max_ms"); p99 > p999 || p999 > maxMs || maxMs <= 0 {
				t.Errorf("latency p99 %s p999 %s max %s", kv["p99_ms"], kv["p999_ms"], kv["max_ms"])
			}
			wantV := "4"
			if slices.Contains(c.args, "-v") {
				wantV = c.args[slices.Index(c.args, "-v")+1]
			}
			if kv["v"] != wantV || kv["ack_errors"] != "0" || kv["ack_codes"] != "-" {
				t.Errorf("v=%s ack_errors=%s ack_codes=%s, want v=%s and no acknowledgement errors", kv["v"], kv["ack_errors"], kv["ack_codes"], wantV)
			}
		})
	}
	if n := b.sessionCount(0); n != 0 {
		t.Errorf("%d sessions left behind", n)
	}
}

func TestLossIsAnError(t *testing.T) {
	b := newFakeBroker(t)
	b.dropEvery = 100
	kv, err := runMain(t, "fanin", "-qos", "1", "-count", "1000", "-timeout", "300ms", "-addr", b.addr())
	if !errors.Is(err, ErrLoss) {
		t.Fatalf("err = %v, want ErrLoss", err)
	}
	if kv["lost"] != "10" {
		t.Errorf("lost=%s, want 10", kv["lost"])
	}
	// At QoS 0 loss is reported, not failed.
	kv, err = runMain(t, "fanin", "-qos", "0", "-count", "1000", "-timeout", "300ms", "-addr", b.addr())
	if err != nil || kv["lost"] != "10" {
		t.Errorf("QoS 0: err %v, lost=%s, want nil and 10", err, kv["lost"])
	}
}

// TestHungBroker checks that a run against a broker that stops reading
// still ends by itself, with an error.
func TestHungBroker(t *testing.T) {
	b := newFakeBroker(t)
	b.stall = true
	for _, qos := range []string{"0", "1"} {
		start := time.Now()
		_, err := runMain(t, "fanin", "-qos", qos, "-size", "60000", "-duration", "300ms", "-timeout", "300ms", "-addr", b.addr())
		if err == nil {
			t.Errorf("QoS %s: no error from a hung broker", qos)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("QoS %s: took %s", qos, d)
		}
	}
}

// TestOfflineAgainstFakeBroker runs the offline scenario at 3.1.1 and at
// level 5, where the session outlives its connection only because the
// CONNECT asks for a Session Expiry Interval [MQTT-3.1.2-23].
func TestOfflineAgainstFakeBroker(t *testing.T) {
	b := newFakeBroker(t)
	for _, v := range []string{"4", "5"} {
		kv, err := runMain(t, "offline", "-v", v, "-count", "2000", "-addr", b.addr())
		if err != nil {
			t.Fatalf("-v %s: %v", v, err)
		}
		if kv["received"] != "2000" || kv["lost"] != "0" || kv["session_present"] != "true" || num(t, kv, "drain_per_s") <= 0 {
			t.Errorf("-v %s: got %v", v, kv)
		}
		if n := b.sessionCount(0); n != 0 {
			t.Errorf("-v %s: %d sessions left behind", v, n)
		}
	}
}

// TestReasonCodesCounted checks that level-5 acknowledgements other than
// Success are counted and fail the run: a refusal (0x80 or more) frees the
// packet identifier without a PUBREL [MQTT-4.3.3-4] and its message is not
// reported as lost; 0x10 (accepted, no subscribers) is counted too.
func TestReasonCodesCounted(t *testing.T) {
	for _, c := range []struct {
		qos    string
		refuse codec.ReasonCode
		codes  string
		lost   string
	}{
		{"1", codec.ReasonQuotaExceeded, "0x97:10", "10"},
		{"2", codec.ReasonQuotaExceeded, "0x97:10", "10"},
		{"1", codec.ReasonNoMatchingSubscribers, "0x10:10", "0"},
	} {
		b := newFakeBroker(t)
		b.refuseEvery, b.refuse = 100, c.refuse
		kv, err := runMain(t, "fanin", "-v", "5", "-qos", c.qos, "-count", "1000", "-timeout", "2s", "-addr", b.addr())
		if err == nil || errors.Is(err, ErrLoss) || !strings.Contains(err.Error(), c.codes) {
			t.Errorf("QoS %s, 0x%02x: err = %v, want the acknowledgement error and no ErrLoss", c.qos, byte(c.refuse), err)
		}
		if kv["ack_errors"] != "10" || kv["ack_codes"] != c.codes || kv["lost"] != c.lost || kv["sent"] != "1000" {
			t.Errorf("QoS %s, 0x%02x: got %v", c.qos, byte(c.refuse), kv)
		}
	}
}

// TestPubcompFailureStillAcknowledges checks that a PUBCOMP of 0x92
// (Packet Identifier not found) is counted as an error but completes a
// message its PUBREC accepted: restart -fill counts it as queued.
func TestPubcompFailureStillAcknowledges(t *testing.T) {
	b := newFakeBroker(t)
	b.pubcomp = codec.ReasonPacketIdentifierNotFound
	kv, err := runMain(t, "restart", "-fill", "-v", "5", "-qos", "2", "-sessions", "4", "-count", "100", "-addr", b.addr())
	if err == nil || !strings.Contains(err.Error(), "0x92:100") {
		t.Errorf("err = %v, want the acknowledgement error", err)
	}
	if kv["acked"] != "100" || kv["ack_errors"] != "100" || kv["ack_codes"] != "0x92:100" {
		t.Errorf("got %v", kv)
	}
}

// TestReceiveMaximum checks that a run refuses to start with a window wider
// than a level-5 broker's Receive Maximum [MQTT-3.3.4-7]; 3.1.1 has none.
func TestReceiveMaximum(t *testing.T) {
	b := newFakeBroker(t)
	b.receiveMax = 8
	_, err := runMain(t, "fanin", "-v", "5", "-qos", "1", "-inflight", "16", "-count", "100", "-addr", b.addr())
	if err == nil || !strings.Contains(err.Error(), "Receive Maximum 8 is below -inflight 16") {
		t.Errorf("-inflight 16 with Receive Maximum 8: err = %v", err)
	}
	for _, args := range [][]string{{"-v", "5", "-inflight", "8"}, {"-v", "4", "-inflight", "16"}} {
		kv, err := runMain(t, append([]string{"fanin", "-qos", "1", "-count", "100", "-addr", b.addr()}, args...)...)
		if err != nil || kv["received"] != "100" {
			t.Errorf("%q: %v, %v", args, err, kv)
		}
	}
}

func TestIdleAndRestartAgainstFakeBroker(t *testing.T) {
	b := newFakeBroker(t)
	for _, v := range []string{"4", "5"} {
		kv, err := runMain(t, "idle", "-v", v, "-conns", "50", "-pid", strconv.Itoa(os.Getpid()), "-settle", "0", "-addr", b.addr())
		if err != nil {
			t.Fatal(err)
		}
		if kv["opened"] != "50" || num(t, kv, "rss_after_kb") <= 0 {
			t.Errorf("-v %s: got %v", v, kv)
		}
	}
	if n := b.sessionCount(0); n != 0 {
		t.Errorf("%d sessions after idle, which opens clean ones", n)
	}
	if kv, err := runMain(t, "idle", "-conns", "10", "-from", "127.0.0.2, 127.0.0.3", "-keepalive", "60s", "-settle", "0", "-addr", b.addr()); err != nil || kv["opened"] != "10" {
		t.Errorf("idle -from: %v, %v", err, kv)
	}
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		if _, ok := b.sources.Load(ip); !ok {
			t.Errorf("no idle connection came from %s (-from)", ip)
		}
	}

	// At level 5 the filled sessions stay because they never expire.
	for i, v := range []string{"4", "5"} {
		kv, err := runMain(t, "restart", "-fill", "-v", v, "-sessions", "20", "-count", "400", "-addr", b.addr())
		if err != nil {
			t.Fatal(err)
		}
		if n := b.sessionCount(20 * (i + 1)); kv["acked"] != "400" || n != 20*(i+1) {
			t.Errorf("-v %s: got %v and %d sessions", v, kv, n)
		}
		kv, err = runMain(t, "restart", "-wait", "-v", v, "-addr", b.addr())
		if err != nil || kv["attempts"] != "1" {
			t.Errorf("-v %s: wait: %v, %v", v, err, kv)
		}
	}

	b.ln.Close()
	if _, err := runMain(t, "restart", "-wait", "-duration", "100ms", "-addr", b.addr()); err == nil {
		t.Error("restart -wait succeeded with nothing listening")
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nosuch"},
		{"fanin", "-qos", "3"},
		{"fanin", "-nosuchflag"},
		{"fanin", "extra"},
		{"fanin", "-size", "8"},
		{"fanin", "-v", "6"},
		{"offline", "-qos", "0"},
		{"restart"},
		{"restart", "-fill", "-wait"},
		{"idle", "-conns", "0"},
		{"idle", "-from", "192.0.2.1"},
		{"idle", "-keepalive", "1500ms"},
		{"shared", "-churn", "-1s"},
		{"shared", "-subs", "0"},
		{"fanin", "-filter", "sensors/#"},
	} {
		var out, errOut bytes.Buffer
		if err := Main(args, &out, &errOut); !errors.Is(err, ErrUsage) {
			t.Errorf("%q: err = %v, want ErrUsage", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("%q: wrote %q to stdout", args, out.String())
		}
	}
	for _, args := range [][]string{{"-h"}, {"fanin", "-h"}, {"restart", "-help"}} {
		var out, errOut bytes.Buffer
		if err := Main(args, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%q: err = %v, want flag.ErrHelp", args, err)
		}
		if !strings.Contains(errOut.String(), "usage: holdfast bench") {
			t.Errorf("%q: no usage on stderr: %q", args, errOut.String())
		}
	}
}
