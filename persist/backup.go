package persist

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
)

// restoreMaxPendingWrites bounds the write requests DB.Load keeps in flight
// (the Badger CLI's value, chosen to keep memory low).
const restoreMaxPendingWrites = 256

// Backup writes a snapshot of every key whose latest version is greater than
// since to w, in Badger's backup format (the DB.Backup stream: frames of a
// uint64 little-endian length and a protobuf pb.KVList), and returns next,
// the value to pass as since to the following incremental backup. since 0
// makes a full backup. Restore loads a full backup followed by its
// incrementals.
//
// The snapshot is one Badger read transaction taken when Backup starts: every
// batch whose Commit returned (or whose callback ran) before Backup was called
// is in it, batches the writer commits meanwhile are not, and no batch is in
// it in part, except a batch too large for one transaction that Badger is
// receiving in parts when the snapshot is taken (see Submit: the write-ahead
// log, which a backup does not carry, holds it whole). Writes go on while
// Backup runs. (DB.Backup itself
// reads with up to 8 goroutines, each with its own transaction opened at its
// own moment, so a commit landing between them would be in one key range and
// not in another; Backup therefore streams with a single goroutine.)
//
// Versions: Badger stamps every commit with a version (its commit timestamp).
// A backup holds the keys with a version > since; next is the highest version
// it holds, or since when it holds nothing. Every commit before the snapshot
// has a version <= next, every later one a version > next, so a chain of
// incrementals, each from the previous next, misses nothing and repeats
// nothing. Note that next is NOT "Badger's returned version + 1", as Badger's
// documentation of DB.Backup suggests: Badger's iterator skips versions <=
// since (not < since), so since = version+1 would skip the first commit after
// the snapshot. TestBadgerBackupSinceExclusive pins this.
//
// Known limit of incrementals: a key deleted after the previous backup is
// carried by its deletion marker, and Badger's compaction drops a marker once
// it reaches the bottom level (no older version of the key left below it).
// Such a delete is missing from the incremental, and the restored store still
// has the key: an acked queue entry is delivered again, a deleted session or
// retained message is back, and where an Ack's two markers (entry and body)
// met different fates, an entry refers to a body that is gone, which Verify
// reports and Recover refuses (ErrCorrupt). A full backup has no such gap;
// take one regularly. TestBadgerIncrementalMissesCompactedDeletes pins this.
//
// Badger reads a value it cannot find in the value log (a truncated or
// damaged .vlog file) as empty, without an error. Backup parses the stream it
// writes and fails with ErrCorrupt when the latest version of a key has an
// empty value (holdfast never writes one), so a damaged store does not yield a
// backup that looks good.
//
// w is written through a buffer; Backup does not sync or close it. To abort a
// running backup, make w fail (the stream stops at its next write). Close
// waits for a running Backup. Backup of a Durability None store fails with
// ErrNotSupported.
func (s *Store) Backup(w io.Writer, since uint64) (next uint64, err error) {
	if s.opt.Durability == None {
		return 0, newError(ErrNotSupported, nil, "backup: durability none keeps nothing to back up")
	}
	s.readMu.RLock()
	defer s.readMu.RUnlock()
	if s.dbClosed {
		return 0, ErrClosed
	}
	start := time.Now()
	bw := bufio.NewWriterSize(w, 1<<20)
	chk := &backupCheck{w: bw}
	stream := s.db.NewStream()
	stream.NumGo = 1 // one goroutine, one read transaction: one snapshot
	stream.SinceTs = since
	stream.LogPrefix = "holdfast backup"
	top, err := stream.Backup(chk, since)
	if chk.err != nil {
		// Badger may report the cancellation its stream saw after our Write failed rather
		// than the failure itself.
		err = chk.err
	}
	if err == nil {
		err = chk.finish()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return 0, err
		}
		return 0, fmt.Errorf("persist: backup of %s since %d: %w", s.opt.Dir, since, err)
	}
	next = max(top, since)
	s.log.Info().Uint64("since", since).Uint64("next", next).Int("keys", chk.keys).
		Int64("bytes", chk.n).Dur("took", time.Since(start)).Msg("backup written")
	return next, nil
}

