package cli

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// writeCraftedBackup writes a backup file whose header is consistent with stream (length and
// checksum), whatever the stream holds.
func writeCraftedBackup(t *testing.T, stream []byte) string {
	t.Helper()
	h := backupHeader{Next: 1, StreamBytes: int64(len(stream)), CRC: crc32.Checksum(stream, castagnoli), Created: time.Now()}
	path := filepath.Join(t.TempDir(), "crafted.backup")
	if err := os.WriteFile(path, append(h.marshal(), stream...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// frame returns a frame header claiming size bytes, followed by payload.
func frame(size uint64, payload string) []byte {
	return append(binary.LittleEndian.AppendUint64(nil, size), payload...)
}

// TestSecurity11_RestoreHostileFrameLength: a backup whose frame header claims more than the
// file holds (4 GiB passes the store's own 4 GiB bound; 1 TiB does not) is refused before
// anything is written or allocated, with an error naming the frame, the claim and the file.
func TestSecurity11_RestoreHostileFrameLength(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream []byte
		want   string
	}{
		{"4 GiB", frame(4<<30, "garbage"), "the frame at byte 256 claims 4294967296 bytes, but only 7 follow it in the file"},
		{"1 TiB", frame(1<<40, "garbage"), "the frame at byte 256 claims 1099511627776 bytes, but only 7 follow it"},
		{"max uint64", frame(1<<64-1, ""), "claims 18446744073709551615 bytes, but only 0 follow"},
		{"second frame", append(frame(3, "abc"), frame(1<<31, "x")...), "the frame at byte 267 claims 2147483648 bytes, but only 1 follow"},
		{"cut header", append(frame(3, "abc"), 1, 2, 3), "the stream ends inside the header of the frame at byte 267"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := writeCraftedBackup(t, tc.stream)
			data := filepath.Join(t.TempDir(), "restored")
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			errs := opsFail(t, 1, []string{in, tc.want}, "restore", "--data", data, "--in", in)
			runtime.ReadMemStats(&after)
			if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
				t.Errorf("restore allocated %d MiB for a %d-byte stream", got>>20, len(tc.stream))
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused, but %s was created (%v): the check must come before writing\n%s", data, err, errs)
			}
		})
	}
}

// TestSecurity11_RestoreStreamRechecksFrames: a frame header that changes after the file was
// opened and scanned is still refused before the reader (DB.Load) sees it.
func TestSecurity11_RestoreStreamRechecksFrames(t *testing.T) {
	in := writeCraftedBackup(t, frame(3, "abc"))
	b, err := openBackupFile(in)
	if err != nil {
		t.Fatal(err)
	}
	defer b.f.Close()
	w, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(binary.LittleEndian.AppendUint64(nil, 4<<30), backupHeaderSize); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got, err := io.ReadAll(b.stream())
	want := fmt.Sprintf("%s: damaged: the frame at byte 256 claims 4294967296 bytes, but only 3 follow it", in)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("read %d bytes, error %v; want %q", len(got), err, want)
	}
	if len(got) != 0 {
		t.Errorf("the changed header was passed on (%d bytes) before the error", len(got))
	}
}
