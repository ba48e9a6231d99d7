package persist

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// maxProblems bounds Report.Problems (and Inventory.Problems); the rest are
// counted in a last line.
const maxProblems = 1000

// verifyProgressKeys is how many keys VerifyProgress reads between two calls of its progress.
const verifyProgressKeys = 4096

// Report is what Verify found. Problems empty means consistent.
type Report struct {
	FormatVersion uint32 `json:"format_version"`
	Writer        string `json:"writer"` // writer version stored with the format version

	Sessions      int `json:"sessions"`      // session records (0x01)
	Subscriptions int `json:"subscriptions"` // 0x02
	Queued        int `json:"queued"`        // queue entries (0x04)
	Inflight      int `json:"inflight"`      // in-flight states (0x05)
	Held          int `json:"held"`          // of them held by a shared subscription member
	Bodies        int `json:"bodies"`        // shared message bodies (0x06)
	Retained      int `json:"retained"`      // 0x03
	Inbound       int `json:"inbound"`       // inbound QoS 2 packet ids (0x07)
	Wills         int `json:"wills"`         // 0x08

	// Problems lists every inconsistency, one line each, naming the key (at
	// most 1000 lines; a last line counts the rest).
	Problems []string `json:"problems"`
}

// OK reports whether Verify found no problem.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify opens the data directory dir read-only (Badger ReadOnly: nothing in
// it changes) and checks that it is consistent:
//
//   - the format version (0x00 "schema") exists and this build reads it (an
//     older one is read as it is; a start migrates it);
//   - every key is well-formed and every value of every family decodes (the
//     same decoders Recover and ReadQueue use);
//   - every shared queue entry's body (0x06) exists, and no inline entry's
//     sequence number has a body;
//   - every body is referred to by some queue entry;
//   - every in-flight state (0x05) has its queue entry;
//   - no subscription, queue entry, in-flight state, inbound packet id or will
//     without its client's session record (reported once per client and
//     family, naming the first key and the count);
//   - Badger's table checksums (DB.VerifyChecksum), and the value-log
//     checksum of every value read.
//
// Badger reads a value-log entry it cannot read (a truncated or damaged .vlog
// file) as an empty value without an error; holdfast never writes an empty
// value, so Verify reports such a key as "empty value".
//
// Problems in the data, an unknown format version included, are in
// Report.Problems. The error is for a directory Verify cannot read at all:
// ErrLocked while a broker (or anything else) has it open, ErrUnclean after
// a crash (see ErrUnclean), an error matching fs.ErrNotExist for a missing
// directory, and one saying "no store" for a directory without a Badger
// MANIFEST. A panic inside Badger is returned as an error.
func Verify(dir string) (*Report, error) { return VerifyProgress(dir, nil) }

