package persist

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// errTxnFull: the current request does not fit into a transaction that already
// holds other requests' entries; commit those, then rerun the request alone.
var errTxnFull = errors.New("transaction full")

// deleteChunk is how many keys DeleteSession collects per iterator before
// deleting them (an iterator must be closed before the txn takes more writes).
const deleteChunk = 4096

// testHookSpillPart, set by tests, runs after each Badger transaction but the last of a request
// applied in parts: where a crash leaves part of it in Badger and all of it in the log.
var testHookSpillPart func()

// writer is the single goroutine that writes to Badger. Every field is owned
// by that goroutine (Recover runs on it too, as a control request).
type writer struct {
	s        *Store
	db       *badger.DB
	maxOps   int
	maxBytes int64
	maxValue int

	nextSeq uint64
	// Client ids with a session record (Enqueue skips the others), kept like the reference
	// counts: known is what is committed, txnKnown and reqKnown the changes (true = record put,
	// false = deleted) of the open transaction and of the request being applied.
	known    map[string]struct{}
	txnKnown map[string]bool
	reqKnown map[string]bool

	// Shared-body reference counts: refs is what is committed; txnDelta the
	// changes of requests applied to the open transaction; reqDelta those of
	// the request being applied. count(seq) = refs + txnDelta + reqDelta.
	refs     map[uint64]int32
	txnDelta map[uint64]int32
	reqDelta map[uint64]int32
	// Whether the queue entries of shared bodies exist, as written by the request being
	// applied (reqShared), the other requests of the open transaction (txnShared) and the
	// group commits handed to the syncer that the open transaction may not see (handedShared,
	// oldest first): Ack asks (has) for every entry of a shared body, and answering from
	// Badger alone would make it wait for the syncer to land every group commit first, so
	// that writing the next group no longer overlapped the sync (fan-out to many persistent
	// sessions). Only entries of shared bodies are kept: no one asks about the others.
	reqShared    map[string]bool
	txnShared    map[string]bool
	handedShared []handedKeys

	// old holds the bodies that were on disk at Open until their references are counted
	// (settleOld): the references dropped since, as a negative number. nil once counted.
	old map[uint64]int32

	txn        *badger.Txn
	txnEntries int      // entries in txn, all requests
	pending    []*Batch // requests applied (or failed) in txn, in order, waiting for its commit
	cur        *Batch   // request being applied

	// spill holds the writes (key -> deleted) of a request too big for one transaction, from the
	// moment it outgrew one: its entries then only pass through throw-away transactions that
	// measure them, and reach Badger once the log holds them all (commitSpill). Reads of the
	// request's own writes come from here. nil otherwise.
	spill map[string]bool

	// Sync mode: a group commit's transaction goes to the syncer with its requests, and the syncer
	// commits it to Badger after the fdatasync of its record (landAfterSync). handed counts the
	// transactions handed over, synced those whose record the syncer has synced, landed those it
	// is done with (committed, or discarded after a failure). The next group commit is handed
	// over once synced reaches handed (process); what reads the store waits for landed to reach
	// it (snapshot), and so do a control request, a spill and a checkpoint (waitLanded).
	handed   uint64
	synced   atomic.Uint64
	landed   atomic.Uint64
	landedCh chan struct{} // one slot: synced or landed moved
	txnSees  uint64        // landed when the open transaction began

	replays int  // requests rerun in a fresh transaction (for tests)
	spilled bool // cluster mode: a spill was replicated (Replace refuses the store)
}

// handedKeys is what one group commit handed to the syncer wrote of shared bodies' entries.
type handedKeys struct {
	group  uint64 // its number: writer.handed once it was handed
	exists map[string]bool
}

func newWriter(s *Store, idx index, valueThreshold int64) *writer {
	w := &writer{
		s:        s,
		db:       s.db,
		maxOps:   s.opt.MaxBatchOps,
		maxBytes: s.opt.MaxBatchBytes,
		maxValue: int(s.opt.ValueLogFileSize),
		nextSeq:  idx.nextSeq,
		known:    idx.sessions,
		txnKnown: make(map[string]bool),
		reqKnown: make(map[string]bool),
		refs:     make(map[uint64]int32),
		old:      idx.bodies,
		txnDelta: make(map[uint64]int32),
		reqDelta: make(map[uint64]int32),
		landedCh: make(chan struct{}, 1),

		reqShared: make(map[string]bool),
		txnShared: make(map[string]bool),
	}
	if s.opt.Durability == None {
		w.maxValue = int(valueThreshold) // memory mode: values must fit the LSM tree
	}
	return w
}

