package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Replicator makes a group commit durable in a cluster, in place of the write-ahead log.
type Replicator interface {
	// Replicate returns nil once payload is committed by a majority and this store has applied it
	// (the raft FSM called ApplyReplicated). An error: it may or may not commit later; the store
	// fails (fail-stop), keeping err in its chain (errors.Is works through Store.Err()).
	Replicate(payload []byte) error
}

// appliedKey holds the index of the last replicated entry ApplyReplicated wrote (uint64
// big-endian), in the same Badger transaction as that entry's last data.
var appliedKey = []byte{famMeta, 'r', 'a', 'f', 't', '-', 'a', 'p', 'p', 'l', 'i', 'e', 'd'}

// replacingName is the file that marks a Replace under way: the store's content is neither the
// old one nor the new one until it is removed.
const replacingName = "holdfast.replacing"

// soundError is a failure that leaves Badger sound: a failed Replicate, a damaged snapshot stream.
// It fails the store like a storage error (nothing more is acknowledged), but ApplyReplicated goes
// on writing what the cluster commits, and Close closes Badger, so that the node can open the
// directory again.
type soundError struct{ err error }

func (e *soundError) Error() string { return e.err.Error() }
func (e *soundError) Unwrap() error { return e.err }

// replicate hands payload to the Replicator (cluster mode) and waits for it.
func (s *Store) replicate(payload []byte) error {
	start := time.Now()
	err := s.opt.Replicator.Replicate(payload)
	d := time.Since(start)
	s.stats.recordSync(d)
	if d > slowThreshold {
		s.log.Warn().Dur("took", d).Int("bytes", len(payload)).Msg("slow replication")
	}
	if err != nil {
		return &soundError{fmt.Errorf("persist: replicate: %w", err)}
	}
	return nil
}

// replicate replicates the group commits of a round (cluster mode) as one payload, in place of the
// fdatasync of the log. A failure fails the store: the callbacks that follow get ErrFailed.
func (y *syncer) replicate(round []*Batch) {
	var parts [][]byte
	size := 0
	for _, b := range round {
		if len(b.payload) > 0 {
			parts = append(parts, b.payload)
			size += len(b.payload)
			b.payload = nil
		}
	}
	if len(parts) == 0 {
		return
	}
	payload := parts[0]
	if len(parts) > 1 {
		payload = make([]byte, 0, size)
		for _, p := range parts {
			payload = append(payload, p...)
		}
	}
	if err := y.s.replicate(payload); err != nil {
		y.s.fail(err)
	}
}

// ApplyReplicated writes the entries of a committed replicated payload (the raft FSM's Apply, on
// every node, the leader included) into Badger, with index as the applied index, unsynced. An
// index at or below AppliedIndex is skipped: replaying the raft log is idempotent. A payload too
// big for one Badger transaction is written over several, the applied index in the last one, so a
// crash in between replays it whole. Call it from one goroutine; it runs alongside the writer.
// Errors fail the store. It still writes after a failed Replicate (Badger is sound, and what the
// cluster commits must reach it), not after a storage error or Close.
func (s *Store) ApplyReplicated(index uint64, payload []byte) error {
	s.readMu.RLock()
	defer s.readMu.RUnlock()
	if s.dbClosed {
		return ErrClosed
	}
	if s.diskFailed.Load() {
		return s.failedErr()
	}
	if index <= s.applied.Load() {
		return nil
	}
	if !walEntriesFit(payload) {
		err := newError(ErrCorrupt, nil, "replicated entry %d does not decode", index)
		s.fail(err)
		return err
	}
	p := partWriter{db: s.db, afterPart: testHookSpillPart}
	err := decodePayload(payload, p.write)
	if err == nil {
		err = p.write(appliedKey, binary.BigEndian.AppendUint64(nil, index), false)
	}
	if err == nil {
		err = p.commit()
	}
	if err != nil {
		p.discard()
		err = fmt.Errorf("persist: apply replicated entry %d: %w", index, err)
		s.fail(err)
		return err
	}
	s.applied.Store(index)
	return nil
}

// AppliedIndex is the index of the last replicated entry ApplyReplicated wrote (or Replace
// loaded); 0 if none. After a crash it is what Badger kept: entries above it must be applied again.
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// readApplied reads the applied index from Badger into s.applied.
func (s *Store) readApplied() error {
	var index uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(appliedKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return corruptf(appliedKey, "value of %d bytes, want 8", len(v))
			}
			index = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("persist: read applied index in %s: %w", s.opt.Dir, err)
	}
	s.applied.Store(index)
	return nil
}

// Checkpoint makes everything Badger holds durable (its files fsynced, as a checkpoint of the
// write-ahead log does): the entries applied so far survive a power cut. The raft FSM calls it
// for a snapshot. A failure fails the store.
func (s *Store) Checkpoint() error {
	if s.opt.Durability == None {
		return newError(ErrNotSupported, nil, "checkpoint: durability none keeps nothing on disk")
	}
	s.readMu.RLock()
	defer s.readMu.RUnlock()
	if s.dbClosed {
		return ErrClosed
	}
	if s.diskFailed.Load() {
		return s.failedErr()
	}
	if err := s.wal.checkpoint(s.db); err != nil {
		s.fail(err)
		return err
	}
	s.stats.checkpoints.Add(1)
	return nil
}

