//go:build unix

package codec

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// socketReader returns both ends of a TCP connection on 127.0.0.1 and a Reader of the server's
// end in socket mode, counting into count.
func socketReader(t *testing.T, count *atomic.Int64) (client net.Conn, server *net.TCPConn, r *Reader) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	server = sc.(*net.TCPConn)
	rc, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	r = NewReader(server, 0)
	r.UseSocket(rc, count)
	return client, server, r
}

func TestUseSocketReadsPacketsAndHoldsNoBufferWhileWaiting(t *testing.T) {
	var count atomic.Int64
	client, server, r := socketReader(t, &count)

	small := &Publish{Topic: "a/b", Payload: []byte("hello")}
	large := &Publish{Topic: "big", Payload: bytes.Repeat([]byte{9}, 200<<10)} // past the largest buffer
	var wire []byte
	wire = small.Append(wire)
	wire = large.Append(wire)
	wire = small.Append(wire)
	go client.Write(wire)
	for i, want := range []*Publish{small, large, small} {
		p, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		got, ok := p.(*Publish)
		if !ok || got.Topic != want.Topic || !bytes.Equal(got.Payload, want.Payload) {
			t.Fatalf("packet %d: got %v, want the publish to %q of %d bytes", i, p, want.Topic, len(want.Payload))
		}
	}
	if got := count.Load(); got != int64(len(wire)) {
		t.Fatalf("counted %d bytes read, want %d", got, len(wire))
	}

	// Nothing more to read: the reader gives its buffer back before it waits (here until the
	// deadline).
	server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := r.ReadPacket(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a deadline error", err)
	}
	if r.br.held != nil || r.br.buf != nil {
		t.Fatalf("waiting reader holds a buffer of %d bytes", len(r.br.buf))
	}

	server.SetReadDeadline(time.Time{})
	client.Write((&Pingreq{}).Append(nil))
	if p, err := r.ReadPacket(); err != nil || p.Type() != TypePingreq {
		t.Fatalf("after the deadline was lifted: %v, %v; want PINGREQ", p, err)
	}
	r.Release()
	if r.br.held != nil || r.br.buf != nil {
		t.Fatalf("released reader holds a buffer of %d bytes", len(r.br.buf))
	}
	go func() {
		client.Write((&Pingreq{}).Append(nil))
		client.Close()
	}()
	if p, err := r.ReadPacket(); err != nil || p.Type() != TypePingreq {
		t.Fatalf("after the deadline was lifted: %v, %v; want PINGREQ", p, err)
	}
	if _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("after the client closed: %v, want io.EOF", err)
	}
}

func TestUseSocketAfterCloseIsErrClosed(t *testing.T) {
	_, server, r := socketReader(t, nil)
	server.Close()
	if _, err := r.ReadPacket(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed socket: %v, want net.ErrClosed", err)
	}
}