// VerifyProgress is Verify, calling progress (when not nil, on Verify's goroutine) every few
// thousand keys of its scan with the keys read so far. estimate is the key count of the store's
// tables, known before the scan: every version and deletion of a key counts there, so the scan
// usually ends below it. At the scan's end, before the tables' checksums are checked, progress
// gets the exact count as both keys and estimate.
func VerifyProgress(dir string, progress func(keys, estimate int64)) (*Report, error) {
	if problems := checkTables(dir); len(problems) > 0 {
		// Badger would open these tables on goroutines of its own, where a damaged one can panic
		// beyond any recover and take the process down.
		return &Report{Problems: problems}, nil
	}
	db, err := openReadOnly(dir)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	a := newAudit(false)
	if progress != nil {
		var estimate int64
		for _, t := range db.Tables() {
			estimate += int64(t.KeyCount)
		}
		a.progress = func(keys int64) { progress(keys, estimate) }
	}
	err = a.run(db)
	if err == nil {
		if progress != nil {
			progress(a.keys, a.keys)
		}
		if cerr := safeCall(db.VerifyChecksum); cerr != nil {
			a.problem("Badger table checksums: %v", cerr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("persist: verify %s: %w", dir, err)
	}
	r := a.rep
	r.Problems = a.finish()
	return &r, nil
}

// checkTables opens every table the MANIFEST in dir lists, on this goroutine, and verifies its
// checksums, returning a problem for each one that fails (a panic inside Badger included). A
// MANIFEST it cannot read is left to Badger's open to report.
func checkTables(dir string) []string {
	fp, err := os.Open(filepath.Join(dir, "MANIFEST"))
	if err != nil {
		return nil
	}
	defer fp.Close()
	mf, _, err := badger.ReplayManifestFile(fp, 0, badger.DefaultOptions(dir))
	if err != nil {
		return nil
	}
	var problems []string
	for _, id := range slices.Sorted(maps.Keys(mf.Tables)) {
		name := table.NewFilename(id, dir)
		err := safeCall(func() error {
			f, err := z.OpenMmapFile(name, os.O_RDONLY, 0)
			if err != nil {
				return err
			}
			// Not Table.DecrRef: at no reference left it deletes the file.
			defer f.Close(-1)
			bo := badger.DefaultOptions(dir)
			_, err = table.OpenTable(f, table.Options{ReadOnly: true, ChkMode: options.OnTableAndBlockRead, BlockSize: bo.BlockSize,
				BloomFalsePositive: bo.BloomFalsePositive, Compression: mf.Tables[id].Compression})
			return err
		})
		if err != nil {
			problems = append(problems, fmt.Sprintf("Badger table %s: %v", filepath.Base(name), err))
		}
	}
	return problems
}

// openReadOnly opens dir with Badger read-only, turning Badger's refusals into
// clear errors.
func openReadOnly(dir string) (*badger.DB, error) {
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		if _, derr := os.Stat(dir); derr != nil {
			return nil, fmt.Errorf("persist: %w", derr)
		}
		return nil, fmt.Errorf("persist: %s holds no store (no Badger MANIFEST)", dir)
	}
	bo := badger.DefaultOptions(dir).
		WithReadOnly(true).
		WithVerifyValueChecksum(true).
		WithLogger(badgerLogger{zerolog.Nop()}).
		WithMemTableSize(16 << 20).
		WithNumMemtables(1).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(8 << 20)
	db, err := badger.Open(bo)
	if err == nil {
		return db, nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Cannot acquire directory lock"):
		return nil, newError(ErrLocked, nil, "data directory %s is in use (a running holdfast holds it): stop it, or ask the running broker through its admin listener", dir)
	case strings.Contains(msg, "Log truncate required"):
		if err := checkBadgerLogs(dir); err != nil {
			return nil, err
		}
		return nil, newError(ErrUnclean, nil, "data directory %s was not closed cleanly (crash or kill): Badger opens it read-only only after a read-write open has replayed its write-ahead log; start holdfast on it once and stop it, then verify again (Badger: %s)", dir, msg)
	}
	return nil, fmt.Errorf("persist: open %s read-only: %w", dir, err)
}

// checkBadgerLogs returns ErrCorrupt when a read-write open of dir would cut one of Badger's log
// files at damage with whole entries after it (see badgerLogsDamage), dropping them. A directory
// closed cleanly has no memtable file and its newest value-log file ends at its last entry, so
// the check costs something only after a crash.
func checkBadgerLogs(dir string) error {
	file, off := badgerLogsDamage(dir)
	if file == "" {
		return nil
	}
	return newError(ErrCorrupt, nil, "data directory %s was not closed cleanly, and Badger's log file %s is damaged at byte %d with whole entries after it: "+
		"a read-write open of Badger cuts the file there and drops them without a word, so holdfast refuses to start on it. Those written since holdfast's last checkpoint "+
		"are in its write-ahead log too; older ones are in no other file. Copy the directory aside, then restore a backup (holdfast restore)",
		dir, file, off)
}

// badgerLogsDamage looks for damage in the Badger log files that a read-write open replays and
// cuts at their first bad entry: every memtable (.mem) and the newest value-log file. It returns
// the first damaged file and the offset, or "" when each one's entries run whole to its end or to
// a torn tail (what a crash leaves of writes that were not synced).
func badgerLogsDamage(dir string) (string, int) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	vlogs, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if len(vlogs) > 0 {
		slices.Sort(vlogs) // fixed-width numbers
		files = append(files, vlogs[len(vlogs)-1])
	}
	for _, f := range files {
		off := -1
		// Mapped, not read: a value-log file is sparse and can be 2 GiB. A broker that starts
		// meanwhile may cut the file under the mapping: safeCall turns that fault into an error.
		err := safeCall(func() error {
			data, unmap, err := mapFile(f)
			if err != nil {
				return err
			}
			defer unmap()
			off = badgerLogDamage(data)
			return nil
		})
		if err == nil && off >= 0 {
			return filepath.Base(f), off
		}
	}
	return "", 0
}

