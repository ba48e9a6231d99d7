package broker

import (
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/persist"
)

// A received PUBLISH is queued with the time the broker received it, which a restart keeps; the
// retained copy has none, so a copy of it queued for a later subscriber has none either.
func TestQueuedMessageArrival(t *testing.T) {
	b := startBroker(t, nil)
	sub := b.dial()
	sub.MustConnect("sub", false)
	sub.Subscribe(1, 1, "arr/#")
	sub.Conn.Close()
	pub := b.dial()
	pub.MustConnect("pub", true)

	queue := func(cid string) []persist.QueueEntry {
		t.Helper()
		q, err := b.store.ReadQueue(cid, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	// sub's connection may still be closing: its queue is on disk either way.
	before := time.Now()
	publish(t, pub, 1, "arr/r", "retained", 1, true)
	after := time.Now()
	q := queue("sub")
	if len(q) != 1 {
		t.Fatalf("queue of sub = %d entries, want 1", len(q))
	}
	arrived := q[0].Message.Arrived
	if arrived.Before(before) || arrived.After(after) {
		t.Fatalf("arrived %v, want between %v and %v", arrived, before, after)
	}
	b.srv.retainMu.Lock()
	ret := b.srv.retained.Match("arr/r", nil)
	b.srv.retainMu.Unlock()
	if len(ret) != 1 || !ret[0].Arrived.IsZero() {
		t.Fatalf("retained index holds %+v, want one message without a time", ret)
	}

	late := b.dial()
	late.MustConnect("late", false)
	late.Subscribe(1, 1, "arr/#")
	if p := mqtttest.Expect[*codec.Publish](late); !p.Retain {
		t.Fatalf("want the retained message, got %s", mqtttest.String(p))
	}
	// The copy may reach late before it is on disk (early delivery): wait until it is.
	mqtttest.Eventually(t, 5*time.Second, "late's retained copy on disk", func() bool { return len(queue("late")) > 0 })
	if q := queue("late"); len(q) != 1 || !q[0].Message.Arrived.IsZero() {
		t.Fatalf("queue of late = %+v, want the retained copy without a time", q)
	}

	b.restart()
	if q := queue("sub"); len(q) != 1 || !q[0].Message.Arrived.Equal(arrived) {
		t.Fatalf("after a restart, queue of sub = %+v, want the message that arrived at %v", q, arrived)
	}
}
