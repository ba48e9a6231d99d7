package persist

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchArrived is the arrival time of the benchmarks' messages: the broker sets one on every
// message it receives.
var benchArrived = time.Now()

// Benchmarks run on disk (b.TempDir) with Durability Sync: every Badger commit
// is fsynced. Compare:
//
//	go test -run '^$' -bench 'GroupCommit|SyncPerMessage' -benchtime 3s ./persist/
func openBench(b *testing.B) *Store {
	b.Helper()
	o := DefaultOptions(b.TempDir())
	s, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func reportCommits(b *testing.B, s *Store, start time.Time, n int) {
	el := time.Since(start)
	st := s.Stats()
	b.ReportMetric(float64(n)/el.Seconds(), "msgs/s")
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Requests)/float64(st.Commits), "msgs/commit")
		b.ReportMetric(float64(st.AvgCommit.Microseconds()), "µs/commit")
	}
}

// BenchmarkGroupCommit: 32 concurrent publishers (16 x GOMAXPROCS on a
// 2-CPU machine), each doing single-Enqueue Commits, as the broker does for
// QoS 1 PUBLISHes from many connections.
func BenchmarkGroupCommit(b *testing.B) {
	for _, par := range []int{16, 32} {
		b.Run(fmt.Sprintf("par=%dxGOMAXPROCS", par), func(b *testing.B) {
			s := openBench(b)
			payload := make([]byte, 256)
			var next atomic.Int64
			cids := make([]string, par*runtime.GOMAXPROCS(0))
			for i := range cids {
				cids[i] = fmt.Sprintf("sub%d", i+1) // the names RunParallel's goroutines take
			}
			putSessions(b, s, cids...)
			b.SetParallelism(par)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				cid := fmt.Sprintf("sub%d", next.Add(1))
				for pb.Next() {
					bt := &Batch{}
					bt.Enqueue(&Message{Topic: "bench/topic", Payload: payload, QoS: 1, Arrived: benchArrived}, []Target{{cid, 1}})
					if _, err := s.Commit(bt); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			reportCommits(b, s, start, b.N)
		})
	}
}

// BenchmarkSyncPerMessage: one publisher, one Commit (one fsync) per message:
// the cost group commit avoids.
func BenchmarkSyncPerMessage(b *testing.B) {
	s := openBench(b)
	putSessions(b, s, "sub")
	payload := make([]byte, 256)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		bt := &Batch{}
		bt.Enqueue(&Message{Topic: "bench/topic", Payload: payload, QoS: 1, Arrived: benchArrived}, []Target{{"sub", 1}})
		if _, err := s.Commit(bt); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCommits(b, s, start, b.N)
}

// BenchmarkWindow: one publisher with 16 QoS 1 messages in flight to an offline persistent
// session, as the load tool's offline row: 16 submitters, each submitting its next message as
// soon as its last one is durable. Its ceiling is 16 messages per fdatasync round trip.
func BenchmarkWindow(b *testing.B) {
	const window = 16
	s := openBench(b)
	putSessions(b, s, "sub")
	payload := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range window {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				bt := &Batch{}
				bt.Enqueue(&Message{Topic: "bench/topic", Payload: payload, QoS: 1, Arrived: benchArrived}, []Target{{"sub", 1}})
				if _, err := s.Commit(bt); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	reportCommits(b, s, start, b.N)
	if st := s.Stats(); st.Syncs > 0 {
		b.ReportMetric(float64(st.SyncNanos)/float64(st.Syncs)/1e3, "µs/sync")
	}
}

// BenchmarkFanOut: one message to 100 persistent sessions per Commit (one
// shared body, 100 small entries).
func BenchmarkFanOut(b *testing.B) {
	s := openBench(b)
	payload := make([]byte, 256)
	targets := make([]Target, 100)
	cids := make([]string, len(targets))
	for i := range targets {
		targets[i] = Target{fmt.Sprintf("sub%03d", i), 1}
		cids[i] = targets[i].ClientID
	}
	putSessions(b, s, cids...)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		bt := &Batch{}
		bt.Enqueue(&Message{Topic: "bench/topic", Payload: payload, QoS: 1, Arrived: benchArrived}, targets)
		if _, err := s.Commit(bt); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*len(targets))/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkReadQueue: read 100 entries (a resend window) from a 20,000-entry
// queue, a third of them in-flight, a quarter with shared bodies.
func BenchmarkReadQueue(b *testing.B) {
	s := openBench(b)
	putSessions(b, s, "reader", "other")
	const n = 20000
	seqs := benchQueue(b, s, n, 1, func(i int) []Target {
		if i%4 == 0 {
			return []Target{{"reader", 1}, {"other", 1}}
		}
		return []Target{{"reader", 1}}
	})
	st := &Batch{}
	for i := 0; i < n; i += 3 {
		st.SetQueueState("reader", seqs[i], Sent, uint16(i))
	}
	if _, err := s.Commit(st); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		after := seqs[(i*101)%(n-100)]
		q, err := s.ReadQueue("reader", after, 100)
		if err != nil || len(q) != 100 {
			b.Fatalf("%d entries, %v", len(q), err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "entries/s")
}

// benchQueue submits n Enqueues of a 256-byte message of QoS qos, the i-th to targets(i), and
// returns their seqs once all are committed.
func benchQueue(b *testing.B, s *Store, n int, qos byte, targets func(i int) []Target) []uint64 {
	b.Helper()
	payload := make([]byte, 256)
	var seqs []uint64
	for i := range n {
		bt := &Batch{}
		bt.Enqueue(&Message{Topic: "bench/topic", Payload: payload, QoS: qos, Arrived: benchArrived}, targets(i))
		s.Submit(bt, func(seq uint64, err error) {
			if err != nil {
				b.Error(err)
			}
			seqs = append(seqs, seq) // writer goroutine; read after the barrier below
		})
	}
	if _, err := s.Commit(&Batch{}); err != nil { // barrier
		b.Fatal(err)
	}
	return seqs
}

// BenchmarkEnqueueEncode: what a submitter pays to build a one-target Enqueue of a 100-byte
// message without properties (the store is not involved), and the bytes of its queue entry.
func BenchmarkEnqueueEncode(b *testing.B) {
	m := &Message{Topic: "bench/topic", Payload: make([]byte, 100), QoS: 1, Arrived: benchArrived}
	targets := []Target{{"sub", 1}}
	b.ReportAllocs()
	var bt Batch
	for b.Loop() {
		bt = Batch{}
		bt.Enqueue(m, targets)
	}
	b.ReportMetric(float64(len(bt.enq.targets[0].val)), "entry-bytes")
}

// BenchmarkReadHeld: what a shared subscription group's start costs, 20 held entries of a
// 20,000-entry group queue, read by ReadHeld from the group's in-flight states, against reading
// the whole queue to find them.
func BenchmarkReadHeld(b *testing.B) {
	s := openBench(b)
	const cid, n = "\x00g/t", 20000
	putSessions(b, s, cid)
	seqs := benchQueue(b, s, n, 2, func(int) []Target { return []Target{{cid, 2}} })
	st := &Batch{}
	for i := 0; i < n; i += n / 20 {
		st.Hold(cid, seqs[i], Released, uint16(i), fmt.Sprint("member", i%4))
	}
	if _, err := s.Commit(st); err != nil {
		b.Fatal(err)
	}
	b.Run("ReadHeld", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if q, err := s.ReadHeld(cid); err != nil || len(q) != 20 {
				b.Fatalf("%d entries, %v", len(q), err)
			}
		}
	})
	b.Run("ReadQueue-whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if q, err := s.ReadQueue(cid, 0, n); err != nil || len(q) != n {
				b.Fatalf("%d entries, %v", len(q), err)
			}
		}
	})
}

