package persist

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Recover reads everything the broker rebuilds at start: sessions with their
// subscriptions, queue summaries and inbound QoS 2 packet ids, and the
// retained messages. It runs on the writer goroutine, so call it once after
// Open and before submitting work (it is correct later too, but it stalls
// writes while it scans). It validates every value (ErrCorrupt names the
// first bad key) and the shared-body references: a queue entry whose body is
// missing is ErrCorrupt. It removes leftovers that carry no information:
// in-flight states whose queue entry is gone and shared bodies that no entry
// refers to (both logged at warn). Sessions without a record are reported
// with Orphan set (see SessionState.Orphan).
//
// It reads every queue entry, which takes seconds for millions of them: RecoverSessions and
// CountQueues are the same split in two, so that the broker may serve in between.
func (s *Store) Recover() (*State, error) {
	return s.recover(true)
}

// RecoverSessions is Recover without the queues: it reads every family but 0x04 and 0x06 and
// returns the sessions with Uncounted set, QueuedCount and QueuedBytes 0 and LastSeq
// State.Bound-1, an upper bound of their queues (every entry on disk at Open has a lower seq).
// A session with queue entries only (no other key) is not among them. CountQueues then counts
// the queues, from what the store held at Open.
func (s *Store) RecoverSessions() (*State, error) {
	return s.recover(false)
}

