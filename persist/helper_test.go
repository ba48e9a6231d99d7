package persist

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/syncbuf"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
)

// testOptions: small Badger memory so tests open fast.
func testOptions(dir string, logs io.Writer) Options {
	o := DefaultOptions(dir)
	o.MemTableSize = 8 << 20
	o.NumMemtables = 2
	o.BlockCacheSize = 4 << 20
	o.IndexCacheSize = 4 << 20
	o.ValueLogFileSize = 16 << 20
	if logs != nil {
		o.Logger = zerolog.New(logs).Level(zerolog.InfoLevel)
	}
	return o
}

type testStore struct {
	*Store
	t    *testing.T
	dir  string
	opt  Options
	logs *syncbuf.Buffer
}

type helperOpt func(*helperCfg)

type helperCfg struct {
	mod           func(*Options)
	skipLiveCheck bool // the test leaves in-flight states without entries on purpose
}

func withOptions(f func(*Options)) helperOpt { return func(c *helperCfg) { c.mod = f } }
func skipLiveCheck() helperOpt               { return func(c *helperCfg) { c.skipLiveCheck = true } }

// openTest opens a Store in a temp dir. At cleanup it checks the invariants on
// the live store, closes it, reopens it, checks them again on what is on disk,
// runs Recover, and closes again.
func openTest(t *testing.T, hopts ...helperOpt) *testStore {
	t.Helper()
	var cfg helperCfg
	for _, h := range hopts {
		h(&cfg)
	}
	dir := t.TempDir()
	logs := &syncbuf.Buffer{}
	o := testOptions(dir, logs)
	if cfg.mod != nil {
		cfg.mod(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ts := &testStore{Store: s, t: t, dir: dir, opt: o, logs: logs}
	t.Cleanup(func() {
		s := ts.Store // reopen may have replaced it
		if !cfg.skipLiveCheck && !t.Failed() {
			if err := s.control(func(w *writer) error { return checkInvariants(w.db, w) }); err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("live invariants: %v", err)
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if o.Durability == None || t.Failed() {
			return
		}
		s2, err := Open(o)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer s2.Close()
		if !cfg.skipLiveCheck {
			if err := checkInvariants(s2.db, s2.w); err != nil {
				t.Errorf("invariants after reopen: %v", err)
			}
		}
		if _, err := s2.Recover(); err != nil {
			t.Errorf("Recover after reopen: %v", err)
		}
		if err := s2.control(func(w *writer) error { return checkInvariants(w.db, w) }); err != nil {
			t.Errorf("invariants after Recover: %v", err)
		}
	})
	return ts
}

// reopen closes the store and opens the same directory again (the cleanup
// then checks and closes the new one).
func (ts *testStore) reopen() {
	ts.t.Helper()
	if err := ts.Close(); err != nil {
		ts.t.Fatalf("Close: %v", err)
	}
	s, err := Open(ts.opt)
	if err != nil {
		ts.t.Fatalf("reopen: %v", err)
	}
	ts.Store = s
}

// checkInvariants scans raw Badger: every shared queue entry's body exists,
// reference counts match w's, no body without references, no 0x05 without
// its 0x04, no 0x04 without its client's 0x01 record (Enqueue skips clients
// without one), every value decodes. The bodies whose references w has not
// counted yet (writer.old) are only checked to be on disk.
func checkInvariants(db *badger.DB, w *writer) error {
	refs := w.refs
	return db.View(func(txn *badger.Txn) error {
		counts := map[uint64]int32{}
		var errs []error
		forEach := func(fam byte, fn func(k, v []byte) error) {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{fam}, PrefetchValues: true})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().KeyCopy(nil)
				v, err := it.Item().ValueCopy(nil)
				if err == nil {
					err = fn(k, v)
				}
				if err != nil {
					errs = append(errs, err)
				}
			}
		}
		forEach(famQueue, func(k, v []byte) error {
			cid, seq, err := parseSeqKey(k)
			if err != nil {
				return err
			}
			if _, err := txn.Get(sessionKey(cid)); err != nil {
				return fmt.Errorf("%s without session record: %w", describeKey(k), err)
			}
			h, _, err := decodeQueue(k, v, true)
			if err != nil {
				return err
			}
			if !h.shared() {
				return nil
			}
			counts[seq]++
			if _, err := txn.Get(bodyKey(seq)); err != nil {
				return fmt.Errorf("%s: body: %w", describeKey(k), err)
			}
			return nil
		})
		forEach(famBody, func(k, v []byte) error {
			seq := seqOfKey(k)
			if _, err := decodeBody(k, v, true); err != nil {
				return err
			}
			if counts[seq] == 0 && !w.isOld(seq) {
				return fmt.Errorf("%s: no references", describeKey(k))
			}
			return nil
		})
		for seq := range w.old {
			if _, err := txn.Get(bodyKey(seq)); err != nil {
				errs = append(errs, fmt.Errorf("body %d, not counted yet: %w", seq, err))
			}
		}
		for seq, n := range counts {
			if refs[seq] != n && !w.isOld(seq) {
				errs = append(errs, fmt.Errorf("body %d: %d references on disk, %d in memory", seq, n, refs[seq]))
			}
		}
		for seq, n := range refs {
			if counts[seq] != n {
				errs = append(errs, fmt.Errorf("body %d: %d references in memory, %d on disk", seq, n, counts[seq]))
			}
		}
		forEach(famInflight, func(k, v []byte) error {
			cid, seq, err := parseSeqKey(k)
			if err != nil {
				return err
			}
			if _, err := decodeInflight(k, v); err != nil {
				return err
			}
			if _, err := txn.Get(queueKey(cid, seq)); err != nil {
				return fmt.Errorf("%s without queue entry: %w", describeKey(k), err)
			}
			return nil
		})
		return errors.Join(errs...)
	})
}

