package persist

import (
	"sync"
	"testing"
	"time"
)

// OnApplied is called on the writer, in submission order, with the seq that done reports later,
// while the batch is not durable yet, and not for a batch that fails on its own.
func TestOnApplied(t *testing.T) {
	ts := openTest(t)
	putSessions(t, ts.Store, "a")
	var mu sync.Mutex
	var applied, durable []uint64 // seq per batch, in the order of the calls
	var failed error
	// The first batch's done (on the syncer) waits until the second is applied: the writer
	// applies it while the first is being synced, and tells its submitter without waiting.
	second := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		var b Batch
		qos := byte(1)
		if i == 2 {
			qos = 3 // fails alone
		}
		b.Enqueue(msg("t", "p", 1), []Target{{ClientID: "a", QoS: qos}})
		b.OnApplied(func(seq uint64) {
			mu.Lock()
			applied = append(applied, seq)
			mu.Unlock()
			if i == 1 {
				close(second)
			}
		})
		wg.Add(1)
		ts.Submit(&b, func(seq uint64, err error) {
			defer wg.Done()
			if i == 0 {
				select {
				case <-second:
				case <-time.After(10 * time.Second):
					t.Error("the second batch was not applied while the first waited for its callback")
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = err
				return
			}
			if len(applied) <= len(durable) || applied[len(durable)] != seq {
				t.Errorf("done(%d) of batch %d: applied so far %v, want its OnApplied first with that seq", seq, i, applied)
			}
			durable = append(durable, seq)
		})
	}
	wg.Wait()
	if failed == nil {
		t.Error("the batch with QoS 3 did not fail")
	}
	if len(applied) != 3 || len(durable) != 3 || applied[0] >= applied[1] || applied[1] >= applied[2] {
		t.Errorf("applied %v, durable %v: want 3 increasing seqs each, the failed batch in neither", applied, durable)
	}
}
