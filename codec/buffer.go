package codec

import "io"

// Read-buffer sizes: an idle connection holds the smallest, a busy one grows to the largest so
// that one read system call brings many small packets.
const (
	minReadBuffer = 512
	maxReadBuffer = 64 << 10
)

// adaptiveReader buffers reads like bufio.Reader, but its buffer follows the traffic: it doubles
// after a read that filled it and halves after a run of reads that used little of it, changing
// size only when empty so that nothing is copied. Ten thousand idle connections then cost 512
// bytes of buffer each instead of the largest size.
type adaptiveReader struct {
	src   io.Reader
	buf   []byte
	r, w  int
	grow  bool // the last read filled the buffer
	small int  // consecutive reads that used less than an eighth of it
	err   error
}

// Buffered returns the number of bytes read from src but not yet consumed.
func (b *adaptiveReader) Buffered() int { return b.w - b.r }

// fill reads once from src into the empty buffer, resizing it first as the traffic asks.
func (b *adaptiveReader) fill() {
	switch {
	case b.buf == nil:
		b.buf = make([]byte, minReadBuffer)
	case b.grow && len(b.buf) < maxReadBuffer:
		b.buf = make([]byte, 2*len(b.buf))
		b.small = 0
	case b.small >= 16 && len(b.buf) > minReadBuffer:
		b.buf = make([]byte, len(b.buf)/2)
		b.small = 0
	}
	n, err := b.src.Read(b.buf)
	n = max(n, 0)
	b.r, b.w, b.err = 0, n, err
	b.grow = n == len(b.buf)
	if n < len(b.buf)/8 {
		b.small++
	} else {
		b.small = 0
	}
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
		if b.buf != nil && len(p) >= len(b.buf) {
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
