//go:build unix

package persist

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSecurity15_DataDirModes: a data directory Open creates is 0700 and the write-ahead log
// 0600 whatever the umask; a log that was wider (copied, or made under another umask) is
// narrowed at the next Open; an existing directory keeps the mode its operator gave it.
func TestSecurity15_DataDirModes(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o022))
	for _, umask := range []int{0o022, 0o000} {
		syscall.Umask(umask)
		dir := filepath.Join(t.TempDir(), "parent", "data")
		open := func() {
			t.Helper()
			s, err := Open(testOptions(dir, nil))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		mode := func(path string) os.FileMode {
			t.Helper()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			return fi.Mode().Perm()
		}
		wal := filepath.Join(dir, walName)

		open()
		if got := mode(dir); got != 0o700 {
			t.Errorf("umask %04o: new data directory %04o, want 0700", umask, got)
		}
		if got := mode(wal); got != 0o600 {
			t.Errorf("umask %04o: new write-ahead log %04o, want 0600", umask, got)
		}
		if err := os.Chmod(wal, 0o644); err != nil {
			t.Fatal(err)
		}
		open()
		if got := mode(wal); got != 0o600 {
			t.Errorf("umask %04o: a 0644 write-ahead log is %04o after Open, want 0600", umask, got)
		}
		if err := os.Chmod(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		open()
		if got := mode(dir); got != 0o750 {
			t.Errorf("umask %04o: an existing 0750 data directory became %04o; it is the operator's", umask, got)
		}
	}
}
