package cli

import (
	"errors"
	"fmt"

	"github.com/holdfast/holdfast/persist"
)

func init() {
	commands["verify"] = command{"check a stopped broker's data directory for consistency", verify}
}

const verifyUsage = `--data DIR [--quiet]

Opens the stopped broker's data directory read-only (nothing in it changes) and checks that
every key and value decodes, every queue entry has its message, every in-flight state its queue
entry, every client's data its session record, and Badger's checksums; first it reads holdfast's
write-ahead log, which a start would replay, and reports a damaged record in it (and what
holdfast recover would drop to get past it). Prints what the store holds and each problem on its
own line. Exit status: 0 consistent, 1 problems found or the
directory cannot be read, 2 bad usage.
Progress goes to stderr: a bar on a terminal, otherwise a line every 5 s and one at the end
with the total and the time taken; --quiet silences it.
Its progress counts the keys read, of about as many as the store's tables hold (old versions
and deletions count there).
`

func verify(env *Env, args []string) error {
	fs := newFlags(env, "verify", verifyUsage)
	dir := fs.String("data", "", "the stopped broker's data directory")
	quiet := fs.Bool("quiet", false, "show no progress on stderr")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		fs.Usage()
		return usagef("verify: --data DIR is required")
	}
	wal, err := persist.InspectWAL(*dir)
	if err != nil {
		return fmt.Errorf("verify: %w; the log's records hold acknowledged messages: copy the directory aside before changing anything in it, and restore a backup (holdfast restore)", err)
	}
	if wal.Corrupt() && wal.After == 0 {
		return fmt.Errorf("verify: write-ahead log %s: its last record, at byte %d, is damaged: it is one bit away from what its checksum says, so it was written whole "+
			"and most likely synced and acknowledged, yet a start drops it as it drops a torn write. Copy the directory aside first. Starting holdfast, or holdfast recover --data %s "+
			"(which copies the whole log to a backup file beside it first), drops that record and keeps the %d before it; restoring a backup (holdfast restore) loses more",
			wal.Path, wal.Damaged, *dir, wal.Records)
	}
	if wal.Corrupt() {
		// Nothing is dropped unless the operator chooses to, knowing what.
		return fmt.Errorf("verify: write-ahead log %s: the record at byte %d is damaged and %d valid records follow it: "+
			"a start refuses this directory rather than drop them, and they hold acknowledged messages. Copy the directory aside first. "+
			"Then either restore a backup (holdfast restore), or run holdfast recover --data %s, which keeps the %d records before it and drops "+
			"the damaged record and the %d valid records after it (bytes %d to %d), after copying the whole log to a backup file beside it",
			wal.Path, wal.Damaged, wal.After, *dir, wal.Records, wal.After, wal.Damaged, wal.End)
	}
	records := wal.Records
	prog := newProgress(env, "verify", *quiet)
	prog.unit = "keys"
	defer prog.stop()
	prog.start()
	rep, err := persist.VerifyProgress(*dir, func(keys, estimate int64) {
		prog.setTotal(estimate, keys < estimate)
		prog.n.Store(keys)
		if keys == estimate { // the scan's end
			prog.setNote("checking the tables' checksums")
		}
	})
	if err != nil {
		return storeOpenError("verify", *dir, err)
	}
	prog.finish()
	w := env.Stdout
	fmt.Fprintf(w, "verify %s: format version %d (written by %q); write-ahead log: %d records to replay\n", *dir, rep.FormatVersion, rep.Writer, records)
	held := ""
	if rep.Held > 0 {
		held = fmt.Sprintf(" (%d held by shared subscription members)", rep.Held)
	}
	fmt.Fprintf(w, "  sessions %d, subscriptions %d, queued %d, in flight %d%s, shared bodies %d, retained %d, inbound QoS 2 ids %d, wills %d\n",
		rep.Sessions, rep.Subscriptions, rep.Queued, rep.Inflight, held, rep.Bodies, rep.Retained, rep.Inbound, rep.Wills)
	if rep.OK() {
		fmt.Fprintln(w, "OK: consistent")
		return nil
	}
	fmt.Fprintf(w, "PROBLEMS (%d):\n", len(rep.Problems))
	for _, p := range rep.Problems {
		fmt.Fprintln(w, "  "+p)
	}
	return fmt.Errorf("verify: %s is not consistent: %d problem(s), listed above", *dir, len(rep.Problems))
}

// storeOpenError explains why a stopped store could not be opened read-only.
func storeOpenError(what, dir string, err error) error {
	switch {
	case errors.Is(err, persist.ErrLocked):
		return fmt.Errorf("%s: %s is in use: the broker is running. Stop it first, or ask the running broker (holdfast inspect -c config.toml)", what, dir)
	case errors.Is(err, persist.ErrUnclean):
		return fmt.Errorf("%s: %s was not closed cleanly (the broker crashed or was killed): start holdfast on it once and stop it (that replays its write-ahead log), then run %s again", what, dir, what)
	}
	return fmt.Errorf("%s: %w", what, err)
}