func (s *Store) recover(queues bool) (*State, error) {
	var st *State
	err := s.control(func(w *writer) error {
		var err error
		st, err = w.recover(queues)
		return err
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (w *writer) recover(queues bool) (*State, error) {
	start := time.Now()
	txn := w.db.NewTransaction(false)
	defer txn.Discard()

	sessions := make(map[string]*SessionState)
	get := func(cid string) *SessionState {
		ss := sessions[cid]
		if ss == nil {
			ss = &SessionState{ClientID: cid, Orphan: true}
			sessions[cid] = ss
		}
		return ss
	}
	st := &State{}
	var (
		subs, queued, inflight, inbound, wills int
		strays                                 [][]byte
	)

	scan := func(fam byte, fn func(k, v []byte) error) error { return scanValues(txn, fam, fn) }
	cidOf := func(k []byte, restLen int) (string, []byte, error) {
		cid, rest, ok := splitCID(k)
		if !ok || (restLen >= 0 && len(rest) != restLen) {
			return "", nil, corruptf(k, "malformed key")
		}
		return cid, rest, nil
	}

	err := scan(famSession, func(k, v []byte) error {
		cid, _, err := cidOf(k, 0)
		if err != nil {
			return err
		}
		r, err := decodeSession(k, v)
		if err != nil {
			return err
		}
		ss := get(cid)
		ss.Record, ss.Orphan = r, false
		return nil
	})
	if err == nil {
		err = scan(famSub, func(k, v []byte) error {
			cid, rest, err := cidOf(k, -1)
			if err != nil {
				return err
			}
			o, err := decodeSub(k, v)
			if err != nil {
				return err
			}
			ss := get(cid)
			ss.Subscriptions = append(ss.Subscriptions, Subscription{Filter: string(rest), SubOptions: o})
			subs++
			return nil
		})
	}
	if err == nil {
		err = scan(famRetained, func(k, v []byte) error {
			m, err := decodeRetained(k, v)
			if err == nil {
				st.Retained = append(st.Retained, m)
			}
			return err
		})
	}
	var counted map[uint64]int32 // references to the bodies, now
	if err == nil && queues {
		var c *queueCounter
		c, err = countQueues(txn, nil, nil, func(q *QueueCount) error {
			ss := get(q.ClientID)
			ss.QueuedCount, ss.QueuedBytes, ss.LastSeq, ss.OldestQueued = q.Count, q.Bytes, q.LastSeq, q.Oldest
			queued += q.Count
			return nil
		}, nil)
		if err == nil {
			counted = c.bodies
		}
	}
	if err == nil {
		err = scan(famInflight, func(k, v []byte) error {
			cid, seq, err := parseSeqKey(k)
			if err != nil {
				return err
			}
			if _, err := decodeInflight(k, v); err != nil {
				return err
			}
			_, err = txn.Get(queueKey(cid, seq))
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
				strays = append(strays, slices.Clone(k))
				return nil
			case err != nil:
				return err
			}
			get(cid).Inflight++
			inflight++
			return nil
		})
	}
	if err == nil {
		err = scan(famInbound, func(k, v []byte) error {
			cid, rest, err := cidOf(k, 2)
			if err != nil {
				return err
			}
			if err := decodeInbound(k, v); err != nil {
				return err
			}
			ss := get(cid)
			ss.InboundQoS2 = append(ss.InboundQoS2, binary.BigEndian.Uint16(rest))
			inbound++
			return nil
		})
	}
	if err == nil {
		err = scan(famWill, func(k, v []byte) error {
			cid, _, err := cidOf(k, 0)
			if err != nil {
				return err
			}
			will, err := decodeWill(k, v)
			if err == nil {
				get(cid).Will = will
				wills++
			}
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	txn.Discard()

	if counted != nil && w.old != nil {
		// Counted now, not at Open: the references dropped since are gone from it already.
		w.s.dropOpenSnapshot()
		for seq := range w.old {
			w.old[seq] = 0
		}
		if err := w.settleOld(counted); err != nil {
			return nil, err
		}
	}
	if len(strays) > 0 {
		w.s.log.Warn().Int("inflight_without_entry", len(strays)).Msg("removing leftovers")
		b := &Batch{}
		for _, k := range strays {
			b.del(k)
		}
		if err := w.commitOwn(b); err != nil {
			return nil, err
		}
	}

	orphans := 0
	for _, ss := range sessions {
		if ss.Orphan {
			orphans++
			w.s.log.Warn().Str("client", string(shorten([]byte(ss.ClientID)))).
				Int("subscriptions", len(ss.Subscriptions)).Int("queued", ss.QueuedCount).
				Int("inbound", len(ss.InboundQoS2)).Bool("will", ss.Will != nil).Msg("session data without a session record")
		}
		if !queues {
			ss.Uncounted, ss.LastSeq = true, w.s.bound-1
		}
		slices.Sort(ss.InboundQoS2)
	}
	st.Sessions = make([]SessionState, 0, len(sessions))
	for _, ss := range sessions {
		st.Sessions = append(st.Sessions, *ss)
	}
	slices.SortFunc(st.Sessions, func(a, b SessionState) int { return cmp.Compare(a.ClientID, b.ClientID) })
	if !queues {
		st.Bound = w.s.bound
	}

	ev := w.s.log.Info().Int("sessions", len(st.Sessions)).Int("orphans", orphans).Int("subscriptions", subs).
		Int("retained", len(st.Retained)).Int("inflight", inflight).Int("inbound_qos2", inbound).Int("wills", wills).
		Uint64("next_seq", w.nextSeq)
	if queues {
		ev = ev.Int("queued", queued).Int("shared_bodies", len(w.refs))
	} else {
		ev = ev.Bool("queues_counted_later", true)
	}
	ev.Dur("took", time.Since(start)).Msg("recovered")
	return st, nil
}

// readQueueCap bounds what ReadQueue allocates ahead for a large limit.
const readQueueCap = 1024

// scanValues calls fn with every key and value of family fam in txn, in key order, and stops at
// its first error; a read error names the key (ErrCorrupt names it already).
func scanValues(txn *badger.Txn, fam byte, fn func(k, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{fam}, PrefetchValues: true, PrefetchSize: 256})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if err := item.Value(func(v []byte) error { return fn(k, v) }); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				err = fmt.Errorf("persist: read %s: %w", describeKey(k), err)
			}
			return err
		}
	}
	return nil
}

// ReadQueue returns up to limit queue entries of cid with seq > after, in seq
// order, with State/PacketID/Holder joined from 0x05 and Message resolved (inline or
// shared body), all from one read-only snapshot. limit <= 0 returns nothing.
// Everything returned is a copy the caller owns.
func (s *Store) ReadQueue(cid string, after uint64, limit int) ([]QueueEntry, error) {
	if limit <= 0 || after == math.MaxUint64 || len(cid) > 0xFFFF {
		return nil, nil
	}
	return s.readEntries(func(txn *badger.Txn) ([]QueueEntry, error) {
		out := make([]QueueEntry, 0, min(limit, readQueueCap))
		qPrefix := cidPrefix(famQueue, cid, 0)
		fPrefix := cidPrefix(famInflight, cid, 0)
		// Values are decoded into copies as each item is reached: Badger's prefetch would copy
		// each value first, on a goroutine of its own per item.
		qit := txn.NewIterator(badger.IteratorOptions{Prefix: qPrefix})
		defer qit.Close()
		fit := txn.NewIterator(badger.IteratorOptions{Prefix: fPrefix})
		defer fit.Close()
		fit.Seek(inflightKey(cid, after+1))

		for qit.Seek(queueKey(cid, after+1)); qit.Valid() && len(out) < limit; qit.Next() {
			e, err := readEntry(txn, qit.Item(), len(qPrefix))
			if err != nil {
				return nil, err
			}
			// Join the in-flight state: both iterators ascend by seq.
			for ; fit.Valid(); fit.Next() {
				fseq, err := seqAfter(fit.Item().Key(), len(fPrefix))
				if err != nil {
					return nil, err
				}
				if fseq > e.Seq {
					break
				}
				if fseq == e.Seq {
					if err := readState(fit.Item(), &e); err != nil {
						return nil, err
					}
				}
			}
			out = append(out, e)
		}
		return out, nil
	})
}

// ReadHeld returns every queue entry of cid that has an in-flight state (Sent or Released, held
// by a member or not), with its State, PacketID, Holder and Message, in seq order, from one
// read-only snapshot: what the broker hands back to the members of a shared subscription group
// (cid is the group's) at start. It reads the states of cid and only their entries, however
// long the queue. A state whose entry is gone (Recover removes those) is left out. Everything
// returned is a copy the caller owns.
func (s *Store) ReadHeld(cid string) ([]QueueEntry, error) {
	if len(cid) > 0xFFFF {
		return nil, nil
	}
	return s.readEntries(func(txn *badger.Txn) ([]QueueEntry, error) {
		var out []QueueEntry
		fPrefix := cidPrefix(famInflight, cid, 0)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: fPrefix, PrefetchValues: true, PrefetchSize: 20})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			seq, err := seqAfter(it.Item().Key(), len(fPrefix))
			if err != nil {
				return nil, err
			}
			qk := queueKey(cid, seq)
			item, err := txn.Get(qk)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("persist: read %s: %w", describeKey(qk), err)
			}
			e, err := readEntry(txn, item, len(fPrefix))
			if err != nil {
				return nil, err
			}
			if err := readState(it.Item(), &e); err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	})
}