func (w *writer) run() {
	defer close(w.s.writerDone)
	var reqs []*Batch
	for {
		b, ok := w.next()
		if !ok {
			w.commit()
			return
		}
		reqs = append(reqs[:0], b)
		entries, size := b.entries, b.bytes
	drain:
		for entries < w.maxOps && size < w.maxBytes {
			select {
			case b, ok := <-w.s.reqCh:
				if !ok {
					break drain // closed; the outer receive sees it again
				}
				reqs = append(reqs, b)
				entries += b.entries
				size += b.bytes
			default:
				break drain
			}
		}
		w.process(reqs)
		clear(reqs)
	}
}

// next receives the next request. While a group commit is open (in Sync mode it stays open while
// the syncer syncs the one before, see process), it hands it over as soon as that sync is done.
func (w *writer) next() (*Batch, bool) {
	for len(w.pending) > 0 {
		select {
		case b, ok := <-w.s.reqCh:
			return b, ok
		case <-w.landedCh:
			if w.synced.Load() == w.handed {
				w.commit()
			}
		}
	}
	b, ok := <-w.s.reqCh
	return b, ok
}

// process applies reqs in order to as few transactions as possible and
// completes them in order.
func (w *writer) process(reqs []*Batch) {
	if w.s.Err() != nil {
		w.commit() // the open group commit first; nothing is written after a failure
		for _, b := range reqs {
			b.applied, b.result = nil, w.s.failedErr()
		}
		w.handOff(reqs) // after the batches before them
		return
	}
	for i := 0; i < len(reqs); {
		b := reqs[i]
		if b.ctl != nil {
			w.commit()
			w.waitLanded()
			b.result = b.ctl(w)
			w.handOff([]*Batch{b})
			i++
			continue
		}
		err := w.apply(b)
		switch {
		case err == nil:
			for seq, d := range w.reqDelta {
				w.txnDelta[seq] += d
			}
			clear(w.reqDelta)
			for k, exists := range w.reqShared {
				w.txnShared[k] = exists
			}
			clear(w.reqShared)
			for cid, put := range w.reqKnown {
				w.txnKnown[cid] = put
			}
			clear(w.reqKnown)
			w.pending = append(w.pending, b)
			i++
			if b.onApplied != nil {
				b.onApplied(b.seq)
			}
			if w.spill != nil {
				// b is in no transaction: commit it before the next request reads the store.
				w.commit()
			}
		case errors.Is(err, errTxnFull):
			// Commit the others, then rerun b in an empty transaction.
			w.replays++
			w.discardAndReplay()
			w.commit()
		default:
			if len(b.applied) > 0 {
				// Part of b is in the transaction or the spill: drop it, keep the others.
				w.discardAndReplay()
			}
			clear(w.reqDelta)
			clear(w.reqKnown)
			clear(w.reqShared)
			b.applied = nil
			b.result = err
			w.pending = append(w.pending, b)
			i++
		}
	}
	// In Sync mode the group commit stays open while the syncer syncs the one before, and takes
	// the requests that arrive meanwhile (next): handed over now, it would only wait, and each
	// group commit costs the syncer a Badger commit in its round. It is handed over as soon as
	// that sync is done, while the syncer commits to Badger and calls back, so that it is there
	// for the syncer's next round (handed over once those are done too, the next round waited for
	// the writer: the load tool's offline enqueue ran at 0.83x).
	if w.s.sync == nil || w.synced.Load() == w.handed || w.txnEntries >= w.maxOps {
		w.commit()
	}
}

// begin opens the transaction if none is open.
func (w *writer) begin() {
	if w.txn == nil {
		sees := w.landed.Load() // before the transaction takes its snapshot
		w.txn = w.db.NewTransaction(true)
		w.txnEntries, w.txnSees = 0, sees
	}
}

// waitLanded waits until the syncer has committed to Badger (or, after a failure, discarded)
// every transaction handed to it.
func (w *writer) waitLanded() {
	for w.landed.Load() < w.handed {
		<-w.landedCh
	}
}

