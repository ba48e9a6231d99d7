package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// floodPause is how long a flood socket waits before dialling again after a
// dial error or after the broker closed it, so that a broker refusing at
// accept does not turn the tool into a busy loop on the machine it measures.
const floodPause = 100 * time.Millisecond

func flagsConnect(fs *flag.FlagSet, o *options) {
	o.level = int(codec.Level311) // the scenario sends 3.1.1 CONNECTs only
	fs.StringVar(&o.addr, "addr", "127.0.0.1:1883", "broker `host:port`; with a flood it must be a loopback IP address")
	fs.IntVar(&o.conns, "n", 100, "legitimate connects, made one after the other; the latencies reported are those of the accepted ones (timeouts and refusals are counted apart)")
	fs.DurationVar(&o.interval, "interval", 50*time.Millisecond, "pause between legitimate connects")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "longest wait for one connect, dial to CONNACK (legitimate and flood alike)")
	fs.StringVar(&o.user, "user", "", "username of the legitimate client (empty: anonymous); the wrong-password flood uses it too")
	fs.StringVar(&o.password, "password", "", "password of the legitimate client (empty: none)")
	fs.StringVar(&o.idPrefix, "id", "", "client id prefix; legitimate clients are PREFIXc<i>, flood clients PREFIXw<i> (empty: the run's own ids)")
	fs.IntVar(&o.floodIdle, "flood-idle", 0, "flood sockets that connect and send nothing, dialled again when the broker closes them")
	fs.IntVar(&o.floodWrong, "flood-wrong", 0, "flood sockets looping: connect, CONNECT as -user with a wrong password, read CONNACK or EOF, close")
	fs.StringVar(&o.floodFrom, "flood-from", "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5", "comma-separated `addresses` the flood sockets are spread over; only 127.0.0.0/8 and ::1 are accepted (legitimate clients dial from the default source, 127.0.0.1)")
	fs.DurationVar(&o.settle, "settle", time.Second, "wait after starting the flood before measuring")
	fs.DurationVar(&o.duration, "duration", 5*time.Minute, "stop starting legitimate connects after this long")
}

