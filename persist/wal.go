package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// Holdfast's write-ahead log sits in front of Badger. Badger with SyncWrites makes each commit
// durable with two syncs (value log and memtable log) after applying it; here every group commit
// is applied to Badger without syncing and appended to one file, which the syncer fdatasyncs for
// all the batches that arrived meanwhile. A checkpoint (Badger's files fsynced) lets the log
// start over; at Open the log is replayed into Badger, which is idempotent because it holds the
// exact keys and values written, in order.
//
// File: a 16-byte header, "HFW" 2, the epoch (uint64) and a CRC-32C of those 12 bytes, then
// records. (Version 1's header, "HFWAL" 0 0 1 and the epoch, has no checksum; such a log is read
// as it is, and the header is written in version 2 when the log starts over.) Record: uint32
// payload length | uint32 CRC-32C of epoch and payload | payload. Payload: entries of byte kind
// (0 set, 1 delete) | uvarint key length | key | (set) uvarint value length | value.
//
// The file is reused, not truncated: starting over bumps the epoch in the header, and records of
// an older epoch fail the CRC, so replay stops at the first one (or at a torn record, whose commit
// was never acknowledged since acknowledgements wait for the fdatasync). Writing over bytes that
// already exist lets fdatasync skip the file-size update; the file grows, with zeros written
// ahead, 1 MiB at a time, so most syncs carry data only.