// backupCheck passes the backup stream through to w and parses its frames to
// find values Badger could not read.
type backupCheck struct {
	w       io.Writer
	n       int64 // bytes written
	hdr     [8]byte
	hdrN    int
	want    int // payload length of the current frame, once hdrN == 8
	frame   []byte
	lastKey []byte
	keys    int   // keys (latest versions) seen
	err     error // the first error Write returned
}

func (c *backupCheck) Write(p []byte) (int, error) {
	n, err := c.write(p)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *backupCheck) write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		return n, err
	}
	for q := p; ; {
		if c.hdrN < len(c.hdr) {
			if len(q) == 0 {
				break
			}
			k := copy(c.hdr[c.hdrN:], q)
			c.hdrN += k
			q = q[k:]
			if c.hdrN < len(c.hdr) {
				break
			}
			size := binary.LittleEndian.Uint64(c.hdr[:])
			if size > 1<<40 {
				return n, fmt.Errorf("persist: backup stream frame of %d bytes", size)
			}
			c.want = int(size)
			c.frame = make([]byte, 0, c.want)
		}
		k := min(len(q), c.want-len(c.frame))
		c.frame = append(c.frame, q[:k]...)
		q = q[k:]
		if len(c.frame) < c.want {
			break
		}
		if err := c.check(); err != nil {
			return n, err
		}
		c.hdrN, c.frame = 0, nil
	}
	return n, nil
}

// badgerBitDelete is Badger's deletion bit in pb.KV.Meta (value.go bitDelete).
const badgerBitDelete = 1 << 0

func (c *backupCheck) check() error {
	var list pb.KVList
	if err := proto.Unmarshal(c.frame, &list); err != nil {
		return fmt.Errorf("persist: backup stream frame does not decode: %w", err)
	}
	for _, kv := range list.Kv {
		// A key's versions come together, newest first; older versions may
		// point into value-log files that GC has removed, so only the newest
		// one counts.
		if c.lastKey != nil && bytes.Equal(kv.Key, c.lastKey) {
			continue
		}
		c.lastKey = append(c.lastKey[:0], kv.Key...)
		c.keys++
		deleted := len(kv.Meta) > 0 && kv.Meta[0]&badgerBitDelete != 0
		if !deleted && len(kv.Value) == 0 {
			return corruptf(kv.Key, "Badger read its value as empty (missing or damaged value-log entry); verify the store")
		}
	}
	return nil
}

// finish reports a stream that ended inside a frame.
func (c *backupCheck) finish() error {
	if c.hdrN != 0 {
		return fmt.Errorf("persist: backup stream ends inside a frame")
	}
	return nil
}