// runConnect measures how long legitimate clients wait from dial to CONNACK,
// one after the other, optionally while other loopback addresses flood the
// broker with idle sockets and wrong-password CONNECTs (issue 11 item 2).
func runConnect(e *env) error {
	o := e.o
	from, err := checkConnect(o)
	if err != nil {
		return fmt.Errorf("%w: bench connect: %w", ErrUsage, err)
	}
	if err := raiseNoFile(uint64(o.floodIdle+o.floodWrong) + 64); err != nil {
		return err
	}

	f := startFlood(e, from)
	defer f.stop() // a no-op after the explicit stop below
	if f.flooding() {
		time.Sleep(o.settle)
		if err := f.startErr(); err != nil {
			return err
		}
	}

	var done, ok atomic.Int64
	prog := startProgress(e.stderr, e.progress, "connect", func() string {
		return fmt.Sprintf("legitimate %d/%d ok %d, flood idle held %d, wrong-password attempts %d",
			done.Load(), o.conns, ok.Load(), f.idleHeld.Load(), f.wrongAttempts.Load())
	})
	legit := &codec.Connect{
		ProtocolName: codec.ProtocolName311, ProtocolLevel: codec.Level311, CleanSession: true,
		Username: o.user, HasUsername: o.user != "", Password: []byte(o.password), HasPassword: o.password != "",
	}
	var h histogram
	refused := map[codec.ConnackCode]int{}
	var timeouts, failed int
	var firstErr error
	var buf []byte
	start := time.Now()
	deadline := start.Add(o.duration)
	for i := range o.conns {
		if i > 0 {
			time.Sleep(o.interval)
		}
		if time.Now().After(deadline) {
			break
		}
		legit.ClientID = connectID(e, "c", i)
		var lat time.Duration
		var code codec.ConnackCode
		lat, code, buf, err = connectOnce(o, legit, buf)
		switch {
		case err == nil && code == codec.Accepted:
			h.record(lat.Nanoseconds())
			ok.Add(1)
		case err == nil:
			refused[code]++
			err = fmt.Errorf("CONNACK refused: %s", code)
		case isTimeout(err):
			timeouts++
		default:
			failed++
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("legitimate connect %d: %w", i, err)
		}
		done.Add(1)
	}
	elapsed := time.Since(start)
	prog.end()
	f.stop()

	var codes []string
	nrefused := 0
	for _, c := range slices.Sorted(maps.Keys(refused)) {
		codes = append(codes, fmt.Sprintf("0x%02x:%d", byte(c), refused[c]))
		nrefused += refused[c]
	}
	if len(codes) == 0 {
		codes = []string{"-"}
	}
	var l line
	l.str("scenario", "connect").int("n", o.conns).int("ok", int(ok.Load())).int("refused", nrefused).
		str("refused_codes", strings.Join(codes, ",")).int("timeouts", timeouts).int("failed", failed).
		ms("p50_ms", h.quantile(0.50)).ms("p90_ms", h.quantile(0.90)).ms("p99_ms", h.quantile(0.99)).ms("max_ms", h.max).
		secs("elapsed", elapsed).
		int("flood_idle", o.floodIdle).int("flood_idle_held", int(f.heldAtStop)).
		int("flood_idle_opened", int(f.idleOpened.Load())).int("flood_idle_closed", int(f.idleClosed.Load())).
		int("flood_wrong", o.floodWrong).int("flood_wrong_attempts", int(f.wrongAttempts.Load())).
		int("flood_wrong_0x04", int(f.wrong04.Load())).int("flood_wrong_0x03", int(f.wrong03.Load())).
		int("flood_wrong_closed", int(f.wrongClosed.Load())).int("flood_wrong_other", int(f.wrongOther.Load())).
		int("flood_dial_errors", int(f.dialErrs.Load())).str("flood_from", addrList(from, f.flooding()))
	if err := l.print(e.stdout); err != nil {
		return err
	}
	made := int(done.Load())
	switch {
	case made < o.conns:
		return fmt.Errorf("%d legitimate connects not made within -duration %s", o.conns-made, o.duration)
	case ok.Load() == 0:
		return fmt.Errorf("no legitimate connect accepted: %w", firstErr)
	case firstErr != nil:
		fmt.Fprintf(e.stderr, "bench connect: %d of %d legitimate connects not accepted; the first: %v\n", made-int(ok.Load()), made, firstErr)
	}
	return nil
}

