package persist

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/rs/zerolog"
)

// FormatVersion is the on-disk format this build writes. Format 2 added MQTT 5: record version 2
// of sessions, subscriptions, retained messages, queue entries and bodies, and the will family.
// Format 3 added record version 2 of in-flight states, which name the shared subscription member
// holding a group's entry: a build of format 2 would refuse them as corrupt, so it must refuse
// the store first. Format 4 added a queued message's arrival time to queue entries and bodies
// (flag mfArrived), which a build of format 3 would refuse as an unknown flag.
const FormatVersion uint32 = 4

// oldestFormat is the oldest format this build reads. Its records are read as they are, so Open
// migrates such a store by checking every record and writing the new format version.
const oldestFormat uint32 = 1

// slowThreshold: commits and syncs slower than this are logged at warn.
const slowThreshold = time.Second

// Store is the persistent store. All writes go through one writer goroutine
// (see Submit); reads (ReadQueue, Stats) may run on any goroutine.
type Store struct {
	opt Options
	db  *badger.DB
	log zerolog.Logger

	// mu guards closed. Submit holds it (read) only to check closed and to
	// register in senders, never while blocked on the channel.
	mu      sync.RWMutex
	closed  bool
	senders sync.WaitGroup
	reqCh   chan *Batch

	// completeMu makes completions one at a time, from the writer and the syncer alike: the
	// failure check and the callback of one batch happen together, so no batch is told of
	// success after another was told of a failure.
	completeMu sync.Mutex

	wal        *wal    // nil in None mode
	sync       *syncer // Sync mode only
	w          *writer
	writerDone chan struct{}

	stopBg chan struct{} // closes GC and async-sync goroutines
	bgWG   sync.WaitGroup

	// readMu keeps db.Close from running under a reader.
	readMu   sync.RWMutex
	dbClosed bool

	closeOnce sync.Once
	closeErr  error

	failOnce sync.Once
	failed   chan struct{} // closed at the first storage error
	failErr  error         // that error, set before failed is closed
	// diskFailed: a failure that is not a soundError (a failed Replicate, a damaged snapshot
	// stream), the first or a later one: Badger's state is in doubt, so nothing more goes to it.
	diskFailed atomic.Bool

	applied atomic.Uint64 // cluster mode: AppliedIndex

	stats stats
	space space

	// openSnap is the read transaction Open took before any write, which CountQueues counts
	// from; bound is the sequence counter then.
	snapMu   sync.Mutex
	openSnap *badger.Txn
	bound    uint64
}

