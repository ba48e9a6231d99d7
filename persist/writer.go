package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// errTxnFull: the current request does not fit into a transaction that already
// holds other requests' entries; commit those, then rerun the request alone.
var errTxnFull = errors.New("transaction full")

// deleteChunk is how many keys DeleteSession collects per iterator before
// deleting them (an iterator must be closed before the txn commits).
const deleteChunk = 4096

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

	txn        *badger.Txn
	txnEntries int      // entries in txn, all requests
	pending    []*Batch // requests applied (or failed) in txn, in order, waiting for its commit
	cur        *Batch   // request being applied

	replays int // requests rerun in a fresh transaction (for tests)
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
		refs:     idx.refs,
		txnDelta: make(map[uint64]int32),
		reqDelta: make(map[uint64]int32),
	}
	if s.opt.Durability == None {
		w.maxValue = int(valueThreshold) // memory mode: values must fit the LSM tree
	}
	// Bodies without any reference are garbage (left by a crash between the
	// commits of a split batch); Recover deletes them. They must not count.
	for seq, n := range w.refs {
		if n == 0 {
			delete(w.refs, seq)
		}
	}
	return w
}

func (w *writer) run() {
	defer close(w.s.writerDone)
	var reqs []*Batch
	for {
		b, ok := <-w.s.reqCh
		if !ok {
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

// process applies reqs in order to as few transactions as possible and
// completes them in order.
func (w *writer) process(reqs []*Batch) {
	for i := 0; i < len(reqs); {
		b := reqs[i]
		if b.ctl != nil {
			w.commit()
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
			for cid, put := range w.reqKnown {
				w.txnKnown[cid] = put
			}
			clear(w.reqKnown)
			w.pending = append(w.pending, b)
			i++
		case errors.Is(err, errTxnFull):
			// Commit the others, then rerun b in an empty transaction.
			w.replays++
			w.discardAndReplay()
			w.commit()
		default:
			if len(b.applied) > 0 || b.split {
				// Part of b is in the transaction: drop it, keep the others.
				w.discardAndReplay()
				if b.split {
					w.s.log.Error().Err(err).Stringer("batch", b).Msg("batch failed after part of it was committed")
				}
			}
			clear(w.reqDelta)
			clear(w.reqKnown)
			b.applied = nil
			b.result = err
			w.pending = append(w.pending, b)
			i++
		}
	}
	w.commit()
}

// begin opens the transaction if none is open.
func (w *writer) begin() {
	if w.txn == nil {
		w.txn = w.db.NewTransaction(true)
		w.txnEntries = 0
	}
}

// commit commits the open transaction (if it holds entries) and completes the
// pending requests in order. It returns the commit error.
func (w *writer) commit() error {
	var err error
	if w.txn != nil {
		if w.txnEntries > 0 {
			start := time.Now()
			err = w.commitTxn()
			d := time.Since(start)
			w.s.stats.recordCommit(d, w.txnEntries)
			if d > slowThreshold {
				w.s.log.Warn().Dur("took", d).Int("entries", w.txnEntries).Int("requests", len(w.pending)).Msg("slow commit")
			}
			if err != nil {
				w.s.log.Error().Err(err).Int("entries", w.txnEntries).Int("requests", len(w.pending)).Msg("commit failed")
			}
		} else {
			w.txn.Discard()
		}
		w.txn = nil
		w.txnEntries = 0
	}
	if err == nil {
		for seq, d := range w.txnDelta {
			w.addRef(seq, d)
		}
		w.settleKnown(w.txnKnown)
	}
	clear(w.txnDelta)
	clear(w.txnKnown)
	for _, b := range w.pending {
		if b.result == nil && err != nil {
			b.result = fmt.Errorf("persist: commit: %w", err)
		}
	}
	w.handOff(w.pending)
	clear(w.pending)
	w.pending = w.pending[:0]
	return err
}

// handOff completes committed requests: in Sync mode through the syncer, once the write-ahead
// log holding them is fdatasynced; otherwise at once. Either way in order.
func (w *writer) handOff(bs []*Batch) {
	if w.s.sync == nil {
		for _, b := range bs {
			w.s.complete(b)
		}
		return
	}
	w.s.sync.push(bs)
}

// commitTxn commits the open transaction through the write-ahead log: Badger applies the entries
// (without syncing) and they are appended to the log, which the syncer then fdatasyncs (Sync
// mode) while the writer goes on with the next batch.
func (w *writer) commitTxn() error {
	l := w.s.wal
	if l == nil {
		return w.txn.Commit()
	}
	recs := make([][]rec, 0, len(w.pending)+1)
	for _, b := range w.pending {
		if b.result == nil {
			recs = append(recs, b.applied)
		}
	}
	if w.cur != nil {
		recs = append(recs, w.cur.applied) // the committed part of a batch split over transactions
	}
	if err := l.append(recs); err != nil {
		w.txn.Discard()
		return err
	}
	err := w.txn.Commit()
	if err == nil && l.size() > walCheckpointBytes {
		start := time.Now()
		if err := checkpoint(w.db, w.s.opt.Dir); err != nil {
			return err
		}
		if err := l.reset(); err != nil {
			return err
		}
		w.s.log.Debug().Dur("took", time.Since(start)).Msg("checkpoint: write-ahead log truncated")
	}
	return err
}

func (w *writer) addRef(seq uint64, d int32) {
	if n := w.refs[seq] + d; n > 0 {
		w.refs[seq] = n
	} else {
		delete(w.refs, seq)
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
			var err error
			if r.del {
				err = w.txn.Delete(r.key)
			} else {
				err = w.txn.Set(r.key, r.val)
			}
			if err != nil {
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

// write puts one entry into the transaction. When the transaction is full:
// if it holds other requests' entries, errTxnFull; if only b's, commit that
// part and continue in a new transaction (b is then split).
func (w *writer) write(key, val []byte, del bool) error {
	b := w.cur
	for {
		w.begin()
		var err error
		if del {
			err = w.txn.Delete(key)
		} else {
			err = w.txn.Set(key, val)
		}
		if err == nil {
			w.txnEntries++
			b.applied = append(b.applied, rec{key: key, val: val, del: del})
			return nil
		}
		if !errors.Is(err, badger.ErrTxnTooBig) {
			return fmt.Errorf("persist: %s: %w", describeKey(key), err)
		}
		if w.txnEntries > len(b.applied) {
			return errTxnFull
		}
		if len(b.applied) == 0 {
			return newError(ErrTooLarge, err, "%s: entry does not fit into a transaction", describeKey(key))
		}
		if !b.split {
			w.s.log.Warn().Stringer("batch", b).Msg("batch larger than one transaction: committing it in parts, not atomically")
		}
		w.s.stats.splits.Add(1)
		if err := w.commit(); err != nil {
			return fmt.Errorf("persist: commit of a split batch: %w", err)
		}
		for seq, d := range w.reqDelta {
			w.addRef(seq, d)
		}
		clear(w.reqDelta)
		w.settleKnown(w.reqKnown)
		b.applied = b.applied[:0]
		b.split = true
	}
}

// apply writes b's operations into the open transaction.
func (w *writer) apply(b *Batch) error {
	w.cur = b
	defer func() { w.cur = nil }()
	b.applied = b.applied[:0]
	clear(w.reqDelta)
	clear(w.reqKnown)
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
		for _, k := range e.keys {
			binary.BigEndian.PutUint64(k[len(k)-8:], b.seq)
		}
	}
	live := 0
	for _, cid := range e.cids {
		if w.isKnown(cid) {
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
	for i, k := range e.keys {
		if !w.isKnown(e.cids[i]) {
			continue
		}
		if err := w.write(k, e.vals[i], false); err != nil {
			return err
		}
		if e.bodyKey != nil {
			w.reqDelta[b.seq]++
		}
	}
	return nil
}

// ack deletes queue entry (cid, seq) and its in-flight state; for a shared
// body it drops one reference (only if the entry exists) and deletes the body
// with the last one.
func (w *writer) ack(cid string, seq uint64, withState bool) error {
	qk := queueKey(cid, seq)
	shared := w.count(seq) > 0
	exists := false
	if shared {
		w.begin()
		_, err := w.txn.Get(qk)
		switch {
		case err == nil:
			exists = true
		case errors.Is(err, badger.ErrKeyNotFound):
		default:
			return fmt.Errorf("persist: %s: %w", describeKey(qk), err)
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

// dropRef removes one reference to body seq, deleting the body at zero.
func (w *writer) dropRef(seq uint64) error {
	w.reqDelta[seq]--
	if w.count(seq) <= 0 {
		return w.write(bodyKey(seq), nil, true)
	}
	return nil
}

// deleteSession removes every key of cid. Order matters only for a session
// too big for one transaction: in-flight states before queue entries, the
// record last, so a crash in between leaves no in-flight state without its
// entry and keeps the record, letting the session layer delete again.
func (w *writer) deleteSession(cid string) error {
	for _, fam := range []byte{famInflight, famQueue, famSub, famInbound} {
		onKey := func([]byte) error { return nil }
		if fam == famQueue {
			onKey = func(k []byte) error {
				if seq := seqOfKey(k); w.count(seq) > 0 {
					return w.dropRef(seq)
				}
				return nil
			}
		}
		if err := w.deletePrefix(cidPrefix(fam, cid, 0), onKey); err != nil {
			return err
		}
	}
	return w.write(sessionKey(cid), nil, true)
}

// deletePrefix deletes every key under prefix, key-only iteration in chunks.
// onKey runs after each delete.
func (w *writer) deletePrefix(prefix []byte, onKey func(k []byte) error) error {
	start := prefix
	for {
		w.begin()
		it := w.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		var keys [][]byte
		for it.Seek(start); it.Valid() && len(keys) < deleteChunk; it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range keys {
			if err := w.write(k, nil, true); err != nil {
				return err
			}
			if err := onKey(k); err != nil {
				return err
			}
		}
		if len(keys) < deleteChunk {
			return nil
		}
		start = append(keys[len(keys)-1], 0)
	}
}
