package cli

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/persist"
)

// verify and inspect of a stopped store show what MQTT 5 stores: session expiry, subscription
// options and identifiers, wills, retained expiry.
func TestVerifyInspectShowMQTT5(t *testing.T) {
	dir := t.TempDir()
	s := opsOpen(t, dir)
	b := &persist.Batch{}
	b.PutSession("v5", persist.SessionRecord{ProtocolLevel: 5, HasSessionExpiry: true, SessionExpiry: 0xFFFFFFFF})
	b.PutSession("short", persist.SessionRecord{ProtocolLevel: 5, HasSessionExpiry: true, SessionExpiry: 90})
	b.PutSubscription("v5", persist.Subscription{Filter: "a/#", SubOptions: persist.SubOptions{QoS: 1, NoLocal: true, RetainAsPublished: true, ID: 7}})
	b.PutWill("v5", &codec.Will{Topic: "gone/v5", Payload: []byte("bye"), QoS: 1, Retain: true, Props: &codec.Properties{WillDelay: 30}})
	b.PutRetained(&persist.Message{Topic: "r/x", Payload: []byte("p"), QoS: 1, Expires: time.Date(2030, 1, 2, 3, 4, 5, 0, time.Local)})
	opsCommit(t, s, b)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out := opsMust(t, "verify", "--data", dir)
	if !strings.Contains(out, "wills 1") {
		t.Errorf("verify:\n%s", out)
	}
	out = opsMust(t, "inspect", "--data", dir)
	for _, w := range []string{"a/# (QoS 1, no local, retain as published, id 7)", "[session expiry never]", "[session expiry 90s]",
		"[will on gone/v5 (QoS 1, 3 bytes, retained, delay 30s)]", "2030-01-02 03:04:05"} {
		if !strings.Contains(out, w) {
			t.Errorf("inspect lacks %q:\n%s", w, out)
		}
	}
}

// verify and inspect of a stopped store show the entries of a shared subscription group's queue
// that members hold (they answered PUBREC), and by whom.
func TestVerifyInspectShowHolders(t *testing.T) {
	dir := t.TempDir()
	s := opsOpen(t, dir)
	const group = "\x00$share/g/t"
	b := &persist.Batch{}
	b.PutSession(group, persist.SessionRecord{ProtocolLevel: 5})
	opsCommit(t, s, b)
	opsEnqueue(t, s, "t", 0, 4, group)
	q, err := s.ReadQueue(group, 0, 10)
	if err != nil || len(q) != 4 {
		t.Fatalf("ReadQueue = %v, %v", q, err)
	}
	b = &persist.Batch{}
	b.Hold(group, q[0].Seq, persist.Released, 1, "w 2")
	b.Hold(group, q[1].Seq, persist.Released, 2, "w1")
	b.Hold(group, q[2].Seq, persist.Released, 3, "w 2")
	b.SetQueueState(group, q[3].Seq, persist.Sent, 4)
	opsCommit(t, s, b)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if out := opsMust(t, "verify", "--data", dir); !strings.Contains(out, "in flight 4 (3 held by shared subscription members)") ||
		!strings.Contains(out, "OK: consistent") {
		t.Errorf("verify:\n%s", out)
	}
	if out := opsMust(t, "inspect", "--data", dir); !strings.Contains(out, `[3 held by shared subscription members: "w 2" (2), w1 (1)]`) ||
		!strings.Contains(out, "$share/g/t (shared group queue)") {
		t.Errorf("inspect:\n%s", out)
	}
	si := opsSession(t, opsInventory(t, opsMust(t, "inspect", "--data", dir, "--json")), group)
	want := []persist.HeldInfo{{Seq: q[0].Seq, PacketID: 1, Holder: "w 2"}, {Seq: q[1].Seq, PacketID: 2, Holder: "w1"}, {Seq: q[2].Seq, PacketID: 3, Holder: "w 2"}}
	if si.Inflight != 4 || !slices.Equal(si.Held, want) {
		t.Errorf("inspect --json: group %+v, want held %+v", si, want)
	}
}