// mapFile maps the file name read-only, up to the end of its last data: Badger extends its log
// files ahead of its writes (a value-log file to twice its size) with a hole, whose zeros need
// not be read.
func mapFile(name string) (data []byte, unmap func(), err error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := dataEnd(int(f.Fd()), st.Size())
	if size == 0 {
		return nil, func() {}, nil
	}
	data, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() { unix.Munmap(data) }, nil
}

// dataEnd returns where the last data of the file fd (size bytes) ends, before a hole that runs to
// its end; size where the file system cannot tell (SEEK_DATA unsupported).
func dataEnd(fd int, size int64) int64 {
	end := int64(0)
	for off := int64(0); off < size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return end // only a hole from off on
		}
		if err != nil {
			return size
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return size
		}
		end, off = h, h
	}
	return min(end, size)
}

// badgerLogHeader is the size of a Badger log file's header (key id and IV).
const badgerLogHeader = 20

// badgerLogDamage returns the offset of the first entry of a Badger log file that does not read
// back whole when a whole entry follows it somewhere after, or -1.
func badgerLogDamage(data []byte) int {
	if len(data) < badgerLogHeader {
		return -1
	}
	off := badgerLogHeader
	for n := badgerEntryAt(data[off:], false); n > 0; n = badgerEntryAt(data[off:], false) {
		off += n
	}
	for i := off + 1; i+2 < len(data); i++ {
		// An entry's key length is never 0: the zeros ahead of Badger's writes go by fast.
		if data[i+2] != 0 && badgerEntryAt(data[i:], true) > 0 {
			return off
		}
	}
	return -1
}

// badgerEntryAt returns the length of the whole Badger log entry that data starts with, or 0. An
// entry: meta and user-meta bytes, uvarint key length, value length and expiry, the key (with its
// version), the value, and a CRC-32C of all of them. A search for the next entry (search) takes
// only candidates without an expiry, which holdfast never sets, and whose key starts with a family
// byte (below 0x20, room for new families) or Badger's own "!badger!", so that it seldom computes
// a checksum over bytes that are not an entry.
func badgerEntryAt(data []byte, search bool) int {
	if len(data) < 3 || data[0]&0x30 != 0 { // meta has no such bits
		return 0
	}
	h := 2
	klen, k := binary.Uvarint(data[h:])
	if k <= 0 || klen == 0 || klen > 1<<16 {
		return 0
	}
	h += k
	vlen, k := binary.Uvarint(data[h:])
	if k <= 0 || vlen > uint64(len(data)) {
		return 0
	}
	h += k
	expires, k := binary.Uvarint(data[h:])
	h += k
	if k <= 0 || search && (expires != 0 || klen < 9 || h >= len(data) || data[h] >= 0x20 && data[h] != '!') {
		return 0
	}
	end := h + int(klen) + int(vlen)
	if end+4 > len(data) || crc32.Checksum(data[:end], castagnoli) != binary.BigEndian.Uint32(data[end:]) {
		return 0
	}
	return end + 4
}

// safeCall runs fn, turning a panic (or a memory fault on a damaged
// memory-mapped file) into an error.
func safeCall(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("badger panicked: %v", p)
		}
	}()
	return fn()
}

// audit reads every key of one snapshot, checks it, counts it and, when inv
// is set, builds the inventory.
type audit struct {
	rep      Report
	inv      *Inventory
	sessions map[string]*SessionInfo // inventory: by client id
	// inventory: the sessions whose shared queue entries wait for their body (which sorts after
	// them) to give its arrival time, by seq
	waiting map[uint64][]*SessionInfo

	records map[string]bool  // client ids with a session record key
	bodies  map[uint64]bool  // 0x06 keys (pre-scanned)
	refs    map[uint64]int32 // shared queue entries per body
	orphans map[orphanKey]*orphan
	schema  bool

	problems []string
	dropped  int
	keys     int64            // read by scan
	progress func(keys int64) // VerifyProgress's, or nil
}