// BenchmarkRestart: Open and recover a store holding 200,000 queued messages over 200 sessions,
// the way the broker does (RecoverSessions: what it waits for before serving; then CountQueues
// in the background) and all at once (Recover). Issue 18's restart row.
//
//	go test -run '^$' -bench Restart -count 5 ./persist/
func BenchmarkRestart(b *testing.B) {
	dir := b.TempDir()
	o := DefaultOptions(dir)
	o.Durability, o.AsyncInterval = Async, 100*time.Millisecond // only to fill it faster
	s, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	const sessions, n = 200, 200_000
	cids := make([]string, sessions)
	for i := range cids {
		cids[i] = fmt.Sprintf("restart-%04d", i)
	}
	putSessions(b, s, cids...)
	payload := make([]byte, 64)
	for i := range n {
		var bt Batch
		bt.Enqueue(&Message{Topic: "t", Payload: payload, QoS: 1, Arrived: benchArrived}, []Target{{ClientID: cids[i%sessions], QoS: 1}})
		s.Submit(&bt, nil)
	}
	if _, err := s.Commit(&Batch{}); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	o.Durability = Sync
	run := func(b *testing.B, recover func(s *Store) error) {
		for b.Loop() {
			s, err := Open(o)
			if err != nil {
				b.Fatal(err)
			}
			if err := recover(s); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.Run("serving", func(b *testing.B) {
		run(b, func(s *Store) error { _, err := s.RecoverSessions(); return err })
	})
	b.Run("serving+counted", func(b *testing.B) {
		run(b, func(s *Store) error {
			if _, err := s.RecoverSessions(); err != nil {
				return err
			}
			return s.CountQueues(nil, func(QueueCount) {})
		})
	})
	b.Run("Recover", func(b *testing.B) {
		run(b, func(s *Store) error { _, err := s.Recover(); return err })
	})
}

// BenchmarkReadQueueDrain: a reconnecting session's drain, reading a 20,000-entry queue of
// one-target QoS 1 entries (inline, none in flight) in consecutive pages of 276 (the broker's
// default memory window plus in-flight window).
func BenchmarkReadQueueDrain(b *testing.B) {
	s := openBench(b)
	putSessions(b, s, "reader")
	const n, page = 20000, 276
	seqs := benchQueue(b, s, n, 1, func(int) []Target { return []Target{{"reader", 1}} })
	b.ReportAllocs()
	b.ResetTimer()
	after := uint64(0)
	for i := 0; i < b.N; i++ {
		q, err := s.ReadQueue("reader", after, page)
		if err != nil || len(q) == 0 {
			b.Fatalf("%d entries, %v", len(q), err)
		}
		after = q[len(q)-1].Seq
		if after == seqs[n-1] {
			after = 0
		}
	}
	b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "entries/s")
}
