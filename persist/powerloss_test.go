package persist

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFormatVersionSurvivesLosingBadgersState is what a power cut shortly after the first start
// leaves (issue 13, item 3): the write-ahead log, fdatasynced with every commit, and none of
// Badger's own state, which is not synced before the first checkpoint. Replaying the log into an
// empty directory must give a store that opens, with its format version and the committed data.
func TestFormatVersionSurvivesLosingBadgersState(t *testing.T) {
	ts := openTest(t)
	putSessions(t, ts.Store, "c")
	var b Batch
	b.PutSubscription("c", Subscription{Filter: "a/#", QoS: 1})
	ts.commit(&b)

	// The power cut: only the synced log is left, in a directory otherwise empty.
	wal, err := os.ReadFile(filepath.Join(ts.dir, walName))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, walName), wal, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(testOptions(dir, nil))
	if err != nil {
		t.Fatalf("the store left by a power cut does not open: %v", err)
	}
	defer s.Close()
	st, err := s.Recover()
	if err != nil {
		t.Fatal(err)
	}
	ss := session(st, "c")
	if ss == nil || len(ss.Subscriptions) != 1 || ss.Subscriptions[0].Filter != "a/#" {
		t.Fatalf("recovered %+v, want session c with its subscription", ss)
	}
}
