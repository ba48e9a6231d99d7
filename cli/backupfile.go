package cli

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A backup file (holdfast backup writes it, holdfast restore reads it) is a fixed-size text
// header followed by the backup stream exactly as persist.Store.Backup writes it (Badger's
// backup format, which has no header of its own):
//
//	offset 0, backupHeaderSize (256) bytes, ASCII:
//	  holdfast-backup 1                 magic and file format version
//	  since=N                           the backup holds every change with a version > N (0: full)
//	  next=M                            the highest version it holds (N when it holds nothing):
//	                                    the next incremental is taken with --since M (not M+1)
//	  stream-bytes=B                    length of the stream that follows the header
//	  stream-crc32c=XXXXXXXX            CRC-32C (Castagnoli) of those B bytes, hex
//	  created=2006-01-02T15:04:05Z      when the backup finished (UTC)
//	  padded with spaces; the last byte is '\n'
//	offset 256: the stream, B bytes, then end of file.
//
// The header is written last (next, B and the checksum are known only once the stream is
// written): the file starts with zero bytes in its place, which no reader accepts, and is written
// under FILE.tmp, synced and renamed to FILE only when complete.
const (
	backupMagic      = "holdfast-backup 1"
	backupHeaderSize = 256
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// backupHeader is the header of a backup file.
type backupHeader struct {
	Since, Next uint64
	StreamBytes int64
	CRC         uint32
	Created     time.Time
}

func (h backupHeader) marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nsince=%d\nnext=%d\nstream-bytes=%d\nstream-crc32c=%08x\ncreated=%s\n",
		backupMagic, h.Since, h.Next, h.StreamBytes, h.CRC, h.Created.UTC().Format(time.RFC3339))
	out := bytes.Repeat([]byte{' '}, backupHeaderSize)
	copy(out, b.Bytes()) // at most about 150 bytes
	out[backupHeaderSize-1] = '\n'
	return out
}

// parseBackupHeader parses the first backupHeaderSize bytes of a backup file.
func parseBackupHeader(b []byte) (backupHeader, error) {
	var h backupHeader
	if len(b) < len(backupMagic)+1 || string(b[:len(backupMagic)+1]) != backupMagic+"\n" {
		if len(b) > 0 && b[0] == 0 {
			return h, errors.New("not a complete holdfast backup (its header was never written: an interrupted backup?)")
		}
		return h, fmt.Errorf("not a holdfast backup file (it does not start with %q)", backupMagic)
	}
	if len(b) != backupHeaderSize || b[backupHeaderSize-1] != '\n' {
		return h, errors.New("damaged holdfast backup header")
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimRight(string(b[len(backupMagic)+1:]), " \n"), "\n") {
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return h, fmt.Errorf("damaged holdfast backup header: line %q", line)
		}
		var err error
		switch key {
		case "since":
			h.Since, err = strconv.ParseUint(val, 10, 64)
		case "next":
			h.Next, err = strconv.ParseUint(val, 10, 64)
		case "stream-bytes":
			h.StreamBytes, err = strconv.ParseInt(val, 10, 64)
			if err == nil && h.StreamBytes < 0 {
				err = errors.New("negative")
			}
		case "stream-crc32c":
			var v uint64
			v, err = strconv.ParseUint(val, 16, 32)
			h.CRC = uint32(v)
		case "created":
			h.Created, err = time.Parse(time.RFC3339, val)
		default:
			continue // a later minor addition: ignored
		}
		if err != nil {
			return h, fmt.Errorf("damaged holdfast backup header: %s: %v", key, err)
		}
		seen[key] = true
	}
	for _, k := range []string{"since", "next", "stream-bytes", "stream-crc32c"} {
		if !seen[k] {
			return h, fmt.Errorf("damaged holdfast backup header: no %s", k)
		}
	}
	if h.Next < h.Since {
		return h, fmt.Errorf("damaged holdfast backup header: next %d < since %d", h.Next, h.Since)
	}
	return h, nil
}