// Open opens (creating if needed) the store, checks the on-disk format version,
// rebuilds the sequence counter and shared-body reference counts, and starts
// the writer, the value-log GC and (Async) the sync ticker.
func Open(o Options) (*Store, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	log := o.Logger.With().Str("component", "persist").Logger()

	// Values up to the threshold live in the LSM tree, larger ones in the
	// value log. Badger's default is 1 MB, but it must not exceed what one
	// transaction holds (15% of a memtable).
	threshold := min(int64(1<<20), o.MemTableSize*15/100/4)
	bo := badger.DefaultOptions(o.Dir).
		WithValueThreshold(threshold).
		WithSyncWrites(false). // the write-ahead log (wal.go) makes commits durable

		WithInMemory(o.Durability == None).
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(o.NumMemtables).
		WithBlockCacheSize(o.BlockCacheSize).
		WithIndexCacheSize(o.IndexCacheSize).
		WithValueLogFileSize(o.ValueLogFileSize).
		// A damaged value-log entry is an error rather than a changed value; it costs a CRC-32C
		// of each value read from the value log, only values over the threshold.
		WithVerifyValueChecksum(true).
		WithLogger(badgerLogger{log.With().Str("lib", "badger").Logger()})
	if o.BlockCacheSize == 0 {
		// Badger requires a block cache for compressed tables (it panics
		// otherwise); without a cache, store tables uncompressed.
		bo = bo.WithCompression(options.None)
	} else {
		// A damaged table block is an error rather than a changed value. Checked as a block is
		// loaded into the cache, so once per load; without a cache it would be at every read.
		bo = bo.WithChecksumVerificationMode(options.OnBlockRead)
	}
	if o.Durability == None {
		bo = bo.WithDir("").WithValueDir("")
	} else if err := makeDataDir(o.Dir); err != nil {
		return nil, err
	} else if err := checkBadgerLogsLocked(o.Dir); err != nil {
		return nil, err
	} else if o.Replicator == nil {
		if err := checkNotReplacing(o.Dir); err != nil {
			return nil, err
		}
	}
	opening := time.Now()
	db, err := badger.Open(bo)
	badgerOpen := time.Since(opening)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, newError(ErrLocked, nil, "data directory %s is in use by another holdfast process", o.Dir)
		}
		return nil, fmt.Errorf("persist: open %s: %w", o.Dir, err)
	}
	s := &Store{
		opt:        o,
		db:         db,
		log:        log,
		reqCh:      make(chan *Batch, o.MaxPending),
		writerDone: make(chan struct{}),
		stopBg:     make(chan struct{}),
		failed:     make(chan struct{}),
		space:      space{dir: o.Dir, min: o.MinFreeBytes},
	}
	s.stats.init()
	var replay time.Duration // replaying the write-ahead log, with its checkpoint
	if o.Replicator != nil {
		start := time.Now()
		err := s.openCluster()
		replay = time.Since(start)
		if err != nil {
			_ = db.Close()
			return nil, err
		}
	} else if o.Durability != None {
		if s.wal, err = openWAL(o.Dir); err != nil {
			_ = db.Close()
			return nil, err
		}
		if o.checkpointBytes > 0 {
			s.wal.checkpointAt = o.checkpointBytes
		}
		// Exactly 0600 whatever the umask did at creation or a copy of the directory did since.
		if err := s.wal.f.Chmod(0o600); err != nil {
			s.wal.close()
			_ = db.Close()
			return nil, fmt.Errorf("persist: write-ahead log: %w", err)
		}
		start := time.Now()
		n, err := replayWAL(db, s.wal, o.Dir)
		replay = time.Since(start)
		if err != nil {
			s.wal.close()
			_ = db.Close()
			return nil, err
		}
		s.stats.checkpoints.Add(1) // replay ends with one
		if n > 0 {
			log.Info().Int("records", n).Dur("took", time.Since(start)).Msg("replayed the write-ahead log")
		}
	}
	if err := s.checkSchema(); err != nil {
		s.closeWAL()
		_ = db.Close()
		return nil, err
	}
	if err := s.readApplied(); err != nil {
		s.closeWAL()
		_ = db.Close()
		return nil, err
	}
	start := time.Now()
	snap := db.NewTransaction(false)
	idx, err := loadIndex(snap)
	if err != nil {
		snap.Discard()
		s.closeWAL()
		_ = db.Close()
		return nil, err
	}
	s.openSnap, s.bound = snap, idx.nextSeq
	s.w = newWriter(s, idx, threshold)
	if o.Durability == Sync {
		s.sync = newSyncer(s)
		go s.sync.run()
	}
	go s.w.run()
	if o.Durability == Async {
		s.bgWG.Add(1)
		go s.syncLoop()
	}
	if o.Durability != None && o.GCInterval > 0 {
		s.bgWG.Add(1)
		go s.gcLoop()
	}
	// What Badger runs with, as it reports it.
	bo = db.Opts()
	ev := log.Info().
		Str("dir", o.Dir).
		Stringer("durability", o.Durability).
		Int64("memory_bytes", o.MemoryBudget()).
		Int64("memtable_bytes", bo.MemTableSize).
		Int("memtables", bo.NumMemtables).
		Int64("block_cache_bytes", bo.BlockCacheSize).
		Int64("index_cache_bytes", bo.IndexCacheSize).
		Int64("value_log_file_bytes", bo.ValueLogFileSize).
		Int64("value_threshold_bytes", bo.ValueThreshold).
		Uint64("next_seq", idx.nextSeq).
		Int("shared_bodies", len(idx.bodies)).
		Dur("badger_open", badgerOpen).
		Dur("replay", replay).
		Dur("index_scan", time.Since(start)).
		Dur("took", time.Since(opening))
	if o.IndexCacheSize == 0 {
		ev = ev.Bool("index_memory_unbounded", true)
	}
	if o.Durability == Async {
		ev = ev.Dur("async_interval", o.AsyncInterval)
	}
	if o.Replicator != nil {
		ev = ev.Bool("cluster", true).Uint64("raft_applied", s.applied.Load())
	}
	if o.GCInterval > 0 && o.Durability != None {
		ev = ev.Dur("gc_interval", o.GCInterval).Float64("gc_discard_ratio", o.GCDiscardRatio)
	}
	ev.Msg("store opened")
	return s, nil
}

