package test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/faultfs"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// TestEarlyDeliveryBeforeDurable: with durability "sync" and every fdatasync held, an online
// persistent subscriber gets a message published at QoS 1 before its publisher's PUBACK (which
// waits for the sync), and acknowledges it; one published at QoS 2 reaches it only once the
// sync is done, after its PUBREC (issue 18).
func TestEarlyDeliveryBeforeDurable(t *testing.T) {
	disk, mnt := t.TempDir(), t.TempDir()
	fs := faultfs.Mount(t, disk, mnt)
	b := StartBroker(t, BrokerConfig{DataDir: filepath.Join(mnt, "data")})
	t.Cleanup(b.Kill) // before the mount's cleanup unmounts it
	sub := mqtttest.Dial(t, b.Addr)
	sub.MustConnect("early-sub", false)
	sub.Subscribe(1, 2, "early/#")
	pub := mqtttest.Dial(t, b.Addr)
	pub.MustConnect("early-pub", true)

	release := fs.HoldSyncs()
	defer release()
	pub.Send(&codec.Publish{Topic: "early/1", QoS: 1, PacketID: 1, Payload: []byte("one")})
	p := mqtttest.Expect[*codec.Publish](sub)
	if string(p.Payload) != "one" || p.QoS != 1 {
		t.Fatalf("subscriber got %s, want the QoS 1 message", mqtttest.String(p))
	}
	sub.Send(&codec.Puback{PacketID: p.PacketID}) // acknowledged before it is durable
	pub.Send(&codec.Publish{Topic: "early/2", QoS: 2, PacketID: 2, Payload: []byte("two")})
	// Nothing is durable while the syncs are held: no acknowledgement to the publisher, and the
	// QoS 2 message waits.
	pub.ExpectSilence(300 * time.Millisecond)
	sub.ExpectSilence(300 * time.Millisecond)

	release()
	if a := mqtttest.Expect[*codec.Puback](pub); a.PacketID != 1 {
		t.Fatalf("publisher got PUBACK %d, want 1", a.PacketID)
	}
	if r := mqtttest.Expect[*codec.Pubrec](pub); r.PacketID != 2 {
		t.Fatalf("publisher got PUBREC %d, want 2", r.PacketID)
	}
	p = sub.NextPublish()
	if string(p.Payload) != "two" || p.QoS != 2 || p.Dup {
		t.Fatalf("subscriber got %s, want the QoS 2 message once", mqtttest.String(p))
	}
	b.Stop()
}
