//go:build unix

package codec

import (
	"io"
	"os"
	"sync/atomic"
	"syscall"
)

// UseSocket makes the Reader read the socket behind rc itself instead of the io.Reader it was
// made with, adding the bytes it reads to count (if not nil). Waiting for bytes then holds no
// buffer: one is taken from a pool once the socket is readable and given back when it is
// drained. Read deadlines and Close work as on the net.Conn rc came from. Call it before the
// first read.
func (r *Reader) UseSocket(rc syscall.RawConn, count *atomic.Int64) {
	b := &r.br
	b.sock = &socket{rc: rc, count: count}
	b.sock.read = b.socketRead
}

// socketRead is socket.read: one non-blocking read system call. It returns false
// to wait for the socket when there is nothing to read, having given back the pooled buffer.
func (b *adaptiveReader) socketRead(fd uintptr) bool {
	s := b.sock
	dst := s.dst
	if dst == nil {
		if b.held == nil {
			b.held = getBuffer(b.size)
			b.buf = *b.held
		}
		dst = b.buf
	}
	n, err := readFD(int(fd), dst)
	switch {
	case err == syscall.EAGAIN:
		if s.dst == nil {
			b.release()
		}
		return false
	case err != nil:
		s.err = os.NewSyscallError("read", err)
	case n == 0:
		s.err = io.EOF
	default:
		s.n = n
	}
	return true
}

// Release gives the read buffer back to its pool if everything read was consumed, for a
// connection about to go quiet without a reader waiting on it (one that waits gives the buffer
// back itself).
func (r *Reader) Release() {
	if b := &r.br; b.held != nil && b.r == b.w {
		b.release()
	}
}

// readFD is one read system call, repeated when a signal interrupts it.
func readFD(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, p)
		if err != syscall.EINTR {
			return max(n, 0), err
		}
	}
}
