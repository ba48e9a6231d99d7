package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestManifestLengthFlipStopsStartUp (issue 13, corruption): every bit of the length field of
// the MANIFEST's last change set flipped in turn. Badger took a length that runs past the end for
// a torn append, dropped the change set and deleted the table it listed: the store came back
// empty without a word. A start must refuse it (ErrCorrupt) or give back what was stored; a truly
// torn tail (cut short, or zeros after it) must still start.
func TestManifestLengthFlipStopsStartUp(t *testing.T) {
	f := buildStore(t, false)
	want, err := contentDigest(t, f.dir)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join(f.dir, "MANIFEST"))
	if err != nil {
		t.Fatal(err)
	}
	last := manifestHeader // the offset of the last change set
	for off := manifestHeader; off+8 <= len(orig); {
		last = off
		off += 8 + int(binary.BigEndian.Uint32(orig[off:]))
	}
	variant := func(name string, b []byte) string {
		dir := filepath.Join(t.TempDir(), "d")
		copyDir(t, f.dir, dir)
		if err := os.WriteFile(filepath.Join(dir, "MANIFEST"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	refused := 0
	for bit := range 32 {
		b := slices.Clone(orig)
		b[last+bit/8] ^= 1 << (bit % 8)
		what := fmt.Sprintf("bit %d of the length at byte %d", bit, last)
		got, err := contentDigest(t, variant(what, b))
		switch {
		case errors.Is(err, ErrCorrupt):
			refused++
		case err != nil:
			// Badger's own check (a length beyond the file's size) refuses it too.
		case got != want:
			t.Errorf("%s: the store opened with other contents", what)
		}
	}
	t.Logf("%d of 32 length flips refused by holdfast's check, the others by Badger's or harmless", refused)
	if refused == 0 {
		t.Error("no flip reached holdfast's check: the test does not test it")
	}
	for name, b := range map[string][]byte{
		"torn last change set": orig[:len(orig)-3],
		"zeros after the end":  append(slices.Clone(orig), make([]byte, 16)...),
	} {
		if _, err := contentDigest(t, variant(name, b)); errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: refused (%v), want a start", name, err)
		}
	}
}
