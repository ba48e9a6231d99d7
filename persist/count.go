package persist

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// QueueCount is what CountQueues found of one client's queue.
type QueueCount struct {
	ClientID string
	Count    int       // queue entries
	Bytes    int64     // their payload bytes
	LastSeq  uint64    // the highest seq among them
	Oldest   time.Time // when the first of them arrived (zero: not known)
}

// queueCounter is one pass over the queue entries (0x04) and shared bodies (0x06) of a snapshot.
type queueCounter struct {
	txn  *badger.Txn
	stop []<-chan struct{} // any closed: give up with ErrClosed

	bodies  map[uint64]int32 // shared bodies, by seq: the entries referring to each
	entries int
}

// countQueues counts the queue of every client in txn, validating each entry and body like
// Recover, and calls emit with each client's count once its key range ends, in client id order.
// orphan, when set, is asked at the start of each range whether its entries belong to no session;
// those ranges are not emitted but passed to drop with their seqs.
func countQueues(txn *badger.Txn, stop []<-chan struct{}, orphan func(cid string) (bool, error),
	emit func(*QueueCount) error, drop func(cid string, seqs []uint64) error) (*queueCounter, error) {
	c := &queueCounter{txn: txn, stop: stop, bodies: make(map[uint64]int32)}
	if err := c.bodyKeys(); err != nil {
		return nil, err
	}
	var (
		cur      QueueCount
		prefix   []byte // cur's keys but the seq
		headBody uint64 // seq of cur's first entry when it is a shared body, else 0
		dropping bool
		seqs     []uint64
	)
	end := func() error {
		switch {
		case prefix == nil:
			return nil
		case dropping:
			return drop(cur.ClientID, seqs)
		case headBody != 0:
			m, err := readBody(txn, queueKey(cur.ClientID, headBody), headBody)
			if err != nil {
				return err
			}
			cur.Oldest = m.Arrived
		}
		return emit(&cur)
	}
	// No prefetching: queue entries are small values in the LSM tree, and Badger's prefetch (a
	// copy of each value on a goroutine) took the count of 10 million from 5-6 s to 10 s.
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famQueue}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := c.stopped(); err != nil {
			return nil, err
		}
		item := it.Item()
		k := item.Key()
		var seq uint64
		if prefix != nil && len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix) {
			seq = seqOfKey(k) // most keys: the same client as the one before
		} else {
			if err := end(); err != nil {
				return nil, err
			}
			cid, s, err := parseSeqKey(k)
			if err != nil {
				return nil, err
			}
			seq, cur, prefix, headBody, seqs = s, QueueCount{ClientID: cid}, bytes.Clone(k[:len(k)-8]), 0, seqs[:0]
			if orphan != nil {
				if dropping, err = orphan(cid); err != nil {
					return nil, err
				}
			}
		}
		first := cur.Count == 0
		err := item.Value(func(v []byte) error {
			h, m, err := decodeQueue(k, v, first)
			if err != nil {
				return err
			}
			n, hasBody := c.bodies[seq]
			switch {
			case h.shared() && !hasBody:
				return corruptf(k, "refers to shared body seq %d, which does not exist", seq)
			case h.shared():
				c.bodies[seq] = n + 1
				if first {
					headBody = seq
				}
			case hasBody:
				return corruptf(k, "inline entry, but shared body seq %d exists", seq)
			case first:
				cur.Oldest = m.Arrived
			}
			cur.Count++
			cur.Bytes += int64(h.payloadSize)
			cur.LastSeq = seq // keys ascend
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				err = fmt.Errorf("persist: read %s: %w", describeKey(k), err)
			}
			return nil, err
		}
		if dropping {
			seqs = append(seqs, seq)
		}
		c.entries++
	}
	if err := end(); err != nil {
		return nil, err
	}
	return c, c.checkBodies()
}

// stopped returns ErrClosed, now and then, once one of c.stop is closed.
func (c *queueCounter) stopped() error {
	if c.entries%4096 != 0 {
		return nil
	}
	for _, ch := range c.stop {
		select {
		case <-ch:
			return ErrClosed
		default:
		}
	}
	return nil
}

// bodyKeys fills c.bodies from the 0x06 keys (no values).
func (c *queueCounter) bodyKeys() error {
	it := c.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famBody}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != 9 {
			return corruptf(k, "malformed key")
		}
		c.bodies[seqOfKey(k)] = 0
	}
	return nil
}

// checkBodies decodes every body.
func (c *queueCounter) checkBodies() error {
	return scanValues(c.txn, famBody, func(k, v []byte) error {
		_, err := decodeBody(k, v, false)
		return err
	})
}

// CountQueues counts the queues that RecoverSessions left uncounted, from a snapshot of the store
// taken at Open (before any write), while the store serves: it calls fn with each client's
// QueueCount as its key range ends, in client id order, for the clients that had a session
// record at Open. It runs on the caller's goroutine, once; later calls, and calls after Recover,
// return an error. It checks what Recover checks: a problem found (ErrCorrupt naming the key, or
// a read error) fails the store (fail-stop) and is returned. Then it gives the writer the
// references to the bodies on disk at Open, which it did not know until then (see settleOld). It
// deletes the bodies that no entry refers to and the queue entries of clients that had no session record at Open (only those
// entries: the client may have one since), logging both at warn. It gives up with ErrClosed when
// the store closes or quit is closed (nil: never).
func (s *Store) CountQueues(quit <-chan struct{}, fn func(QueueCount)) error {
	start := time.Now()
	txn := s.takeOpenSnapshot()
	if txn == nil {
		return errors.New("persist: the queues were counted already")
	}
	s.readMu.RLock()
	defer s.readMu.RUnlock()
	defer txn.Discard()
	if s.dbClosed {
		return ErrClosed
	}
	sessions, queued, dropped := 0, 0, 0
	orphan := func(cid string) (bool, error) {
		_, err := txn.Get(sessionKey(cid))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return true, nil
		}
		return false, err
	}
	emit := func(q *QueueCount) error {
		sessions++
		queued += q.Count
		fn(*q)
		return nil
	}
	drop := func(cid string, seqs []uint64) error {
		s.log.Warn().Str("client", string(shorten([]byte(cid)))).Int("queued", len(seqs)).
			Msg("deleting the queue of a client without a session record")
		b := &Batch{}
		for _, seq := range seqs {
			b.Ack(cid, seq)
		}
		dropped += len(seqs)
		_, err := s.Commit(b)
		return err
	}
	c, err := countQueues(txn, []<-chan struct{}{s.stopBg, quit}, orphan, emit, drop)
	if err == nil {
		err = s.control(func(w *writer) error { return w.settleOld(c.bodies) })
	}
	switch {
	case errors.Is(err, ErrClosed) || errors.Is(err, ErrFailed):
		return err
	case err != nil:
		s.fail(fmt.Errorf("counting the queues: %w", err))
		return err
	}
	s.log.Info().Int("sessions", sessions).Int("queued", queued).Int("shared_bodies", len(c.bodies)).
		Int("orphaned_entries_deleted", dropped).Dur("took", time.Since(start)).Msg("counted the queues")
	return nil
}

// takeOpenSnapshot returns the read transaction Open took before any write, once.
func (s *Store) takeOpenSnapshot() *badger.Txn {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	txn := s.openSnap
	s.openSnap = nil
	return txn
}

// dropOpenSnapshot discards the snapshot of Open, if nobody took it: it keeps Badger from
// discarding the versions it sees.
func (s *Store) dropOpenSnapshot() {
	if txn := s.takeOpenSnapshot(); txn != nil {
		txn.Discard()
	}
}