// readEntries returns what fn reads in a read-only transaction (nothing when it fails), unless
// the store is closed.
func (s *Store) readEntries(fn func(txn *badger.Txn) ([]QueueEntry, error)) ([]QueueEntry, error) {
	s.readMu.RLock()
	defer s.readMu.RUnlock()
	if s.dbClosed {
		return nil, ErrClosed
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	out, err := fn(txn)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readEntry decodes the queue entry item (its key prefixLen bytes before the seq) with its
// message, the shared body read from txn.
func readEntry(txn *badger.Txn, item *badger.Item, prefixLen int) (QueueEntry, error) {
	k := item.Key()
	seq, err := seqAfter(k, prefixLen)
	if err != nil {
		return QueueEntry{}, err
	}
	e := QueueEntry{Seq: seq}
	var h queueHeader
	err = item.Value(func(v []byte) error {
		var err error
		h, e.Message, err = decodeQueue(k, v, true)
		return err
	})
	if err != nil {
		return QueueEntry{}, err
	}
	e.QoS = h.qos
	if h.shared() {
		if e.Message, err = readBody(txn, k, e.Seq); err != nil {
			return QueueEntry{}, err
		}
	}
	return e, nil
}

// seqAfter returns the seq of a 0x04 or 0x05 key of the client whose prefix is prefixLen long.
func seqAfter(k []byte, prefixLen int) (uint64, error) {
	if len(k) != prefixLen+8 {
		return 0, corruptf(k, "malformed key")
	}
	return seqOfKey(k), nil
}

// readState sets e's State, PacketID and Holder from the in-flight state item.
func readState(item *badger.Item, e *QueueEntry) error {
	return item.Value(func(v []byte) error {
		f, err := decodeInflight(item.Key(), v)
		e.State, e.PacketID, e.Holder = f.state, f.pid, f.holder
		return err
	})
}

func readBody(txn *badger.Txn, entryKey []byte, seq uint64) (*Message, error) {
	bk := bodyKey(seq)
	item, err := txn.Get(bk)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, corruptf(entryKey, "refers to shared body seq %d, which does not exist", seq)
	}
	if err != nil {
		return nil, fmt.Errorf("persist: read %s: %w", describeKey(bk), err)
	}
	var m *Message
	err = item.Value(func(v []byte) error {
		var err error
		m, err = decodeBody(bk, v, true)
		return err
	})
	return m, err
}