// commit commits b and fails the test on error.
func (ts *testStore) commit(b *Batch) uint64 {
	ts.t.Helper()
	seq, err := ts.Commit(b)
	if err != nil {
		ts.t.Fatalf("Commit(%s): %v", b, err)
	}
	return seq
}

func (ts *testStore) recover() *State {
	ts.t.Helper()
	st, err := ts.Recover()
	if err != nil {
		ts.t.Fatalf("Recover: %v", err)
	}
	return st
}

func (ts *testStore) readQueue(cid string, after uint64, limit int) []QueueEntry {
	ts.t.Helper()
	q, err := ts.ReadQueue(cid, after, limit)
	if err != nil {
		ts.t.Fatalf("ReadQueue(%q): %v", cid, err)
	}
	return q
}

// rawKeys lists every key of a family (test helper on raw Badger).
func rawKeys(t *testing.T, db *badger.DB, fam byte) [][]byte {
	t.Helper()
	var keys [][]byte
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{fam}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func session(st *State, cid string) *SessionState {
	for i := range st.Sessions {
		if st.Sessions[i].ClientID == cid {
			return &st.Sessions[i]
		}
	}
	return nil
}

func msg(topic, payload string, qos byte) *Message {
	return &Message{Topic: topic, Payload: []byte(payload), QoS: qos}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// putSessions commits a session record for every cid: Enqueue skips targets
// whose record does not exist when the writer applies the batch.
func putSessions(t testing.TB, s *Store, cids ...string) {
	t.Helper()
	// Chunks that fit into one transaction of the smallest test memtable.
	for len(cids) > 0 {
		n := min(len(cids), 500)
		b := &Batch{}
		for _, c := range cids[:n] {
			b.PutSession(c, SessionRecord{ProtocolLevel: 4})
		}
		if _, err := s.Commit(b); err != nil {
			t.Fatalf("PutSession: %v", err)
		}
		cids = cids[n:]
	}
}

// sessions commits a session record for every cid.
func (ts *testStore) sessions(cids ...string) {
	ts.t.Helper()
	putSessions(ts.t, ts.Store, cids...)
}

// rawUpdate closes the store, runs fn in a raw Badger transaction on its
// directory (to build states persist's API cannot), and reopens it.
func (ts *testStore) rawUpdate(fn func(*badger.Txn) error) {
	ts.t.Helper()
	if err := ts.Close(); err != nil {
		ts.t.Fatalf("Close: %v", err)
	}
	rawUpdate(ts.t, ts.dir, fn)
	s, err := Open(ts.opt)
	if err != nil {
		ts.t.Fatalf("reopen: %v", err)
	}
	ts.Store = s
}