type orphanKey struct {
	fam byte
	cid string
}

type orphan struct {
	first []byte
	n     int
}

func newAudit(inventory bool) *audit {
	a := &audit{
		records: make(map[string]bool),
		bodies:  make(map[uint64]bool),
		refs:    make(map[uint64]int32),
		orphans: make(map[orphanKey]*orphan),
	}
	if inventory {
		a.inv = &Inventory{Sessions: []SessionInfo{}, Retained: []RetainedInfo{}}
		a.sessions = make(map[string]*SessionInfo)
		a.waiting = make(map[uint64][]*SessionInfo)
	}
	return a
}

func (a *audit) problem(format string, args ...any) {
	if len(a.problems) >= maxProblems {
		a.dropped++
		return
	}
	a.problems = append(a.problems, fmt.Sprintf(format, args...))
}

// keyProblem records a problem with key k.
func (a *audit) keyProblem(k []byte, format string, args ...any) {
	a.problem("%s: %s", describeKey(k), fmt.Sprintf(format, args...))
}

// errProblem records a decoder error (which names its key).
func (a *audit) errProblem(err error) {
	a.problem("%s", strings.TrimPrefix(err.Error(), "persist: "))
}

// run scans db in one read transaction.
func (a *audit) run(db *badger.DB) error {
	return safeCall(func() error {
		return db.View(func(txn *badger.Txn) error { return a.scan(txn) })
	})
}

func (a *audit) scan(txn *badger.Txn) error {
	// The body keys first (keys only), so that queue entries, which sort
	// before them, can be checked against them.
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famBody}})
	for it.Rewind(); it.Valid(); it.Next() {
		if k := it.Item().Key(); len(k) == 9 {
			a.bodies[seqOfKey(k)] = true
		}
	}
	it.Close()

	// Values are read on this goroutine (no prefetch goroutines), so that
	// safeCall sees any panic.
	it = txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if a.keys++; a.progress != nil && a.keys%verifyProgressKeys == 0 {
			a.progress(a.keys)
		}
		item := it.Item()
		k := item.Key()
		err := item.Value(func(v []byte) error {
			a.visit(txn, k, v)
			return nil
		})
		if err != nil {
			a.keyProblem(k, "value unreadable: %v", err)
		}
	}
	it.Close()

	if !a.schema {
		a.problem("%s: missing (no format version)", describeKey(schemaKey))
	}
	okeys := make([]orphanKey, 0, len(a.orphans))
	for k := range a.orphans {
		okeys = append(okeys, k)
	}
	slices.SortFunc(okeys, func(x, y orphanKey) int {
		return cmp.Or(cmp.Compare(x.fam, y.fam), cmp.Compare(x.cid, y.cid))
	})
	for _, ok := range okeys {
		o := a.orphans[ok]
		a.keyProblem(o.first, "client %q has no session record (%d %s keys of this client)",
			shorten([]byte(ok.cid)), o.n, familyNames[ok.fam])
	}
	if a.inv != nil {
		a.inv.FormatVersion, a.inv.Writer = a.rep.FormatVersion, a.rep.Writer
		for _, si := range a.sessions {
			a.inv.Sessions = append(a.inv.Sessions, *si)
		}
		slices.SortFunc(a.inv.Sessions, func(x, y SessionInfo) int { return cmp.Compare(x.ClientID, y.ClientID) })
	}
	return nil
}

// finish returns the problems, with the count of dropped ones.
func (a *audit) finish() []string {
	p := a.problems
	if a.dropped > 0 {
		p = append(p, fmt.Sprintf("... and %d more problems", a.dropped))
	}
	if p == nil {
		p = []string{}
	}
	return p
}

// session returns the inventory entry of cid (nil without inventory).
func (a *audit) session(cid string) *SessionInfo {
	if a.inv == nil {
		return nil
	}
	si := a.sessions[cid]
	if si == nil {
		si = &SessionInfo{ClientID: cid, Subscriptions: []SubscriptionInfo{}, InboundQoS2: []uint16{}}
		a.sessions[cid] = si
	}
	return si
}