// snapshot makes the open transaction see every group commit before it, for a read: if it began
// before the syncer committed them all to Badger, it waits for them and rebuilds the transaction
// from the entries applied to it (a spill's throw-away transaction only measures entries: the
// spill answers for its own writes).
func (w *writer) snapshot() error {
	w.begin()
	if w.txnSees == w.handed {
		return nil
	}
	w.waitLanded()
	if w.spill != nil {
		w.txn.Discard()
		w.txn = nil
		w.begin()
		return nil
	}
	w.discardAndReplay()
	for _, r := range w.cur.applied {
		if err := put(w.txn, r.key, r.val, r.del); err != nil {
			return fmt.Errorf("persist: replay: %w", err) // cannot happen: the same entries fitted before
		}
		w.txnEntries++
	}
	return nil
}

// commit commits the open transaction (or the spilled request) if it holds entries, and
// completes the pending requests in order. It returns the commit error.
func (w *writer) commit() error {
	var err error
	handed := false
	if entries := w.entries(); entries > 0 && w.s.Err() == nil {
		start := time.Now()
		switch {
		case w.spill != nil:
			err = w.commitSpill()
		case w.s.sync != nil:
			if w.s.opt.Replicator != nil {
				// Replicated by the syncer instead of appended to the log.
				w.pending[0].payload = appendPayload(nil, w.records())
			} else {
				err = w.append()
			}
			if err == nil {
				w.landAfterSync(start, entries)
				handed = true
			}
		default:
			err = w.commitTxn()
		}
		if !handed {
			w.s.noteCommit(start, entries, len(w.pending))
		}
		if err != nil {
			w.s.fail(err)
			err = w.s.failedErr()
		}
	} else if w.txn != nil {
		w.txn.Discard()
	}
	w.txn, w.txnEntries, w.spill = nil, 0, nil
	if err == nil {
		for seq, d := range w.txnDelta {
			w.addRef(seq, d)
		}
		w.settleKnown(w.txnKnown)
	}
	clear(w.txnDelta)
	clear(w.txnKnown)
	switch {
	case len(w.txnShared) == 0:
	case handed:
		// Badger gets it when the syncer lands it: until the open transaction sees it, has
		// answers from here.
		w.handedShared = append(w.handedShared, handedKeys{group: w.handed, exists: w.txnShared})
		w.txnShared = make(map[string]bool)
	default:
		clear(w.txnShared) // in Badger already (or failed: nothing is written after a failure)
	}
	for _, b := range w.pending {
		if b.result == nil && err != nil {
			b.result = fmt.Errorf("persist: commit: %w", err)
		}
	}
	w.handOff(w.pending)
	clear(w.pending)
	w.pending = w.pending[:0]
	if handed && w.s.wal != nil && w.s.wal.size() > w.s.wal.checkpointAt {
		// The group is acknowledged once the syncer has committed it: a checkpoint that fails now
		// fails the batches after it.
		w.waitLanded()
		if err := w.checkpointIfDue(); err != nil {
			w.s.fail(err)
		}
	}
	return err
}

// noteCommit records a group commit's duration, from its append to the log to its commit to
// Badger.
func (s *Store) noteCommit(start time.Time, entries, requests int) {
	d := time.Since(start)
	s.stats.recordCommit(d, entries)
	if d > slowThreshold {
		s.log.Warn().Dur("took", d).Int("entries", entries).Int("requests", requests).Msg("slow commit")
	}
}

// entries counts the entries the next commit writes.
func (w *writer) entries() int {
	if w.spill == nil {
		return w.txnEntries
	}
	n := 0
	for _, rs := range w.records() {
		n += len(rs)
	}
	return n
}

// records are the entries of the pending requests that succeeded, in order: what one commit
// writes, as one write-ahead log record.
func (w *writer) records() [][]rec {
	recs := make([][]rec, 0, len(w.pending))
	for _, b := range w.pending {
		if b.result == nil {
			recs = append(recs, b.applied)
		}
	}
	return recs
}

// handOff completes committed requests: in Sync mode through the syncer, once the write-ahead
// log holding them is fdatasynced; otherwise at once. Either way in order.
func (w *writer) handOff(bs []*Batch) {
	if w.s.sync == nil {
		w.s.completeAll(bs)
		return
	}
	w.s.sync.push(bs)
}