// checkBadgerLogsLocked is checkManifest and checkBadgerLogs under the directory's lock, so that
// it does not read the files of a broker running on dir, which Badger's open then refuses.
func checkBadgerLogsLocked(dir string) error {
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := checkManifest(dir); err != nil {
		return err
	}
	return checkBadgerLogs(dir)
}

// makeDataDir creates dir, with any missing parents, mode 0700 whatever the umask. An
// existing directory keeps its mode: it is the operator's, and serve warns when other users
// may enter it. Badger creates its own files in it (LOCK, value-log, memtable and table files)
// with mode 0666 less the umask, 0644 with the usual 022, and keeps creating them as it runs;
// what keeps them private is the 0700 directory, since no one opens a file through a
// directory they may not search. holdfast's own file there, the write-ahead log, is 0600.
func makeDataDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("persist: data directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("persist: create data directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("persist: create data directory: %w", err)
	}
	return syncDir(filepath.Dir(dir)) // the new directory's name is durable before anything goes in it
}

// checkSchema reads 0x00 "schema": absent on an empty store -> write
// FormatVersion; older -> migrate; absent next to other keys, newer, or older
// than oldestFormat -> ErrVersion.
func (s *Store) checkSchema() error {
	var (
		format  uint32
		writer  string
		found   bool
		nonMeta bool
	)
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(schemaKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			it := txn.NewIterator(badger.IteratorOptions{})
			defer it.Close()
			it.Rewind()
			nonMeta = it.Valid()
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return item.Value(func(v []byte) error {
			format, writer, err = decodeSchema(v)
			return err
		})
	})
	switch {
	case err != nil:
		return fmt.Errorf("persist: read format version in %s: %w", s.opt.Dir, err)
	case !found && nonMeta:
		return newError(ErrVersion, nil, "data directory %s holds data but no format version (not a holdfast store?)", s.opt.Dir)
	case !found:
		if err := s.writeSchema(); err != nil {
			return err
		}
		s.log.Info().Uint32("format", FormatVersion).Msg("initialised new store")
		return nil
	case format > FormatVersion:
		return newError(ErrVersion, nil, "data directory %s has format version %d (written by %q); this build reads version %d",
			s.opt.Dir, format, writer, FormatVersion)
	case format < oldestFormat:
		return newError(ErrVersion, nil, "data directory %s has format version %d; this build reads versions %d to %d",
			s.opt.Dir, format, oldestFormat, FormatVersion)
	case format < FormatVersion:
		return s.migrate(format, writer)
	}
	return nil
}

// migrate makes a store of an older format (from oldestFormat on) one of FormatVersion: after
// checking that every record decodes, it writes the new version; the records stay as they are.
// A store with a record that does not decode is refused (ErrCorrupt) and left at its format.
func (s *Store) migrate(from uint32, writer string) error {
	start := time.Now()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Seek([]byte{famMeta + 1}); it.Valid(); it.Next() {
			item := it.Item()
			if err := item.Value(func(v []byte) error { return checkRecord(item.Key(), v) }); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("persist: migrate %s from format version %d: %w", s.opt.Dir, from, err)
	}
	if err := s.writeSchema(); err != nil {
		return err
	}
	s.log.Info().Uint32("from", from).Str("from_writer", writer).Uint32("format", FormatVersion).Int("records", n).
		Dur("took", time.Since(start)).Msg("migrated the store to a new format version")
	return nil
}

