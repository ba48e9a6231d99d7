package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/holdfast/holdfast/persist"
)

func init() {
	commands["restore"] = command{"restore a full backup and its incrementals into an empty directory", restore}
}

const restoreUsage = `--data DIR --in FULL [--in INCREMENTAL ...] [--quiet]

Restores a full backup (since=0) followed by its incremental backups, in the order they were
taken (each one's since= is the previous one's next=), into DIR, which must be empty or not
exist. Then point a stopped broker's data_dir at DIR, or copy DIR into place.
Progress goes to stderr: a bar on a terminal, otherwise a line every 5 s and one at the end
with the total and the time taken; --quiet silences it.
`

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func restore(env *Env, args []string) error {
	fs := newFlags(env, "restore", restoreUsage)
	dir := fs.String("data", "", "the directory to restore into (empty or new)")
	var ins stringList
	fs.Var(&ins, "in", "a backup file; repeat: the full backup first, then its incrementals in order")
	quiet := fs.Bool("quiet", false, "show no progress on stderr")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || len(ins) == 0 {
		fs.Usage()
		return usagef("restore: --data DIR and at least one --in FILE are required")
	}

	// Everything that can be checked before writing is: the headers, lengths and order.
	var files []*backupFile
	defer func() {
		for _, b := range files {
			b.f.Close()
		}
	}()
	for _, p := range ins {
		b, err := openBackupFile(p)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		files = append(files, b)
	}
	if err := checkChain(files); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if pid, running := lockedByBroker(*dir); running {
		who := "a running broker"
		if pid != "" {
			who += " (pid " + pid + ")"
		}
		return fmt.Errorf("restore: %s is the data directory of %s: restore into a new, empty directory, then stop the broker and point its data_dir at it", *dir, who)
	}

	prog := newProgress(env, "restore", *quiet)
	defer prog.stop()
	var total int64
	streams := make([]io.Reader, len(files))
	for i, b := range files {
		streams[i] = prog.reader(b.stream())
		total += b.h.StreamBytes
	}
	prog.setTotal(total, false)
	prog.start()
	if err := persist.Restore(*dir, streams...); err != nil {
		if errors.Is(err, persist.ErrNotEmpty) {
			return fmt.Errorf("restore refused: %w", err)
		}
		return fmt.Errorf("restore into %s failed (what it wrote is removed): %w", *dir, err)
	}
	prog.finish()
	last := files[len(files)-1].h
	fmt.Fprintf(env.Stdout, "restored %s from %d backup(s): versions up to %d\n", *dir, len(files), last.Next)
	for _, b := range files {
		fmt.Fprintf(env.Stdout, "  %s since=%d next=%d\n", b.path, b.h.Since, b.h.Next)
	}
	fmt.Fprintf(env.Stderr, "holdfast: check it with: holdfast verify --data %s\n", *dir)
	return nil
}

// lockedByBroker reports whether a process holds Badger's lock on dir (a running broker), and
// the pid Badger wrote into dir/LOCK.
func lockedByBroker(dir string) (pid string, locked bool) {
	d, err := os.Open(dir)
	if err != nil {
		return "", false
	}
	defer d.Close()
	// Badger takes an exclusive flock on the directory itself; a shared one fails meanwhile.
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return "", false
		}
		b, _ := os.ReadFile(filepath.Join(dir, "LOCK"))
		return strings.TrimSpace(string(b)), true
	}
	syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
	return "", false
}
