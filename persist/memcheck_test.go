package persist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const memCheckEnv = "HOLDFAST_PERSIST_MEMCHECK_DIR"

const memCheckSubs = 300

// TestDamagedMemtableStopsStartUp (issue 13): a broker killed with its memtable file holding
// entries written before holdfast's last checkpoint (so no longer in its log), then one bit of
// that file flipped. Badger's read-write open cuts the file at the damage and drops every entry
// after it without a word; the start must refuse the directory instead, naming the file, as it
// does for mid-log damage in its own log. A torn tail, which the kill itself can leave, is not
// damage: the start keeps everything.
func TestDamagedMemtableStopsStartUp(t *testing.T) {
	if os.Getenv(memCheckEnv) != "" {
		t.Skip("parent test")
	}
	dir := t.TempDir()
	child := startChild(t, "TestDamagedMemtableChild", 60*time.Second, memCheckEnv+"="+dir)
	ready := false
	for child.lines.Scan() {
		if line := child.lines.Text(); line != "ready" {
			t.Errorf("child: %s", line)
			continue
		}
		ready = true
		child.kill()
	}
	_ = child.wait()
	if !ready {
		t.Fatal("the child did not get ready")
	}
	memPath, mem, end := readMemtable(t, dir)

	torn := filepath.Join(t.TempDir(), "torn")
	copyDir(t, dir, torn)
	b := slices.Clone(mem)
	clear(b[end-1500 : end])
	if err := os.WriteFile(filepath.Join(torn, filepath.Base(memPath)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := len(session(openRecovered(t, torn), "c").Subscriptions); got != memCheckSubs {
		t.Errorf("start with a torn memtable tail: %d subscriptions, want %d", got, memCheckSubs)
	}

	b = slices.Clone(mem)
	b[5000] ^= 0x10 // among entries checkpointed long ago
	if err := os.WriteFile(memPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := startErr(dir)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(memPath)) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("start with a damaged memtable: %v, want ErrCorrupt naming %s", err, memPath)
	}
	t.Logf("refused in %v", time.Since(start))
}

// TestDamagedMemtableChild is the child of TestDamagedMemtableStopsStartUp: it writes
// subscriptions with checkpoints in between, prints "ready" and waits for SIGKILL.
func TestDamagedMemtableChild(t *testing.T) {
	dir := os.Getenv(memCheckEnv)
	if dir == "" {
		t.Skip("child process of TestDamagedMemtableStopsStartUp")
	}
	o := testOptions(dir, nil)
	o.checkpointBytes = 64 << 10 // several checkpoints, each leaving the memtable behind the log
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	putSessions(t, s, "c")
	for i := range memCheckSubs {
		var b Batch
		b.PutSubscription("c", Subscription{Filter: fmt.Sprintf("f%03d/%s", i, strings.Repeat("x", 1000)), SubOptions: SubOptions{QoS: 1}})
		if _, err := s.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}