// owned checks that cid has a session record; session records sort before
// every other per-client family, so records is complete when this runs.
func (a *audit) owned(fam byte, cid string, k []byte) {
	if a.records[cid] {
		return
	}
	ok := orphanKey{fam, cid}
	o := a.orphans[ok]
	if o == nil {
		o = &orphan{first: slices.Clone(k)}
		a.orphans[ok] = o
	}
	o.n++
}

// emptyValue: holdfast writes no empty value; Badger returns one for a
// value-log entry it cannot read.
func (a *audit) emptyValue(k, v []byte) bool {
	if len(v) > 0 {
		return false
	}
	a.keyProblem(k, "empty value: Badger could not read it from the value log (truncated or damaged .vlog file?)")
	return true
}

func (a *audit) visit(txn *badger.Txn, k, v []byte) {
	if len(k) == 0 {
		a.problem("empty key")
		return
	}
	fam := k[0]
	switch fam {
	case famMeta:
		if bytes.Equal(k, appliedKey) {
			// A cluster member's applied index (ApplyReplicated).
			if len(v) != 8 {
				a.keyProblem(k, "value of %d bytes, want 8", len(v))
			}
			return
		}
		if !bytes.Equal(k, schemaKey) {
			a.keyProblem(k, "unknown meta key")
			return
		}
		a.schema = true
		if a.emptyValue(k, v) {
			return
		}
		format, writer, err := decodeSchema(v)
		if err != nil {
			a.errProblem(err)
			return
		}
		a.rep.FormatVersion, a.rep.Writer = format, writer
		switch {
		case format > FormatVersion:
			a.keyProblem(k, "format version %d (written by %q) is newer than this build's %d", format, writer, FormatVersion)
		case format < oldestFormat:
			a.keyProblem(k, "format version %d is older than any this build reads (%d to %d)", format, oldestFormat, FormatVersion)
		}

	case famSession:
		cid, rest, ok := splitCID(k)
		if !ok || len(rest) != 0 {
			a.keyProblem(k, "malformed key")
			return
		}
		a.records[cid] = true
		a.rep.Sessions++
		si := a.session(cid)
		if si != nil {
			si.HasRecord = true
		}
		if a.emptyValue(k, v) {
			return
		}
		r, err := decodeSession(k, v)
		if err != nil {
			a.errProblem(err)
			return
		}
		if si != nil {
			si.ProtocolLevel = r.ProtocolLevel
			si.Username = r.Username
			if r.HasSessionExpiry {
				si.SessionExpiry = &r.SessionExpiry
			}
			si.Connected = r.DisconnectedAt.IsZero()
			if !si.Connected {
				t := r.DisconnectedAt
				si.DisconnectedAt = &t
			}
		}

	case famSub:
		cid, rest, ok := splitCID(k)
		if !ok {
			a.keyProblem(k, "malformed key")
			return
		}
		a.owned(fam, cid, k)
		a.rep.Subscriptions++
		if a.emptyValue(k, v) {
			return
		}
		o, err := decodeSub(k, v)
		if err != nil {
			a.errProblem(err)
			return
		}
		if si := a.session(cid); si != nil {
			si.Subscriptions = append(si.Subscriptions, SubscriptionInfo{Filter: string(rest), QoS: o.QoS,
				NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished, ID: o.ID})
		}

	case famRetained:
		a.rep.Retained++
		if a.emptyValue(k, v) {
			return
		}
		m, err := decodeRetained(k, v)
		if err != nil {
			a.errProblem(err)
			return
		}
		if a.inv != nil {
			ri := RetainedInfo{Topic: m.Topic, QoS: m.QoS, PayloadBytes: len(m.Payload)}
			if !m.Expires.IsZero() {
				ri.Expires = &m.Expires
			}
			a.inv.Retained = append(a.inv.Retained, ri)
		}

	case famQueue:
		cid, seq, err := parseSeqKey(k)
		if err != nil {
			a.errProblem(err)
			return
		}
		a.owned(fam, cid, k)
		a.rep.Queued++
		if a.emptyValue(k, v) {
			return
		}
		h, _, err := decodeQueue(k, v, false)
		if err != nil {
			a.errProblem(err)
			return
		}
		if h.shared() {
			a.refs[seq]++
			if !a.bodies[seq] {
				a.keyProblem(k, "refers to shared body seq %d, which does not exist", seq)
			}
		} else if a.bodies[seq] {
			a.keyProblem(k, "inline entry, but shared body seq %d exists", seq)
		}
		if si := a.session(cid); si != nil {
			si.QueueDepth++
			si.QueueBytes += int64(h.payloadSize)
			if h.shared() {
				a.waiting[seq] = append(a.waiting[seq], si)
			} else {
				si.noteArrival(h.arrived)
			}
		}

	case famInflight:
		cid, seq, err := parseSeqKey(k)
		if err != nil {
			a.errProblem(err)
			return
		}
		a.owned(fam, cid, k)
		a.rep.Inflight++
		var f inflight
		if !a.emptyValue(k, v) {
			if f, err = decodeInflight(k, v); err != nil {
				a.errProblem(err)
			}
		}
		if f.holder != "" {
			a.rep.Held++
		}
		_, err = txn.Get(queueKey(cid, seq))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			a.keyProblem(k, "no queue entry (client %q, seq %d) for this state (Recover removes it)", shorten([]byte(cid)), seq)
		case err != nil:
			a.keyProblem(k, "read its queue entry: %v", err)
		default:
			if si := a.session(cid); si != nil {
				si.Inflight++
				if f.holder != "" {
					si.Held = append(si.Held, HeldInfo{Seq: seq, PacketID: f.pid, Holder: f.holder})
				}
			}
		}

	case famBody:
		if len(k) != 9 {
			a.keyProblem(k, "malformed key")
			return
		}
		a.rep.Bodies++
		seq := seqOfKey(k)
		if !a.emptyValue(k, v) {
			waiting := a.waiting[seq]
			delete(a.waiting, seq)
			if m, err := decodeBody(k, v, len(waiting) > 0); err != nil {
				a.errProblem(err)
			} else if m != nil {
				for _, si := range waiting {
					si.noteArrival(m.Arrived)
				}
			}
		}
		if a.refs[seq] == 0 {
			a.keyProblem(k, "no queue entry refers to it (Recover removes it)")
		}

	case famInbound:
		cid, rest, ok := splitCID(k)
		if !ok || len(rest) != 2 {
			a.keyProblem(k, "malformed key")
			return
		}
		a.owned(fam, cid, k)
		a.rep.Inbound++
		if a.emptyValue(k, v) {
			return
		}
		if err := decodeInbound(k, v); err != nil {
			a.errProblem(err)
			return
		}
		if si := a.session(cid); si != nil {
			si.InboundQoS2 = append(si.InboundQoS2, binary.BigEndian.Uint16(rest))
		}

	case famWill:
		cid, rest, ok := splitCID(k)
		if !ok || len(rest) != 0 {
			a.keyProblem(k, "malformed key")
			return
		}
		a.owned(fam, cid, k)
		a.rep.Wills++
		if a.emptyValue(k, v) {
			return
		}
		w, err := decodeWill(k, v)
		if err != nil {
			a.errProblem(err)
			return
		}
		if si := a.session(cid); si != nil {
			si.Will = &WillInfo{Topic: w.Topic, QoS: w.QoS, Retain: w.Retain, PayloadBytes: len(w.Payload)}
			if w.Props != nil {
				si.Will.Delay = w.Props.WillDelay
			}
		}

	default:
		a.keyProblem(k, "unknown key family")
	}
}