// writeSchema writes FormatVersion with this build's writer version.
func (s *Store) writeSchema() error {
	v := encodeSchema(FormatVersion, s.opt.WriterVersion)
	if s.wal != nil {
		// Through the write-ahead log like everything else, before anything else: Badger's
		// copy is not synced until the first checkpoint, and a power cut before it would
		// leave the log's records replayed into a store without a format version (or, after
		// a migration, with the old one under records of the new).
		if err := s.wal.appendSynced([][]rec{{{key: schemaKey, val: v}}}); err != nil {
			return fmt.Errorf("persist: write format version in %s: %w", s.opt.Dir, err)
		}
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(schemaKey, v) }); err != nil {
		return fmt.Errorf("persist: write format version in %s: %w", s.opt.Dir, err)
	}
	if s.opt.Replicator != nil {
		// Cluster mode has no log: each node writes its own, durable at once. (Not replicated:
		// every node's store has one before it applies anything.)
		if err := s.wal.checkpoint(s.db); err != nil {
			return fmt.Errorf("persist: write format version in %s: %w", s.opt.Dir, err)
		}
	}
	return nil
}

// index is what Open rebuilds from keys alone: the sequence counter, the shared bodies and the
// client ids with a session record.
type index struct {
	nextSeq  uint64
	bodies   map[uint64]int32 // every shared body, with 0: references not counted (see writer.old)
	sessions map[string]struct{}
}

// loadIndex reads the keys (no values) of txn that Open needs: the session records, the shared
// bodies, and the highest seq of each client's queue (its last key; one seek to it and one past
// it per client, not a read of every entry). The queue entries' references to the bodies are
// counted later (CountQueues, or Recover).
func loadIndex(txn *badger.Txn) (index, error) {
	idx := index{bodies: make(map[uint64]int32), sessions: make(map[string]struct{})}
	var maxSeq uint64
	err := func() error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famSession}})
		for it.Rewind(); it.Valid(); it.Next() {
			cid, _, ok := splitCID(it.Item().Key())
			if !ok {
				k := it.Item().KeyCopy(nil)
				it.Close()
				return corruptf(k, "malformed key")
			}
			idx.sessions[cid] = struct{}{}
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famBody}})
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 9 {
				it.Close()
				return corruptf(k, "malformed key")
			}
			seq := seqOfKey(k)
			idx.bodies[seq] = 0
			maxSeq = max(maxSeq, seq)
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famQueue}})
		defer it.Close()
		last := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famQueue}, Reverse: true})
		defer last.Close()
		for it.Rewind(); it.Valid(); {
			k := it.Item().Key()
			if _, _, err := parseSeqKey(k); err != nil {
				return err
			}
			// Past every seq of this client: its last key is the highest at or before it.
			end := append(bytes.Clone(k[:len(k)-8]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
			last.Seek(end)
			_, seq, err := parseSeqKey(last.Item().Key())
			if err != nil {
				return err
			}
			maxSeq = max(maxSeq, seq)
			it.Seek(append(end, 0))
		}
		return nil
	}()
	if err != nil {
		return idx, err
	}
	if maxSeq == math.MaxUint64 {
		return idx, corruptf(queueKey("", maxSeq), "sequence numbers exhausted")
	}
	idx.nextSeq = maxSeq + 1
	return idx, nil
}

// fail puts the store in its failed state after a storage error: every batch from now on
// completes with ErrFailed, and Failed is closed so that the owner stops the process.
func (s *Store) fail(err error) {
	_, sound := errors.AsType[*soundError](err)
	if !sound {
		s.diskFailed.Store(true)
	}
	s.failOnce.Do(func() {
		s.failErr = err
		ev := s.log.Error().Err(err).Str("dir", s.opt.Dir)
		if s.wal != nil {
			ev = ev.Str("wal", filepath.Join(s.opt.Dir, walName))
		}
		if sound {
			ev.Msg("the store acknowledges nothing more (fail-stop); its data is sound")
		} else {
			ev.Msg("storage error: the store writes and acknowledges nothing more (fail-stop)")
		}
		close(s.failed)
	})
}

// Failed is closed at the first storage error (see ErrFailed); Err then returns it. The broker
// must stop: what is on disk is all that the store vouches for. (In cluster mode a failed
// Replicate or a damaged snapshot stream fails the store too, but Close then closes Badger, and
// the node may open the store again.)
func (s *Store) Failed() <-chan struct{} { return s.failed }

