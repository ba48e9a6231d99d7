package persist

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/holdfast/holdfast/internal/faultfs"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

const (
	faultDirEnv  = "HOLDFAST_PERSIST_FAULT_DIR"
	faultCaseEnv = "HOLDFAST_PERSIST_FAULT" // "step errno short", as faultCase.String
	// faultCheckpointBytes: the child's log checkpoints past 1.5 MiB of records, so that one run
	// grows the log past its first MiB and then checkpoints.
	faultCheckpointBytes = 1536 << 10
	faultArmAfter        = 100 // acknowledged batches before the fault is set
)

var stepNames = [numSteps]string{
	stepAppend: "append", stepGrow: "grow", stepSync: "fdatasync", stepCommit: "badger-commit",
	stepBadgerSync: "badger-sync", stepDirSync: "dir-sync", stepHeader: "header-write", stepHeaderSync: "header-sync",
}

type faultCase struct {
	at    step
	errno syscall.Errno
	short bool
	async bool // the store runs in Async mode
}

func (c faultCase) String() string {
	return fmt.Sprintf("%d %d %t %t", c.at, c.errno, c.short, c.async)
}

func (c faultCase) name() string {
	kind := c.errno.Error()
	if c.short {
		kind = "short write, " + kind
	}
	if c.async {
		kind += ", async"
	}
	return stepNames[c.at] + "/" + kind
}

// faultCases is every step with EIO and ENOSPC, and the steps that write with a short write too.
func faultCases() []faultCase {
	var cs []faultCase
	for at := range numSteps {
		cs = append(cs, faultCase{at, syscall.EIO, false, false}, faultCase{at, syscall.ENOSPC, false, false})
		if at == stepAppend || at == stepGrow || at == stepHeader {
			cs = append(cs, faultCase{at, syscall.ENOSPC, true, false})
		}
		if at == stepAppend || at == stepSync { // the writer's and the ticker's path in Async mode
			cs = append(cs, faultCase{at, syscall.EIO, false, true})
		}
	}
	return cs
}

// TestFaultInjectionInTheWAL (issue 13, "Fault injection in the WAL"): for every step of a
// commit and of a checkpoint and every fault (EIO, ENOSPC, a short write), a child process runs a
// store with batches in flight and the fault set at that step, and reports every callback in the
// order they run. The failed batch and every later one get an error wrapping ErrFailed, and no
// success is reported after the first failure. The child is then SIGKILLed, as the broker exits
// after a storage error, and a reopen of its directory recovers every acknowledged batch.
func TestFaultInjectionInTheWAL(t *testing.T) {
	if os.Getenv(faultDirEnv) != "" {
		t.Skip("in the child")
	}
	for _, c := range faultCases() {
		t.Run(c.name(), func(t *testing.T) { runFaultCase(t, c, false) })
	}
}

// TestFaultInjectionInTheWALThenPowerCut is TestFaultInjectionInTheWAL with EIO at every step,
// its child on a faultfs mount whose power is cut after the fail-stop: what was not fsynced is
// gone, Badger's unsynced files included, and every acknowledged batch is still there.
func TestFaultInjectionInTheWALThenPowerCut(t *testing.T) {
	if os.Getenv(faultDirEnv) != "" {
		t.Skip("in the child")
	}
	for at := range numSteps {
		c := faultCase{at, syscall.EIO, false, false}
		t.Run(c.name(), func(t *testing.T) { runFaultCase(t, c, true) })
	}
}

