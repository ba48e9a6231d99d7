package persist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

const lostTailEnv = "HOLDFAST_PERSIST_LOST_TAIL_DIR"

// TestLostLogTailOverNewerBadger (issue 13, "replay of an old WAL over a newer Badger state"):
// when a batch's fdatasync fails and the kernel drops the record's page (as Linux may after a
// writeback error; faultfs does), Badger must not hold the batch: its memtable file, which
// nothing syncs, can keep it through a power cut, and the next start would replay the older
// records of the epoch over it: every key those records write would go back, every other key
// of the batch would stay. Here the batch deletes a session whose record was checkpointed and
// whose queue entry is in the log: applied before its sync, the entry came back without its
// record. The batch was never acknowledged, so it may be there or not, but whole or not at all.
func TestLostLogTailOverNewerBadger(t *testing.T) {
	if os.Getenv(lostTailEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	child := startChild(t, "TestLostTailChild", 30*time.Second, lostTailEnv+"="+dir)
	var seq uint64
	var off int64
	for child.lines.Scan() {
		if _, err := fmt.Sscanf(child.lines.Text(), "seq %d at %d", &seq, &off); err != nil {
			t.Fatalf("child: %s", child.lines.Text())
		}
		child.kill()
	}
	_ = child.wait()
	if off == 0 {
		t.Fatal("the child did not report its failed batch")
	}
	// The failed fdatasync's page is gone: the log holds zeros from the failed record on.
	f, err := os.OpenFile(filepath.Join(dir, walName), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 4096), off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	st := openRecovered(t, dir)
	ss := session(st, "c")
	switch {
	case ss == nil:
		// the deletion whole
	case ss.Orphan || ss.QueuedCount != 1:
		t.Errorf("session c: %+v, want it with its one queue entry (no deletion) or nothing (the deletion whole)", ss)
	}
}

// TestLostTailChild is the child of TestLostLogTailOverNewerBadger.
func TestLostTailChild(t *testing.T) {
	dir := os.Getenv(lostTailEnv)
	if dir == "" {
		t.Skip("child process of TestLostLogTailOverNewerBadger")
	}
	s, err := Open(testOptions(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	putSessions(t, s, "c")
	if err := s.Close(); err != nil { // a checkpoint: the session record is in Badger, not in the log
		t.Fatal(err)
	}
	if s, err = Open(testOptions(dir, nil)); err != nil {
		t.Fatal(err)
	}
	var b Batch
	b.Enqueue(msg("t", "p", 1), []Target{{"c", 1}})
	seq, err := s.Commit(&b)
	if err != nil {
		t.Fatal(err)
	}
	off := s.wal.pos // where the next record goes
	s.wal.faults[stepSync].Store(&fault{err: syscall.EIO})
	var del Batch
	del.DeleteSession("c")
	if _, err := s.Commit(&del); !errors.Is(err, syscall.EIO) {
		t.Fatalf("DeleteSession over a failing fdatasync: %v", err)
	}
	fmt.Printf("seq %d at %d\n", seq, off)
	select {} // until SIGKILL
}

// TestReadsSeeTheGroupCommitBefore: in Sync mode Badger gets a group commit only from the
// syncer, after its fdatasync, while the writer already applies the next batches. A DeleteSession
// submitted right behind an Enqueue to the same session must still find the queue entry (and
// drop its reference to the shared body), not leave it behind without its session record.
// MaxBatchOps 1 makes each its own group commit.
func TestReadsSeeTheGroupCommitBefore(t *testing.T) {
	ts := openTest(t, withOptions(func(o *Options) { o.MaxBatchOps = 1 }))
	ts.sessions("other")
	for i := range 200 {
		cid := fmt.Sprintf("c%03d", i)
		ts.sessions(cid)
		var e, d Batch
		e.Enqueue(msg("t", "p", 1), []Target{{cid, 1}, {"other", 1}})
		d.DeleteSession(cid)
		errs := make(chan error, 2)
		ts.Submit(&e, func(_ uint64, err error) { errs <- err })
		ts.Submit(&d, func(_ uint64, err error) { errs <- err })
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if q := ts.readQueue(cid, 0, 10); len(q) != 0 {
			t.Fatalf("round %d: deleted session %s still has %d queue entries", i, cid, len(q))
		}
	}
	if q := ts.readQueue("other", 0, 300); len(q) != 200 {
		t.Errorf("session other: %d queue entries, want 200", len(q))
	}
}
