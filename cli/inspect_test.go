package cli

import (
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