// TestFaultChild is the child of TestFaultInjectionInTheWAL. It prints "ok seq" for each batch
// acknowledged, "failed <wraps the fault> <error>" for the first failure, "violation ..." for a
// callback that breaks fail-stop, and "done" once every submitter has seen the failure.
func TestFaultChild(t *testing.T) {
	dir := os.Getenv(faultDirEnv)
	if dir == "" {
		t.Skip("child process of TestFaultInjectionInTheWAL")
	}
	var c faultCase
	if _, err := fmt.Sscan(os.Getenv(faultCaseEnv), &c.at, &c.errno, &c.short, &c.async); err != nil {
		t.Fatal(err)
	}
	o := testOptions(dir, nil)
	o.checkpointBytes = faultCheckpointBytes
	if c.async {
		o.Durability, o.AsyncInterval = Async, time.Millisecond
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	putSessions(t, s, "c")

	var mu sync.Mutex
	acked, failed := 0, false
	report := func(seq uint64, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil && failed:
			fmt.Printf("violation: seq %d acknowledged after a failure\n", seq)
		case err == nil:
			fmt.Printf("ok %d\n", seq)
			if acked++; acked == faultArmAfter {
				s.wal.faults[c.at].Store(&fault{err: c.errno, short: c.short})
			}
		case !errors.Is(err, ErrFailed):
			fmt.Printf("violation: %q does not wrap ErrFailed\n", err)
		case !failed:
			failed = true
			fmt.Printf("failed %t %q\n", errors.Is(err, c.errno), err)
		}
	}
	payload := strings.Repeat("p", 600)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				b := &Batch{}
				b.Enqueue(msg("fault", payload, 1), []Target{{"c", 1}})
				done := make(chan error, 1)
				s.Submit(b, func(seq uint64, err error) {
					report(seq, err)
					done <- err
				})
				if <-done != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	<-s.Failed()
	fmt.Printf("done %t\n", errors.Is(s.Err(), c.errno))
	select {} // until SIGKILL: a failed broker exits without closing Badger
}

// runFaultCase runs TestFaultChild with c, SIGKILLs it once it has failed (after a power cut if
// powerCut), and checks what it reported and what a reopen of its directory recovers.
func runFaultCase(t *testing.T, c faultCase, powerCut bool) {
	dir := t.TempDir()
	childDir, cut := dir, func() {}
	if powerCut {
		childDir = t.TempDir()
		fs := faultfs.Mount(t, dir, childDir)
		cut = func() {
			if err := fs.PowerCut(); err != nil {
				t.Error(err)
			}
		}
	}
	// The limit: the fault never stopped the child.
	child := startChild(t, "TestFaultChild", 30*time.Second, faultDirEnv+"="+childDir, faultCaseEnv+"="+c.String())
	var acked []uint64
	failures, done := 0, false
	for child.lines.Scan() {
		line := child.lines.Text()
		switch f := strings.Fields(line); {
		case len(f) == 2 && f[0] == "ok":
			seq, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("child: %q", line)
			}
			acked = append(acked, seq)
		case len(f) >= 2 && f[0] == "failed":
			failures++
			if f[1] != "true" {
				t.Errorf("the first failure does not wrap the injected %v: %s", c.errno, line)
			}
		case len(f) == 2 && f[0] == "done":
			done = true
			if f[1] != "true" {
				t.Errorf("Err() does not wrap the injected %v", c.errno)
			}
			cut()
			child.kill()
		default:
			t.Errorf("child: %s", line)
		}
	}
	_ = child.wait()
	if !done {
		t.Fatalf("the child did not fail-stop within 30 s (%d batches acknowledged)", len(acked))
	}
	if failures != 1 || len(acked) < faultArmAfter {
		t.Fatalf("%d batches acknowledged, %d first failures; want at least %d, then one", len(acked), failures, faultArmAfter)
	}

	s, err := Open(testOptions(dir, nil))
	if errors.Is(err, ErrCorrupt) && strings.Contains(err.Error(), filepath.Join(dir, walName)) && strings.Contains(err.Error(), "byte") {
		t.Logf("the fault left a damaged log, detected: %v", err)
		return
	}
	if err != nil {
		t.Fatalf("reopen after the fault: %v", err)
	}
	defer s.Close()
	if err := checkInvariants(s.db, s.w); err != nil {
		t.Errorf("invariants after the fault: %v", err)
	}
	if _, err := s.Recover(); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if lost := lostSeqs(t, s, "c", acked); lost > 0 {
		t.Errorf("%d of %d acknowledged batches lost", lost, len(acked))
	}
	var b Batch
	b.PutSubscription("c", Subscription{Filter: "after", SubOptions: SubOptions{QoS: 1}})
	if _, err := s.Commit(&b); err != nil {
		t.Errorf("commit after recovery: %v", err)
	}
}

