package faultfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// mounted mounts a faultfs of a new disk.
func mounted(t *testing.T) *FS {
	t.Helper()
	return Mount(t, t.TempDir(), t.TempDir())
}

func write(t *testing.T, path string, data []byte, off int64, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func expectFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if want == nil {
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: want no file, got %d bytes, %v", path, len(got), err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got %d bytes %.40q, want %d bytes %.40q", path, len(got), got, len(want), want)
	}
}

func TestPowerCutKeepsWhatWasSynced(t *testing.T) {
	f := mounted(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16,000 bytes: four blocks
	over := bytes.Repeat([]byte("x"), 5000)

	write(t, filepath.Join(f.Dir, "synced"), big, 0, true)
	write(t, filepath.Join(f.Dir, "synced"), over, 3000, false) // across two blocks
	write(t, filepath.Join(f.Dir, "synced"), []byte("tail"), 20000, false)

	write(t, filepath.Join(f.Dir, "never"), big, 0, false)

	write(t, filepath.Join(f.Dir, "resynced"), big[:100], 0, true)
	write(t, filepath.Join(f.Dir, "resynced"), big[100:], 100, true)

	write(t, filepath.Join(f.Dir, "truncated"), big, 0, true)
	if err := os.Truncate(filepath.Join(f.Dir, "truncated"), 10); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.Dir, "rewritten"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.Dir, "rewritten"), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := os.Mkdir(filepath.Join(f.Dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.Dir, "sub", "moved"), big, 0, true)
	if err := os.Rename(filepath.Join(f.Dir, "sub", "moved"), filepath.Join(f.Dir, "moved")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.Dir, "moved"), over, 0, false)

	// Before the cut the mount shows everything written.
	want := append([]byte(nil), big...)
	copy(want[3000:], over)
	want = append(want, make([]byte, 20000-len(want))...)
	want = append(want, "tail"...)
	expectFile(t, filepath.Join(f.Dir, "synced"), want)

	if err := f.PowerCut(); err != nil {
		t.Fatal(err)
	}
	if err := f.Unmount(); err != nil {
		t.Fatal(err)
	}
	f = Mount(t, f.Disk, t.TempDir())
	expectFile(t, filepath.Join(f.Dir, "synced"), big)
	expectFile(t, filepath.Join(f.Dir, "never"), nil)
	expectFile(t, filepath.Join(f.Dir, "resynced"), big)
	expectFile(t, filepath.Join(f.Dir, "truncated"), big)
	expectFile(t, filepath.Join(f.Dir, "rewritten"), nil) // created, never synced
	expectFile(t, filepath.Join(f.Dir, "moved"), big)
}

func TestPowerCutStopsWrites(t *testing.T) {
	f := mounted(t)
	path := filepath.Join(f.Dir, "open")
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := file.Write([]byte("durable")); err != nil {
		t.Fatal(err)
	}
	if err := file.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.PowerCut(); err != nil {
		t.Fatal(err)
	}
	// The process that had it open goes on, but nothing reaches the disk any more.
	if _, err := file.Write([]byte(" more")); err == nil {
		if err = file.Sync(); err == nil {
			t.Error("a write and fsync after the power cut succeeded")
		}
	}
	file.Close()
	expectFile(t, filepath.Join(f.Disk, "open"), []byte("durable"))
}

func TestFailSyncDropsUnsynced(t *testing.T) {
	f := mounted(t)
	path := filepath.Join(f.Dir, "log")
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := file.Write([]byte("one;")); err != nil {
		t.Fatal(err)
	}
	if err := file.Sync(); err != nil {
		t.Fatal(err)
	}
	f.FailSync(syscall.EIO)
	if _, err := file.Write([]byte("two;")); err != nil {
		t.Fatal(err)
	}
	if err := file.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync after FailSync: %v, want EIO", err)
	}
	expectFile(t, filepath.Join(f.Disk, "log"), []byte("one;"))
	if err := file.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second fsync after FailSync: %v, want EIO (it stays failed)", err)
	}
	f.FailSync(0)
	if _, err := file.Write([]byte("three;")); err != nil {
		t.Fatal(err)
	}
	if err := file.Sync(); err != nil {
		t.Fatalf("fsync of a healed disk: %v", err)
	}
	// The page cache still has "two;" where the disk lost it, and the append wrote after it: FUSE
	// sends the bytes of each write, so the lost ones stay a gap of zeros on the disk.
	expectFile(t, filepath.Join(f.Disk, "log"), []byte("one;\x00\x00\x00\x00three;"))
}

func TestHoldSyncs(t *testing.T) {
	f := mounted(t)
	file, err := os.Create(filepath.Join(f.Dir, "held"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	release := f.HoldSyncs()
	synced := make(chan error, 1)
	go func() { synced <- file.Sync() }()
	select {
	case err := <-synced:
		t.Fatalf("fsync returned (%v) while syncs are held", err)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	if err := <-synced; err != nil {
		t.Fatalf("fsync after release: %v", err)
	}
	release() // idempotent
}

// Badger memory-maps its memtable and value-log files: through FUSE the kernel writes the
// mapped pages back with ordinary writes, which the undo log sees. Badger runs in a child process:
// a thread of the FUSE server's own process faulting on a mapped page can stop the world for the
// garbage collector while the server, stopped too, is the one that must answer the fault.
func TestBadgerOnTheMount(t *testing.T) {
	f := mounted(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), badgerChild+"="+filepath.Join(f.Dir, "badger"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("badger on the mount: %v\n%s", err, out)
	}
}

// badgerChild names the variable that makes the test binary a child that writes a Badger store in
// the directory it holds, closes it, reopens it and reads everything back.
const badgerChild = "FAULTFS_BADGER_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(badgerChild); dir != "" {
		if err := badgerRoundTrip(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func badgerRoundTrip(dir string) error {
	const keys = 2000
	opts := badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(1 << 20).
		WithValueLogFileSize(1 << 20).WithValueThreshold(1024)
	db, err := badger.Open(opts)
	if err != nil {
		return err
	}
	value := bytes.Repeat([]byte("v"), 2000) // in the value log
	for i := range keys {
		if err := db.Update(func(txn *badger.Txn) error {
			return txn.Set([]byte{byte(i >> 8), byte(i)}, value)
		}); err != nil {
			return err
		}
	}
	if err := db.Close(); err != nil {
		return err
	}
	if db, err = badger.Open(opts); err != nil {
		return err
	}
	defer db.Close()
	n := 0
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if !bytes.Equal(v, value) {
				return fmt.Errorf("key %x: wrong value", it.Item().Key())
			}
			n++
		}
		return nil
	})
	if err == nil && n != keys {
		err = fmt.Errorf("read back %d keys, want %d", n, keys)
	}
	return err
}
