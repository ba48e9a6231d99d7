// Package faultfs is a FUSE file system for tests that behaves like a disk under failure: a
// loopback of a backing directory (the disk) in which what is written stays volatile until it is
// fsynced. A test can make every fsync fail (FailSync) or cut the power (PowerCut), so that a
// real process running on the mount loses exactly what a machine would lose.
//
// The model, per file: the content as of its last successful fsync is durable; writes,
// truncations and fallocate since then are kept in an undo log (the durable content of each 4 KiB
// block they touch, and the durable size) and rolled back on a power cut or a failed fsync. A file
// created through the mount and never fsynced vanishes at a power cut. Directory entries are
// lenient: a mkdir, rename or unlink is durable at once, and fsync of a directory always succeeds.
//
// It needs /dev/fuse and, without fusermount, root (go-fuse mounts with mount(2) directly).
package faultfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

const blockSize = 4096

// FS is one mount of a backing directory.
type FS struct {
	Disk string // the backing directory
	Dir  string // the mount point

	server *fuse.Server

	// power is held shared by every operation that changes the disk and exclusively by PowerCut,
	// so that no write lands between the roll-back and the unmount.
	power   sync.RWMutex
	cut     bool
	syncErr syscall.Errno // what fsync returns; 0 while the disk is healthy

	mu    sync.Mutex
	files map[uint64]*undo // by inode number on the disk; absent: clean since the mount
	held  chan struct{}    // fsyncs wait until it is closed (HoldSyncs); nil: they do not wait
}

// undo is what a power cut rolls a file back to.
type undo struct {
	mu      sync.Mutex
	created bool             // created through the mount and never fsynced since
	dirty   bool             // changed since its last fsync (or since the mount)
	size    int64            // the durable size, when dirty
	blocks  map[int64][]byte // the durable content of the blocks changed since, when dirty
}

// Mount mounts a faultfs of disk on dir (both existing directories) and unmounts it when the test
// ends. Without FUSE it skips the test naming /dev/fuse, or fails it when CI=true.
func Mount(t testing.TB, disk, dir string) *FS {
	t.Helper()
	f, err := mount(disk, dir)
	if err != nil {
		msg := fmt.Sprintf("faultfs: FUSE is unavailable (needs /dev/fuse and root, or fusermount3 from the Debian package fuse3): %v", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Errorf("faultfs: unmounting %s: %v", dir, err)
		}
	})
	return f
}

func mount(disk, dir string) (*FS, error) {
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	dev.Close()
	disk, err = filepath.Abs(disk)
	if err != nil {
		return nil, err
	}
	lr, err := gofs.NewLoopbackRoot(disk)
	if err != nil {
		return nil, err
	}
	f := &FS{Disk: disk, Dir: dir, files: map[uint64]*undo{}}
	root := &node{LoopbackNode: lr.(*gofs.LoopbackNode), fs: f}
	root.RootData.RootNode = root
	f.server, err = gofs.Mount(dir, root, &gofs.Options{MountOptions: fuse.MountOptions{
		DirectMount: true,
		FsName:      disk,
		Name:        "faultfs",
	}})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// FailSync makes every later fsync and fdatasync of a file return err (0 heals the disk), and
// drop what was written to that file since its last successful fsync, as Linux does when
// writeback fails. The kernel's page cache of the mount may still show the dropped bytes to
// readers, as it does on Linux; the disk does not have them.
func (f *FS) FailSync(err syscall.Errno) {
	f.power.Lock()
	f.syncErr = err
	f.power.Unlock()
}

// HoldSyncs makes every later fsync and fdatasync wait until release is called (release is
// idempotent): a disk whose syncs take as long as the test wants, so that it can look at what a
// process does while its writes are not durable yet.
func (f *FS) HoldSyncs() (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.held = ch
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.held = nil
			f.mu.Unlock()
			close(ch)
		})
	}
}

// waitSyncs returns once fsyncs are not held.
func (f *FS) waitSyncs() {
	f.mu.Lock()
	ch := f.held
	f.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// PowerCut rolls every file back to its durable content, removes the files created and never
// fsynced, and detaches the mount: from then on every change a process still using it attempts
// fails with EIO (reads still answer). Kill that process before Unmount, which waits for the
// file system to end, that is for the last process using it.
func (f *FS) PowerCut() error {
	f.power.Lock()
	if f.cut {
		f.power.Unlock()
		return nil
	}
	f.cut = true
	f.mu.Lock()
	files := f.files
	f.files = map[uint64]*undo{}
	f.mu.Unlock()
	err := filepath.WalkDir(f.Disk, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		u := files[info.Sys().(*syscall.Stat_t).Ino]
		switch {
		case u == nil:
			return nil
		case u.created:
			return os.Remove(path)
		case u.dirty:
			file, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			err = u.rollBack(int(file.Fd()))
			return errors.Join(err, file.Close())
		}
		return nil
	})
	f.power.Unlock()
	// Lazily: the process still holds files open, and the mount point is free for a new mount.
	return errors.Join(err, syscall.Unmount(f.Dir, unix.MNT_DETACH))
}

