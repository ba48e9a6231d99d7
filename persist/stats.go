package persist

import (
	"slices"
	"sync/atomic"
	"time"
)

// CommitLatencyBuckets returns the upper bounds of Stats.CommitHistogram; the
// histogram's last bucket counts everything slower than the last bound.
func CommitLatencyBuckets() []time.Duration { return slices.Clone(commitBuckets[:]) }

var commitBuckets = [...]time.Duration{
	100 * time.Microsecond,
	250 * time.Microsecond,
	500 * time.Microsecond,
	time.Millisecond,
	2500 * time.Microsecond,
	5 * time.Millisecond,
	10 * time.Millisecond,
	25 * time.Millisecond,
	50 * time.Millisecond,
	100 * time.Millisecond,
	250 * time.Millisecond,
	time.Second,
}

// CommitSizeBuckets returns the upper bounds of Stats.SizeHistogram (store entries per group
// commit); its last bucket counts the larger commits.
func CommitSizeBuckets() []int { return slices.Clone(sizeBuckets[:]) }

var sizeBuckets = [...]int{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}

// Stats are counters for metrics. Counters only grow.
type Stats struct {
	Requests uint64 // batches completed (callbacks called), including failed ones
	Failed   uint64 // batches completed with an error
	Commits  uint64 // Badger transaction commits (one fsync each in Sync mode)
	Ops      uint64 // Badger entries (sets and deletes) committed
	Splits   uint64 // batches larger than one Badger transaction, applied in parts behind one log record
	Syncs    uint64 // fdatasyncs of the write-ahead log
	Pending  int    // batches waiting in the request channel now

	// Commit latency (Badger Txn.Commit, including the fsync in Sync mode).
	LastCommit      time.Duration
	MaxCommit       time.Duration
	AvgCommit       time.Duration
	CommitHistogram []uint64 // len(CommitLatencyBuckets())+1 counts
	SizeHistogram   []uint64 // len(CommitSizeBuckets())+1 counts: the group-commit batch sizes

	// Latency of the write-ahead log's fdatasyncs (Sync and Async modes).
	LastSync      time.Duration
	MaxSync       time.Duration
	SyncNanos     uint64   // their sum
	SyncHistogram []uint64 // len(CommitLatencyBuckets())+1 counts

	GCRuns     uint64 // value-log GC passes (ticks)
	GCRewrites uint64 // value-log files rewritten by GC

	// Checkpoints of the write-ahead log: Badger made durable by itself and the log started over
	// (past its size limit, after replay at Open, at Close).
	Checkpoints uint64

	LSMBytes  int64 // from Badger's DB.Size
	VlogBytes int64
}

type stats struct {
	requests, failed, commits, ops, splits atomic.Uint64
	commitNanos, lastCommit, maxCommit     atomic.Int64
	hist                                   []atomic.Uint64
	sizes                                  []atomic.Uint64
	syncs, syncNanos                       atomic.Uint64
	lastSync, maxSync                      atomic.Int64
	syncHist                               []atomic.Uint64
	gcRuns, gcRewrites                     atomic.Uint64
	checkpoints                            atomic.Uint64
}

func (s *stats) init() {
	s.hist = make([]atomic.Uint64, len(commitBuckets)+1)
	s.sizes = make([]atomic.Uint64, len(sizeBuckets)+1)
	s.syncHist = make([]atomic.Uint64, len(commitBuckets)+1)
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func (s *stats) recordCommit(d time.Duration, entries int) {
	s.commits.Add(1)
	s.ops.Add(uint64(entries))
	s.commitNanos.Add(int64(d))
	s.lastCommit.Store(int64(d))
	storeMax(&s.maxCommit, int64(d))
	i := 0
	for i < len(commitBuckets) && d > commitBuckets[i] {
		i++
	}
	s.hist[i].Add(1)
	i = 0
	for i < len(sizeBuckets) && entries > sizeBuckets[i] {
		i++
	}
	s.sizes[i].Add(1)
}

func (s *stats) recordSync(d time.Duration) {
	s.syncs.Add(1)
	s.syncNanos.Add(uint64(d))
	s.lastSync.Store(int64(d))
	storeMax(&s.maxSync, int64(d))
	i := 0
	for i < len(commitBuckets) && d > commitBuckets[i] {
		i++
	}
	s.syncHist[i].Add(1)
}

// Stats returns a snapshot of the counters and the size on disk.
func (s *Store) Stats() Stats {
	st := Stats{
		Requests:        s.stats.requests.Load(),
		Failed:          s.stats.failed.Load(),
		Commits:         s.stats.commits.Load(),
		Ops:             s.stats.ops.Load(),
		Splits:          s.stats.splits.Load(),
		Syncs:           s.stats.syncs.Load(),
		Pending:         len(s.reqCh),
		LastCommit:      time.Duration(s.stats.lastCommit.Load()),
		MaxCommit:       time.Duration(s.stats.maxCommit.Load()),
		LastSync:        time.Duration(s.stats.lastSync.Load()),
		MaxSync:         time.Duration(s.stats.maxSync.Load()),
		GCRuns:          s.stats.gcRuns.Load(),
		GCRewrites:      s.stats.gcRewrites.Load(),
		Checkpoints:     s.stats.checkpoints.Load(),
		CommitHistogram: make([]uint64, len(s.stats.hist)),
	}
	if st.Commits > 0 {
		st.AvgCommit = time.Duration(s.stats.commitNanos.Load() / int64(st.Commits))
	}
	for i := range s.stats.hist {
		st.CommitHistogram[i] = s.stats.hist[i].Load()
	}
	st.SizeHistogram = make([]uint64, len(s.stats.sizes))
	for i := range s.stats.sizes {
		st.SizeHistogram[i] = s.stats.sizes[i].Load()
	}
	st.SyncNanos = s.stats.syncNanos.Load()
	st.SyncHistogram = make([]uint64, len(s.stats.syncHist))
	for i := range s.stats.syncHist {
		st.SyncHistogram[i] = s.stats.syncHist[i].Load()
	}
	s.readMu.RLock()
	if !s.dbClosed {
		st.LSMBytes, st.VlogBytes = s.db.Size()
	}
	s.readMu.RUnlock()
	return st
}