// append appends the open transaction's entries to the write-ahead log as one record (not
// synced), discarding the transaction if that fails.
func (w *writer) append() error {
	if err := w.s.wal.append(w.records()); err != nil {
		w.txn.Discard()
		return err
	}
	return nil
}

// landAfterSync hands the open transaction, appended to the log, to the syncer with the group
// commit's requests (Sync mode), and the writer goes on with the next group commit. Badger must
// never hold a batch whose record is not durable: its memtable file is mapped, the kernel writes
// its pages back when it likes, and after a power cut that kept a batch there but not in the log,
// replaying the epoch's older records would put back the keys they share with it and leave the
// rest. So the transaction is committed by the first request's callback, which the syncer calls
// after the fdatasync of the record and before the others' callbacks, in order with the other
// group commits; after a failure it is discarded.
func (w *writer) landAfterSync(start time.Time, entries int) {
	s, txn, b, requests := w.s, w.txn, w.pending[0], len(w.pending)
	done := b.done
	w.handed++
	b.done = func(seq uint64, err error) {
		w.synced.Add(1)
		w.signal()
		if s.opt.Replicator != nil {
			// Cluster mode: ApplyReplicated wrote the entries into Badger before Replicate
			// returned; the transaction only answered the writer's reads of its own writes.
			txn.Discard()
			if s.Err() == nil {
				s.noteCommit(start, entries, requests)
			}
		} else if s.Err() == nil {
			cerr := s.wal.failpoint(stepCommit)
			if cerr == nil {
				cerr = txn.Commit()
			} else {
				txn.Discard()
			}
			s.noteCommit(start, entries, requests)
			if cerr != nil {
				s.fail(cerr)
			}
		} else {
			txn.Discard()
		}
		// The store may have failed during the commit: no success after a failure.
		if err == nil && s.Err() != nil {
			s.stats.failed.Add(1) // complete counted it as done
			seq, err = 0, s.failedErr()
		}
		w.landed.Add(1)
		w.signal()
		if done != nil {
			done(seq, err)
		}
	}
}

// signal wakes the writer if it waits for the syncer (next, waitLanded).
func (w *writer) signal() {
	select {
	case w.landedCh <- struct{}{}:
	default:
	}
}

// commitTxn commits the open transaction through the write-ahead log (Async mode; None has no
// log): the entries are appended to it, then Badger applies them (without syncing).
func (w *writer) commitTxn() error {
	l := w.s.wal
	if l == nil {
		return w.txn.Commit()
	}
	if err := w.append(); err != nil {
		return err
	}
	if err := l.failpoint(stepCommit); err != nil {
		w.txn.Discard()
		return err
	}
	if err := w.txn.Commit(); err != nil {
		return err
	}
	return w.checkpointIfDue()
}

// commitSpill commits a request too big for one Badger transaction, the only pending request
// with entries. It is one write-ahead log record, synced before Badger applies it over as many
// transactions as it needs: a crash between those leaves a durable record that replay applies
// whole, so the request is all or nothing. (None mode has no log and nothing survives a crash.)
func (w *writer) commitSpill() error {
	if w.txn != nil {
		w.txn.Discard() // it only measured entries
	}
	held := func(err error) error {
		return fmt.Errorf("%w (the write-ahead log holds the whole batch: a restart applies it)", err)
	}
	w.waitLanded() // Badger applies group commits in order
	recs := w.records()
	if w.s.opt.Replicator != nil {
		// Cluster mode: ApplyReplicated writes it, over as many transactions as it needs.
		w.spilled = true
		return w.s.replicate(appendPayload(nil, recs))
	}
	if l := w.s.wal; l != nil {
		if err := l.appendSynced(recs); err != nil {
			return err
		}
		if err := l.failpoint(stepCommit); err != nil {
			return held(err)
		}
	}
	p := partWriter{db: w.db, afterPart: testHookSpillPart}
	for _, rs := range recs {
		for _, r := range rs {
			if err := p.write(r.key, r.val, r.del); err != nil {
				p.discard()
				return held(err)
			}
		}
	}
	if err := p.commit(); err != nil {
		return held(err)
	}
	if w.s.wal == nil {
		return nil
	}
	return w.checkpointIfDue()
}

