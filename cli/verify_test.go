package cli

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/persist"
)

// TestVerifyDamagedLengthNeverAdvisesAStart (issue 13: verify "never advises a step that discards
// records"): a crashed store whose log has a damaged length field in its middle. verify used to
// read that log as ending there, and then, Badger's files being unclean, advised starting
// holdfast on the directory, which replays the log up to the damage and starts it over, dropping
// the acknowledged records after it. It must name the damage and what recover would drop.
func TestVerifyDamagedLengthNeverAdvisesAStart(t *testing.T) {
	dir := t.TempDir()
	s := opsOpen(t, dir)
	defer s.Close()
	for _, f := range []string{"a", "b", "c", "d"} {
		b := &persist.Batch{}
		b.PutSession(f, persist.SessionRecord{ProtocolLevel: 4})
		opsCommit(t, s, b)
	}
	// A copy of the live directory is what a crash leaves; its log holds the format version and
	// the four sessions.
	crashed := filepath.Join(t.TempDir(), "crashed")
	if err := os.MkdirAll(crashed, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	off := 16
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "holdfast.wal" {
			for range 2 { // the format version's record and a's
				off += 8 + int(binary.BigEndian.Uint32(data[off:]))
			}
			data[off+2] ^= 0x01 // b's length field
		}
		if e.Name() != "LOCK" {
			if err := os.WriteFile(filepath.Join(crashed, e.Name()), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	errs := opsFail(t, 1, []string{"byte " + strconv.Itoa(off), "damaged", "2 valid records follow it", "holdfast recover --data " + crashed, "backup"},
		"verify", "--data", crashed)
	if strings.Contains(strings.ToLower(errs), "start holdfast") {
		t.Errorf("verify advises a start, which drops the records after the damage:\n%s", errs)
	}
}