// Inventory is what a store holds, for operators (holdfast inspect, the
// admin listener). Slices are never nil, so the JSON has [] rather than null.
type Inventory struct {
	FormatVersion uint32         `json:"format_version"`
	Writer        string         `json:"writer"`
	Sessions      []SessionInfo  `json:"sessions"` // sorted by client id
	Retained      []RetainedInfo `json:"retained"` // sorted by topic
	// Problems are inconsistencies met while reading (as Verify reports
	// them); inspection goes on past them.
	Problems []string `json:"problems,omitempty"`
}

// SessionInfo is one client's persistent state.
type SessionInfo struct {
	ClientID string `json:"client_id"`
	// HasRecord is false for data without a session record (an orphan; see
	// SessionState.Orphan): the record fields below are then zero.
	HasRecord     bool   `json:"has_record"`
	ProtocolLevel byte   `json:"protocol_level"`
	Username      string `json:"username,omitempty"` // the owner's, for a session with one
	// Connected: the record says the client was connected when it was last
	// written (for a stopped broker: when it stopped). Otherwise
	// DisconnectedAt is when it disconnected (its last-seen time).
	Connected      bool       `json:"connected"`
	DisconnectedAt *time.Time `json:"disconnected_at,omitempty"`

	Subscriptions []SubscriptionInfo `json:"subscriptions"` // sorted by filter bytes
	QueueDepth    int                `json:"queue_depth"`   // queue entries (0x04)
	QueueBytes    int64              `json:"queue_bytes"`   // their payload bytes
	Inflight      int                `json:"inflight"`      // of them sent and not acknowledged
	InboundQoS2   []uint16           `json:"inbound_qos2"`  // packet ids awaiting PUBREL, ascending
	// OldestQueued is the earliest arrival time among the queue entries that have one (format 4
	// on): since when the queue has been piling up. Nil: no entry with a known arrival.
	OldestQueued *time.Time `json:"oldest_queued,omitempty"`

	// Held lists, for a shared subscription group's queue, the in-flight entries a member holds
	// (it answered PUBREC), in seq order.
	Held []HeldInfo `json:"held,omitempty"`

	// MQTT 5: the Session Expiry Interval in seconds, when the client set one; the will, if stored.
	SessionExpiry *uint32   `json:"session_expiry,omitempty"`
	Will          *WillInfo `json:"will,omitempty"`
}

