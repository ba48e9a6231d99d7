package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// runIdle opens -conns connections that stay idle (keep-alive off), reports
// how fast the broker accepted them and, with -pid, how much memory each
// costs the broker.
func runIdle(e *env) error {
	o := e.o
	if err := raiseNoFile(uint64(o.conns) + 64); err != nil {
		return err
	}
	var before, after int64
	if o.pid > 0 {
		var err error
		if before, err = readRSS(o.pid); err != nil {
			return err
		}
	}

	conns := make([]net.Conn, o.conns)
	var next, opened atomic.Int64
	var stop atomic.Bool
	var firstErr error
	var errOnce sync.Once
	var rate counterRate
	prog := startProgress(e.stderr, e.progress, "idle", func() string {
		return "connected " + rate.text(uint64(opened.Load()))
	})
	start := time.Now()
	deadline := start.Add(o.duration)
	var wg sync.WaitGroup
	for range min(o.parallel, o.conns) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for !stop.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				if time.Now().After(deadline) {
					errOnce.Do(func() {
						firstErr = fmt.Errorf("%d connections not opened after -duration %s", len(conns)-i, o.duration)
					})
					stop.Store(true)
					return
				}
				var err error
				conns[i], buf, err = dialIdle(e, i, buf)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err) })
					stop.Store(true)
					return
				}
				opened.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	prog.end()

	n := opened.Load()
	if firstErr == nil && o.pid > 0 {
		time.Sleep(o.settle)
		var err error
		if after, err = readRSS(o.pid); err != nil {
			firstErr = err
		}
	}
	closeIdle(conns)

	var perConn int64
	if n > 0 && o.pid > 0 && after > 0 {
		perConn = (after - before) * 1024 / n
	}
	var l line
	l.str("scenario", "idle").int("conns", o.conns).int("opened", int(n)).secs("elapsed", elapsed).
		rate("connect_per_s", uint64(n), elapsed).int("pid", o.pid).
		add("rss_before_kb", strconv.FormatInt(before, 10)).add("rss_after_kb", strconv.FormatInt(after, 10)).
		add("per_conn_bytes", strconv.FormatInt(perConn, 10))
	if err := l.print(e.stdout); err != nil {
		return err
	}
	return firstErr
}

// dialIdle opens connection i and completes CONNECT/CONNACK, keeping
// nothing but the socket. buf is reused for encoding.
func dialIdle(e *env, i int, buf []byte) (net.Conn, []byte, error) {
	d := net.Dialer{Timeout: e.o.timeout}
	if src := e.o.idleSources; len(src) > 0 {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src[i%len(src)], 0))
	}
	nc, err := d.Dial("tcp", e.o.addr)
	if err != nil {
		return nil, buf, err
	}
	nc.SetDeadline(time.Now().Add(e.o.timeout))
	cp := connectPacket(byte(e.o.level), e.clientID("i", i), true)
	cp.KeepAlive = uint16(e.o.keepAlive / time.Second)
	buf = cp.Append(buf[:0])
	if _, err := nc.Write(buf); err != nil {
		nc.Close()
		return nil, buf, err
	}
	r := codec.NewReader(nc, 0)
	r.SetLevel(byte(e.o.level))
	p, err := r.ReadPacket()
	if err == nil {
		_, err = checkConnack(p)
	}
	if err != nil {
		nc.Close()
		return nil, buf, err
	}
	nc.SetDeadline(time.Time{})
	return nc, buf, nil
}

// closeIdle says goodbye on every open connection and closes it.
func closeIdle(conns []net.Conn) {
	disconnect := (&codec.Disconnect{}).Append(nil)
	for _, nc := range conns {
		if nc == nil {
			continue
		}
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		nc.Write(disconnect)
		nc.Close()
	}
}

// raiseNoFile makes room for need open files, raising the hard limit too
// when the process may.
func raiseNoFile(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the open-file limit: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	want := lim
	want.Cur = need
	want.Max = max(lim.Max, need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("%d connections need %d open files; the limit is %d/%d and cannot be raised (ulimit -n): %w", need-64, need, lim.Cur, lim.Max, err)
	}
	return nil
}

// errNoRSS reports a status file without a VmRSS line (a zombie, say).
var errNoRSS = errors.New("no VmRSS line")

// readRSS returns the resident set size of process pid in KiB.
func readRSS(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("broker memory: %w", err)
	}
	return parseRSS(data)
}

// parseRSS reads the VmRSS line of a /proc/PID/status file.
func parseRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("broker memory: odd VmRSS line %q", sc.Text())
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, fmt.Errorf("broker memory: %w", errNoRSS)
}
