package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// Holdfast's write-ahead log sits in front of Badger. Badger with SyncWrites makes each commit
// durable with two syncs (value log and memtable log) after applying it; here every group commit
// is appended to one file and fdatasynced while Badger applies the same entries without syncing,
// so a durable commit costs one fdatasync, overlapped with Badger's work. A checkpoint (Badger's
// files fsynced) lets the log be truncated; at Open the log is replayed into Badger, which is
// idempotent because it holds the exact keys and values written, in order.
//
// Record: uint32 payload length | uint32 CRC-32C of the payload | payload. Payload: entries of
// byte kind (0 set, 1 delete) | uvarint key length | key | (set) uvarint value length | value.
// A torn or corrupt tail (a crash during the append) ends the replay: its commit was never
// acknowledged, since acknowledgements wait for the fdatasync.

const (
	walName = "holdfast.wal"
	// walCheckpointBytes: past this size the writer checkpoints Badger and truncates the log.
	walCheckpointBytes = 64 << 20
	walHeader          = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type wal struct {
	f    *os.File
	size int64
	buf  []byte
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
	return &wal{f: f, size: st.Size()}, nil
}

// append writes one record holding recs (not yet synced).
func (l *wal) append(recs [][]rec) error {
	l.buf = append(l.buf[:0], make([]byte, walHeader)...)
	for _, rs := range recs {
		for _, r := range rs {
			kind := byte(0)
			if r.del {
				kind = 1
			}
			l.buf = append(l.buf, kind)
			l.buf = binary.AppendUvarint(l.buf, uint64(len(r.key)))
			l.buf = append(l.buf, r.key...)
			if !r.del {
				l.buf = binary.AppendUvarint(l.buf, uint64(len(r.val)))
				l.buf = append(l.buf, r.val...)
			}
		}
	}
	payload := l.buf[walHeader:]
	binary.BigEndian.PutUint32(l.buf[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(l.buf[4:8], crc32.Checksum(payload, castagnoli))
	n, err := l.f.WriteAt(l.buf, l.size)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("persist: append to write-ahead log: %w", err)
	}
	if cap(l.buf) > 4<<20 {
		l.buf = nil // a huge batch grew it; do not keep it
	}
	return nil
}

// sync makes every appended record durable.
func (l *wal) sync() error {
	if err := unix.Fdatasync(int(l.f.Fd())); err != nil {
		return fmt.Errorf("persist: sync write-ahead log: %w", err)
	}
	return nil
}

// reset empties the log; only after a checkpoint.
func (l *wal) reset() error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("persist: truncate write-ahead log: %w", err)
	}
	l.size = 0
	return l.sync()
}

func (l *wal) close() error { return l.f.Close() }

// checkpoint makes everything Badger holds durable, so that the log can be truncated: DB.Sync
// covers the active memtable and value log, and an fsync of every memtable and value-log file
// covers the memtables waiting to be flushed, whose logs Badger does not sync.
func checkpoint(db *badger.DB, dir string) error {
	if err := db.Sync(); err != nil {
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
	return nil
}

// replayWAL applies every complete record of the log in dir to db, checkpoints, and truncates
// the log. It returns the number of records applied.
func replayWAL(db *badger.DB, l *wal, dir string) (int, error) {
	data, err := io.ReadAll(io.NewSectionReader(l.f, 0, l.size))
	if err != nil {
		return 0, fmt.Errorf("persist: read write-ahead log: %w", err)
	}
	records := 0
	txn := db.NewTransaction(true)
	defer func() { txn.Discard() }()
	apply := func(key, val []byte, del bool) error {
		for {
			var err error
			if del {
				err = txn.Delete(key)
			} else {
				err = txn.Set(key, val)
			}
			if !errors.Is(err, badger.ErrTxnTooBig) {
				return err
			}
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = db.NewTransaction(true)
		}
	}
	for len(data) >= walHeader {
		n := int(binary.BigEndian.Uint32(data[0:4]))
		if walHeader+n > len(data) || crc32.Checksum(data[walHeader:walHeader+n], castagnoli) != binary.BigEndian.Uint32(data[4:8]) {
			break // torn tail: never acknowledged
		}
		p := data[walHeader : walHeader+n]
		data = data[walHeader+n:]
		for len(p) > 0 {
			del := p[0] == 1
			p = p[1:]
			key, rest, ok := walField(p)
			if !ok {
				return records, fmt.Errorf("persist: write-ahead log record %d: %w", records, ErrCorrupt)
			}
			p = rest
			var val []byte
			if !del {
				if val, p, ok = walField(p); !ok {
					return records, fmt.Errorf("persist: write-ahead log record %d: %w", records, ErrCorrupt)
				}
			}
			if err := apply(key, val, del); err != nil {
				return records, fmt.Errorf("persist: replay write-ahead log: %w", err)
			}
		}
		records++
	}
	if err := txn.Commit(); err != nil {
		return records, fmt.Errorf("persist: replay write-ahead log: %w", err)
	}
	if err := checkpoint(db, dir); err != nil {
		return records, err
	}
	return records, l.reset()
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
		start := time.Now()
		err := y.s.wal.sync()
		y.s.stats.recordSync(time.Since(start))
		if err != nil {
			y.s.log.Error().Err(err).Msg("write-ahead log sync failed: the commits it held are not acknowledged")
		}
		for i, b := range round {
			if err != nil && b.result == nil {
				b.result = err
			}
			y.s.complete(b)
			round[i] = nil
		}
	}
}
