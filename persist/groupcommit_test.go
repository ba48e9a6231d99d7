package persist

import (
	"fmt"
	"sync"
	"testing"
)

// 64 goroutines x 200 Commits: far fewer Badger commits than requests, the
// callbacks in submission order with increasing seqs.
func TestGroupCommit(t *testing.T) {
	ts := openTest(t)
	const (
		workers = 64
		each    = 200
	)
	for g := 0; g < workers; g++ {
		ts.sessions(fmt.Sprintf("w%02d", g))
	}
	// Every callback, in the order the writer ran them (one goroutine).
	var calls []uint64
	var wg sync.WaitGroup
	perWorker := make([][]uint64, workers)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cid := fmt.Sprintf("w%02d", g)
			for i := 0; i < each; i++ {
				b := &Batch{}
				b.Enqueue(msg("t", fmt.Sprint(i), 1), []Target{{cid, 1}})
				ch := make(chan uint64, 1)
				ts.Submit(b, func(seq uint64, err error) {
					if err != nil {
						t.Error(err)
					}
					calls = append(calls, seq)
					ch <- seq
				})
				perWorker[g] = append(perWorker[g], <-ch)
			}
		}()
	}
	wg.Wait()
	_ = ts.control(func(*writer) error { return nil })

	if len(calls) != workers*each {
		t.Fatalf("%d callbacks", len(calls))
	}
	for i := 1; i < len(calls); i++ {
		if calls[i] <= calls[i-1] {
			t.Fatalf("callback %d: seq %d after %d", i, calls[i], calls[i-1])
		}
	}
	for g, seqs := range perWorker {
		q := ts.readQueue(fmt.Sprintf("w%02d", g), 0, each+1)
		if len(q) != each {
			t.Fatalf("worker %d: %d entries", g, len(q))
		}
		for i := range q {
			if q[i].Seq != seqs[i] || string(q[i].Message.Payload) != fmt.Sprint(i) {
				t.Fatalf("worker %d entry %d = %s, committed seq %d", g, i, fmtEntry(q[i]), seqs[i])
			}
		}
	}
	st := ts.Stats()
	t.Logf("%d requests, %d commits (%.1f requests per commit), avg commit %v, max %v, histogram %v",
		st.Requests, st.Commits, float64(st.Requests)/float64(st.Commits), st.AvgCommit, st.MaxCommit, st.CommitHistogram)
	if st.Commits*4 > workers*each {
		t.Errorf("%d commits for %d requests: group commit is not grouping", st.Commits, workers*each)
	}
	if st.Ops < workers*each {
		t.Errorf("ops = %d", st.Ops)
	}
}