// Err returns the storage error that failed the store, or nil.
func (s *Store) Err() error {
	select {
	case <-s.failed:
		return s.failErr
	default:
		return nil
	}
}

// failedErr wraps the first storage error for the callbacks of later batches.
func (s *Store) failedErr() error {
	return fmt.Errorf("%w: %w", ErrFailed, s.failErr)
}

// Submit hands b to the writer and returns at once, blocking only while the
// request channel (Options.MaxPending) is full. The writer packs every waiting
// request into one Badger transaction and one write-ahead log record, commits
// it once, and each request's done is called in submission order (see the
// package documentation for the whole path):
//
//   - Sync: on the syncer goroutine, after the log record is fdatasynced;
//     Async: on the writer goroutine, after the commit (the fdatasync follows
//     within AsyncInterval); None: on the writer goroutine, after the
//     in-memory commit.
//   - seq is the sequence number assigned to b's Enqueue (0 if none or on error).
//   - An empty Batch (or nil) is legal: it completes after everything
//     submitted before it, an ordering barrier.
//   - A Batch is atomic whatever its size. One that does not fit into a
//     Badger transaction even alone is written to the write-ahead log as
//     one record, synced, and only then applied to Badger over several
//     transactions; after a crash in between, replay applies the rest. It
//     costs one more fdatasync and holds its entries in memory meanwhile.
//   - After Close, done is called at once, on the caller's goroutine, with
//     ErrClosed.
//
// done may be nil. done must not block, and must not call Submit or Commit (the
// writer would wait for itself when the channel is full; the syncer would wait
// for itself in Commit and hold back every later callback); hand such work to
// another goroutine. Do not touch b after Submit.
func (s *Store) Submit(b *Batch, done func(seq uint64, err error)) {
	if b == nil {
		b = &Batch{}
	}
	if b.submitted {
		panic("persist: Batch submitted twice")
	}
	b.submitted = true
	b.done = done
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		if done != nil {
			done(0, ErrClosed)
		}
		return
	}
	if s.Err() != nil {
		s.mu.RUnlock()
		if done != nil {
			s.completeMu.Lock() // after the completions that were already under way (completeAll)
			done(0, s.failedErr())
			s.completeMu.Unlock()
		}
		return
	}
	s.senders.Add(1)
	s.mu.RUnlock()
	s.reqCh <- b
	s.senders.Done()
}

// Commit is Submit and wait: it returns the Enqueue's sequence number (0 if
// none) once b is durable per the durability mode.
func (s *Store) Commit(b *Batch) (uint64, error) {
	type result struct {
		seq uint64
		err error
	}
	ch := make(chan result, 1)
	s.Submit(b, func(seq uint64, err error) { ch <- result{seq, err} })
	r := <-ch
	return r.seq, r.err
}

// control runs fn on the writer goroutine, in order with submitted batches,
// after everything before it has committed.
func (s *Store) control(fn func(w *writer) error) error {
	b := &Batch{ctl: fn}
	_, err := s.Commit(b)
	return err
}

// Close stops the value-log GC, lets the writer finish every submitted request
// (their callbacks run), syncs, and closes Badger. It is idempotent; later calls
// return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopBg)
		s.bgWG.Wait()

		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.senders.Wait() // every registered Submit has handed over its batch
		close(s.reqCh)
		<-s.writerDone
		if s.sync != nil {
			close(s.sync.stop)
			<-s.sync.done
		}

		if s.wal != nil && s.Err() == nil {
			// Everything is in Badger: make it durable there and leave an empty log behind.
			err := s.wal.checkpoint(s.db)
			if err == nil {
				err = s.wal.reset()
			}
			if err != nil {
				s.fail(err) // a storage error like any other
			} else {
				s.stats.checkpoints.Add(1)
			}
		}
		s.closeWAL()
		if err := s.Err(); err != nil {
			s.closeErr = s.failedErr()
			if s.diskFailed.Load() {
				// Failed: nothing more goes to this disk. Badger's Close would flush its
				// memtables there and retry a failed flush for ever; the process exits instead,
				// which releases the directory lock, and the next start recovers from the log
				// and Badger's files.
				return
			}
			// Badger is sound (cluster mode: a Replicate failed as this node lost its leadership,
			// or a snapshot stream was damaged): it is closed, so that the node can open the store
			// again.
		}
		s.dropOpenSnapshot()
		s.readMu.Lock()
		s.dbClosed = true
		if err := s.db.Close(); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("persist: close %s: %w", s.opt.Dir, err)
		}
		s.readMu.Unlock()
		s.log.Info().Err(s.closeErr).Msg("store closed")
	})
	return s.closeErr
}