// TestNoAcknowledgementAfterFailure: a storage error that arrives while the syncer is calling
// back a round of synced batches (from the writer or the async sync loop) fails the rest of the
// round: no success is reported after the first failure, even for a batch already synced.
func TestNoAcknowledgementAfterFailure(t *testing.T) {
	s, err := Open(testOptions(t.TempDir(), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFailed(t, s)
	// Hold the writer until both batches wait in the channel: it then commits them as one group,
	// and the syncer completes them in one round.
	gate := make(chan struct{})
	s.Submit(&Batch{ctl: func(*writer) error { <-gate; return nil }}, nil)
	results := make(chan error, 2)
	s.Submit(subscribe("a"), func(_ uint64, err error) {
		s.fail(syscall.EIO) // as the writer would, between the round's sync and its callbacks
		results <- err
	})
	s.Submit(subscribe("b"), func(_ uint64, err error) { results <- err })
	close(gate)
	if err := <-results; err != nil {
		t.Fatalf("the batch completed before the failure: %v", err)
	}
	if err := <-results; !errors.Is(err, ErrFailed) {
		t.Fatalf("the batch completed after the failure: %v, want ErrFailed", err)
	}
}

// closeFailed closes a store that failed, then its Badger, as the process's exit would let it go.
func closeFailed(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); !errors.Is(err, ErrFailed) {
		t.Errorf("Close of a failed store: %v, want ErrFailed", err)
	}
	if err := s.db.Close(); err != nil {
		t.Error(err)
	}
}

func subscribe(filter string) *Batch {
	var b Batch
	b.PutSubscription("c", Subscription{Filter: filter, SubOptions: SubOptions{QoS: 1}})
	return &b
}

// TestWALPartialWriteAndEpoch (issue 13, item 7): a record write that fails after writing part
// of the record leaves the position where it was, so the next record overwrites the torn one;
// and a header write that fails leaves the log on the epoch that its file still holds, with its
// records.
func TestWALPartialWriteAndEpoch(t *testing.T) {
	dir := t.TempDir()
	l, err := openWAL(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	record := func(k string) [][]rec { return [][]rec{{{key: []byte(k), val: []byte("v")}}} }
	for _, k := range []string{"a", "b"} {
		if err := l.append(record(k)); err != nil {
			t.Fatal(err)
		}
	}
	pos := l.pos
	l.faults[stepAppend].Store(&fault{err: syscall.ENOSPC, short: true})
	if err := l.append(record("torn")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append over a short write: %v, want ENOSPC", err)
	}
	if l.pos != pos {
		t.Fatalf("a failed append moved the position from %d to %d", pos, l.pos)
	}
	l.faults[stepAppend].Store(nil)
	if err := l.append(record("c")); err != nil {
		t.Fatal(err)
	}
	if err := l.sync(); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, l, dir, "a", "b", "c")

	for _, f := range []fault{{err: syscall.EIO}, {err: syscall.ENOSPC, short: true}} {
		epoch, pos := l.epoch, l.pos
		l.faults[stepHeader].Store(&f)
		if err := l.reset(); !errors.Is(err, f.err) {
			t.Fatalf("reset over a failing header write: %v, want %v", err, f.err)
		}
		l.faults[stepHeader].Store(nil)
		if l.epoch != epoch || l.pos != pos {
			t.Fatalf("after a failed reset: epoch %d at %d, want %d at %d as the file holds", l.epoch, l.pos, epoch, pos)
		}
		onDisk, err := openWAL(dir)
		if err != nil {
			t.Fatal(err)
		}
		onDisk.close()
		if onDisk.epoch != l.epoch {
			t.Fatalf("after a failed reset the file's epoch is %d, the log's %d", onDisk.epoch, l.epoch)
		}
		wantKeys(t, l, dir, "a", "b", "c")
	}
}

// wantKeys fails the test unless the records of l's epoch hold exactly keys, in order.
func wantKeys(t *testing.T, l *wal, dir string, keys ...string) {
	t.Helper()
	var got []string
	if _, err := scanWAL(l, dir, func(p []byte) error {
		key, _, _ := walField(p[1:])
		got = append(got, string(key))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != strings.Join(keys, ",") {
		t.Fatalf("the log holds %v, want %v", got, keys)
	}
}

const checkpointCrashEnv = "HOLDFAST_PERSIST_CHECKPOINT_CRASH_DIR"

// TestReplayOverCheckpointedBadger (issue 13, "replay of an old WAL over a newer Badger state"):
// a crash between a checkpoint and the start of the next epoch leaves a log whose every record
// Badger already holds, durably, with the effects of later records in it (deletes, overwrites,
// acknowledgements). Replaying the whole old epoch over it gives back exactly the same store,
// because replay applies the exact entries in order: the last write of every key wins again.
// The child stops there (the header write fails: fail-stop) and prints a digest of its store;
// after SIGKILL the reopened store has the same digest.
func TestReplayOverCheckpointedBadger(t *testing.T) {
	if os.Getenv(checkpointCrashEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	child := startChild(t, "TestCheckpointCrashChild", 30*time.Second, checkpointCrashEnv+"="+dir)
	var want string
	for child.lines.Scan() {
		f := strings.Fields(child.lines.Text())
		if len(f) != 2 || f[0] != "digest" {
			t.Fatalf("child: %s", child.lines.Text())
		}
		want = f[1]
		child.kill()
	}
	_ = child.wait()
	if want == "" {
		t.Fatal("the child did not stop between a checkpoint and the new epoch")
	}
	l, err := openWAL(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := scanWAL(l, dir, func([]byte) error { return nil })
	l.close()
	if err != nil || n == 0 {
		t.Fatalf("the log holds %d records of the checkpointed epoch (%v); want the whole epoch", n, err)
	}
	s, err := Open(testOptions(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := storeDigest(t, s); got != want {
		t.Errorf("after replaying %d old records over the checkpointed store: digest %s, want %s", n, got, want)
	}
	if err := checkInvariants(s.db, s.w); err != nil {
		t.Error(err)
	}
}

// TestCheckpointCrashChild is the child of TestReplayOverCheckpointedBadger: batches that
// enqueue to two sessions (a shared body), acknowledge and set the state of earlier entries,
// and put and delete subscriptions, retained messages and a whole session, until the first
// checkpoint's header write fails. It prints the digest of what its store holds then.
func TestCheckpointCrashChild(t *testing.T) {
	dir := os.Getenv(checkpointCrashEnv)
	if dir == "" {
		t.Skip("child process of TestReplayOverCheckpointedBadger")
	}
	o := testOptions(dir, nil)
	o.checkpointBytes = 256 << 10
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	putSessions(t, s, "a", "b", "c")
	s.wal.faults[stepHeader].Store(&fault{err: syscall.EIO})
	var seqs []uint64
	for i := 0; ; i++ {
		b := &Batch{}
		b.Enqueue(msg("t", strings.Repeat("x", 200), 1), []Target{{"a", 1}, {"b", 1}})
		if n := len(seqs); n > 0 {
			b.Ack("a", seqs[n-1])
			b.SetQueueState("b", seqs[n-1], Sent, uint16(i))
		}
		if n := len(seqs); n > 3 {
			b.Ack("b", seqs[n-4])
		}
		filter := fmt.Sprintf("f/%d", i%7)
		if i%2 == 0 {
			b.PutSubscription("c", Subscription{Filter: filter, SubOptions: SubOptions{QoS: 1}})
			b.PutRetained(msg(filter, strconv.Itoa(i), 1))
		} else {
			b.DeleteSubscription("c", filter)
			b.DeleteRetained(filter)
		}
		if i%50 == 49 {
			b.DeleteSession("c")
			b.PutSession("c", SessionRecord{ProtocolLevel: 4})
		}
		seq, err := s.Commit(b)
		if err != nil {
			break
		}
		seqs = append(seqs, seq)
	}
	if !errors.Is(s.Err(), syscall.EIO) {
		t.Fatalf("stopped by %v, want the header write's EIO", s.Err())
	}
	fmt.Printf("digest %s\n", storeDigest(t, s))
	select {} // until SIGKILL
}

// storeDigest is a hash of every key and value in s's Badger.
func storeDigest(t *testing.T, s *Store) string {
	t.Helper()
	h := sha256.New()
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%q=%q\n", it.Item().Key(), v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestRecoverWaitsForItsRemoval (issue 13, "a data race on the reader's error in read.go"):
// Recover removes leftovers in a batch that, in Sync mode, the syncer completes on its own
// goroutine, and must wait for that callback before it reads the result. Before 0e51533 it read
// the error the callback wrote without waiting, a race that -race reports when the syncer calls
// back before the writer moves on, so the test recovers many times. Last, the removal's
// fdatasync fails and Recover fails with it.
func TestRecoverWaitsForItsRemoval(t *testing.T) {
	s, err := Open(testOptions(t.TempDir(), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFailed(t, s)
	putSessions(t, s, "s")
	stray := func() {
		t.Helper()
		var b Batch
		b.SetQueueState("s", 1, Sent, 1) // an in-flight state without its entry: a leftover
		if _, err := s.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
	for range 200 {
		stray()
		if _, err := s.Recover(); err != nil {
			t.Fatal(err)
		}
		if n := len(rawKeys(t, s.db, famInflight)); n != 0 {
			t.Fatalf("%d in-flight states left after Recover", n)
		}
	}
	stray()
	s.wal.faults[stepSync].Store(&fault{err: syscall.EIO})
	if _, err := s.Recover(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Recover over a failing removal: %v, want EIO", err)
	}
}

// TestCloseCheckpointFailureFailsTheStore: Close's checkpoint is on the commit path too. When it
// fails, the store fails as after any storage error (Close returns ErrFailed and leaves Badger
// alone: its Close would flush to the failed disk, retrying for ever), and the next start
// recovers everything committed from the log.
func TestCloseCheckpointFailureFailsTheStore(t *testing.T) {
	for _, at := range []step{stepBadgerSync, stepDirSync, stepHeader, stepHeaderSync} {
		t.Run(stepNames[at], func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(testOptions(dir, nil))
			if err != nil {
				t.Fatal(err)
			}
			putSessions(t, s, "c")
			if _, err := s.Commit(subscribe("kept")); err != nil {
				t.Fatal(err)
			}
			s.wal.faults[at].Store(&fault{err: syscall.EIO})
			if err := s.Close(); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("Close over a failing checkpoint: %v, want ErrFailed and EIO", err)
			}
			select {
			case <-s.Failed():
			default:
				t.Fatal("Failed not closed")
			}
			if err := s.db.Close(); err != nil { // what the process's exit does
				t.Fatal(err)
			}
			ss := session(openRecovered(t, dir), "c")
			if ss == nil || len(ss.Subscriptions) != 1 || ss.Subscriptions[0].Filter != "kept" {
				t.Fatalf("recovered %+v, want session c with its subscription", ss)
			}
		})
	}
}

// TestSpillCommitFailure: a batch too big for one transaction is one synced record before Badger
// applies it in parts. When Badger's commit fails there, the store fails, and the next start
// applies the whole batch from the log: all of it, never part.
func TestSpillCommitFailure(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(dir, nil)
	spillOptions(&o)
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	putSessions(t, s, "c")
	n := 2 * maxBatchCount(s)
	b := &Batch{}
	for i := range n {
		b.PutSubscription("c", Subscription{Filter: fmt.Sprint("f/", i), SubOptions: SubOptions{QoS: 1}})
	}
	s.wal.faults[stepCommit].Store(&fault{err: syscall.EIO})
	if _, err := s.Commit(b); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("a spilled batch over a failing commit: %v, want ErrFailed and EIO", err)
	}
	if s.Stats().Splits != 1 {
		t.Fatalf("%d batches applied in parts, want 1", s.Stats().Splits)
	}
	closeFailed(t, s)
	if ss := session(openRecovered(t, dir), "c"); ss == nil || len(ss.Subscriptions) != n {
		t.Fatalf("recovered %+v, want session c with its %d subscriptions", ss, n)
	}
}

// TestBackgroundLoopsStopAtFailure: once the store has failed, the Async sync ticker and the
// value-log GC stop: nothing more goes to the failed disk (GC rewrites values), and a sync after
// a failure would prove nothing.
func TestBackgroundLoopsStopAtFailure(t *testing.T) {
	o := testOptions(t.TempDir(), nil)
	o.Durability, o.AsyncInterval = Async, time.Millisecond
	o.GCInterval, o.GCDiscardRatio = time.Millisecond, 0.5
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFailed(t, s)
	mqtttest.Eventually(t, 5*time.Second, "syncs and GC passes", func() bool {
		st := s.Stats()
		return st.Syncs > 2 && st.GCRuns > 2
	})
	s.wal.faults[stepSync].Store(&fault{err: syscall.EIO}) // the ticker's next sync fails
	<-s.Failed()
	before := s.Stats()
	<-time.After(50 * o.AsyncInterval) // 50 ticks of each loop, had they gone on
	if after := s.Stats(); after.Syncs > before.Syncs+1 || after.GCRuns > before.GCRuns+1 {
		t.Errorf("after the failure: %d more syncs and %d more GC passes, want none", after.Syncs-before.Syncs, after.GCRuns-before.GCRuns)
	}
}
