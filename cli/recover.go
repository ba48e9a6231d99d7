package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/persist"
)

func init() {
	commands["recover"] = command{"cut a damaged write-ahead log so that a stopped broker starts again", recoverWAL}
}

const recoverUsage = `--data DIR

For a stopped broker that refuses to start because a record in the middle of its write-ahead
log (DIR/holdfast.wal) is damaged, or whose last record holdfast verify reports damaged.
holdfast verify --data DIR says so first, and what this drops. recover copies the whole log to DIR/holdfast.wal.<time>.bak (fsynced), then cuts the
log at the damaged record: the next start replays every record before it and nothing after.
The records after it are lost to the broker (they are in the copy); they hold messages,
subscriptions and sessions that were acknowledged. When a backup taken before the damage is
more valuable, restore it instead (holdfast restore). Exit status: 0 recovered, 1 nothing to
recover or the directory is in use or unreadable, 2 bad usage.
`

func recoverWAL(env *Env, args []string) error {
	fs := newFlags(env, "recover", recoverUsage)
	dir := fs.String("data", "", "the stopped broker's data directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		fs.Usage()
		return usagef("recover: --data DIR is required")
	}
	r, err := persist.RecoverWAL(*dir, time.Now())
	switch {
	case errors.Is(err, persist.ErrLocked):
		return fmt.Errorf("recover: %s is in use: the broker is running. Stop it first", *dir)
	case errors.Is(err, persist.ErrNothingToRecover):
		return fmt.Errorf("recover: nothing to recover, nothing changed: %w", err)
	case errors.Is(err, persist.ErrCorrupt):
		return fmt.Errorf("recover: %w; recover cuts damaged records, it does not repair a header: restore a backup (holdfast restore)", err)
	case err != nil:
		return fmt.Errorf("recover: %w", err)
	}
	w := env.Stdout
	fmt.Fprintf(w, "recovered %s: cut the write-ahead log at byte %d\n", *dir, r.Damaged)
	fmt.Fprintf(w, "  kept:    %d records, replayed at the next start\n", r.Records)
	fmt.Fprintf(w, "  dropped: the damaged record and the %d valid records after it, %d bytes (bytes %d to %d)\n", r.After, r.Dropped(), r.Damaged, r.End)
	fmt.Fprintf(w, "  backup:  %s (the whole log as it was)\n", r.Backup)
	return nil
}
