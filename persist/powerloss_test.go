package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFormatVersionSurvivesLosingBadgersState is what a power cut shortly after the first start
// leaves (issue 13, item 3): the write-ahead log, fdatasynced with every commit, and none of
// Badger's own state, which is not synced before the first checkpoint. Replaying the log into an
// empty directory must give a store that opens, with its format version and the committed data.
func TestFormatVersionSurvivesLosingBadgersState(t *testing.T) {
	ts := openTest(t)
	putSessions(t, ts.Store, "c")
	var b Batch
	b.PutSubscription("c", Subscription{Filter: "a/#", SubOptions: SubOptions{QoS: 1}})
	ts.commit(&b)

	// The power cut: only the synced log is left, in a directory otherwise empty.
	ss := session(openRecovered(t, walCopy(t, ts, 0)), "c")
	if ss == nil || len(ss.Subscriptions) != 1 || ss.Subscriptions[0].Filter != "a/#" {
		t.Fatalf("recovered %+v, want session c with its subscription", ss)
	}
}

// TestFailStopAfterStorageError (issue 13, items 1 and fault injection): once a write or an
// fdatasync of the write-ahead log fails (EIO, ENOSPC), the batch it held is not acknowledged,
// Failed is closed, and no later batch is acknowledged either, even when the disk would work
// again: a failed fsync may have dropped the pages it could not write, so a later success proves
// nothing. A restart recovers from what is on disk, without the refused batches.
func TestFailStopAfterStorageError(t *testing.T) {
	for _, fault := range []struct {
		name string
		at   step
		err  error
	}{
		{"fdatasync EIO", stepSync, syscall.EIO},
		{"write EIO", stepAppend, syscall.EIO},
		{"write ENOSPC", stepAppend, syscall.ENOSPC},
	} {
		t.Run(fault.name, func(t *testing.T) { failStopAfter(t, fault.at, fault.err) })
	}
}

func failStopAfter(t *testing.T, at step, cause error) {
	dir := t.TempDir()
	s, err := Open(testOptions(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	putSessions(t, s, "c")
	s.wal.faults[at].Store(&fault{err: cause})
	var b Batch
	b.PutSubscription("c", Subscription{Filter: "lost", SubOptions: SubOptions{QoS: 1}})
	if _, err := s.Commit(&b); !errors.Is(err, cause) {
		t.Fatalf("commit over the fault: %v, want %v", err, cause)
	}
	select {
	case <-s.Failed():
	default:
		t.Fatal("Failed not closed after a storage error")
	}
	if !errors.Is(s.Err(), cause) {
		t.Errorf("Err() = %v, want %v", s.Err(), cause)
	}
	s.wal.faults[at].Store(nil) // the disk "recovers"
	var later Batch
	later.PutSubscription("c", Subscription{Filter: "later", SubOptions: SubOptions{QoS: 1}})
	if _, err := s.Commit(&later); !errors.Is(err, ErrFailed) {
		t.Fatalf("commit after the failure: %v, want ErrFailed", err)
	}
	// Close writes nothing more to the failed disk (the broker's process exits next, which lets
	// Badger go); here the test lets Badger go itself, then restarts on the directory.
	closeFailed(t, s)
	for _, sub := range session(openRecovered(t, dir), "c").Subscriptions {
		if sub.Filter == "later" {
			t.Error("a batch refused after the failure is on disk")
		}
	}
}

// walCopy is the write-ahead log of a running store as a power cut would leave it (see
// TestFormatVersionSurvivesLosingBadgersState), with the byte at off changed if off > 0.
func walCopy(t *testing.T, ts *testStore, off int) string {
	t.Helper()
	wal, err := os.ReadFile(filepath.Join(ts.dir, walName))
	if err != nil {
		t.Fatal(err)
	}
	if off > 0 {
		wal[off] ^= 0xff
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, walName), wal, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// walRecordAt returns the offset of the k-th record (from 0) of the log file at dir.
func walRecordAt(t *testing.T, dir string, k int) int {
	t.Helper()
	wal, err := os.ReadFile(filepath.Join(dir, walName))
	if err != nil {
		t.Fatal(err)
	}
	off := walFileHdr
	for range k {
		off += walHeader + int(binary.BigEndian.Uint32(wal[off:off+4]))
	}
	return off
}

// TestWALDamageMidLogStopsStartUp (issue 13, item 2): a damaged record with valid records after
// it is corruption, not the end of the log: start-up stops naming the file and the offset
// instead of dropping the acknowledged records behind it. A damaged last record is a torn tail
// and is dropped.
func TestWALDamageMidLogStopsStartUp(t *testing.T) {
	ts := openTest(t)
	putSessions(t, ts.Store, "c")
	for _, f := range []string{"a", "b", "c"} {
		var b Batch
		b.PutSubscription("c", Subscription{Filter: f, SubOptions: SubOptions{QoS: 1}})
		ts.commit(&b)
	}
	// Records: the format version, the session, then one per subscription.
	mid := walRecordAt(t, ts.dir, 3) + walHeader // the payload of subscription "b"
	damaged := walCopy(t, ts, mid)
	if _, err := CheckWAL(damaged); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("byte %d", mid-walHeader)) {
		t.Errorf("CheckWAL (what verify runs) on a damaged record mid-log: %v, want ErrCorrupt naming byte %d", err, mid-walHeader)
	}
	_, err := Open(testOptions(damaged, nil))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("byte %d", mid-walHeader)) {
		t.Fatalf("open with a damaged record mid-log: %v, want ErrCorrupt naming byte %d", err, mid-walHeader)
	}

	last := walRecordAt(t, ts.dir, 4) + walHeader // subscription "c", the last record
	torn := walCopy(t, ts, last)
	if n, err := CheckWAL(torn); err != nil || n != 4 {
		t.Errorf("CheckWAL with a torn last record: %d records, %v; want the 4 before it", n, err)
	}
	var got []string
	for _, sub := range session(openRecovered(t, torn), "c").Subscriptions {
		got = append(got, sub.Filter)
	}
	if strings.Join(got, ",") != "a,b" {
		t.Errorf("after dropping the torn last record: subscriptions %v, want a and b", got)
	}
}

// openRecovered opens the store in dir, as a restart does, and returns what it recovers; the
// store is closed when the test ends.
func openRecovered(t *testing.T, dir string) *State {
	t.Helper()
	s, err := Open(testOptions(dir, nil))
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	st, err := s.Recover()
	if err != nil {
		t.Fatal(err)
	}
	return st
}
