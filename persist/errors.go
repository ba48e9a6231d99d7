package persist

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error persist returns that matches one of these wraps it
// with context (the data directory, the family and key of a record); compare with
// errors.Is.
var (
	// ErrLocked means the data directory is in use by another process: Badger
	// could not take its exclusive flock on the directory. Another holdfast (or a
	// backup tool) has the store open.
	ErrLocked = errors.New("data directory locked")

	// ErrVersion means the on-disk format version is unknown: newer than this
	// build understands, or missing from a directory that holds data. The store
	// is refused rather than misread.
	ErrVersion = errors.New("unsupported on-disk format version")

	// ErrCorrupt means a stored key or value does not decode: wrong length,
	// unknown record version, out-of-range field, or a reference to a record
	// that does not exist. The message names the family and key.
	ErrCorrupt = errors.New("corrupt record")

	// ErrClosed is returned (or passed to a completion callback) for work
	// submitted after Close.
	ErrClosed = errors.New("store closed")

	// ErrTooLarge means a key or value exceeds what Badger can store: keys are
	// limited to MaxKeySize bytes (family byte + client id + filter/topic), and a
	// value to the value-log file size (1 MB in Durability None).
	ErrTooLarge = errors.New("record too large")

	// ErrNotEmpty means Restore was given a directory that already holds
	// something (a store, a MANIFEST, any file): a restore only ever fills an
	// empty or new directory, so it can never merge into or overwrite a store.
	ErrNotEmpty = errors.New("directory not empty")

	// ErrNotSupported means the operation does not exist in the store's
	// durability mode: Backup of a Durability None store, which keeps nothing
	// on disk and promises nothing across restarts.
	ErrNotSupported = errors.New("not supported in this durability mode")

	// ErrUnclean means Verify or InspectDir found a data directory that was
	// not closed cleanly (the broker crashed, was killed or lost power):
	// Badger opens such a directory read-only only after a read-write open has
	// replayed and truncated its write-ahead log (.mem files). Opening the
	// store once (holdfast start, or Open then Close) does that; Open itself
	// recovers a crashed store and needs nothing else.
	ErrUnclean = errors.New("data directory not closed cleanly")

	// ErrFailed is passed to the completion callback of every batch after a
	// storage error (a failed write, fdatasync, Badger commit or checkpoint):
	// the store is fail-stop. An fsync that failed once cannot be trusted to
	// mean anything when it later succeeds (the kernel may have dropped the
	// pages it could not write), so nothing is written or acknowledged after
	// it; the process must stop and recover from what is on disk. See
	// Store.Failed.
	ErrFailed = errors.New("store stopped after a storage error")
)

// contextError carries a human message plus the sentinel it belongs to and,
// optionally, the underlying cause. errors.Is sees both.
type contextError struct {
	sentinel error
	msg      string
	cause    error
}

func (e *contextError) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *contextError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.sentinel, e.cause}
	}
	return []error{e.sentinel}
}

// newError builds "persist: <msg>" that matches sentinel (and cause, if any).
func newError(sentinel, cause error, format string, args ...any) error {
	return &contextError{sentinel: sentinel, msg: "persist: " + fmt.Sprintf(format, args...), cause: cause}
}

// corruptf reports an undecodable record, naming its family and key.
func corruptf(key []byte, format string, args ...any) error {
	return newError(ErrCorrupt, nil, "%s: %s", describeKey(key), fmt.Sprintf(format, args...))
}
