package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNothingToRecover is returned by RecoverWAL when the write-ahead log is not damaged
// (WALReport.Corrupt): a start replays it as it is, dropping at most a torn last record, which
// was never acknowledged, so there is nothing for an operator to decide.
var ErrNothingToRecover = errors.New("nothing to recover")

// WALReport is what InspectWAL found in the write-ahead log of a stopped store.
type WALReport struct {
	Path    string
	Records int // whole records of the current epoch before any damage: what a start replays

	// Damaged is the byte offset of the first damaged record that valid records of the current
	// epoch follow (0: none). After counts those valid records, and End is where the last of
	// them ends: a start refuses such a log, and RecoverWAL drops the bytes from Damaged to End.
	// With After 0, Damaged is the last record, whole but for one flipped bit (oneBitOff): a start
	// drops it as it drops a torn write, but it was most likely acknowledged.
	Damaged int64
	After   int
	End     int64
}

// Corrupt reports whether a start would have to drop records that were acknowledged.
func (r *WALReport) Corrupt() bool { return r.Damaged > 0 }

// InspectWAL reads the write-ahead log of the stopped store in dir, read-only. Where the records
// of the current epoch stop, it searches the rest of the file for a whole record of that epoch:
// if there is one, what stopped them is damage, whichever field of the record it hit (a damaged
// length field included), not the end of the log. A directory without a log has an empty report.
// A damaged header is ErrCorrupt: the magic, the checksum, or in a log of version 1 (no header
// checksum) an epoch that the log's first record proves wrong (see headerEpochDamaged).
func InspectWAL(dir string) (*WALReport, error) {
	path := filepath.Join(dir, walName)
	rep := &WALReport{Path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return rep, nil
	}
	if err != nil {
		return nil, fmt.Errorf("persist: read write-ahead log: %w", err)
	}
	if len(data) < walFileHdr {
		return rep, nil
	}
	l := &wal{}
	checked, err := l.parseHeader(data, path)
	if err != nil {
		return nil, err
	}
	body := data[walFileHdr:]
	if !checked {
		if wrong, ok := headerEpochDamaged(l.epoch, body); ok {
			return nil, newError(ErrCorrupt, nil, "write-ahead log %s: the header's epoch %d is damaged: the first record belongs to epoch %d, which the log cannot have reached or cannot have left behind",
				path, l.epoch, wrong)
		}
	}
	off := l.validPrefix(body, &rep.Records)
	next := l.nextValid(body, off+1)
	if next < 0 {
		if n, ok := l.oneBitOff(body[off:]); ok {
			// The last record, whole but for one bit: not torn by a crash but damaged after
			// it was written, and so most likely synced and acknowledged.
			rep.Damaged, rep.End = int64(walFileHdr+off), int64(walFileHdr+off+walHeader+n)
		}
		return rep, nil
	}
	rep.Damaged = int64(walFileHdr + off)
	for next >= 0 {
		end := l.validPrefix(body[next:], &rep.After) + next
		rep.End = int64(walFileHdr + end)
		next = l.nextValid(body, end+1)
	}
	return rep, nil
}

// validPrefix returns the length of the run of whole records of l's epoch that data starts with,
// adding their number to *records.
func (l *wal) validPrefix(data []byte, records *int) int {
	off := 0
	for l.validAt(data[off:]) {
		off += walHeader + int(binary.BigEndian.Uint32(data[off:off+4]))
		*records++
	}
	return off
}

// nextValid returns the offset of the first whole record of l's epoch in data at or after from,
// or -1. Records are not aligned, so every offset is a candidate; the checksum, which costs as
// much as the record is long, is computed only for one whose length fits and whose payload parses
// into entries that fill it exactly, so that a search through a large log of stale records stays
// linear.
func (l *wal) nextValid(data []byte, from int) int {
	for i := from; i+walHeader < len(data); i++ {
		n := int(binary.BigEndian.Uint32(data[i : i+4]))
		if n < 2 || n > len(data)-i-walHeader || data[i+walHeader] > 1 {
			continue
		}
		if walEntriesFit(data[i+walHeader:i+walHeader+n]) && l.validAt(data[i:]) {
			return i
		}
	}
	return -1
}

// walEntriesFit reports whether p is a sequence of log entries (see replayWAL) that ends exactly
// where p does.
func walEntriesFit(p []byte) bool {
	for len(p) > 0 {
		kind := p[0]
		if kind > 1 {
			return false
		}
		key, rest, ok := walField(p[1:])
		if !ok || len(key) == 0 {
			return false
		}
		if p = rest; kind == 0 {
			if _, p, ok = walField(p); !ok {
				return false
			}
		}
	}
	return true
}