// closeWAL closes the write-ahead log file, if any.
func (s *Store) closeWAL() {
	if s.wal != nil {
		s.wal.close()
	}
}

// syncLoop fsyncs the write-ahead log every AsyncInterval (Async mode).
func (s *Store) syncLoop() {
	defer s.bgWG.Done()
	t := time.NewTicker(s.opt.AsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopBg:
			return
		case <-s.failed: // a sync after a failure proves nothing
			return
		case <-t.C:
		}
		start := time.Now()
		err := s.wal.sync()
		d := time.Since(start)
		s.stats.recordSync(d)
		if err != nil {
			s.fail(err)
		} else if d > slowThreshold {
			s.log.Warn().Dur("took", d).Msg("slow fdatasync of the write-ahead log")
		}
	}
}

// gcLoop runs the value-log GC every GCInterval, repeating while Badger finds
// a file worth rewriting.
func (s *Store) gcLoop() {
	defer s.bgWG.Done()
	t := time.NewTicker(s.opt.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopBg:
			return
		case <-s.failed: // nothing more goes to the disk, value-log rewrites included
			return
		case <-t.C:
		}
		start := time.Now()
		s.stats.gcRuns.Add(1)
		n := 0
		for {
			select {
			case <-s.stopBg:
				return
			case <-s.failed:
				return
			default:
			}
			err := s.runGC()
			if err == nil {
				n++
				s.stats.gcRewrites.Add(1)
				continue
			}
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn().Err(err).Msg("value-log GC failed")
			}
			break
		}
		if n > 0 {
			s.log.Debug().Int("files_rewritten", n).Dur("took", time.Since(start)).Msg("value-log GC")
		}
	}
}

// runGC runs one RunValueLogGC. Badger moves the live values of the file it rewrites into the
// current value log and memtable, without syncing them (SyncWrites is off), and then deletes the
// file at once, unless an iterator is open: then only when the last one closes. A power cut after
// the deletion would lose the moved values (the synced LSM tree still points into the deleted
// file), so an iterator holds the file until a checkpoint has made the moved values durable. A
// failed checkpoint fails the store and keeps the iterator open: the file stays on disk.
func (s *Store) runGC() error {
	s.readMu.RLock() // Replace's DropAll waits
	defer s.readMu.RUnlock()
	txn := s.db.NewTransaction(false)
	it := txn.NewIterator(badger.IteratorOptions{})
	err := s.db.RunValueLogGC(s.opt.GCDiscardRatio)
	if err == nil {
		if cerr := s.wal.checkpoint(s.db); cerr != nil {
			s.fail(cerr)
			return cerr
		}
	}
	it.Close()
	txn.Discard()
	return err
}

// badgerLogger adapts Badger's logger to zerolog; Badger's info lines are
// chatter, logged at debug.
type badgerLogger struct{ l zerolog.Logger }

func trimMsg(format string, args []any) string {
	return strings.TrimRight(fmt.Sprintf(format, args...), "\n")
}

// emit formats only when the level is enabled: Badger logs at debug on every
// write.
func emit(e *zerolog.Event, f string, a []any) {
	if e.Enabled() {
		e.Msg(trimMsg(f, a))
	}
}

func (b badgerLogger) Errorf(f string, a ...any)   { emit(b.l.Error(), f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { emit(b.l.Warn(), f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { emit(b.l.Debug(), f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { emit(b.l.Debug(), f, a) }

// Durability is the mode the store was opened with.
func (s *Store) Durability() Durability { return s.opt.Durability }