// checkpointIfDue checkpoints Badger and starts the log over once it has grown past
// walCheckpointBytes.
func (w *writer) checkpointIfDue() error {
	l := w.s.wal
	if l.size() <= l.checkpointAt {
		return nil
	}
	start := time.Now()
	if err := l.checkpoint(w.db); err != nil {
		return err
	}
	if err := l.reset(); err != nil {
		return err
	}
	w.s.stats.checkpoints.Add(1)
	w.s.log.Debug().Dur("took", time.Since(start)).Msg("checkpoint: write-ahead log truncated")
	return nil
}

func (w *writer) addRef(seq uint64, d int32) {
	if _, ok := w.old[seq]; ok {
		w.old[seq] += d
		return
	}
	if n := w.refs[seq] + d; n > 0 {
		w.refs[seq] = n
	} else {
		delete(w.refs, seq)
	}
}

// completeAll calls the callbacks of bs in order. Once the store has failed, a batch still
// without a result fails too, even if its record was synced: no success may follow a failure.
func (s *Store) completeAll(bs []*Batch) {
	s.completeMu.Lock()
	defer s.completeMu.Unlock()
	for _, b := range bs {
		if b.result == nil && s.Err() != nil {
			b.result = s.failedErr()
		}
		s.complete(b)
	}
}

// complete calls b's callback.
func (s *Store) complete(b *Batch) {
	s.stats.requests.Add(1)
	seq := b.seq
	if b.result != nil {
		s.stats.failed.Add(1)
		seq = 0
	}
	b.applied = nil
	if b.done != nil {
		b.done(seq, b.result)
	}
}

// discardAndReplay drops the open transaction and writes the entries of the
// pending requests that succeeded into a new one (not committed yet).
func (w *writer) discardAndReplay() {
	w.spill = nil
	if w.txn != nil {
		w.txn.Discard()
		w.txn = nil
	}
	w.begin()
	for _, b := range w.pending {
		if b.result != nil {
			continue
		}
		for _, r := range b.applied {
			if err := put(w.txn, r.key, r.val, r.del); err != nil {
				// Cannot happen: the same entries fitted before.
				b.result = fmt.Errorf("persist: replay: %w", err)
				break
			}
			w.txnEntries++
		}
	}
}

// isKnown reports whether cid has a session record as the open transaction sees it.
func (w *writer) isKnown(cid string) bool {
	if v, ok := w.reqKnown[cid]; ok {
		return v
	}
	if v, ok := w.txnKnown[cid]; ok {
		return v
	}
	_, ok := w.known[cid]
	return ok
}

// settleKnown makes the changes in delta committed.
func (w *writer) settleKnown(delta map[string]bool) {
	for cid, put := range delta {
		if put {
			w.known[cid] = struct{}{}
		} else {
			delete(w.known, cid)
		}
	}
	clear(delta)
}

// count is the reference count of shared body seq as the open transaction
// sees it.
func (w *writer) count(seq uint64) int32 {
	return w.refs[seq] + w.txnDelta[seq] + w.reqDelta[seq]
}

// write puts one entry into the transaction. When the transaction is full: if it holds other
// requests' entries, errTxnFull; if only b's, b spills: its entries go on in throw-away
// transactions that only check that each entry fits one, and commitSpill writes them all.
func (w *writer) write(key, val []byte, del bool) error {
	b := w.cur
	for {
		w.begin()
		err := put(w.txn, key, val, del)
		if err == nil {
			w.txnEntries++
			b.applied = append(b.applied, rec{key: key, val: val, del: del})
			if key[0] == famQueue {
				if w.shared(seqOfKey(key)) {
					w.reqShared[string(key)] = !del
				}
			}
			if w.spill != nil {
				w.spill[string(key)] = del
			}
			return nil
		}
		if !errors.Is(err, badger.ErrTxnTooBig) {
			return fmt.Errorf("persist: %s: %w", describeKey(key), err)
		}
		if w.spill == nil && w.txnEntries > len(b.applied) {
			return errTxnFull
		}
		if w.txnEntries == 0 {
			return newError(ErrTooLarge, err, "%s: entry does not fit into a transaction", describeKey(key))
		}
		if w.spill == nil {
			w.s.log.Info().Stringer("batch", b).Msg("batch larger than one transaction: one write-ahead log record, applied in parts")
			w.s.stats.splits.Add(1)
			w.spill = make(map[string]bool, 2*len(b.applied))
			for _, r := range b.applied {
				w.spill[string(r.key)] = r.del
			}
		}
		w.txn.Discard()
		w.txn = nil
	}
}