// Unmount unmounts (if PowerCut did not) and waits until no process uses the file system.
func (f *FS) Unmount() error {
	f.power.RLock()
	cut := f.cut
	f.power.RUnlock()
	if cut {
		f.server.Wait()
		return nil
	}
	return f.server.Unmount()
}

// enter is called by every operation that changes the disk; leave must follow unless it fails.
func (f *FS) enter() syscall.Errno {
	f.power.RLock()
	if f.cut {
		f.power.RUnlock()
		return syscall.EIO
	}
	return 0
}

func (f *FS) leave() { f.power.RUnlock() }

// undoOf returns the undo log of the disk's inode ino, a new one when created.
func (f *FS) undoOf(ino uint64, created bool) *undo {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.files[ino]
	if u == nil || created {
		// An inode number reused by a new file starts a new log.
		u = &undo{created: created}
		f.files[ino] = u
	}
	return u
}

// keep saves the durable content of [off, end) before it changes; u.mu is held.
func (u *undo) keep(fd int, off, end int64) error {
	if u.created {
		return nil
	}
	if !u.dirty {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		u.size, u.blocks, u.dirty = st.Size, map[int64][]byte{}, true
	}
	end = min(end, u.size)
	for b := off / blockSize; b*blockSize < end; b++ {
		if _, ok := u.blocks[b]; ok {
			continue
		}
		// Holes are skipped (a 2 GiB sparse log file is truncated at close): a block still a
		// hole is still zeros when a later write saves it, and a roll-back's truncation restores
		// it.
		data, err := unix.Seek(fd, b*blockSize, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) || err == nil && data >= end {
			return nil
		}
		if err != nil {
			return err
		}
		if data >= (b+1)*blockSize {
			b = data/blockSize - 1
			continue
		}
		buf := make([]byte, min(blockSize, u.size-b*blockSize))
		n, err := unix.Pread(fd, buf, b*blockSize)
		if err != nil {
			return err
		}
		u.blocks[b] = buf[:n]
	}
	return nil
}

// keepAll saves the durable content of the disk's file at path, which is about to be truncated.
func (f *FS) keepAll(path string) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	var st unix.Stat_t
	fd := int(file.Fd())
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	u := f.undoOf(st.Ino, false)
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.keep(fd, 0, st.Size)
}

// rollBack restores the durable content on fd; u.mu is held (or the power is cut).
func (u *undo) rollBack(fd int) error {
	if u.created {
		return unix.Ftruncate(fd, 0)
	}
	if !u.dirty {
		return nil
	}
	if err := unix.Ftruncate(fd, u.size); err != nil {
		return err
	}
	for b, data := range u.blocks {
		if _, err := unix.Pwrite(fd, data, b*blockSize); err != nil {
			return err
		}
	}
	u.dirty, u.blocks = false, nil
	return nil
}

// synced records a successful fsync: what the file holds now is durable.
func (u *undo) synced() {
	u.created, u.dirty, u.blocks = false, false, nil
}

// node is a loopback node whose files keep undo logs and whose changes stop at a power cut.
type node struct {
	*gofs.LoopbackNode
	fs *FS
}

func (n *node) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*gofs.LoopbackNode), fs: n.fs}
}

// file is an open file: every change goes through its undo log.
type file struct {
	*gofs.LoopbackFile
	fd int
	u  *undo
	fs *FS
}

// wrap makes a file of the loopback handle lf.
func (n *node) wrap(lf gofs.FileHandle, created bool) (*file, syscall.Errno) {
	l := lf.(*gofs.LoopbackFile)
	fd, _ := l.PassthroughFd()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		l.Release(context.Background())
		return nil, gofs.ToErrno(err)
	}
	return &file{LoopbackFile: l, fd: fd, u: n.fs.undoOf(st.Ino, created), fs: n.fs}, 0
}