// frames follows Badger's backup framing (a uint64 little-endian payload length, then the
// payload) across writes or reads of any size.
type frames struct {
	hdr  [8]byte
	hdrN int    // header bytes seen of the current frame
	left uint64 // payload bytes left in the current frame, once hdrN == len(hdr)
	off  int64  // stream offset of the next byte
}

// feed follows p. Once a frame's header is complete, check (when not nil) gets the header's
// stream offset and the payload length it claims; an error from check stops feed.
func (f *frames) feed(p []byte, check func(off int64, size uint64) error) error {
	for len(p) > 0 {
		if f.hdrN < len(f.hdr) {
			k := copy(f.hdr[f.hdrN:], p)
			f.hdrN += k
			f.off += int64(k)
			p = p[k:]
			if f.hdrN < len(f.hdr) {
				return nil
			}
			f.left = binary.LittleEndian.Uint64(f.hdr[:])
			if check != nil {
				if err := check(f.off-int64(len(f.hdr)), f.left); err != nil {
					return err
				}
			}
		}
		k := min(uint64(len(p)), f.left)
		f.left -= k
		f.off += int64(k)
		p = p[k:]
		if f.left == 0 {
			f.hdrN = 0
		}
	}
	return nil
}

// inFrame reports whether the stream so far ends inside a frame (its header or its payload).
func (f *frames) inFrame() bool { return f.hdrN != 0 }

// streamWriter passes a backup stream to the file, counting and checksumming it, and follows
// its framing so that a stream cut short is never taken for a complete one.
type streamWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   int64
	fr  frames
}

func newStreamWriter(w io.Writer) *streamWriter {
	return &streamWriter{w: w, crc: crc32.New(castagnoli)}
}

func (s *streamWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.crc.Write(p[:n])
	s.n += int64(n)
	s.fr.feed(p[:n], nil) // nil check: never fails
	return n, err
}

// complete reports a stream that ends inside a frame.
func (s *streamWriter) complete() error {
	if s.fr.inFrame() {
		return errors.New("the backup stream ends inside a frame (cut short)")
	}
	return nil
}

// writeBackupFile writes the backup file path: produce writes the stream to w and returns next.
// It writes path+".tmp", syncs it and renames it only on success; on failure nothing is left.
func writeBackupFile(path string, since uint64, produce func(w *streamWriter) (next uint64, err error)) (h backupHeader, size int64, err error) {
	if _, err := os.Lstat(path); err == nil {
		return h, 0, fmt.Errorf("%s already exists: choose another name or remove it (a backup never overwrites a file)", path)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return h, 0, fmt.Errorf("%s exists: another backup to %s is running, or one was interrupted; remove it if none is running", tmp, path)
		}
		return h, 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(make([]byte, backupHeaderSize)); err != nil {
		return h, 0, err
	}
	sw := newStreamWriter(f)
	next, err := produce(sw)
	if err != nil {
		return h, 0, err
	}
	if err := sw.complete(); err != nil {
		return h, 0, err
	}
	h = backupHeader{Since: since, Next: next, StreamBytes: sw.n, CRC: sw.crc.Sum32(), Created: time.Now()}
	if next < since {
		return h, 0, fmt.Errorf("the broker returned next version %d, below since %d", next, since)
	}
	if _, err := f.WriteAt(h.marshal(), 0); err != nil {
		return h, 0, err
	}
	if err := f.Sync(); err != nil {
		return h, 0, err
	}
	if err := f.Close(); err != nil {
		return h, 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return h, 0, err
	}
	syncDir(filepath.Dir(path))
	return h, backupHeaderSize + h.StreamBytes, nil
}

// syncDir makes a rename in dir durable (best effort).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// backupFile is a backup file opened for restore.
type backupFile struct {
	path string
	h    backupHeader
	f    *os.File
}

