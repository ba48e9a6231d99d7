package persist

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// spaceCheckEvery bounds how often the free space of the data directory's file system is read:
// a statfs per publish would cost more than the answer is worth.
const spaceCheckEvery = 250 * time.Millisecond

// space watches the free space of the file system that holds the store. Safe for concurrent use.
type space struct {
	dir     string
	min     int64        // Options.MinFreeBytes; 0 = never low
	checked atomic.Int64 // when free was last read, Unix nanoseconds
	free    atomic.Int64
	low     atomic.Bool
}

// SpaceLow reports whether the free space of the file system holding the store is below
// Options.MinFreeBytes, and how much is free (-1 when unknown). Below it, the broker takes no new
// work that needs disk (a state, not a failure: it ends when space returns); what frees space,
// acknowledgements, goes on. It reads the file system at most every 250 ms.
func (s *Store) SpaceLow() (low bool, free int64) {
	sp := &s.space
	if sp.min == 0 || s.opt.Durability == None {
		return false, -1
	}
	now := time.Now().UnixNano()
	if last := sp.checked.Load(); now-last >= int64(spaceCheckEvery) && sp.checked.CompareAndSwap(last, now) {
		var st unix.Statfs_t
		if err := unix.Statfs(sp.dir, &st); err != nil {
			s.log.Warn().Err(err).Str("dir", sp.dir).Msg("cannot read the free disk space")
		} else {
			f := int64(st.Bavail) * st.Bsize
			sp.free.Store(f)
			if low := f < sp.min; low != sp.low.Swap(low) {
				if low {
					s.log.Warn().Int64("free_bytes", f).Int64("min_free_bytes", sp.min).
						Msg("free disk space below store.min_free_bytes: refusing new work that needs disk until space returns")
				} else {
					s.log.Info().Int64("free_bytes", f).Msg("free disk space back above store.min_free_bytes: serving again")
				}
			}
		}
	}
	return sp.low.Load(), sp.free.Load()
}

// FreeSpace reads the free space of the file system holding the store now (-1 when it cannot
// be read), and returns it with Options.MinFreeBytes: for operators, whether or not the store
// watches it.
func (s *Store) FreeSpace() (free, min int64) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.opt.Dir, &st); err != nil {
		return -1, s.space.min
	}
	return int64(st.Bavail) * st.Bsize, s.space.min
}
