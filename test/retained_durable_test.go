package test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/faultfs"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// TestRetainedDeliveredOnlyOnceDurable (issue 13, item 6): a retained QoS 2 message that is not
// durable yet must not reach a new subscriber through the retained index either. Otherwise a
// crash before the sync makes the publisher (which got no PUBREC) send it again, and the
// subscriber gets it twice as a new message. With the disk's syncs held, one client publishes
// the retained message and another then subscribes to its topic: the subscriber gets SUBACK, but
// the message only once the syncs are released, when the publisher gets its PUBREC.
func TestRetainedDeliveredOnlyOnceDurable(t *testing.T) {
	disk, mnt := t.TempDir(), t.TempDir()
	fs := faultfs.Mount(t, disk, mnt)
	b := faultfsBroker(t, filepath.Join(mnt, "data"), "sync")
	t.Cleanup(b.Kill) // before the mount's cleanup unmounts it
	release := fs.HoldSyncs()
	t.Cleanup(release)

	pub := mqtttest.Dial(t, b.Addr)
	pub.MustConnect("retain-pub", true)
	pub.Send(&codec.Publish{Topic: "kept/t", QoS: 2, PacketID: 1, Retain: true, Payload: []byte("m")}, &codec.Pingreq{})
	mqtttest.Expect[*codec.Pingresp](pub) // answered in order: the PUBLISH has been routed
	sub := mqtttest.Dial(t, b.Addr)
	sub.MustConnect("retain-sub", true)
	sub.Subscribe(1, 2, "kept/#") // no disk needed for a clean session's SUBACK

	type read struct {
		p   codec.Packet
		err error
	}
	next := func(c *mqtttest.Client) <-chan read {
		ch := make(chan read, 1)
		go func() {
			p, err := c.TryRead(30 * time.Second)
			ch <- read{p, err}
		}()
		return ch
	}
	toSub, toPub := next(sub), next(pub)
	select {
	case r := <-toSub:
		t.Fatalf("the subscriber got %v (%v) before the retained message was durable", r.p, r.err)
	case r := <-toPub:
		t.Fatalf("the publisher got %v (%v) before its message was durable", r.p, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	release()
	r := <-toSub
	if p, ok := r.p.(*codec.Publish); !ok || !p.Retain || string(p.Payload) != "m" {
		t.Fatalf("after the sync the subscriber got %v (%v), want the retained message", r.p, r.err)
	}
	if r := <-toPub; r.err != nil || r.p.Type() != codec.TypePubrec {
		t.Fatalf("after the sync the publisher got %v (%v), want PUBREC", r.p, r.err)
	}
}
