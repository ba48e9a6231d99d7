package bench

import (
	"errors"
	"testing"
)

// newFakeBridge is two fake brokers, the first forwarding every publication
// it routes to the second under prefix.
func newFakeBridge(t *testing.T, prefix string) (local, remote *fakeBroker) {
	local, remote = newFakeBroker(t), newFakeBroker(t)
	local.bridge, local.bridgePrefix = remote, prefix
	return local, remote
}

// TestFaninThroughBridge runs fan-in with the publishers on one broker and
// the subscriber on the broker it bridges to, one topic per publisher under
// a wildcard, with and without a remote prefix.
func TestFaninThroughBridge(t *testing.T) {
	cases := []struct {
		name, prefix string
		args         []string
	}{
		{"qos1 persistent", "", []string{"-qos", "1", "-clean=false"}},
		{"qos1 remote prefix", "fleet/", []string{"-qos", "1", "-filter", "fleet/sensors/#"}},
		{"qos2 v5 persistent", "", []string{"-v", "5", "-qos", "2", "-clean=false"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			local, remote := newFakeBridge(t, c.prefix)
			args := append([]string{"fanin", "-pubs", "4", "-count", "2000", "-topic", "sensors/", "-addr", local.addr(), "-sub-addr", remote.addr()}, c.args...)
			kv, err := runMain(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			if kv["sent"] != "2000" || kv["acked"] != "2000" || kv["received"] != "2000" || kv["lost"] != "0" || kv["dup"] != "0" || kv["stray"] != "0" {
				t.Errorf("got %v", kv)
			}
			if num(t, kv, "recv_per_s") <= 0 {
				t.Errorf("recv_per_s=%s", kv["recv_per_s"])
			}
			// The subscriber was on the remote: its session is removed there.
			if n := remote.sessionCount(0); n != 0 {
				t.Errorf("%d sessions left on the remote", n)
			}
		})
	}
}

// TestFaninThroughBridgeLossIsAcknowledgedMissing checks that with
// -sub-addr a message the local broker acknowledged and never forwarded
// counts as lost and fails the run.
func TestFaninThroughBridgeLossIsAcknowledgedMissing(t *testing.T) {
	local, remote := newFakeBridge(t, "")
	local.dropEvery = 100
	kv, err := runMain(t, "fanin", "-qos", "1", "-count", "1000", "-timeout", "300ms", "-topic", "sensors/",
		"-addr", local.addr(), "-sub-addr", remote.addr())
	if !errors.Is(err, ErrLoss) {
		t.Fatalf("err = %v, want ErrLoss", err)
	}
	if kv["acked"] != "1000" || kv["lost"] != "10" || kv["received"] != "990" {
		t.Errorf("acked=%s lost=%s received=%s, want 1000, 10, 990", kv["acked"], kv["lost"], kv["received"])
	}
}

// TestFaninTopicPerPublisher checks -topic on one broker: publisher n sends to
// prefix+n and the subscriber's default filter prefix+# takes them all.
func TestFaninTopicPerPublisher(t *testing.T) {
	b := newFakeBroker(t)
	kv, err := runMain(t, "fanin", "-qos", "1", "-pubs", "3", "-count", "900", "-topic", "sensors/", "-addr", b.addr())
	if err != nil {
		t.Fatal(err)
	}
	if kv["received"] != "900" || kv["lost"] != "0" {
		t.Errorf("got %v", kv)
	}
	if _, ok := kv["acked"]; ok {
		t.Errorf("acked reported without -sub-addr: %v", kv)
	}
	// Only publisher 1 sends to sensors/1: half of the QoS 0 messages reach that filter.
	kv, err = runMain(t, "fanin", "-qos", "0", "-pubs", "2", "-count", "1000", "-timeout", "300ms", "-topic", "sensors/", "-filter", "sensors/1", "-addr", b.addr())
	if err != nil {
		t.Fatal(err)
	}
	if kv["received"] != "500" || kv["lost"] != "500" || kv["stray"] != "0" {
		t.Errorf("-filter sensors/1: received=%s lost=%s stray=%s, want 500, 500, 0", kv["received"], kv["lost"], kv["stray"])
	}
}