// Replace makes the store's content the backup stream r (Backup's format, a raft snapshot of
// another node's store): Badger's content is dropped, r loaded, the applied index read from it,
// Badger synced, and the writer's counters rebuilt. It runs on the writer, after every request
// submitted before it. For a follower's store (cluster mode) only: a store whose writer has
// replicated anything, or with requests waiting, is refused (and does not fail). A failure once
// the old content is being dropped fails the store; a crash then leaves the file
// holdfast.replacing, and the next Open empties the store (AppliedIndex 0). Never call it from
// the FSM of the node whose store is replicating: it would wait for its own Replicate.
func (s *Store) Replace(r io.Reader) error {
	if s.opt.Replicator == nil {
		return errors.New("persist: replace: only a store in cluster mode (with a Replicator) is replaced")
	}
	return s.control(func(w *writer) error { return w.replace(r) })
}

func (w *writer) replace(r io.Reader) error {
	s := w.s
	// A follower's store takes no requests: its writer has replicated nothing and has nothing
	// waiting.
	if w.handed > 0 || w.spilled {
		return errors.New("persist: replace: this store's writer has replicated group commits (a leader's store)")
	}
	if n := len(s.reqCh); n > 0 {
		return fmt.Errorf("persist: replace: %d requests wait for the writer (a follower's store takes none)", n)
	}
	// Badger's DropAll does not bear concurrent reads: readers (and the value-log GC) wait.
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.dbClosed {
		return ErrClosed
	}
	start := time.Now()
	s.dropOpenSnapshot()
	if err := s.replaceContent(r); err != nil {
		s.fail(err)
		return err
	}
	snap := s.db.NewTransaction(false)
	idx, err := loadIndex(snap)
	if err != nil {
		snap.Discard()
		s.fail(err)
		return err
	}
	w.nextSeq, w.known, w.old = idx.nextSeq, idx.sessions, idx.bodies
	clear(w.refs)
	w.handedShared = nil
	s.snapMu.Lock()
	s.openSnap, s.bound = snap, idx.nextSeq
	s.snapMu.Unlock()
	s.log.Info().Uint64("raft_applied", s.applied.Load()).Int("sessions", len(idx.sessions)).
		Dur("took", time.Since(start)).Msg("replaced the store's content with a snapshot")
	return nil
}

// replaceContent drops Badger's content and loads r in its place, between the creation and the
// removal of the replacing marker, and checkpoints.
func (s *Store) replaceContent(r io.Reader) error {
	marker := filepath.Join(s.opt.Dir, replacingName)
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_WRONLY, 0o600)
	if err == nil {
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = s.wal.syncDir(s.opt.Dir)
	}
	if err != nil {
		return fmt.Errorf("persist: replace: mark %s: %w", marker, err)
	}
	if err := s.db.DropAll(); err != nil {
		return fmt.Errorf("persist: replace: drop the old content: %w", err)
	}
	// Badger's Load trusts the frame lengths; frameReader checks them, safeCall catches the rest
	// (as Restore).
	fr := &frameReader{r: r}
	sr := &streamReader{r: fr}
	err = safeCall(func() error { return s.db.Load(sr, restoreMaxPendingWrites) })
	switch { // the stream's fault, not Badger's, in the first two cases
	case sr.err != nil:
		return &soundError{fmt.Errorf("persist: replace: damaged snapshot stream: %w", sr.err)}
	case fr.hdrN != 0:
		return &soundError{errors.New("persist: replace: the snapshot stream ends inside a frame (truncated?)")}
	case err != nil:
		return fmt.Errorf("persist: replace: load: %w", err)
	}
	if err := s.checkSchema(); err != nil {
		return err
	}
	if err := s.readApplied(); err != nil {
		return err
	}
	if err := s.wal.checkpoint(s.db); err != nil {
		return err
	}
	s.stats.checkpoints.Add(1)
	if err := os.Remove(marker); err != nil {
		return fmt.Errorf("persist: replace: %w", err)
	}
	return s.wal.syncDir(s.opt.Dir)
}

// openCluster prepares a store opened in cluster mode, before its format version is checked: a
// write-ahead log left by single-node use is replayed and removed (cluster mode uses none), and
// the content of a Replace that a crash interrupted is dropped.
func (s *Store) openCluster() error {
	dir := s.opt.Dir
	path := filepath.Join(dir, walName)
	if _, err := os.Stat(path); err == nil {
		l, err := openWAL(dir)
		if err != nil {
			return err
		}
		n, err := replayWAL(s.db, l, dir)
		l.close()
		if err != nil {
			return err
		}
		s.stats.checkpoints.Add(1) // replay ends with one
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("persist: remove write-ahead log: %w", err)
		}
		if err := syncDir(dir); err != nil {
			return err
		}
		s.log.Info().Int("records", n).Str("wal", path).
			Msg("cluster mode: replayed the write-ahead log of single-node use into the store and removed it (replication replaces it)")
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("persist: write-ahead log: %w", err)
	}
	marker := filepath.Join(dir, replacingName)
	if _, err := os.Stat(marker); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	s.log.Warn().Str("dir", dir).Msg("a replace of the store by a snapshot was interrupted: dropping its partial content (the store is empty, applied index 0)")
	if err := s.db.DropAll(); err != nil {
		return fmt.Errorf("persist: drop the content of an interrupted replace: %w", err)
	}
	if err := s.wal.checkpoint(s.db); err != nil {
		return err
	}
	if err := os.Remove(marker); err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	return syncDir(dir)
}

// checkNotReplacing refuses, outside cluster mode, a directory where a Replace was interrupted.
func checkNotReplacing(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, replacingName)); err == nil {
		return newError(ErrCorrupt, nil, "data directory %s: a replace of this cluster member's store by a snapshot was interrupted (%s); open it in cluster mode, which empties it", dir, replacingName)
	}
	return nil
}

// streamReader remembers the error its reader returned (io.EOF aside; frameReader's checks
// included), to tell a damaged snapshot stream from a failure of Badger.
type streamReader struct {
	r   io.Reader
	err error
}

func (r *streamReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}