// oneBitOff reports whether data starts with a record of l's epoch that is whole but for one
// flipped bit of its payload or checksum, and the payload's length. A torn write leaves bytes that
// miss the checksum by a random amount; CRC-32C tells apart every single-bit error in a record of
// any length holdfast writes, so a record one bit off was written whole. The checksum is linear:
// flipping bit b of payload byte j changes it by the CRC register that bit leaves after the bytes
// that follow it, fed as zeros, so one pass from the end tries every bit.
func (l *wal) oneBitOff(data []byte) (int, bool) {
	if len(data) < walHeader {
		return 0, false
	}
	n := int(binary.BigEndian.Uint32(data[0:4]))
	if n == 0 || walHeader+n > len(data) {
		return 0, false
	}
	diff := l.checksum(data[walHeader:walHeader+n]) ^ binary.BigEndian.Uint32(data[4:8])
	if bits.OnesCount32(diff) == 1 {
		return n, true // the stored checksum's bit
	}
	var syn [8]uint32 // of each bit of the byte at j
	for b := range syn {
		syn[b] = castagnoli[1<<b]
	}
	for j := n - 1; j >= 0; j-- {
		for b := range syn {
			if syn[b] == diff {
				return n, true
			}
			syn[b] = castagnoli[byte(syn[b])] ^ syn[b]>>8
		}
	}
	return 0, false
}

// headerEpochDamaged reports whether the record at the start of the log's body (body) proves the
// header's epoch wrong, and the epoch the record belongs to, in a log of version 1, whose header
// has no checksum of its own (version 2's has): a bit flipped in its epoch would make every record
// of the log look stale, and a start would drop them all. A record there normally belongs to the header's epoch, or to an older
// one left behind by a checkpoint (the log is reused, not truncated). It cannot belong to a newer
// one; nor to one 2^16 or more epochs older, which would take that many starts or checkpoints
// without a single record written. Only epochs one bit away from the header's are tried: what
// one flipped bit does. A flip that makes the epoch larger by less than 2^16 looks like those
// record-less epochs and is not found.
func headerEpochDamaged(epoch uint64, body []byte) (uint64, bool) {
	if (&wal{epoch: epoch}).validAt(body) {
		return 0, false
	}
	for bit := range 64 {
		e := epoch ^ 1<<bit
		if (e > epoch || epoch-e >= 1<<16) && (&wal{epoch: e}).validAt(body) {
			return e, true
		}
	}
	return 0, false
}

// Recovered is what RecoverWAL did.
type Recovered struct {
	WALReport
	Backup string // the copy of the whole log taken before truncating it
}

// Dropped is the number of bytes RecoverWAL cut from the log.
func (r *Recovered) Dropped() int64 { return r.End - r.Damaged }

// RecoverWAL makes the stopped store in dir start again after mid-log damage, at the cost of the
// records after it: it copies the whole write-ahead log to a new file beside it (named after now,
// fsynced, and its name too) and then truncates the log at the first damaged record, so that a
// start replays the records before it and nothing after. It holds the directory's lock meanwhile:
// ErrLocked while a broker (or anything else) has it. ErrNothingToRecover when nothing would be
// dropped; ErrCorrupt for a damaged header, which it does not repair.
func RecoverWAL(dir string, now time.Time) (*Recovered, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rep, err := InspectWAL(dir)
	if err != nil {
		return nil, err
	}
	if !rep.Corrupt() {
		return nil, newError(ErrNothingToRecover, nil, "write-ahead log %s is not damaged: a start replays its %d records", rep.Path, rep.Records)
	}
	r := &Recovered{WALReport: *rep, Backup: rep.Path + "." + now.UTC().Format("20060102T150405.000000000Z") + ".bak"}
	if err := copyFileSynced(rep.Path, r.Backup); err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(rep.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("persist: recover: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(rep.Damaged); err != nil {
		return nil, fmt.Errorf("persist: recover: truncate %s: %w", rep.Path, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("persist: recover: sync %s: %w", rep.Path, err)
	}
	return r, nil
}

// lockDir takes Badger's own lock on dir (an flock of the directory), so that no broker starts on
// dir until unlock, nor does the caller run under one: ErrLocked while one holds it.
func lockDir(dir string) (unlock func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("persist: %w", err)
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, newError(ErrLocked, nil, "data directory %s is in use by another holdfast process: stop it first", dir)
		}
		return nil, fmt.Errorf("persist: lock %s: %w", dir, err)
	}
	return func() { d.Close() }, nil
}

// copyFileSynced copies src to the new file dst (mode 0600: it holds messages) and fsyncs it.
func copyFileSynced(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("persist: recover: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("persist: recover: backup: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("persist: recover: backup %s: %w", dst, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("persist: recover: backup %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("persist: recover: backup %s: %w", dst, err)
	}
	return nil
}
