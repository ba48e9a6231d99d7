// Package iocount counts the bytes that go through a reader or a writer, into a counter others
// read concurrently (statistics, progress bars).
package iocount

import (
	"io"
	"sync/atomic"
)

// Reader adds to N what each Read of R returns (one atomic add per call).
type Reader struct {
	R io.Reader
	N *atomic.Int64
}

func (c Reader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N.Add(int64(n))
	return n, err
}

// Writer adds to N what each Write to W takes.
type Writer struct {
	W io.Writer
	N *atomic.Int64
}

func (c Writer) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N.Add(int64(n))
	return n, err
}
