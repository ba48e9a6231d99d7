package persist

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/faultfs"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

const gcPowerCutEnv = "HOLDFAST_PERSIST_GC_POWERCUT_DIR"

const (
	gcValues = 30
	gcKeep   = 3 // every gcKeep-th value is kept, the others deleted: one in each value-log file
)

// gcTopic is the topic of value i: the deleted ones share a prefix.
func gcTopic(i int) string {
	if i%gcKeep == 0 {
		return fmt.Sprintf("gc/keep/%d", i)
	}
	return fmt.Sprintf("gc/del/%d", i)
}

// gcPayload is value i: above the value threshold (in the value log), and telling itself apart.
func gcPayload(i int) []byte {
	p := bytes.Repeat([]byte{byte(i)}, 400<<10)
	copy(p, fmt.Sprintf("value %d", i))
	return p
}

func gcOptions(dir string) Options {
	o := testOptions(dir, nil)
	o.ValueLogFileSize = 1 << 20 // two values per file
	return o
}

// TestValueLogGCPowerCut (issue 13, item 5): the value-log GC moves the live values of a file into
// the current value log and memtable, which are not synced, and deletes the old file. A power cut
// right after a rewrite must lose nothing: the child keeps a few large values, deletes the
// others, lets the GC rewrite their files, and reports it; the power is cut then, and every kept
// value must read back intact.
func TestValueLogGCPowerCut(t *testing.T) {
	if os.Getenv(gcPowerCutEnv) != "" {
		t.Skip("parent test")
	}
	disk, mnt := t.TempDir(), t.TempDir()
	fs := faultfs.Mount(t, disk, mnt)
	child := startChild(t, "TestValueLogGCPowerCutChild", 60*time.Second, gcPowerCutEnv+"="+mnt)
	rewritten := false
	for child.lines.Scan() {
		line := child.lines.Text()
		if !strings.HasPrefix(line, "rewritten") {
			t.Errorf("child: %s", line)
			continue
		}
		rewritten = true
		if err := fs.PowerCut(); err != nil {
			t.Error(err)
		}
		child.kill()
	}
	_ = child.wait()
	if !rewritten {
		t.Fatal("the child reported no value-log rewrite")
	}

	s, err := Open(gcOptions(disk))
	if err != nil {
		t.Fatalf("open after the power cut: %v", err)
	}
	defer s.Close()
	st, err := s.Recover()
	if err != nil {
		t.Fatalf("Recover after the power cut: %v", err)
	}
	got := make(map[string][]byte)
	for _, m := range st.Retained {
		got[m.Topic] = m.Payload
	}
	for i := 0; i < gcValues; i += gcKeep {
		topic := gcTopic(i)
		if p, ok := got[topic]; !ok || !bytes.Equal(p, gcPayload(i)) {
			t.Errorf("%s after the power cut: %d bytes (present %t), want its %d bytes", topic, len(p), ok, len(gcPayload(i)))
		}
	}
	if len(got) != gcValues/gcKeep {
		t.Errorf("%d retained messages after the power cut, want %d", len(got), gcValues/gcKeep)
	}
}

// TestValueLogGCPowerCutChild is the child of TestValueLogGCPowerCut: it prints "rewritten" once
// the GC has rewritten a value-log file, and waits for SIGKILL.
func TestValueLogGCPowerCutChild(t *testing.T) {
	dir := os.Getenv(gcPowerCutEnv)
	if dir == "" {
		t.Skip("child process of TestValueLogGCPowerCut")
	}
	s := openForGC(t, dir)
	mqtttest.Eventually(t, 30*time.Second, "a value-log rewrite", func() bool { return s.Stats().GCRewrites > 0 })
	fmt.Println("rewritten")
	select {} // until SIGKILL
}

// TestValueLogGCSyncFailure: a failure to make the values a GC rewrite moved durable is a storage
// error like any other (fail-stop), and the rewritten file stays on disk.
func TestValueLogGCSyncFailure(t *testing.T) {
	dir := t.TempDir()
	var vlogs []string
	s := openForGC(t, dir, func(s *Store) {
		vlogs, _ = filepath.Glob(filepath.Join(dir, "*.vlog"))
		s.wal.faults[stepBadgerSync].Store(&fault{err: syscall.EIO})
	})
	defer closeFailed(t, s)
	select {
	case <-s.Failed():
	case <-time.After(30 * time.Second):
		t.Fatal("no fail-stop within 30 s")
	}
	if !errors.Is(s.Err(), syscall.EIO) {
		t.Errorf("the store failed with %v, want the injected EIO", s.Err())
	}
	for _, f := range vlogs {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("value-log file %s after the failure: %v; want it kept", filepath.Base(f), err)
		}
	}
}

// openForGC writes gcValues values above the value threshold into a store in dir, deletes all
// but every gcKeep-th, closes it, and opens it again with a value-log GC every 10 ms after
// running arm (if any) on it, and with the statistics by which Badger's GC picks a file filled.
func openForGC(t *testing.T, dir string, arm ...func(*Store)) *Store {
	t.Helper()
	s, err := Open(gcOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	for i := range gcValues {
		var b Batch
		b.PutRetained(&Message{Topic: gcTopic(i), Payload: gcPayload(i), QoS: 1})
		if _, err := s.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
	for i := range gcValues {
		if i%gcKeep != 0 {
			var b Batch
			b.DeleteRetained(gcTopic(i))
			if _, err := s.Commit(&b); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A key for DropPrefix, below.
	var b Batch
	b.PutRetained(&Message{Topic: "gc/drop", Payload: []byte("x"), QoS: 1})
	if _, err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	// Close checkpoints and empties the log: from here the kept values are only in Badger's
	// files, and a power cut after the GC has nothing to replay them from.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o := gcOptions(dir)
	o.GCInterval, o.GCDiscardRatio = 10*time.Millisecond, 0.3
	if s, err = Open(o); err != nil {
		t.Fatal(err)
	}
	for _, f := range arm {
		f(s)
	}
	// DropPrefix compacts level 0, which counts the deleted values into Badger's discard
	// statistics, by which the GC picks its files.
	if err := s.db.DropPrefix(retainedKey("gc/drop")); err != nil {
		t.Fatal(err)
	}
	return s
}
