package persist

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestDamagedTableBlockIsNotServed (issue 13, corruption): one bit flipped in a table of a store
// closed cleanly, at every eleventh byte. A start may refuse the store (an error, or still a panic
// inside Badger: see TestCorruptBadgerBitFlips) or read back exactly what was stored, but never
// serve a changed value as stored: Badger checks each block's checksum as it loads it.
func TestDamagedTableBlockIsNotServed(t *testing.T) {
	f := buildStore(t, true)
	d, err := contentDigest(t, f.dir)
	if err != nil {
		t.Fatal(err)
	}
	want := "digest: " + d
	tables, err := filepath.Glob(filepath.Join(f.dir, "*.sst"))
	if err != nil || len(tables) != 1 {
		t.Fatalf("tables %v %v", tables, err)
	}
	name := filepath.Base(tables[0])
	orig, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for off := 0; off < len(orig); off += 11 {
		dir := filepath.Join(t.TempDir(), "d")
		copyDir(t, f.dir, dir)
		b := slices.Clone(orig)
		b[off] ^= 1 << (off % 8)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if start := startInChild(t, dir); strings.HasPrefix(start, "digest: ") && start != want {
			changed++
			t.Errorf("bit %d of byte %d of %s: a start reads back something else than was stored", off%8, off, name)
		}
	}
	if changed > 0 {
		t.Logf("%d of %d flips served changed data", changed, (len(orig)+10)/11)
	}
}
