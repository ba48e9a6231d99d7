package persist

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/syncbuf"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
)

// fakeRaft stands for the raft log in the tests: Replicate gives each payload the next index
// (stepping by 2, as raft's own entries leave gaps) and applies it to every member's store, in
// order, before it returns.
type fakeRaft struct {
	mu      sync.Mutex
	index   uint64
	members []*Store
	log     []fakeEntry
	err     error // Replicate fails with it, committing nothing
	calls   int
	failAt  int           // if > 0, the failAt-th call fails with err and every later one too
	gate    chan struct{} // if set, the next call closes entered and waits until gate is closed
	entered chan struct{}
}

type fakeEntry struct {
	index   uint64
	payload []byte
}

func (f *fakeRaft) Replicate(payload []byte) error {
	f.mu.Lock()
	if gate := f.gate; gate != nil {
		f.gate = nil
		close(f.entered)
		f.mu.Unlock()
		<-gate
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil && (f.failAt == 0 || f.calls >= f.failAt) {
		return f.err
	}
	f.index += 2
	f.log = append(f.log, fakeEntry{f.index, bytes.Clone(payload)})
	for _, s := range f.members {
		if err := s.ApplyReplicated(f.index, payload); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeRaft) setMembers(ss ...*Store) {
	f.mu.Lock()
	f.members = ss
	f.mu.Unlock()
}

func (f *fakeRaft) entries() []fakeEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slicesClone(f.log)
}

func slicesClone[T any](s []T) []T { return append([]T(nil), s...) }

// notLeader is the Replicator of a follower's store: it never replicates.
type notLeader struct{}

var errNotLeader = errors.New("not the leader")

func (notLeader) Replicate([]byte) error { return errNotLeader }

// clusterOptions: a Sync store in dir in cluster mode, with the test memory sizes.
func clusterOptions(dir string, r Replicator, logs *syncbuf.Buffer) Options {
	o := testOptions(dir, nil)
	if logs != nil {
		o.Logger = zerolog.New(logs).Level(zerolog.InfoLevel)
	}
	o.Replicator = r
	return o
}

func openCluster(t *testing.T, dir string, r Replicator, mod func(*Options)) *Store {
	t.Helper()
	o := clusterOptions(dir, r, nil)
	if mod != nil {
		mod(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open (cluster mode): %v", err)
	}
	return s
}

// dump lists every key of s's Badger with its value.
func dump(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, hex.EncodeToString(it.Item().Key())+"="+hex.EncodeToString(v))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameContent(t *testing.T, when string, a, b *Store) {
	t.Helper()
	da, db := dump(t, a), dump(t, b)
	if !reflect.DeepEqual(da, db) {
		t.Fatalf("%s: the stores differ: %d keys against %d\n%s", when, len(da), len(db), firstDiff(da, db))
	}
	if a.AppliedIndex() != b.AppliedIndex() {
		t.Fatalf("%s: applied index %d against %d", when, a.AppliedIndex(), b.AppliedIndex())
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("at %d: %.120s\nagainst   %.120s", i, a[i], b[i])
		}
	}
	return "one is a prefix of the other"
}

func mustCommit(t *testing.T, s *Store, b *Batch) uint64 {
	t.Helper()
	seq, err := s.Commit(b)
	if err != nil {
		t.Fatalf("Commit(%s): %v", b, err)
	}
	return seq
}

// A leader's store and a follower's, each written only by ApplyReplicated, hold the same keys and
// values after every kind of batch, a batch too big for one transaction and concurrent group
// commits included; the leader's own transactions never reach its Badger; applying the log again
// changes nothing, and a third store fed the log from the start ends up the same.
func TestClusterFollowerMatchesLeader(t *testing.T) {
	raft := &fakeRaft{}
	leaderDir := t.TempDir()
	leader := openCluster(t, leaderDir, raft, spillOptions)
	defer leader.Close()
	follower := openCluster(t, t.TempDir(), notLeader{}, spillOptions)
	defer follower.Close()
	raft.setMembers(leader, follower)

	sessions := &Batch{}
	for _, c := range []string{"a", "b", "c"} {
		sessions.PutSession(c, SessionRecord{ProtocolLevel: 5})
	}
	sessions.PutSubscription("a", Subscription{Filter: "t/#", SubOptions: SubOptions{QoS: 1}})
	sessions.PutInbound("b", 7)
	mustCommit(t, leader, sessions)
	sameContent(t, "sessions", leader, follower)

	b := &Batch{}
	b.Enqueue(msg("t/1", "inline", 1), []Target{{"a", 1}})
	inline := mustCommit(t, leader, b)
	b = &Batch{}
	b.Enqueue(msg("t/2", "shared", 2), []Target{{"a", 1}, {"b", 2}, {"c", 1}})
	shared := mustCommit(t, leader, b)
	b = &Batch{}
	b.SetQueueState("b", shared, Sent, 3)
	b.PutRetained(&Message{Topic: "r/1", Payload: []byte("kept"), QoS: 1})
	b.PutRetained(&Message{Topic: "r/2", Payload: []byte("gone"), QoS: 0})
	mustCommit(t, leader, b)
	b = &Batch{}
	b.Ack("a", inline)
	b.Ack("a", shared)
	b.DeleteRetained("r/2")
	b.DeleteInbound("b", 7)
	mustCommit(t, leader, b)
	sameContent(t, "enqueue, state, retained, ack", leader, follower)

	// Group commits of several batches, and rounds of several group commits.
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		b := &Batch{}
		b.Enqueue(msg(fmt.Sprint("t/", i), "burst", 1), []Target{{"c", 1}})
		wg.Add(1)
		leader.Submit(b, func(_ uint64, err error) {
			if err != nil {
				errs <- err
			}
			wg.Done()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("burst: %v", err)
	}
	sameContent(t, "burst", leader, follower)

	// A batch too big for one transaction: one entry, written over several transactions.
	b = &Batch{}
	for i := range 2 * maxBatchCount(leader) {
		b.PutSubscription("a", Subscription{Filter: fmt.Sprint("big/", i), SubOptions: SubOptions{QoS: 1}})
	}
	splits := leader.Stats().Splits
	mustCommit(t, leader, b)
	if leader.Stats().Splits == splits {
		t.Fatal("the big batch was not applied in parts")
	}
	sameContent(t, "spill", leader, follower)
	b = &Batch{}
	b.DeleteSession("a")
	b.DeleteSession("b")
	mustCommit(t, leader, b)
	sameContent(t, "delete sessions", leader, follower)

	for _, s := range []*Store{leader, follower} {
		st, err := s.RecoverSessions()
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Sessions) != 1 || st.Sessions[0].ClientID != "c" || len(st.Retained) != 1 {
			t.Fatalf("recovered %d sessions, %d retained; want c alone and r/1", len(st.Sessions), len(st.Retained))
		}
		q, err := s.ReadQueue("c", 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(q) != 201 { // the shared message and the burst
			t.Fatalf("c's queue holds %d entries, want 201", len(q))
		}
	}
	if _, err := os.Stat(filepath.Join(leaderDir, walName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cluster mode left a write-ahead log: %v", err)
	}

	// Replaying the log changes nothing; a store fed it from the start ends up the same.
	log := raft.entries()
	if last := log[len(log)-1].index; leader.AppliedIndex() != last {
		t.Fatalf("applied index %d, want the last entry's %d", leader.AppliedIndex(), last)
	}
	before := dump(t, follower)
	for _, e := range log {
		if err := follower.ApplyReplicated(e.index, e.payload); err != nil {
			t.Fatal(err)
		}
	}
	if after := dump(t, follower); !reflect.DeepEqual(before, after) {
		t.Fatalf("replaying the log changed the store\n%s", firstDiff(before, after))
	}
	fresh := openCluster(t, t.TempDir(), notLeader{}, spillOptions)
	defer fresh.Close()
	for _, e := range log {
		if err := fresh.ApplyReplicated(e.index, e.payload); err != nil {
			t.Fatal(err)
		}
	}
	sameContent(t, "a store fed the whole log", leader, fresh)
}

// The leader's writer transaction is only a builder: what reaches the leader's Badger is what
// ApplyReplicated writes.
func TestClusterLeaderWritesOnlyThroughApply(t *testing.T) {
	raft := &fakeRaft{}
	leader := openCluster(t, t.TempDir(), raft, nil)
	defer leader.Close()
	follower := openCluster(t, t.TempDir(), notLeader{}, nil)
	defer follower.Close()
	raft.setMembers(follower) // the leader's own store is left out
	putSessions(t, leader, "x", "y")
	if keys := rawKeys(t, leader.db, famSession); len(keys) != 0 {
		t.Fatalf("the leader's writer committed %d session records itself", len(keys))
	}
	if keys := rawKeys(t, follower.db, famSession); len(keys) != 2 {
		t.Fatalf("the follower holds %d session records, want 2", len(keys))
	}
}

// A failed Replicate fails the store with that error in its chain; no callback succeeds after
// the first failed one; the batch is in no store; Close closes Badger, so the directory opens
// again (as a follower's store would), and ApplyReplicated still writes in between.
func TestClusterReplicateErrorFailsStore(t *testing.T) {
	lost := errors.New("leadership lost")
	raft := &fakeRaft{}
	dir := t.TempDir()
	leader := openCluster(t, dir, raft, nil)
	follower := openCluster(t, t.TempDir(), notLeader{}, nil)
	defer follower.Close()
	raft.setMembers(leader, follower)
	putSessions(t, leader, "a")

	// The first round waits until every batch is submitted, so that it succeeds with the first
	// batches and the next round fails with the others.
	gate, entered := make(chan struct{}), make(chan struct{})
	raft.mu.Lock()
	raft.err, raft.failAt, raft.gate, raft.entered = lost, raft.calls+2, gate, entered
	raft.mu.Unlock()
	const n = 300
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		b := &Batch{}
		b.PutSubscription("a", Subscription{Filter: fmt.Sprint("f/", i), SubOptions: SubOptions{QoS: 1}})
		wg.Add(1)
		leader.Submit(b, func(_ uint64, err error) {
			results[i] = err
			wg.Done()
		})
		if i == 9 {
			<-entered // the first round holds some batches; the others go in the next
		}
	}
	close(gate)
	wg.Wait()
	firstFail := -1
	for i, err := range results {
		switch {
		case err != nil && firstFail < 0:
			firstFail = i
			if !errors.Is(err, lost) {
				t.Errorf("batch %d: %v, want the Replicate error in its chain", i, err)
			}
		case err == nil && firstFail >= 0:
			t.Fatalf("batch %d succeeded after batch %d failed", i, firstFail)
		case err != nil && !errors.Is(err, ErrFailed) && !errors.Is(err, lost):
			t.Errorf("batch %d: %v", i, err)
		}
	}
	if firstFail < 0 {
		t.Fatal("no batch failed")
	}
	if !errors.Is(leader.Err(), lost) {
		t.Fatalf("Err() = %v, want the Replicate error in its chain", leader.Err())
	}
	select {
	case <-leader.Failed():
	default:
		t.Fatal("Failed not closed")
	}
	if _, err := leader.Commit(&Batch{}); !errors.Is(err, ErrFailed) {
		t.Fatalf("Commit after the failure: %v, want ErrFailed", err)
	}
	// The acknowledged batches are in both stores, the failed ones in neither.
	for _, s := range []*Store{leader, follower} {
		if got, want := len(rawKeys(t, s.db, famSub)), firstFail; got != want {
			t.Fatalf("%d subscriptions in a store, want the %d acknowledged", got, want)
		}
	}
	sameContent(t, "after the failure", leader, follower)

	// What the cluster commits still reaches the store (Badger is sound).
	b := &Batch{}
	b.PutRetained(&Message{Topic: "late", Payload: []byte("p")})
	late := appendPayload(nil, [][]rec{{{key: b.ops[0].key, val: b.ops[0].val}}})
	if err := leader.ApplyReplicated(leader.AppliedIndex()+1, late); err != nil {
		t.Fatalf("ApplyReplicated after a failed Replicate: %v", err)
	}
	applied := leader.AppliedIndex()
	if err := leader.Close(); !errors.Is(err, lost) {
		t.Fatalf("Close: %v, want the failure", err)
	}
	again := openCluster(t, dir, notLeader{}, nil)
	defer again.Close()
	if again.AppliedIndex() != applied || len(rawKeys(t, again.db, famRetained)) != 1 {
		t.Fatalf("reopened: applied index %d (want %d), %d retained (want 1)", again.AppliedIndex(), applied, len(rawKeys(t, again.db, famRetained)))
	}
}

// A failed Replicate of a batch too big for one transaction fails the store too, and nothing of
// the batch reaches Badger.
func TestClusterReplicateErrorSpill(t *testing.T) {
	lost := errors.New("no quorum")
	raft := &fakeRaft{}
	leader := openCluster(t, t.TempDir(), raft, spillOptions)
	defer leader.Close()
	raft.setMembers(leader)
	putSessions(t, leader, "a")
	raft.mu.Lock()
	raft.err = lost
	raft.mu.Unlock()
	b := &Batch{}
	for i := range 2 * maxBatchCount(leader) {
		b.PutSubscription("a", Subscription{Filter: fmt.Sprint("big/", i), SubOptions: SubOptions{QoS: 1}})
	}
	if _, err := leader.Commit(b); !errors.Is(err, lost) {
		t.Fatalf("Commit: %v, want the Replicate error", err)
	}
	if !errors.Is(leader.Err(), lost) {
		t.Fatalf("Err() = %v", leader.Err())
	}
	if n := len(rawKeys(t, leader.db, famSub)); n != 0 {
		t.Fatalf("%d subscriptions of the failed batch in Badger", n)
	}
}

// Open reads the applied index back, on the leader's directory and a follower's.
func TestClusterReopenReadsAppliedIndex(t *testing.T) {
	raft := &fakeRaft{}
	dirs := []string{t.TempDir(), t.TempDir()}
	leader := openCluster(t, dirs[0], raft, nil)
	follower := openCluster(t, dirs[1], notLeader{}, nil)
	raft.setMembers(leader, follower)
	if leader.AppliedIndex() != 0 {
		t.Fatalf("a new store's applied index is %d", leader.AppliedIndex())
	}
	putSessions(t, leader, "a", "b")
	b := &Batch{}
	b.Enqueue(msg("t", "p", 1), []Target{{"a", 1}, {"b", 1}})
	mustCommit(t, leader, b)
	want := leader.AppliedIndex()
	if want == 0 || follower.AppliedIndex() != want {
		t.Fatalf("applied index %d on the leader, %d on the follower", want, follower.AppliedIndex())
	}
	for _, s := range []*Store{leader, follower} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range dirs {
		s := openCluster(t, dir, notLeader{}, nil)
		if s.AppliedIndex() != want {
			t.Errorf("reopened: applied index %d, want %d", s.AppliedIndex(), want)
		}
		// An entry at or below it is skipped: the session it would delete stays.
		gone := appendPayload(nil, [][]rec{{{key: sessionKey("a"), del: true}}})
		if err := s.ApplyReplicated(want, gone); err != nil {
			t.Fatal(err)
		}
		if n := len(rawKeys(t, s.db, famSession)); n != 2 {
			t.Errorf("an entry at the applied index was applied again: %d sessions", n)
		}
		if err := s.ApplyReplicated(want+1, gone); err != nil {
			t.Fatal(err)
		}
		if n := len(rawKeys(t, s.db, famSession)); n != 1 || s.AppliedIndex() != want+1 {
			t.Errorf("the next entry: %d sessions, applied index %d", n, s.AppliedIndex())
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A snapshot (Checkpoint, then Backup) replaces a follower's content, whatever it held, applied
// index included; the follower then applies only the entries after it. A damaged snapshot fails
// the store, and the next Open empties it.
func TestClusterCheckpointReplace(t *testing.T) {
	raft := &fakeRaft{}
	leader := openCluster(t, t.TempDir(), raft, nil)
	defer leader.Close()
	raft.setMembers(leader)
	putSessions(t, leader, "a", "b")
	b := &Batch{}
	b.Enqueue(msg("t", "p", 1), []Target{{"a", 1}, {"b", 1}})
	shared := mustCommit(t, leader, b)
	b = &Batch{}
	b.PutRetained(&Message{Topic: "r", Payload: []byte("v"), QoS: 1})
	mustCommit(t, leader, b)
	checkpoints := leader.Stats().Checkpoints
	if err := leader.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if leader.Stats().Checkpoints != checkpoints+1 {
		t.Fatal("Checkpoint did not checkpoint")
	}
	var snap bytes.Buffer
	if _, err := leader.Backup(&snap, 0); err != nil {
		t.Fatal(err)
	}
	snapIndex := leader.AppliedIndex()

	// The follower held other things, and fell behind.
	fdir := t.TempDir()
	follower := openCluster(t, fdir, notLeader{}, nil)
	stale := appendPayload(nil, [][]rec{{{key: sessionKey("stale"), val: encodeSession(SessionRecord{ProtocolLevel: 4})}}})
	if err := follower.ApplyReplicated(1, stale); err != nil {
		t.Fatal(err)
	}
	if err := leader.Replace(bytes.NewReader(snap.Bytes())); err == nil || leader.Err() != nil {
		t.Fatalf("Replace of a leader's store: %v, store error %v; want refused, not failed", err, leader.Err())
	}
	if err := follower.Replace(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	sameContent(t, "replaced", leader, follower)
	if follower.AppliedIndex() != snapIndex {
		t.Fatalf("applied index %d after Replace, want %d", follower.AppliedIndex(), snapIndex)
	}
	if _, err := os.Stat(filepath.Join(fdir, replacingName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the replacing marker is left: %v", err)
	}
	// The writer's counters follow the new content: Recover counts the shared body's two entries.
	st, err := follower.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Sessions) != 2 || session(st, "a").QueuedCount != 1 || len(st.Retained) != 1 {
		t.Fatalf("after Replace: %d sessions, a's queue %d, %d retained", len(st.Sessions), session(st, "a").QueuedCount, len(st.Retained))
	}
	// Later entries apply on top; the leader's next one reaches both.
	raft.setMembers(leader, follower)
	b = &Batch{}
	b.Ack("a", shared)
	mustCommit(t, leader, b)
	sameContent(t, "after the next entry", leader, follower)

	// A damaged snapshot fails the follower's store; the next Open drops the partial content.
	bad := snap.Bytes()[:snap.Len()/2]
	raft.setMembers(leader)
	if err := follower.Replace(bytes.NewReader(bad)); err == nil {
		t.Fatal("Replace of a truncated snapshot succeeded")
	}
	if follower.Err() == nil {
		t.Fatal("a failed Replace did not fail the store")
	}
	if _, err := os.Stat(filepath.Join(fdir, replacingName)); err != nil {
		t.Fatalf("no replacing marker after a failed Replace: %v", err)
	}
	_ = follower.Close()
	// Outside cluster mode the directory is refused; in cluster mode it is emptied.
	if _, err := Open(testOptions(fdir, nil)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), replacingName) {
		t.Fatalf("single-node Open of an interrupted replace: %v", err)
	}
	again := openCluster(t, fdir, notLeader{}, nil)
	defer again.Close()
	if again.AppliedIndex() != 0 || len(dump(t, again)) != 1 { // the format version alone
		t.Fatalf("after an interrupted replace: applied index %d, %d keys", again.AppliedIndex(), len(dump(t, again)))
	}
	if _, err := os.Stat(filepath.Join(fdir, replacingName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the replacing marker is left after Open: %v", err)
	}
}

// Replace is refused outside cluster mode.
func TestReplaceNeedsClusterMode(t *testing.T) {
	ts := openTest(t)
	if err := ts.Replace(bytes.NewReader(nil)); err == nil {
		t.Fatal("Replace of a single-node store succeeded")
	}
}

// Cluster mode needs durability sync.
func TestClusterRefusesAsyncAndNone(t *testing.T) {
	for _, d := range []Durability{Async, None} {
		o := clusterOptions(t.TempDir(), notLeader{}, nil)
		o.Durability, o.AsyncInterval = d, 10_000_000
		s, err := Open(o)
		if err == nil {
			s.Close()
			t.Fatalf("Open with durability %s and a Replicator succeeded", d)
		}
		if !strings.Contains(err.Error(), "sync") {
			t.Errorf("durability %s: %v (does not say it needs sync)", d, err)
		}
	}
}

// A directory of single-node use whose write-ahead log holds records: Open in cluster mode
// replays them into the store, removes the log, and says so.
func TestClusterReplaysSingleNodeLog(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(testOptions(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	putSessions(t, s, "old")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A record that a crash left in the log, not in Badger.
	l, err := openWAL(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.appendSynced([][]rec{{{key: sessionKey("logged"), val: encodeSession(SessionRecord{ProtocolLevel: 5})}}}); err != nil {
		t.Fatal(err)
	}
	l.close()

	logs := &syncbuf.Buffer{}
	c, err := Open(clusterOptions(dir, notLeader{}, logs))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := len(rawKeys(t, c.db, famSession)); n != 2 {
		t.Fatalf("%d sessions, want old and logged", n)
	}
	if _, err := os.Stat(filepath.Join(dir, walName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the log is still there: %v", err)
	}
	if !containsAll(logs.String(), "cluster mode", "removed", `"records":1`) {
		t.Fatalf("no log line about the replayed log:\n%s", logs.String())
	}
}

// The group commits the writer hands over while a Replicate runs are replicated together, in the
// syncer's next round, as one payload: every one of them reaches both stores.
func TestClusterRoundOfSeveralGroupCommits(t *testing.T) {
	raft := &fakeRaft{}
	oneOp := func(o *Options) { o.MaxBatchOps = 1 } // every batch its own group commit
	leader := openCluster(t, t.TempDir(), raft, oneOp)
	defer leader.Close()
	follower := openCluster(t, t.TempDir(), notLeader{}, nil)
	defer follower.Close()
	raft.setMembers(leader, follower)
	putSessions(t, leader, "a")

	gate, entered := make(chan struct{}), make(chan struct{})
	raft.mu.Lock()
	raft.gate, raft.entered = gate, entered
	calls := raft.calls
	raft.mu.Unlock()
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		b := &Batch{}
		b.PutSubscription("a", Subscription{Filter: fmt.Sprint("f/", i), SubOptions: SubOptions{QoS: 1}})
		wg.Add(1)
		leader.Submit(b, func(_ uint64, err error) {
			if err != nil {
				errs <- err
			}
			wg.Done()
		})
		if i == 0 {
			<-entered
		}
	}
	// Let the writer hand the others over, one group commit each, while the first round waits.
	for queued := 0; queued < n-1; time.Sleep(time.Millisecond) {
		leader.sync.mu.Lock()
		queued = len(leader.sync.queue)
		leader.sync.mu.Unlock()
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	raft.mu.Lock()
	calls = raft.calls - calls
	raft.mu.Unlock()
	if calls >= n {
		t.Fatalf("%d Replicate calls for %d group commits: no round held several", calls, n)
	}
	if got := len(rawKeys(t, follower.db, famSub)); got != n {
		t.Fatalf("the follower holds %d subscriptions, want %d", got, n)
	}
	sameContent(t, "rounds of several group commits", leader, follower)
}