// noteArrival makes t, when known, si's OldestQueued if it is earlier.
func (si *SessionInfo) noteArrival(t time.Time) {
	if !t.IsZero() && (si.OldestQueued == nil || t.Before(*si.OldestQueued)) {
		si.OldestQueued = &t
	}
}

// HeldInfo is a group's queue entry held by a member: Released with the member's packet id.
type HeldInfo struct {
	Seq      uint64 `json:"seq"`
	PacketID uint16 `json:"packet_id"`
	Holder   string `json:"holder"`
}

// SubscriptionInfo is one subscription: its maximum QoS and, at MQTT 5, its options and
// Subscription Identifier (0: none).
type SubscriptionInfo struct {
	Filter            string `json:"filter"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	ID                uint32 `json:"id,omitempty"`
}

// WillInfo is a stored will, without its payload.
type WillInfo struct {
	Topic        string `json:"topic"`
	QoS          byte   `json:"qos"`
	Retain       bool   `json:"retain"`
	Delay        uint32 `json:"delay,omitempty"` // Will Delay Interval, seconds
	PayloadBytes int    `json:"payload_bytes"`
}

// RetainedInfo is one retained message, without its payload.
type RetainedInfo struct {
	Topic        string     `json:"topic"`
	QoS          byte       `json:"qos"`
	PayloadBytes int        `json:"payload_bytes"`
	Expires      *time.Time `json:"expires,omitempty"` // MQTT 5 message expiry
}

// Inspect returns the inventory of the live store from one read-only
// snapshot, while writes go on. It reads every value once (payloads
// included), so on a big store it costs about what Recover does, on the
// calling goroutine.
func (s *Store) Inspect() (*Inventory, error) {
	s.readMu.RLock()
	defer s.readMu.RUnlock()
	if s.dbClosed {
		return nil, ErrClosed
	}
	return inspect(s.db)
}

// InspectDir returns the inventory of the stopped store in dir, opened
// read-only. It fails like Verify (ErrLocked while a broker holds dir,
// ErrUnclean after a crash), and with ErrCorrupt for a damaged table, which
// Verify lists as a problem.
func InspectDir(dir string) (*Inventory, error) {
	if problems := checkTables(dir); len(problems) > 0 {
		return nil, newError(ErrCorrupt, nil, "inspect %s: %s", dir, strings.Join(problems, "; "))
	}
	db, err := openReadOnly(dir)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	inv, err := inspect(db)
	if err != nil {
		return nil, fmt.Errorf("persist: inspect %s: %w", dir, err)
	}
	return inv, nil
}

func inspect(db *badger.DB) (*Inventory, error) {
	a := newAudit(true)
	if err := a.run(db); err != nil {
		return nil, err
	}
	a.inv.Problems = a.problems
	if a.dropped > 0 {
		a.inv.Problems = append(a.inv.Problems, fmt.Sprintf("... and %d more problems", a.dropped))
	}
	return a.inv, nil
}
