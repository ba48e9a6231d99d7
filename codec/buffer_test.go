package codec

import (
	"bytes"
	"io"
	"testing"
)

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func TestAdaptiveReaderGrowsAndShrinks(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	src := &chunkReader{r: bytes.NewReader(data), n: 1 << 20}
	b := &adaptiveReader{src: src}
	var got []byte
	for len(got) < len(data)/2 {
		c, err := b.ReadByte()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	if len(b.buf) != maxReadBuffer {
		t.Fatalf("after a stream that fills every read the buffer is %d bytes, want %d", len(b.buf), maxReadBuffer)
	}
	// Trickling bytes: the buffer shrinks back to the minimum.
	src.n = 3
	for {
		c, err := b.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
		if len(got) == len(data)-100 && len(b.buf) != minReadBuffer {
			t.Fatalf("after many small reads the buffer is %d bytes, want %d", len(b.buf), minReadBuffer)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
}

func TestAdaptiveReaderLargeReadBypassesBuffer(t *testing.T) {
	data := bytes.Repeat([]byte{7}, 10000)
	b := &adaptiveReader{src: bytes.NewReader(data)}
	if _, err := b.ReadByte(); err != nil {
		t.Fatal(err)
	}
	rest := make([]byte, len(data)-1)
	if _, err := io.ReadFull(b, rest); err != nil {
		t.Fatal(err)
	}
	if len(b.buf) > minReadBuffer {
		t.Fatalf("a large body grew the buffer to %d", len(b.buf))
	}
	if !bytes.Equal(rest, data[1:]) {
		t.Fatal("bytes differ")
	}
}
