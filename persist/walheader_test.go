package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestWALDamagedLengthMidLogStopsStartUp (issue 13): a damaged length field is damage like any
// other. Where it points, there is no valid record (the length runs past the file, or lands in
// the middle of the next record), yet valid records of the current epoch follow: a start must
// refuse the directory, naming the record, rather than take it for the end of the log and drop
// the acknowledged records behind it. A damaged length in the last record is still a torn tail.
func TestWALDamagedLengthMidLogStopsStartUp(t *testing.T) {
	ts := openTest(t)
	putSessions(t, ts.Store, "c")
	for _, f := range []string{"a", "b", "c"} {
		var b Batch
		b.PutSubscription("c", Subscription{Filter: f, SubOptions: SubOptions{QoS: 1}})
		ts.commit(&b)
	}
	// Records: the format version, the session, then one per subscription.
	mid := walRecordAt(t, ts.dir, 3) // subscription "b"
	for _, c := range []struct {
		byte int
		what string
	}{
		{0, "past the end of the file"},
		{3, "a few bytes off"},
	} {
		damaged := walCopy(t, ts, mid+c.byte)
		want := fmt.Sprintf("byte %d", mid)
		if _, err := CheckWAL(damaged); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
			t.Errorf("length pointing %s: CheckWAL (what a start runs): %v, want ErrCorrupt naming %s", c.what, err, want)
		}
		_, err := Open(testOptions(damaged, nil))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), walName) {
			t.Errorf("length pointing %s: open: %v, want ErrCorrupt naming the log and %s", c.what, err, want)
		}
	}

	torn := walCopy(t, ts, walRecordAt(t, ts.dir, 4)) // the last record's length
	if n, err := CheckWAL(torn); err != nil || n != 4 {
		t.Errorf("damaged length of the last record: CheckWAL: %d records, %v; want the 4 before it", n, err)
	}
	var got []string
	for _, sub := range session(openRecovered(t, torn), "c").Subscriptions {
		got = append(got, sub.Filter)
	}
	if slices.Sort(got); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("after a start on a damaged last length: subscriptions %q, want [a b]", got)
	}
}

// TestWALHeaderChecksum (issue 13): the header's epoch tells the current records from stale ones,
// so a flipped bit in it would make a start drop every record as stale. The header carries a
// checksum: any flipped bit of it stops a start with ErrCorrupt naming the file, and InspectWAL
// (what holdfast verify runs) reports it.
func TestWALHeaderChecksum(t *testing.T) {
	ts := openTest(t)
	putSessions(t, ts.Store, "c")
	for bit := range walFileHdr * 8 {
		dir := t.TempDir()
		wal, err := os.ReadFile(filepath.Join(ts.dir, walName))
		if err != nil {
			t.Fatal(err)
		}
		wal[bit/8] ^= 1 << (bit % 8)
		if err := os.WriteFile(filepath.Join(dir, walName), wal, 0o600); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, walName)
		if _, err := InspectWAL(dir); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Errorf("bit %d of the header: InspectWAL: %v, want ErrCorrupt naming %s", bit, err, path)
		}
		if err := startErr(dir); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Errorf("bit %d of the header: start: %v, want ErrCorrupt naming %s", bit, err, path)
		}
	}
}

// TestWALVersion1StillReplays: a log written before the header had a checksum ("HFWAL" 0 0 1 and
// the epoch, records from byte 16) opens and replays, and the log then starts over in the new
// form.
func TestWALVersion1StillReplays(t *testing.T) {
	ts := openTest(t)
	putSessions(t, ts.Store, "c")
	for _, f := range []string{"a", "b"} {
		var b Batch
		b.PutSubscription("c", Subscription{Filter: f, SubOptions: SubOptions{QoS: 1}})
		ts.commit(&b)
	}
	wal, err := os.ReadFile(filepath.Join(ts.dir, walName))
	if err != nil {
		t.Fatal(err)
	}
	// The same records under a version 1 header: each record's checksum covers the epoch and
	// its payload only.
	old := append([]byte(walMagicV1), wal[4:12]...)
	old = append(old, wal[walFileHdr:]...)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, walName), old, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := InspectWAL(dir); err != nil || rep.Records != 4 || rep.Corrupt() {
		t.Fatalf("InspectWAL of a version 1 log: %+v, %v; want 4 records, no damage", rep, err)
	}
	var got []string
	for _, sub := range session(openRecovered(t, dir), "c").Subscriptions {
		got = append(got, sub.Filter)
	}
	if slices.Sort(got); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("after replaying a version 1 log: subscriptions %q, want [a b]", got)
	}
	now, err := os.ReadFile(filepath.Join(dir, walName))
	if err != nil {
		t.Fatal(err)
	}
	if string(now[:4]) != walMagic || binary.BigEndian.Uint64(now[4:12]) <= binary.BigEndian.Uint64(wal[4:12]) {
		t.Errorf("after the start the log's header is %q, want version 2 with a later epoch", now[:16])
	}
}
