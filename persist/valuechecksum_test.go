package persist

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestDamagedValueLogEntryIsNotServed (issue 13, corruption): a byte changed inside a value in a
// value-log file that is not the newest (Badger's open checks only the newest one's entries) of a
// store closed cleanly. A start must not serve the changed message as if it were the one stored.
func TestDamagedValueLogEntryIsNotServed(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(dir, nil)
	o.ValueLogFileSize = 1 << 20 // three values per file
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	payload := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("holdfast%d", i)), 40<<10) } // 400 KiB: over the threshold
	for i := range 4 {
		var b Batch
		b.PutRetained(&Message{Topic: fmt.Sprint("big", i), Payload: payload(i), QoS: 1})
		if _, err := s.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(dir, "000001.vlog")
	data, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, payload(0))
	if at < 0 {
		t.Fatal("the first payload is not in the first value-log file")
	}
	data[at+len(payload(0))/2] ^= 0x01
	if err := os.WriteFile(first, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(o); err != nil {
		return // refused at the start: not served either
	}
	defer s.Close()
	st, err := s.Recover()
	if err == nil {
		for _, m := range st.Retained {
			if m.Topic == "big0" && !bytes.Equal(m.Payload, payload(0)) {
				t.Fatal("Recover served the damaged message as stored")
			}
		}
		t.Fatalf("Recover: %d retained messages and no error, want the damage reported", len(st.Retained))
	}
	t.Logf("Recover: %v", err)
}
