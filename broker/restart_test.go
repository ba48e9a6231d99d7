package broker

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// The broker serves before it has counted the queues: a persistent session that connects first
// is present, gets every queued message in order from disk, and its count, arriving after it
// acknowledged them, leaves it with nothing queued.
func TestConnectBeforeQueuesCounted(t *testing.T) {
	b := startBroker(t, nil)
	sub := b.dial()
	sub.MustConnect("sub", false)
	sub.Subscribe(1, 1, "cnt/#")
	sub.Conn.Close()
	pub := b.dial()
	pub.MustConnect("pub", true)
	const n = 600 // more than a session holds in memory
	for i := range n {
		publish(t, pub, uint16(i+1), "cnt/x", fmt.Sprint(i), 1, false)
	}
	pub.Conn.Close()

	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	testHookCount = func() { <-release }
	t.Cleanup(func() { testHookCount = nil })
	b.restart()
	defer free() // before the cleanup's shutdown, which waits for the count

	sub = b.dial()
	if !sub.MustConnect("sub", false) {
		t.Fatal("CONNACK before the count: session present 0")
	}
	for i := range n {
		p := mqtttest.Expect[*codec.Publish](sub)
		if got := string(p.Payload); got != fmt.Sprint(i) {
			t.Fatalf("message %d is %q: lost or out of order", i, got)
		}
		sub.Send(&codec.Puback{PacketID: p.PacketID})
	}
	h := b.srv.sessions.get("sub")
	queued := func() int {
		n, _ := h.lock().Queued()
		h.unlock()
		return n
	}
	select {
	case <-b.srv.counted:
		t.Fatal("counted while the hook held the count")
	default:
	}
	// The reader handles packets in order: once PINGRESP is back, every PUBACK before it was.
	sub.Send(&codec.Pingreq{})
	mqtttest.Expect[*codec.Pingresp](sub)
	if got := queued(); got != -n {
		t.Fatalf("before the count, after %d PUBACKs: %d queued, want %d", n, got, -n)
	}
	free()
	select {
	case <-b.srv.counted:
	case <-time.After(10 * time.Second):
		t.Fatal("the queues were not counted within 10 s")
	}
	if got := queued(); got != 0 {
		t.Fatalf("after the count: %d queued, want 0", got)
	}
}
