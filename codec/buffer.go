package codec

import (
	"io"
	"sync"
	"sync/atomic"
	"syscall"
)

// Read-buffer sizes: an idle connection holds the smallest, a busy one grows to the largest so
// that one read system call brings many small packets.
const (
	minReadBuffer = 512
	maxReadBuffer = 64 << 10
)

// adaptiveReader buffers reads like bufio.Reader, but its buffer follows the traffic: it doubles
// after a read that filled it and halves after a run of reads that used little of it, changing
// size only when empty so that nothing is copied. Ten thousand idle connections then cost 512
// bytes of buffer each instead of the largest size. On a socket (UseSocket) it holds no buffer
// at all while it waits for bytes.
type adaptiveReader struct {
	src   io.Reader
	sock  *socket
	buf   []byte
	held  *[]byte // the pooled buffer buf is, in socket mode
	size  int     // the size of the next buffer; 0 before the first read
	r, w  int
	grow  bool // the last read filled the buffer
	small int  // consecutive reads that used less than an eighth of it
	err   error
}

// socket is the state of an adaptiveReader reading a socket's descriptor itself: it waits for the
// socket to become readable before it takes a buffer, so that an idle connection's reader holds
// none.
type socket struct {
	rc    syscall.RawConn
	count *atomic.Int64         // bytes read, if not nil
	read  func(fd uintptr) bool // the adaptiveReader's socketRead, bound once
	dst   []byte                // a caller's buffer to read into instead of a pooled one
	n     int
	err   error
}

// Buffered returns the number of bytes read from src but not yet consumed.
func (b *adaptiveReader) Buffered() int { return b.w - b.r }

// resize sets the size of the next buffer as the traffic asks.
func (b *adaptiveReader) resize() {
	switch {
	case b.size == 0:
		b.size = minReadBuffer
	case b.grow && b.size < maxReadBuffer:
		b.size *= 2
		b.small = 0
	case b.small >= 16 && b.size > minReadBuffer:
		b.size /= 2
		b.small = 0
	}
}

// fill reads once into the empty buffer, resizing it first as the traffic asks.
func (b *adaptiveReader) fill() {
	b.resize()
	var n int
	var err error
	if b.sock != nil {
		if b.held != nil && len(b.buf) != b.size {
			b.release()
		}
		n, err = b.readSocket(nil)
	} else {
		if len(b.buf) != b.size {
			b.buf = make([]byte, b.size)
		}
		n, err = b.src.Read(b.buf)
		n = max(n, 0)
	}
	b.r, b.w, b.err = 0, n, err
	b.grow = n == b.size
	if n < b.size/8 {
		b.small++
	} else {
		b.small = 0
	}
}

// readSocket waits until the socket is readable and reads into dst, or into a pooled buffer
// (b.buf) when dst is nil.
func (b *adaptiveReader) readSocket(dst []byte) (int, error) {
	s := b.sock
	s.dst, s.n, s.err = dst, 0, nil
	err := s.rc.Read(s.read)
	s.dst = nil
	if err != nil {
		return 0, err
	}
	if s.count != nil {
		s.count.Add(int64(s.n))
	}
	return s.n, s.err
}

// release gives the pooled buffer back; the reader has consumed it.
func (b *adaptiveReader) release() {
	putBuffer(b.held)
	b.held, b.buf = nil, nil
}

// ReadByte returns the next byte.
func (b *adaptiveReader) ReadByte() (byte, error) {
	for b.r == b.w {
		if b.err != nil {
			return 0, b.readErr()
		}
		b.fill()
	}
	c := b.buf[b.r]
	b.r++
	return c, nil
}

// Read copies buffered bytes into p; with nothing buffered and a large p it reads into p directly.
func (b *adaptiveReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.r == b.w {
		if b.err != nil {
			return 0, b.readErr()
		}
		if b.size > 0 && len(p) >= b.size {
			if b.sock != nil {
				return b.readSocket(p)
			}
			n, err := b.src.Read(p)
			return max(n, 0), err
		}
		b.fill()
		if b.r == b.w {
			return 0, b.readErr()
		}
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}

func (b *adaptiveReader) readErr() error {
	err := b.err
	b.err = nil
	return err
}

// The pools of socket-mode buffers, one per size from minReadBuffer to maxReadBuffer.
var bufferPools [8]sync.Pool

func poolOf(size int) *sync.Pool {
	i := 0
	for s := minReadBuffer; s < size; s *= 2 {
		i++
	}
	return &bufferPools[i]
}

func getBuffer(size int) *[]byte {
	if p, ok := poolOf(size).Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, size)
	return &b
}

func putBuffer(p *[]byte) {
	if p != nil {
		poolOf(len(*p)).Put(p)
	}
}
