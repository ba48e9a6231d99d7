package cli

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/persist"
)

// powerCutWithDamage commits a session and filters one subscription each, then leaves in a new
// directory what a power cut leaves of that store, its synced write-ahead log and nothing of
// Badger, with one byte of the k-th subscription's record damaged. It returns the directory and
// the record's offset.
func powerCutWithDamage(t *testing.T, filters []string, k int) (dir string, off int) {
	t.Helper()
	live := t.TempDir()
	s := opsOpen(t, live)
	b := &persist.Batch{}
	b.PutSession("c", persist.SessionRecord{ProtocolLevel: 4})
	opsCommit(t, s, b)
	for _, f := range filters {
		b := &persist.Batch{}
		b.PutSubscription("c", persist.Subscription{Filter: f, SubOptions: persist.SubOptions{QoS: 1}})
		opsCommit(t, s, b)
	}
	wal, err := os.ReadFile(filepath.Join(live, "holdfast.wal"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The file header, then the format version's record and the session's.
	off = 16
	for range 2 + k {
		off += 8 + int(binary.BigEndian.Uint32(wal[off:]))
	}
	wal[off+8+3] ^= 0x10 // in the payload
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "holdfast.wal"), wal, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, off
}

func subscriptions(t *testing.T, dir string) []string {
	t.Helper()
	s := opsOpen(t, dir)
	defer s.Close()
	st, err := s.Recover()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ss := range st.Sessions {
		if ss.ClientID == "c" {
			for _, sub := range ss.Subscriptions {
				got = append(got, sub.Filter)
			}
		}
	}
	slices.Sort(got)
	return got
}

var recoveredOutput = regexp.MustCompile(`^recovered (\S+): cut the write-ahead log at byte (\d+)
  kept:    (\d+) records, replayed at the next start
  dropped: the damaged record and the (\d+) valid records after it, (\d+) bytes \(bytes \d+ to \d+\)
  backup:  (\S+) \(the whole log as it was\)
$`)

// TestRecoverCutsDamagedLog (issue 13, holdfast recover): a log damaged in its middle stops the
// start; verify names the record and points to recover, saying what it drops and that it keeps a
// copy; recover refuses a directory in use, copies the log, cuts it at the damage and says what
// it dropped; the broker then starts with every record before the damage; a second recover has
// nothing to do.
func TestRecoverCutsDamagedLog(t *testing.T) {
	filters := []string{"a", "b", "c", "d", "e"}
	dir, off := powerCutWithDamage(t, filters, 2) // "c"
	damagedLog, err := os.ReadFile(filepath.Join(dir, "holdfast.wal"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := persist.Open(opsOptions(dir)); err == nil || !strings.Contains(err.Error(), "byte "+strconv.Itoa(off)) {
		t.Fatalf("start on the damaged log: %v, want a refusal naming byte %d", err, off)
	}
	opsFail(t, 1, []string{"byte " + strconv.Itoa(off), "holdfast recover --data " + dir, "the damaged record and the 2 valid records after it", "keeps the 4 records before it", "backup"}, "verify", "--data", dir)

	// In use (Badger's lock is a flock on the directory): refused, nothing changed.
	lock, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	opsFail(t, 1, []string{"in use", "Stop it first"}, "recover", "--data", dir)
	lock.Close()
	if now, _ := os.ReadFile(filepath.Join(dir, "holdfast.wal")); !bytes.Equal(now, damagedLog) {
		t.Fatal("recover changed the log of a directory in use")
	}

	out := opsMust(t, "recover", "--data", dir)
	m := recoveredOutput.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("recover printed:\n%s", out)
	}
	// Kept: the format version, the session, a and b. Dropped: c (damaged), d and e.
	if m[1] != dir || m[2] != strconv.Itoa(off) || m[3] != "4" || m[4] != "2" {
		t.Errorf("recover printed:\n%s\nwant the cut at byte %d, 4 records kept, 2 valid ones dropped", out, off)
	}
	backup := m[6]
	if filepath.Dir(backup) != dir || !strings.HasPrefix(filepath.Base(backup), "holdfast.wal.") {
		t.Errorf("backup %s, want a file beside the log", backup)
	}
	if b, err := os.ReadFile(backup); err != nil || !bytes.Equal(b, damagedLog) {
		t.Errorf("backup %s: %v; want the whole damaged log", backup, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "holdfast.wal")); err != nil || fi.Size() != int64(off) {
		t.Errorf("log after recover: %v, %v; want it cut at byte %d", fi, err, off)
	}
	if n, _ := strconv.Atoi(m[5]); n <= 0 {
		t.Errorf("dropped %s bytes", m[5])
	}

	if got := subscriptions(t, dir); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("after recover the store holds subscriptions %q, want a and b", got)
	}
	opsFail(t, 1, []string{"nothing to recover", "nothing changed"}, "recover", "--data", dir)
	opsFail(t, 2, []string{"--data DIR is required"}, "recover")
}

// TestVerifyDamagedLastRecord: a flipped bit in the log's last record is not a torn write (the
// record is whole, one bit off its checksum), though a start drops it just the same: verify says
// so, and recover drops it with a copy of the log kept.
func TestVerifyDamagedLastRecord(t *testing.T) {
	filters := []string{"a", "b", "c"}
	dir, off := powerCutWithDamage(t, filters, 2)
	opsFail(t, 1, []string{"its last record, at byte " + strconv.Itoa(off), "most likely synced and acknowledged", "holdfast recover --data " + dir},
		"verify", "--data", dir)
	m := recoveredOutput.FindStringSubmatch(opsMust(t, "recover", "--data", dir))
	if m == nil || m[2] != strconv.Itoa(off) || m[4] != "0" {
		t.Errorf("recover: %q, want the cut at byte %d and no valid record after it", m, off)
	}
	if got := subscriptions(t, dir); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("after recover the store holds subscriptions %q, want a and b", got)
	}
}