const (
	walName    = "holdfast.wal"
	walMagic   = "HFW\x02"
	walMagicV1 = "HFWAL\x00\x00\x01"
	walFileHdr = 16
	walHeader  = 8
	// walCheckpointBytes: past this many bytes of records the writer checkpoints Badger and
	// starts the log over.
	walCheckpointBytes = 64 << 20
	walGrowBy          = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// step is a point of a commit or of a checkpoint at which tests inject a storage fault.
type step int

const (
	stepAppend     step = iota // write of a record
	stepGrow                   // write of the zeros ahead of the records
	stepSync                   // fdatasync of the records
	stepCommit                 // Badger's commit of a group commit's transaction
	stepBadgerSync             // checkpoint: Badger's sync and the fsyncs of its files
	stepDirSync                // fsync of the data directory (checkpoint, log creation)
	stepHeader                 // starting over: write of the new epoch's header
	stepHeaderSync             // starting over: fdatasync of that header
	numSteps
)

// fault is what a failpoint does instead of its step: fail with err, after writing the first half
// of the buffer when short (a write step).
type fault struct {
	err   error
	short bool
}

type wal struct {
	faults    [numSteps]atomic.Pointer[fault] // failpoints for tests; nil: none
	f         *os.File
	epoch     uint64
	pos       int64 // where the next record goes
	allocated int64 // bytes of the file that exist (records or zeros written ahead)
	buf       []byte
	// checkpointAt: past this many bytes of records the writer checkpoints (tests lower it).
	checkpointAt int64
}

func openWAL(dir string) (*wal, error) {
	f, err := os.OpenFile(filepath.Join(dir, walName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("persist: open write-ahead log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &wal{f: f, pos: walFileHdr, allocated: st.Size(), checkpointAt: walCheckpointBytes}
	if st.Size() < walFileHdr {
		l.epoch = 1
		if err := l.writeHeader(l.epoch); err != nil {
			f.Close()
			return nil, err
		}
		// The new file's name must survive a power cut too, or the records synced into it would
		// vanish with it.
		if err := l.syncDir(dir); err != nil {
			f.Close()
			return nil, err
		}
		return l, nil
	}
	if _, err := l.readHeader(filepath.Join(dir, walName)); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// readHeader reads the header of the log file l.f into l.epoch (see parseHeader).
func (l *wal) readHeader(path string) (checked bool, err error) {
	var hdr [walFileHdr]byte
	if _, err := l.f.ReadAt(hdr[:], 0); err != nil {
		return false, fmt.Errorf("persist: read write-ahead log header: %w", err)
	}
	return l.parseHeader(hdr[:], path)
}

// parseHeader reads a header of either version from the start of data (at least walFileHdr bytes)
// into l.epoch, and reports whether it had a checksum (version 2) to check it by. A damaged one is
// ErrCorrupt naming path: trusting a wrong epoch would take every record for a stale one and drop
// them all.
func (l *wal) parseHeader(data []byte, path string) (checked bool, err error) {
	switch {
	case string(data[:8]) == walMagicV1:
		l.epoch = binary.BigEndian.Uint64(data[8:walFileHdr])
		return false, nil
	case string(data[:4]) == walMagic:
		if crc32.Checksum(data[:12], castagnoli) != binary.BigEndian.Uint32(data[12:walFileHdr]) {
			return true, newError(ErrCorrupt, nil, "write-ahead log %s: the header is damaged (its checksum fails), so its epoch, which tells current records from stale ones, cannot be trusted", path)
		}
		l.epoch = binary.BigEndian.Uint64(data[4:12])
		return true, nil
	}
	return false, newError(ErrCorrupt, nil, "write-ahead log %s: bad header", path)
}

// writeHeader writes and syncs the header of epoch.
func (l *wal) writeHeader(epoch uint64) error {
	var hdr [walFileHdr]byte
	copy(hdr[:], walMagic)
	binary.BigEndian.PutUint64(hdr[4:], epoch)
	// The checksum at the end: a write torn after its first half leaves the old header whole,
	// since the epoch's high bytes seldom change.
	binary.BigEndian.PutUint32(hdr[12:], crc32.Checksum(hdr[:12], castagnoli))
	if err := l.writeAt(hdr[:], 0, stepHeader); err != nil {
		return fmt.Errorf("persist: write write-ahead log header: %w", err)
	}
	l.allocated = max(l.allocated, walFileHdr)
	return l.syncAt(stepHeaderSync)
}

func (l *wal) checksum(payload []byte) uint32 {
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], l.epoch)
	return crc32.Update(crc32.Checksum(e[:], castagnoli), castagnoli, payload)
}

// appendPayload appends the entries of recs to buf as a record's payload: entries of kind (0 set,
// 1 delete) | uvarint key length | key | (set) uvarint value length | value. Entries delimit
// themselves, so payloads appended one after the other are one payload (cluster mode replicates
// a round's group commits as one).
func appendPayload(buf []byte, recs [][]rec) []byte {
	for _, rs := range recs {
		for _, r := range rs {
			kind := byte(0)
			if r.del {
				kind = 1
			}
			buf = append(buf, kind)
			buf = binary.AppendUvarint(buf, uint64(len(r.key)))
			buf = append(buf, r.key...)
			if !r.del {
				buf = binary.AppendUvarint(buf, uint64(len(r.val)))
				buf = append(buf, r.val...)
			}
		}
	}
	return buf
}

// decodePayload hands the entries of a record's payload (appendPayload) to fn, in order; a payload
// that does not decode is ErrCorrupt (after fn has seen the entries before the damage).
func decodePayload(p []byte, fn func(key, val []byte, del bool) error) error {
	for len(p) > 0 {
		del := p[0] == 1
		p = p[1:]
		key, rest, ok := walField(p)
		if !ok {
			return ErrCorrupt
		}
		p = rest
		var val []byte
		if !del {
			if val, p, ok = walField(p); !ok {
				return ErrCorrupt
			}
		}
		if err := fn(key, val, del); err != nil {
			return err
		}
	}
	return nil
}

// append writes one record holding recs (not yet synced).
func (l *wal) append(recs [][]rec) error {
	l.buf = appendPayload(append(l.buf[:0], make([]byte, walHeader)...), recs)
	payload := l.buf[walHeader:]
	binary.BigEndian.PutUint32(l.buf[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(l.buf[4:8], l.checksum(payload))
	if end := l.pos + int64(len(l.buf)); end > l.allocated {
		if err := l.grow(end); err != nil {
			return err
		}
	}
	// On an error pos stays, so that the next record overwrites the torn one instead of
	// following it, past where replay stops.
	if err := l.writeAt(l.buf, l.pos, stepAppend); err != nil {
		return fmt.Errorf("persist: append to write-ahead log: %w", err)
	}
	l.pos += int64(len(l.buf))
	if cap(l.buf) > 4<<20 {
		l.buf = nil // a huge batch grew it; do not keep it
	}
	return nil
}

// appendSynced appends one record holding recs and makes it durable. A record whose sync failed
// is given up: the next record overwrites it.
func (l *wal) appendSynced(recs [][]rec) error {
	start := l.pos
	if err := l.append(recs); err != nil {
		return err
	}
	if err := l.sync(); err != nil {
		l.pos = start
		return err
	}
	return nil
}

// writeAt writes b at off, all of it or an error; at names the step for failpoints.
func (l *wal) writeAt(b []byte, off int64, at step) error {
	if f := l.faults[at].Load(); f != nil {
		if f.short {
			_, _ = l.f.WriteAt(b[:len(b)/2], off) // part of b lands, as in a write cut short
		}
		return f.err
	}
	_, err := l.f.WriteAt(b, off)
	return err
}

// failpoint returns the error of the fault set at step, if any. A nil log (a store in cluster
// mode, which has none) has no failpoints, so that checkpoint serves it too.
func (l *wal) failpoint(at step) error {
	if l == nil {
		return nil
	}
	if f := l.faults[at].Load(); f != nil {
		return f.err
	}
	return nil
}

// grow writes zeros so that the file holds at least end bytes, in steps of walGrowBy.
func (l *wal) grow(end int64) error {
	target := (end/walGrowBy + 1) * walGrowBy
	zeros := make([]byte, min(target-l.allocated, walGrowBy))
	for l.allocated < target {
		n := min(int64(len(zeros)), target-l.allocated)
		if err := l.writeAt(zeros[:n], l.allocated, stepGrow); err != nil {
			return fmt.Errorf("persist: extend write-ahead log: %w", err)
		}
		l.allocated += n
	}
	return nil
}

// size is the number of record bytes since the log last started over.
func (l *wal) size() int64 { return l.pos - walFileHdr }

// sync makes every appended record durable.
func (l *wal) sync() error { return l.syncAt(stepSync) }

func (l *wal) syncAt(at step) error {
	err := l.failpoint(at)
	if err == nil {
		err = unix.Fdatasync(int(l.f.Fd()))
	}
	if err != nil {
		return fmt.Errorf("persist: sync write-ahead log: %w", err)
	}
	return nil
}

// reset starts the log over under a new epoch; only after a checkpoint. The log takes the new
// epoch only once its header is durable: until then the file still holds the old one.
func (l *wal) reset() error {
	if err := l.writeHeader(l.epoch + 1); err != nil {
		return err
	}
	l.epoch++
	l.pos = walFileHdr
	return nil
}

func (l *wal) close() error { return l.f.Close() }

// checkpoint makes everything Badger holds durable, so that the log can be truncated: DB.Sync
// covers the active memtable and value log, and an fsync of every memtable and value-log file
// covers the memtables waiting to be flushed, whose logs Badger does not sync.
func (l *wal) checkpoint(db *badger.DB) error {
	dir := db.Opts().Dir
	err := l.failpoint(stepBadgerSync)
	if err == nil {
		err = db.Sync()
	}
	if err != nil {
		return fmt.Errorf("persist: checkpoint: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("persist: checkpoint: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue // flushed and deleted meanwhile: its data is in a synced table
		}
		if err != nil {
			return fmt.Errorf("persist: checkpoint: %w", err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("persist: checkpoint %s: %w", name, err)
		}
	}
	// Badger does not sync the directory when it creates a memtable or value-log file (ristretto's
	// OpenMmapFile syncs it only for a file created empty), so their names are not durable yet.
	if err := l.syncDir(dir); err != nil {
		return fmt.Errorf("persist: checkpoint: %w", err)
	}
	return nil
}

// replayWAL applies every complete record of the log in dir to db, checkpoints, and truncates
// the log. It returns the number of records applied.
func replayWAL(db *badger.DB, l *wal, dir string) (int, error) {
	pw := partWriter{db: db}
	defer pw.discard()
	records, err := scanWAL(l, dir, func(p []byte) error {
		return decodePayload(p, func(key, val []byte, del bool) error {
			if err := pw.write(key, val, del); err != nil {
				return fmt.Errorf("persist: replay write-ahead log: %w", err)
			}
			return nil
		})
	})
	if err != nil {
		return records, err
	}
	if err := pw.commit(); err != nil {
		return records, fmt.Errorf("persist: replay write-ahead log: %w", err)
	}
	if err := l.checkpoint(db); err != nil {
		return records, err
	}
	return records, l.reset()
}

// scanWAL hands the payload of every record of l's current epoch to fn, in order, and returns how
// many there were. It stops at the end: zeros, a record of an older epoch, or a torn last record
// (never acknowledged, since acknowledgements wait for the fdatasync). A damaged record that a
// valid record of this epoch follows is not the end but corruption, whichever field the damage hit
// (its length included): dropping it would drop the acknowledged records after it, so scanWAL
// returns ErrCorrupt naming the file and the offset.
func scanWAL(l *wal, dir string, fn func(payload []byte) error) (int, error) {
	data, err := io.ReadAll(io.NewSectionReader(l.f, walFileHdr, l.allocated-walFileHdr))
	if err != nil {
		return 0, fmt.Errorf("persist: read write-ahead log: %w", err)
	}
	records, off := 0, 0
	for l.validAt(data[off:]) {
		n := int(binary.BigEndian.Uint32(data[off : off+4]))
		if err := fn(data[off+walHeader : off+walHeader+n]); err != nil {
			if errors.Is(err, ErrCorrupt) {
				return records, newError(ErrCorrupt, nil, "write-ahead log %s: the record at byte %d does not decode", filepath.Join(dir, walName), walFileHdr+off)
			}
			return records, err
		}
		off += walHeader + n
		records++
	}
	if l.nextValid(data, off+1) >= 0 {
		return records, newError(ErrCorrupt, nil, "write-ahead log %s: the record at byte %d is damaged and valid records follow it",
			filepath.Join(dir, walName), walFileHdr+off)
	}
	return records, nil
}

// CheckWAL reads the write-ahead log of the stopped store in dir, read-only, and returns how many
// records a start would replay, or the ErrCorrupt that would stop the start. A directory without
// a log (a store closed cleanly keeps an empty one; a None store has none) has 0.
func CheckWAL(dir string) (int, error) {
	f, err := os.Open(filepath.Join(dir, walName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("persist: open write-ahead log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Size() < walFileHdr {
		return 0, nil
	}
	l := &wal{f: f, allocated: st.Size()}
	if _, err := l.readHeader(filepath.Join(dir, walName)); err != nil {
		return 0, err
	}
	return scanWAL(l, dir, func([]byte) error { return nil })
}

// partWriter writes entries to Badger in as many transactions as they need, committing one when
// the next entry does not fit. That is not atomic, so it only writes what a durable log record
// holds whole: replay, and a request too big for one transaction (commitSpill).
type partWriter struct {
	db        *badger.DB
	txn       *badger.Txn
	n         int    // entries in txn
	afterPart func() // if set, runs after each commit that write makes
}

func (p *partWriter) write(key, val []byte, del bool) error {
	for {
		if p.txn == nil {
			p.txn, p.n = p.db.NewTransaction(true), 0
		}
		err := put(p.txn, key, val, del)
		if err == nil {
			p.n++
			return nil
		}
		if !errors.Is(err, badger.ErrTxnTooBig) || p.n == 0 {
			return err
		}
		if err := p.commit(); err != nil {
			return err
		}
		if p.afterPart != nil {
			p.afterPart()
		}
	}
}

// put writes one entry into txn: a set, or a delete when del.
func put(txn *badger.Txn, key, val []byte, del bool) error {
	if del {
		return txn.Delete(key)
	}
	return txn.Set(key, val)
}

// commit commits the open transaction, if any.
func (p *partWriter) commit() error {
	if p.txn == nil {
		return nil
	}
	err := p.txn.Commit()
	p.txn = nil
	return err
}

func (p *partWriter) discard() {
	if p.txn != nil {
		p.txn.Discard()
		p.txn = nil
	}
}

// syncDir is syncDir with the log's failpoint.
func (l *wal) syncDir(dir string) error {
	if err := l.failpoint(stepDirSync); err != nil {
		return fmt.Errorf("persist: sync directory %s: %w", dir, err)
	}
	return syncDir(dir)
}

// syncDir makes the entries of dir (a file created in it) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("persist: sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("persist: sync directory %s: %w", dir, err)
	}
	return nil
}

// validAt reports whether data starts with a whole record of the log's current epoch.
func (l *wal) validAt(data []byte) bool {
	if len(data) < walHeader {
		return false
	}
	n := int(binary.BigEndian.Uint32(data[0:4]))
	return n > 0 && walHeader+n <= len(data) && l.checksum(data[walHeader:walHeader+n]) == binary.BigEndian.Uint32(data[4:8])
}

func walField(p []byte) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < n {
		return nil, nil, false
	}
	return p[k : k+int(n)], p[k+int(n):], true
}

// syncer completes committed requests in Sync mode: it takes every request committed since its
// last round, fdatasyncs the write-ahead log once for all of them, and then calls their callbacks
// in order. The writer hands requests over and goes on, so the next batch is applied to Badger
// while the previous one is being synced, and one fdatasync covers as many batches as arrived
// during the last one.
type syncer struct {
	s     *Store
	mu    sync.Mutex
	queue []*Batch
	wake  chan struct{} // one slot
	stop  chan struct{} // closed after the writer's last push
	done  chan struct{}
}

func newSyncer(s *Store) *syncer {
	return &syncer{s: s, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (y *syncer) push(bs []*Batch) {
	y.mu.Lock()
	y.queue = append(y.queue, bs...)
	y.mu.Unlock()
	select {
	case y.wake <- struct{}{}:
	default:
	}
}

func (y *syncer) run() {
	defer close(y.done)
	var round []*Batch
	for {
		select {
		case <-y.wake:
		case <-y.stop:
		}
		y.mu.Lock()
		round, y.queue = y.queue, round[:0]
		y.mu.Unlock()
		if len(round) == 0 {
			select {
			case <-y.stop:
				return
			default:
				continue
			}
		}
		if y.s.Err() == nil { // after a failure a sync proves nothing: nothing more is acknowledged
			// Let the goroutines the writer just woke (subscribers' writers, via OnApplied) run
			// first: the fdatasync keeps this goroutine's P, and they would wait in its queue.
			runtime.Gosched()
			if y.s.opt.Replicator != nil {
				y.replicate(round)
			} else {
				start := time.Now()
				err := y.s.wal.sync()
				d := time.Since(start)
				y.s.stats.recordSync(d)
				if d > slowThreshold {
					y.s.log.Warn().Dur("took", d).Int("batches", len(round)).Msg("slow fdatasync of the write-ahead log")
				}
				if err != nil {
					y.s.fail(err) // the commits it held are not acknowledged
				}
			}
		}
		y.s.completeAll(round)
		clear(round)
	}
}
