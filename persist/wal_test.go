package persist

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func openRawBadger(t *testing.T, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// The log alone rebuilds what Badger lost: replayed into an empty Badger, every record's entries
// are there, deletes included; after reset, records of the old epoch are not replayed again; a
// torn record at the end is ignored.
func TestWALReplayIntoEmptyBadger(t *testing.T) {
	logDir := t.TempDir()
	l, err := openWAL(logDir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	var recs []rec
	for i := 0; i < 100; i++ {
		recs = append(recs, rec{key: []byte(fmt.Sprintf("k%03d", i)), val: []byte(fmt.Sprint("v", i))})
	}
	if err := l.append([][]rec{recs[:50], recs[50:]}); err != nil {
		t.Fatal(err)
	}
	if err := l.append([][]rec{{{key: []byte("k007"), del: true}}}); err != nil {
		t.Fatal(err)
	}
	// A torn record: a header promising more bytes than follow.
	torn := l.pos
	if err := l.append([][]rec{{{key: []byte("torn"), val: make([]byte, 100)}}}); err != nil {
		t.Fatal(err)
	}
	if err := l.f.Truncate(torn + 20); err != nil {
		t.Fatal(err)
	}
	l.allocated = torn + 20

	dbDir := t.TempDir()
	db := openRawBadger(t, dbDir)
	n, err := replayWAL(db, l, dbDir)
	if err != nil || n != 2 {
		t.Fatalf("replayed %d records, %v; want 2", n, err)
	}
	err = db.View(func(txn *badger.Txn) error {
		for i := 0; i < 100; i++ {
			_, err := txn.Get([]byte(fmt.Sprintf("k%03d", i)))
			if i == 7 {
				if !errors.Is(err, badger.ErrKeyNotFound) {
					return fmt.Errorf("k007 was deleted by the log, got %v", err)
				}
				continue
			}
			if err != nil {
				return fmt.Errorf("k%03d: %w", i, err)
			}
		}
		if _, err := txn.Get([]byte("torn")); !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("the torn record was applied: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// replayWAL reset the log: the old records stay in the file but belong to the old epoch.
	if l.size() != 0 {
		t.Fatalf("log size %d after replay, want 0", l.size())
	}
	db2Dir := t.TempDir()
	if n, err := replayWAL(openRawBadger(t, db2Dir), l, db2Dir); err != nil || n != 0 {
		t.Fatalf("second replay applied %d records (%v); want none", n, err)
	}
}

// Reopening a store replays its log; a store closed cleanly leaves nothing to replay.
func TestWALSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions(dir)
	o.MemTableSize = 4 << 20
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	putSessions(t, s, "c")
	var b Batch
	b.Enqueue(&Message{Topic: "t", Payload: []byte("p"), QoS: 1}, []Target{{ClientID: "c", QoS: 1}})
	seq, err := s.Commit(&b)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := openWAL(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.epoch < 2 {
		t.Fatalf("epoch %d after a clean close, want the log started over", l.epoch)
	}
	l.close()
	s, err = Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q, err := s.ReadQueue("c", 0, 10)
	if err != nil || len(q) != 1 || q[0].Seq != seq {
		t.Fatalf("queue after reopen: %+v, %v", q, err)
	}
}