// openBackupFile opens path and checks its header, its length and the length of every frame
// (the checksum is checked while the stream is read).
func openBackupFile(path string) (*backupFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*backupFile, error) {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	buf := make([]byte, backupHeaderSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fail(err)
	}
	h, err := parseBackupHeader(buf[:n])
	if err != nil {
		return fail(err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if got := fi.Size() - backupHeaderSize; got != h.StreamBytes {
		return fail(fmt.Errorf("truncated or damaged: the header announces a %d-byte stream, the file holds %d bytes after the header", h.StreamBytes, got))
	}
	b := &backupFile{path: path, h: h, f: f}
	if err := b.scanFrames(); err != nil {
		return fail(err)
	}
	return b, nil
}

// scanFrames reads every frame header (8 bytes each; the payloads are skipped) so that a
// damaged or hostile file is refused before restore writes anything.
func (b *backupFile) scanFrames() error {
	var hdr [8]byte
	for off := int64(0); off < b.h.StreamBytes; {
		if b.h.StreamBytes-off < int64(len(hdr)) {
			return fmt.Errorf("damaged: the stream ends inside the header of the frame at byte %d", backupHeaderSize+off)
		}
		if _, err := b.f.ReadAt(hdr[:], backupHeaderSize+off); err != nil {
			return err
		}
		size := binary.LittleEndian.Uint64(hdr[:])
		if err := b.checkFrame(off, size); err != nil {
			return err
		}
		off += int64(len(hdr)) + int64(size)
	}
	return nil
}

// checkFrame refuses a frame, its header at stream offset off, that claims more bytes than
// the stream holds after that header. Badger's DB.Load allocates a frame's claimed size before
// reading it, and the stream's checksum is known only at its end, so the file's own length is
// what bounds that allocation: a restore never asks for more memory than the backup's size.
func (b *backupFile) checkFrame(off int64, size uint64) error {
	left := b.h.StreamBytes - off - 8
	if size > uint64(left) {
		return fmt.Errorf("damaged: the frame at byte %d claims %d bytes, but only %d follow it in the file", backupHeaderSize+off, size, left)
	}
	return nil
}

// stream returns a reader of the backup stream that fails at its end when the checksum does
// not match (so that persist.Restore fails and removes what it loaded).
func (b *backupFile) stream() io.Reader {
	return &checkedReader{b: b, r: io.LimitReader(b.f, b.h.StreamBytes), crc: crc32.New(castagnoli)}
}

type checkedReader struct {
	b   *backupFile
	r   io.Reader
	crc hash.Hash32
	n   int64
	fr  frames
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	// scanFrames checked the headers when the file was opened; the bytes that reach DB.Load
	// are checked again, in case the file changed since.
	if ferr := c.fr.feed(p[:n], c.b.checkFrame); ferr != nil {
		return 0, fmt.Errorf("%s: %w", c.b.path, ferr)
	}
	c.crc.Write(p[:n])
	c.n += int64(n)
	if err == io.EOF {
		if c.n != c.b.h.StreamBytes {
			return n, fmt.Errorf("%s: stream ends after %d of %d bytes", c.b.path, c.n, c.b.h.StreamBytes)
		}
		if got := c.crc.Sum32(); got != c.b.h.CRC {
			return n, fmt.Errorf("%s: damaged: stream checksum %08x, the header says %08x", c.b.path, got, c.b.h.CRC)
		}
	}
	return n, err
}

// checkChain checks that backups form a chain: a full backup (since 0), then incrementals each
// taken from the previous one's next (persist: a backup holds versions > since, and next is the
// highest version it holds, so the following backup's since must be exactly next; a smaller
// since overlaps, which is harmless, a larger one leaves a gap).
func checkChain(files []*backupFile) error {
	for i, b := range files {
		if i == 0 {
			if b.h.Since != 0 {
				return fmt.Errorf("%s is an incremental backup (since=%d): the first --in must be a full backup (since=0), followed by its incrementals in order", b.path, b.h.Since)
			}
			continue
		}
		prev := files[i-1]
		if b.h.Since > prev.h.Next {
			return fmt.Errorf("%s (since=%d) does not follow %s (next=%d): the changes with versions %d..%d are in neither; pass the backups in order, without gaps",
				b.path, b.h.Since, prev.path, prev.h.Next, prev.h.Next+1, b.h.Since)
		}
	}
	return nil
}

// humanBytes formats n bytes for people.
func humanBytes(n float64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%.0f B", n)
	}
	div, exp := float64(unit), 0
	for v := n / unit; v >= unit && exp < 5; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", n/div, "KMGTPE"[exp])
}