// checkConnect validates the connect scenario's flags and returns the flood's
// source addresses. Whatever the flags, the flood goes from loopback
// addresses to a loopback address: this tool never floods anything else.
func checkConnect(o options) ([]netip.Addr, error) {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if o.conns < 1 {
		bad("-n must be at least 1")
	}
	if o.interval < 0 {
		bad("-interval must not be negative")
	}
	if o.settle < 0 {
		bad("-settle must not be negative")
	}
	if o.floodIdle < 0 || o.floodWrong < 0 {
		bad("-flood-idle and -flood-wrong must not be negative")
	}
	if o.floodWrong > 0 && o.user == "" {
		bad("-flood-wrong needs -user: the flood sends the right username with a wrong password")
	}
	from := loopbackList("-flood-from", o.floodFrom, bad)
	if o.floodIdle+o.floodWrong > 0 && len(errs) == 0 {
		host, _, err := net.SplitHostPort(o.addr)
		target, perr := netip.ParseAddr(host)
		switch {
		case err != nil || perr != nil:
			bad("-addr %q: a flood needs a literal loopback IP address and port", o.addr)
		case !target.Unmap().IsLoopback():
			bad("-addr %s: a flood may only target 127.0.0.0/8 or ::1", o.addr)
		default:
			for _, a := range from {
				if a.Is4() != target.Unmap().Is4() {
					bad("-flood-from %s and -addr %s are of different address families", a, o.addr)
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return from, nil
}

// connectID names legitimate (role "c") and flood (role "w") clients: -id
// followed by role and index, or the run's own ids without -id.
func connectID(e *env, role string, i int) string {
	if e.o.idPrefix == "" {
		return e.clientID(role, i)
	}
	return e.o.idPrefix + role + strconv.Itoa(i)
}

// connectOnce dials, sends p and waits for its CONNACK, all within -timeout,
// and returns the time from dial to CONNACK. An accepted connection is ended
// with DISCONNECT. buf is reused for encoding.
func connectOnce(o options, p *codec.Connect, buf []byte) (time.Duration, codec.ConnackCode, []byte, error) {
	start := time.Now()
	d := net.Dialer{Deadline: start.Add(o.timeout)}
	nc, err := d.Dial("tcp", o.addr)
	if err != nil {
		return 0, 0, buf, err
	}
	defer nc.Close()
	nc.SetDeadline(start.Add(o.timeout))
	buf = p.Append(buf[:0])
	if _, err := nc.Write(buf); err != nil {
		return 0, 0, buf, err
	}
	code, err := readConnack(nc)
	lat := time.Since(start)
	if err == nil && code == codec.Accepted {
		buf = (&codec.Disconnect{}).Append(buf[:0])
		nc.Write(buf)
	}
	return lat, code, buf, err
}

// readConnack reads the first packet, which must be a CONNACK.
func readConnack(nc net.Conn) (codec.ConnackCode, error) {
	p, err := codec.NewReader(nc, 64).ReadPacket()
	if err != nil {
		return 0, err
	}
	ack, ok := p.(*codec.Connack)
	if !ok {
		return 0, fmt.Errorf("got %s, want CONNACK", p.Type())
	}
	return ack.ReturnCode, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func addrList(from []netip.Addr, used bool) string {
	if !used {
		return "-"
	}
	s := make([]string, len(from))
	for i, a := range from {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// flood runs -flood-idle sockets that connect and send nothing (dialled
// again when the broker closes them) and -flood-wrong loops of CONNECTs with
// the right username and a wrong password, spread round-robin over the
// source addresses, until stop.
type flood struct {
	e      *env
	from   []netip.Addr
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	open    map[net.Conn]struct{} // closed by stop
	stopped bool
	dialErr error // the first, for startErr

	heldAtStop int64 // idle sockets open when stop began

	idleHeld, idleOpened, idleClosed                         atomic.Int64
	wrongAttempts, wrong04, wrong03, wrongClosed, wrongOther atomic.Int64
	dialErrs, dialled                                        atomic.Int64
}

// startFlood starts the flood and returns once every idle socket has been
// dialled once, so that -settle starts with the flood in place.
func startFlood(e *env, from []netip.Addr) *flood {
	f := &flood{e: e, from: from, open: map[net.Conn]struct{}{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	var first sync.WaitGroup
	for i := range e.o.floodIdle {
		first.Add(1)
		f.wg.Add(1)
		go f.idle(i, first.Done)
	}
	first.Wait()
	for i := range e.o.floodWrong {
		f.wg.Add(1)
		go f.wrong(i)
	}
	return f
}

func (f *flood) flooding() bool { return f.e.o.floodIdle+f.e.o.floodWrong > 0 }

// startErr reports a flood that could not open a single socket, so that no
// run claims to have measured under a flood that never happened.
func (f *flood) startErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dialled.Load() == 0 && f.dialErr != nil {
		return fmt.Errorf("flood: no socket opened from -flood-from: %w", f.dialErr)
	}
	return nil
}

// stop ends every flood goroutine and closes every flood socket.
func (f *flood) stop() {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	f.stopped = true
	f.heldAtStop = f.idleHeld.Load()
	f.cancel()
	for nc := range f.open {
		nc.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// loopbackList parses the comma-separated addresses of flag, which must be loopback ones, calling
// bad for each that is not.
func loopbackList(flag, list string, bad func(format string, args ...any)) []netip.Addr {
	var from []netip.Addr
	for s := range strings.SplitSeq(list, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || a.Zone() != "" {
			bad("%s %q: want an IP address without a zone", flag, s)
			continue
		}
		if a = a.Unmap(); !a.IsLoopback() {
			bad("%s %s: only 127.0.0.0/8 and ::1 are allowed", flag, a)
			continue
		}
		from = append(from, a)
	}
	return from
}

func (f *flood) dial(i int) (net.Conn, error) {
	src := f.from[i%len(f.from)]
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: f.e.o.timeout}
	nc, err := d.DialContext(f.ctx, "tcp", f.e.o.addr)
	if err != nil {
		if f.ctx.Err() == nil {
			f.dialErrs.Add(1)
			f.mu.Lock()
			if f.dialErr == nil {
				f.dialErr = err
			}
			f.mu.Unlock()
		}
		return nil, err
	}
	f.dialled.Add(1)
	return nc, nil
}

// track registers nc for stop; false (nc closed) once stop has begun.
func (f *flood) track(nc net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		nc.Close()
		return false
	}
	f.open[nc] = struct{}{}
	return true
}

func (f *flood) untrack(nc net.Conn) {
	f.mu.Lock()
	delete(f.open, nc)
	f.mu.Unlock()
	nc.Close()
}

// pause waits floodPause; false when the flood is stopping.
func (f *flood) pause() bool {
	t := time.NewTimer(floodPause)
	defer t.Stop()
	select {
	case <-f.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// idle holds one socket that never sends a byte, dialling again after the
// broker closes it. dialled is called after the first dial.
func (f *flood) idle(i int, dialled func()) {
	defer f.wg.Done()
	var b [64]byte
	for {
		nc, err := f.dial(i)
		if dialled != nil {
			dialled()
			dialled = nil
		}
		if err != nil {
			if !f.pause() {
				return
			}
			continue
		}
		if !f.track(nc) {
			return
		}
		f.idleOpened.Add(1)
		f.idleHeld.Add(1)
		for {
			if _, err := nc.Read(b[:]); err != nil {
				break
			}
		}
		f.idleHeld.Add(-1)
		f.untrack(nc)
		if f.ctx.Err() != nil {
			return
		}
		f.idleClosed.Add(1)
		if !f.pause() {
			return
		}
	}
}

// wrong loops: connect, CONNECT with the right username and a wrong password
// (a new one each time, as a guesser would), read the CONNACK or the end of
// the stream, close. An attempt cut short by stop is not counted.
func (f *flood) wrong(i int) {
	defer f.wg.Done()
	o := f.e.o
	p := &codec.Connect{
		ProtocolName: codec.ProtocolName311, ProtocolLevel: codec.Level311, CleanSession: true,
		ClientID: connectID(f.e, "w", i), Username: o.user, HasUsername: true, HasPassword: true,
	}
	var buf []byte
	for seq := 0; ; seq++ {
		nc, err := f.dial(i)
		if err != nil {
			if !f.pause() {
				return
			}
			continue
		}
		if !f.track(nc) {
			return
		}
		// Longer than the right password, so never equal to it.
		p.Password = strconv.AppendInt(append(append(p.Password[:0], o.password...), '!'), int64(seq), 10)
		buf = p.Append(buf[:0])
		nc.SetDeadline(time.Now().Add(o.timeout))
		code := codec.ConnackCode(0)
		_, err = nc.Write(buf)
		if err == nil {
			code, err = readConnack(nc)
		}
		f.untrack(nc)
		if f.ctx.Err() != nil {
			return
		}
		f.wrongAttempts.Add(1)
		switch {
		case err != nil:
			f.wrongClosed.Add(1)
		case code == codec.RefusedBadUsernameOrPassword:
			f.wrong04.Add(1)
		case code == codec.RefusedServerUnavailable:
			f.wrong03.Add(1)
		default:
			f.wrongOther.Add(1)
		}
	}
}
