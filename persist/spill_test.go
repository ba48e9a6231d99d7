package persist

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// spillOptions: a 1 MiB memtable, so that a transaction holds about 1,600 entries.
func spillOptions(o *Options) { o.MemTableSize = 1 << 20 }

func maxBatchCount(s *Store) int {
	var n int
	_ = s.control(func(w *writer) error { n = int(w.db.MaxBatchCount()); return nil })
	return n
}

// A batch too big for one transaction reads its own writes: an Ack sees an earlier Ack's
// delete, and DeleteSession finds the subscriptions the batch itself wrote, though none of
// them is in Badger until the whole batch is.
func TestSpillReadsItsOwnWrites(t *testing.T) {
	ts := openTest(t, withOptions(spillOptions))
	ts.sessions("x", "y")
	b := &Batch{}
	b.PutSubscription("x", Subscription{Filter: "old", SubOptions: SubOptions{QoS: 1}})
	b.Enqueue(msg("t", "p", 1), []Target{{"x", 1}, {"y", 1}})
	shared := ts.commit(b)

	b = &Batch{}
	b.Ack("x", shared)
	for i := range 2 * maxBatchCount(ts.Store) {
		b.PutSubscription("x", Subscription{Filter: fmt.Sprint("new/", i), SubOptions: SubOptions{QoS: 1}})
	}
	b.Ack("x", shared) // the entry is gone: no second reference dropped
	b.PutSubscription("y", Subscription{Filter: "kept", SubOptions: SubOptions{QoS: 0}})
	b.DeleteSession("x")
	splits := ts.Stats().Splits
	ts.commit(b)
	if n := ts.Stats().Splits - splits; n != 1 {
		t.Fatalf("%d batches applied in parts, want 1", n)
	}
	check := func(when string) {
		st := ts.recover()
		for _, ss := range st.Sessions {
			if ss.ClientID != "y" || ss.QueuedCount != 1 || len(ss.Subscriptions) != 1 || ss.Subscriptions[0].Filter != "kept" {
				t.Errorf("%s: session %q with %d queued and %d subscriptions; want y alone, 1 queued, subscribed to kept",
					when, ss.ClientID, ss.QueuedCount, len(ss.Subscriptions))
			}
		}
		if len(st.Sessions) != 1 {
			t.Fatalf("%s: %d sessions, want 1", when, len(st.Sessions))
		}
		if keys := rawKeys(t, ts.db, famSub); len(keys) != 1 {
			t.Fatalf("%s: %d subscriptions, want 1", when, len(keys))
		}
		_ = ts.control(func(w *writer) error {
			if w.refs[shared] != 1 {
				t.Errorf("%s: body %d has %d references, want 1 (y's)", when, shared, w.refs[shared])
			}
			return nil
		})
	}
	check("live")
	ts.reopen()
	check("reopened")
}

const spillDirEnv = "HOLDFAST_PERSIST_SPILL_DIR"

// TestSpillCrashChild is the child of TestSpillCrashAllOrNothing: it commits one Enqueue to
// twice as many sessions as a transaction holds and SIGKILLs itself once the first of the
// transactions that apply it has committed.
func TestSpillCrashChild(t *testing.T) {
	dir := os.Getenv(spillDirEnv)
	if dir == "" {
		t.Skip("child process of TestSpillCrashAllOrNothing")
	}
	o := testOptions(dir, nil)
	spillOptions(&o)
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	targets := make([]Target, 2*maxBatchCount(s))
	cids := make([]string, len(targets))
	for i := range targets {
		cids[i] = fmt.Sprintf("c%05d", i)
		targets[i] = Target{cids[i], 1}
	}
	putSessions(t, s, cids...)
	testHookSpillPart = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	b := &Batch{}
	b.Enqueue(msg("fan", "out", 1), targets)
	_, err = s.Commit(b)
	t.Fatalf("the batch was committed (%v) without applying it in parts", err)
}

// A crash between the Badger transactions of one batch (the child kills itself there) leaves
// part of the batch in Badger; Open replays the log record that holds it whole.
func TestSpillCrashAllOrNothing(t *testing.T) {
	if os.Getenv(spillDirEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSpillCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), spillDirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed between two transactions of the batch: %v\n%s", err, out)
	}
	o := testOptions(dir, nil)
	spillOptions(&o)

	// What the crash left in Badger, before the log is replayed: part of the batch.
	// (The value threshold only has to fit the small memtable: it does not matter for reading.)
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(o.MemTableSize).
		WithValueLogFileSize(o.ValueLogFileSize).WithValueThreshold(1 << 10))
	if err != nil {
		t.Fatal(err)
	}
	sessions, queued := len(rawKeys(t, db, famSession)), len(rawKeys(t, db, famQueue))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if queued == 0 || queued >= sessions {
		t.Fatalf("Badger holds %d queue entries for %d sessions after the crash; want part of them", queued, sessions)
	}

	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := checkInvariants(s.db, s.w); err != nil {
		t.Fatalf("invariants after replay: %v", err)
	}
	st, err := s.Recover()
	if err != nil {
		t.Fatal(err)
	}
	for _, ss := range st.Sessions {
		if ss.QueuedCount != 1 {
			t.Fatalf("%s: %d queued after replay, want the message (Badger held %d of %d before)", ss.ClientID, ss.QueuedCount, queued, sessions)
		}
	}
	t.Logf("Badger held %d of %d queue entries after the crash; the log's record restored all of them", queued, sessions)
}