// readable opens the disk's file for reading too, since keep reads what a write replaces; the
// kernel still enforces the caller's access mode on the mount.
func readable(flags uint32) uint32 {
	if flags&syscall.O_ACCMODE == syscall.O_WRONLY {
		flags = flags&^syscall.O_ACCMODE | syscall.O_RDWR
	}
	return flags
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.fs.enter(); errno != 0 {
		return nil, 0, errno
	}
	defer n.fs.leave()
	if flags&syscall.O_TRUNC != 0 {
		if err := n.fs.keepAll(filepath.Join(n.fs.Disk, n.Path(nil))); err != nil {
			return nil, 0, gofs.ToErrno(err)
		}
	}
	lf, fuseFlags, errno := n.LoopbackNode.Open(ctx, readable(flags))
	if errno != 0 {
		return nil, 0, errno
	}
	f, errno := n.wrap(lf, false)
	return f, fuseFlags, errno
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.fs.enter(); errno != 0 {
		return nil, nil, 0, errno
	}
	defer n.fs.leave()
	// An existing file opened with O_CREAT keeps its log.
	path := filepath.Join(n.fs.Disk, n.Path(nil), name)
	_, err := os.Lstat(path)
	created := errors.Is(err, fs.ErrNotExist)
	if !created && flags&syscall.O_TRUNC != 0 {
		if err := n.fs.keepAll(path); err != nil {
			return nil, nil, 0, gofs.ToErrno(err)
		}
	}
	in, lf, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, readable(flags), mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	f, errno := n.wrap(lf, created)
	return in, f, fuseFlags, errno
}

func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := n.fs.enter(); errno != 0 {
		return errno
	}
	defer n.fs.leave()
	size, ok := in.GetSize()
	if !ok {
		return n.LoopbackNode.Setattr(ctx, fh, in, out)
	}
	f, isFile := fh.(*file)
	if !isFile {
		lf, _, errno := n.LoopbackNode.Open(ctx, syscall.O_RDWR)
		if errno != 0 {
			return errno
		}
		if f, errno = n.wrap(lf, false); errno != 0 {
			return errno
		}
		defer f.Release(ctx)
	}
	f.u.mu.Lock()
	defer f.u.mu.Unlock()
	if err := f.u.keep(f.fd, int64(size), 1<<62); err != nil {
		return gofs.ToErrno(err)
	}
	return n.LoopbackNode.Setattr(ctx, f.LoopbackFile, in, out)
}

func (n *node) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	n.fs.waitSyncs() // outside enter: a power cut must not wait for a held sync
	if errno := n.fs.enter(); errno != 0 {
		return errno
	}
	defer n.fs.leave()
	f, ok := fh.(*file)
	if !ok {
		return n.fs.syncErr
	}
	f.u.mu.Lock()
	defer f.u.mu.Unlock()
	if n.fs.syncErr != 0 {
		if err := f.u.rollBack(f.fd); err != nil {
			return gofs.ToErrno(err)
		}
		return n.fs.syncErr
	}
	// The disk is the backing file system: what reaches it is durable here, no need to sync it.
	f.u.synced()
	return 0
}

// PassthroughFd hides the disk's file from the kernel, which would otherwise read and write it
// directly (FUSE passthrough), past the undo log.
func (f *file) PassthroughFd() (int, bool) { return -1, false }

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := f.fs.enter(); errno != 0 {
		return 0, errno
	}
	defer f.fs.leave()
	f.u.mu.Lock()
	defer f.u.mu.Unlock()
	if err := f.u.keep(f.fd, off, off+int64(len(data))); err != nil {
		return 0, gofs.ToErrno(err)
	}
	return f.LoopbackFile.Write(ctx, data, off)
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if errno := f.fs.enter(); errno != 0 {
		return errno
	}
	defer f.fs.leave()
	f.u.mu.Lock()
	defer f.u.mu.Unlock()
	// Punching a hole changes content; plain allocation beyond the size is undone by truncation.
	if err := f.u.keep(f.fd, int64(off), int64(off+size)); err != nil {
		return gofs.ToErrno(err)
	}
	return f.LoopbackFile.Allocate(ctx, off, size, mode)
}

// The namespace operations are durable at once (lenient), but stop at a power cut.

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.fs.enter(); errno != 0 {
		return nil, errno
	}
	defer n.fs.leave()
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := n.fs.enter(); errno != 0 {
		return errno
	}
	defer n.fs.leave()
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := n.fs.enter(); errno != 0 {
		return errno
	}
	defer n.fs.leave()
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := n.fs.enter(); errno != 0 {
		return errno
	}
	defer n.fs.leave()
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

// CopyFileRange would bypass the undo log; without it the kernel copies through Read and Write.
func (n *node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, size uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOTSUP
}
