//go:build unix

package auth

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// keepOwner gives f the owner and group of the file it replaces, so that
// running `holdfast passwd` as root does not leave a file the broker's user
// can no longer read. It fails if the process may not do that (it is not root
// and the file belongs to someone else): better no change than a broker that
// cannot read its password file at the next reload.
func keepOwner(f *os.File, old fs.FileInfo) error {
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if fi, err := f.Stat(); err == nil {
		if now, ok := fi.Sys().(*syscall.Stat_t); ok && now.Uid == st.Uid && now.Gid == st.Gid {
			return nil
		}
	}
	if err := f.Chown(uid, gid); err != nil {
		return fmt.Errorf("cannot keep the file's owner %d:%d (run as that user or as root): %w", uid, gid, err)
	}
	return nil
}
