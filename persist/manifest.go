package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// Badger's MANIFEST lists its tables: an 8-byte header, then change sets, each a big-endian
// length, a CRC-32C and that many bytes. Badger's replay takes a change set whose length runs
// past the end of the file for a torn append and stops there, then deletes the tables that only
// the dropped change sets listed. A damaged length field looks just like that, so one flipped
// bit could empty the store without a word. manifestDamage tells the two apart the way the
// write-ahead log's replay does: a torn append has nothing whole after it.
const manifestHeader = 8

// manifestDamage returns the offset of the first change set of the MANIFEST in dir that Badger
// would stop at although whole data follows it, or -1.
func manifestDamage(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "MANIFEST"))
	if errors.Is(err, os.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("persist: %w", err)
	}
	off := manifestHeader
	for off+8 <= len(b) {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if end := off + 8 + n; end <= len(b) && crc32.Checksum(b[off+8:end], castagnoli) == binary.BigEndian.Uint32(b[off+4:]) {
			off = end
			continue
		}
		if manifestWholeFrom(b, off) {
			return off, nil
		}
		return -1, nil
	}
	return -1, nil
}

// manifestWholeFrom reports whether whole data follows the change set at off that does not
// check: its own bytes under another length (its length field is what was damaged), or a later
// non-empty change set whose checksum matches. Empty change sets are left out: eight zero bytes,
// which a torn append can leave, would pass for one.
func manifestWholeFrom(b []byte, off int) bool {
	crc := binary.BigEndian.Uint32(b[off+4:])
	for end := off + 9; end <= len(b); end++ {
		if crc32.Checksum(b[off+8:end], castagnoli) == crc {
			return true
		}
	}
	for p := off + 1; p+8 <= len(b); p++ {
		n := int(binary.BigEndian.Uint32(b[p:]))
		if n > 0 && p+8+n <= len(b) && crc32.Checksum(b[p+8:p+8+n], castagnoli) == binary.BigEndian.Uint32(b[p+4:]) {
			return true
		}
	}
	return false
}

// checkManifest refuses a MANIFEST that Badger would cut short although whole change sets follow.
func checkManifest(dir string) error {
	off, err := manifestDamage(dir)
	if err != nil || off < 0 {
		return err
	}
	return newError(ErrCorrupt, nil, "Badger's MANIFEST in %s is damaged at byte %d with whole data after it: Badger would drop what it lists from there on and delete those tables, "+
		"so holdfast refuses to start on it. Copy the directory aside, then restore a backup (holdfast restore)", dir, off)
}