// has reports whether key, a queue entry of a shared body, exists as the request being applied
// sees it: from what this run wrote of such entries, else from the open transaction, whose
// snapshot holds every group commit it does not see in handedShared.
func (w *writer) has(key []byte) (bool, error) {
	if del, ok := w.spill[string(key)]; ok {
		return !del, nil
	}
	if exists, ok := w.reqShared[string(key)]; ok {
		return exists, nil
	}
	if exists, ok := w.txnShared[string(key)]; ok {
		return exists, nil
	}
	w.begin()
	seen := 0
	for seen < len(w.handedShared) && w.handedShared[seen].group <= w.txnSees {
		seen++
	}
	if seen > 0 {
		clear(w.handedShared[:seen])
		w.handedShared = w.handedShared[seen:]
	}
	for i := len(w.handedShared) - 1; i >= 0; i-- {
		if exists, ok := w.handedShared[i].exists[string(key)]; ok {
			return exists, nil
		}
	}
	_, err := w.txn.Get(key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("persist: %s: %w", describeKey(key), err)
}

// keys returns keys under prefix from start on as the request being applied sees them: up to
// deleteChunk of them and whether more may follow, or, once it has spilled (it has no
// transaction to keep small), all of them merged with its own writes.
func (w *writer) keys(prefix, start []byte) (keys [][]byte, more bool, err error) {
	if err := w.snapshot(); err != nil {
		return nil, false, err
	}
	it := w.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Seek(start); it.Valid() && (w.spill != nil || len(keys) < deleteChunk); it.Next() {
		if _, own := w.spill[string(it.Item().Key())]; !own {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
	}
	it.Close()
	if w.spill == nil {
		return keys, len(keys) == deleteChunk, nil
	}
	for k, del := range w.spill {
		if !del && strings.HasPrefix(k, string(prefix)) && k >= string(start) {
			keys = append(keys, []byte(k))
		}
	}
	slices.SortFunc(keys, bytes.Compare)
	return keys, false, nil
}

// apply writes b's operations into the open transaction.
func (w *writer) apply(b *Batch) error {
	w.cur = b
	defer func() { w.cur = nil }()
	if cap(b.applied) < b.entries {
		b.applied = make([]rec, 0, b.entries) // at once, not grown entry by entry
	}
	b.applied = b.applied[:0]
	clear(w.reqDelta)
	clear(w.reqKnown)
	clear(w.reqShared)
	if b.err != nil {
		return b.err
	}
	if b.maxVal > w.maxValue {
		return newError(ErrTooLarge, nil, "value of %d bytes exceeds the limit of %d", b.maxVal, w.maxValue)
	}
	w.begin()
	for i := range b.ops {
		o := &b.ops[i]
		var err error
		switch o.kind {
		case opSet:
			err = w.write(o.key, o.val, false)
			if o.key[0] == famSession {
				w.reqKnown[o.cid] = true
			}
		case opDelete:
			err = w.write(o.key, nil, true)
		case opEnqueue:
			err = w.enqueue(b)
		case opAck:
			err = w.ack(o.cid, o.seq, true)
		case opAckQueued:
			err = w.ack(o.cid, o.seq, false)
		case opDeleteSession:
			err = w.deleteSession(o.cid)
			w.reqKnown[o.cid] = false
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) enqueue(b *Batch) error {
	e := b.enq
	if !b.hasSeq {
		b.seq = w.nextSeq
		b.hasSeq = true
		w.nextSeq++
		if e.bodyKey != nil {
			binary.BigEndian.PutUint64(e.bodyKey[1:], b.seq)
		}
		for _, t := range e.targets {
			binary.BigEndian.PutUint64(t.key[len(t.key)-8:], b.seq)
		}
	}
	live := 0
	for _, t := range e.targets {
		if w.isKnown(t.cid) {
			live++
		}
	}
	if live == 0 {
		return nil
	}
	if e.bodyKey != nil {
		if err := w.write(e.bodyKey, e.bodyVal, false); err != nil {
			return err
		}
	}
	for _, t := range e.targets {
		if !w.isKnown(t.cid) {
			continue
		}
		if e.bodyKey != nil {
			w.reqDelta[b.seq]++ // first, so that write keeps the entry in reqShared
		}
		if err := w.write(t.key, t.val, false); err != nil {
			return err
		}
	}
	return nil
}

// ack deletes queue entry (cid, seq) and its in-flight state; for a shared
// body it drops one reference (only if the entry exists) and deletes the body
// with the last one.
func (w *writer) ack(cid string, seq uint64, withState bool) error {
	qk := queueKey(cid, seq)
	shared := w.shared(seq)
	exists := false
	if shared {
		var err error
		if exists, err = w.has(qk); err != nil {
			return err
		}
	}
	if withState {
		if err := w.write(inflightKey(cid, seq), nil, true); err != nil {
			return err
		}
	}
	if err := w.write(qk, nil, true); err != nil {
		return err
	}
	if exists {
		return w.dropRef(seq)
	}
	return nil
}

// dropRef removes one reference to body seq, deleting the body at zero (for a body not counted
// yet, once it is: settleOld).
func (w *writer) dropRef(seq uint64) error {
	w.reqDelta[seq]--
	if !w.shared(seq) {
		return w.write(bodyKey(seq), nil, true)
	}
	return nil
}

// shared reports whether seq is a shared body with entries left: counted, or on disk at Open and
// not counted yet.
func (w *writer) shared(seq uint64) bool {
	return w.count(seq) > 0 || w.isOld(seq)
}

// isOld reports whether body seq was on disk at Open and its references are not counted yet.
func (w *writer) isOld(seq uint64) bool {
	_, ok := w.old[seq]
	return ok
}

// settleOld takes the references to the bodies on disk at Open, counted from the snapshot Open
// took (counted: seq -> references), less those dropped since, and deletes the bodies left
// without any: those that no entry referred to (leftovers, logged at warn) and those whose last
// reference went while they were counted.
func (w *writer) settleOld(counted map[uint64]int32) error {
	b := &Batch{}
	garbage := 0
	for seq, dropped := range w.old {
		n := counted[seq]
		if n == 0 {
			garbage++
		}
		if n += dropped; n > 0 {
			w.refs[seq] = n
		} else {
			b.del(bodyKey(seq))
		}
	}
	w.old = nil
	if garbage > 0 {
		w.s.log.Warn().Int("unreferenced_bodies", garbage).Msg("removing leftovers")
	}
	if b.Len() == 0 {
		return nil
	}
	return w.commitOwn(b)
}

// commitOwn commits a batch of the writer's own (a control request's) and waits until it is
// durable.
func (w *writer) commitOwn(b *Batch) error {
	b.submitted = true
	// In Sync mode the syncer completes b, on its own goroutine.
	done := make(chan error, 1)
	b.done = func(_ uint64, err error) { done <- err }
	w.process([]*Batch{b})
	return <-done
}

// deleteSession removes every key of cid, the record last.
func (w *writer) deleteSession(cid string) error {
	for _, fam := range []byte{famInflight, famQueue, famSub, famInbound} {
		onKey := func([]byte) error { return nil }
		if fam == famQueue {
			onKey = func(k []byte) error {
				if seq := seqOfKey(k); w.shared(seq) {
					return w.dropRef(seq)
				}
				return nil
			}
		}
		if err := w.deletePrefix(cidPrefix(fam, cid, 0), onKey); err != nil {
			return err
		}
	}
	if err := w.write(willKey(cid), nil, true); err != nil {
		return err
	}
	return w.write(sessionKey(cid), nil, true)
}

// deletePrefix deletes every key under prefix, found by key-only iteration in
// chunks. onKey runs after each delete.
func (w *writer) deletePrefix(prefix []byte, onKey func(k []byte) error) error {
	start := prefix
	for {
		keys, more, err := w.keys(prefix, start)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := w.write(k, nil, true); err != nil {
				return err
			}
			if err := onKey(k); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		start = append(keys[len(keys)-1], 0)
	}
}