// Restore loads backup streams (a full backup followed by its incrementals,
// oldest first, as Backup wrote them) into dir, then closes it. dir must be
// empty or not exist (it is created, mode 0700); anything in it, a Badger
// MANIFEST or any other file, is refused with ErrNotEmpty, so a restore never
// mixes with an existing store (or a running broker's directory).
//
// The streams are loaded with Badger's DB.Load (256 pending writes). Every
// key keeps its version, so a key's newest version wins whatever the order;
// still pass them in order. The format version key (0x00 "schema") travels
// in the full backup: without it, or with a format newer than this build
// reads, Restore fails with ErrVersion (a chain that lacks its full backup has
// none). On any failure Restore removes what it wrote, leaving dir empty.
// The restored store is synced to disk; open it with Open.
func Restore(dir string, streams ...io.Reader) (err error) {
	if len(streams) == 0 {
		return fmt.Errorf("persist: restore into %s: no backup streams", dir)
	}
	created, err := prepareRestoreDir(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			cleanRestoreDir(dir, created)
		}
	}()
	// Badger's memtable and value-log file sizes; less memory than a broker, since a restore
	// only loads.
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{zerolog.Nop()}).
		WithNumMemtables(2).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(16 << 20).
		WithNumVersionsToKeep(1)
	db, err := badger.Open(bo)
	if err != nil {
		return fmt.Errorf("persist: restore into %s: open: %w", dir, err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("persist: restore into %s: close: %w", dir, cerr)
		}
	}()
	for i, r := range streams {
		// Badger's Load trusts the frame lengths (garbage makes it panic in
		// makeslice); frameReader checks them, safeCall catches the rest.
		fr := &frameReader{r: r}
		err := safeCall(func() error { return db.Load(fr, restoreMaxPendingWrites) })
		if err == nil && fr.hdrN != 0 {
			err = errors.New("stream ends inside a frame (truncated backup?)")
		}
		if err != nil {
			return fmt.Errorf("persist: restore into %s: backup stream %d of %d: %w", dir, i+1, len(streams), err)
		}
	}
	var format uint32
	var writer string
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(schemaKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			format, writer, err = decodeSchema(v)
			return err
		})
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return newError(ErrVersion, nil, "restore into %s: the backup holds no format version (not a holdfast backup, or incrementals without their full backup)", dir)
	case err != nil:
		return fmt.Errorf("persist: restore into %s: read format version: %w", dir, err)
	case format > FormatVersion:
		return newError(ErrVersion, nil, "restore into %s: the backup has format version %d (written by %q); this build reads version %d",
			dir, format, writer, FormatVersion)
	}
	if err := db.Sync(); err != nil {
		return fmt.Errorf("persist: restore into %s: sync: %w", dir, err)
	}
	return nil
}

// maxBackupFrame bounds one frame of a backup stream. Badger's frames hold
// up to about 100 MB of entries (backup.go flushThreshold) plus one value,
// and a value is at most a value-log file (< 2 GB).
const maxBackupFrame = 4 << 30

// frameReader passes a backup stream through and checks its frame lengths.
type frameReader struct {
	r    io.Reader
	hdr  [8]byte
	hdrN int    // header bytes seen of the current frame
	left uint64 // payload bytes left in the current frame, once hdrN == 8
}

func (f *frameReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	for q := p[:n]; len(q) > 0; {
		if f.hdrN < len(f.hdr) {
			k := copy(f.hdr[f.hdrN:], q)
			f.hdrN += k
			q = q[k:]
			if f.hdrN < len(f.hdr) {
				break
			}
			f.left = binary.LittleEndian.Uint64(f.hdr[:])
			if f.left > maxBackupFrame {
				return 0, fmt.Errorf("not a backup stream: frame of %d bytes", f.left)
			}
		}
		k := min(uint64(len(q)), f.left)
		f.left -= k
		q = q[k:]
		if f.left == 0 {
			f.hdrN = 0
		}
	}
	return n, err
}

// prepareRestoreDir makes sure dir exists and is empty; created reports
// whether it made dir.
func prepareRestoreDir(dir string) (created bool, err error) {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// As a data directory: mode 0700, and its name durable before the store goes in.
		if err := makeDataDir(dir); err != nil {
			return false, err
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("persist: restore: %w", err)
	case len(ents) > 0:
		what := fmt.Sprintf("%d entries, first %q", len(ents), ents[0].Name())
		names := make(map[string]bool, len(ents))
		for _, e := range ents {
			names[e.Name()] = true
		}
		switch {
		case names["LOCK"]:
			what = "a Badger store that is in use or was not closed cleanly (LOCK)"
		case names["MANIFEST"]:
			what = "a Badger store (MANIFEST)"
		}
		return false, newError(ErrNotEmpty, nil, "restore: %s is not empty: it holds %s; restore only into an empty or new directory", dir, what)
	}
	return false, nil
}

// cleanRestoreDir removes what a failed Restore wrote.
func cleanRestoreDir(dir string, created bool) {
	if created {
		_ = os.RemoveAll(dir)
		return
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
