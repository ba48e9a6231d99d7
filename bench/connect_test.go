package bench

import (
	"errors"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// authFake is a broker with one user, legit:pw. The right password gets
// CONNACK 0, but only once the flood has sent floodGate wrong-password
// CONNECTs, so that every legitimate connect provably happens during the
// flood. Wrong passwords get, in turn, CONNACK 0x04, CONNACK 0x03 and a
// close without CONNACK. Sockets that send nothing are held until the
// client closes them.
type authFake struct {
	t         *testing.T
	ln        net.Listener
	floodGate int
	floodSeen chan struct{}
	quit      chan struct{}
	wg        sync.WaitGroup

	mu    sync.Mutex
	open  int
	wrong int
	from  map[string]map[string]bool // kind (legit, wrong, idle) -> source IPs
	ids   map[string]bool
}

func newAuthFake(t *testing.T, floodGate int) *authFake {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &authFake{t: t, ln: ln, floodGate: floodGate, floodSeen: make(chan struct{}), quit: make(chan struct{}),
		from: map[string]map[string]bool{}, ids: map[string]bool{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.open++
			b.mu.Unlock()
			b.wg.Add(1)
			go b.serve(nc)
		}
	}()
	t.Cleanup(func() {
		close(b.quit)
		ln.Close()
		b.wg.Wait()
	})
	return b
}

func (b *authFake) serve(nc net.Conn) {
	defer b.wg.Done()
	defer func() {
		nc.Close()
		b.mu.Lock()
		b.open--
		b.mu.Unlock()
	}()
	src := nc.RemoteAddr().(*net.TCPAddr).IP.String()
	seen := func(kind string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.from[kind] == nil {
			b.from[kind] = map[string]bool{}
		}
		b.from[kind][src] = true
	}
	r := codec.NewReader(nc, 0)
	p, err := r.ReadPacket()
	if err != nil {
		seen("idle")
		return
	}
	c, ok := p.(*codec.Connect)
	if !ok {
		b.t.Errorf("first packet %s, want CONNECT", p.Type())
		return
	}
	b.mu.Lock()
	b.ids[c.ClientID] = true
	b.mu.Unlock()
	if c.ProtocolLevel != codec.Level311 || !c.CleanSession {
		b.t.Errorf("CONNECT level %d clean %v, want 3.1.1 with a clean session", c.ProtocolLevel, c.CleanSession)
	}
	if c.Username != "legit" || !c.HasPassword {
		b.t.Errorf("CONNECT as %q (password %v), want legit with a password", c.Username, c.HasPassword)
		return
	}
	if string(c.Password) == "pw" {
		seen("legit")
		select {
		case <-b.floodSeen:
		case <-b.quit:
			return
		}
		nc.Write((&codec.Connack{}).Append(nil))
		if p, err := r.ReadPacket(); err == nil && p.Type() != codec.TypeDisconnect {
			b.t.Errorf("legitimate client sent %s after CONNACK, want DISCONNECT", p.Type())
		}
		return
	}
	seen("wrong")
	b.mu.Lock()
	k := b.wrong
	b.wrong++
	if b.wrong == b.floodGate {
		close(b.floodSeen)
	}
	b.mu.Unlock()
	switch k % 3 {
	case 0:
		nc.Write((&codec.Connack{ReturnCode: codec.RefusedBadUsernameOrPassword}).Append(nil))
	case 1:
		nc.Write((&codec.Connack{ReturnCode: codec.RefusedServerUnavailable}).Append(nil))
	}
}

// waitClosed waits until the fake holds no socket and the process is back
// to at most goroutines goroutines: everything the run started has ended.
func (b *authFake) waitClosed(t *testing.T, goroutines int) {
	t.Helper()
	var open, n int
	if !mqtttest.Within(5*time.Second, func() bool {
		b.mu.Lock()
		open = b.open
		b.mu.Unlock()
		n = runtime.NumGoroutine()
		return open == 0 && n <= goroutines
	}) {
		t.Fatalf("after the run: %d sockets still open at the broker, %d goroutines (%d before)", open, n, goroutines)
	}
}

func sources(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// TestSecurity02_ConnectScenarioMeasuresAndStops runs `bench connect` with a
// small flood against a fake broker: every legitimate connect is measured
// during the flood, from 127.0.0.1, the flood comes only from -flood-from
// and its outcomes are counted, and at the end every socket and goroutine is
// gone.
func TestSecurity02_ConnectScenarioMeasuresAndStops(t *testing.T) {
	b := newAuthFake(t, 4)
	before := runtime.NumGoroutine()
	kv, err := runMain(t, "connect", "-addr", b.addr(), "-n", "5", "-interval", "10ms", "-settle", "0",
		"-user", "legit", "-password", "pw", "-id", "legit-",
		"-flood-idle", "10", "-flood-wrong", "1", "-flood-from", "127.0.0.2,127.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	b.waitClosed(t, before)

	for key, want := range map[string]string{
		"scenario": "connect", "n": "5", "ok": "5", "refused": "0", "refused_codes": "-", "timeouts": "0", "failed": "0",
		"flood_idle": "10", "flood_idle_held": "10", "flood_idle_opened": "10", "flood_idle_closed": "0",
		"flood_wrong": "1", "flood_wrong_other": "0", "flood_dial_errors": "0", "flood_from": "127.0.0.2,127.0.0.3",
	} {
		if kv[key] != want {
			t.Errorf("%s=%s, want %s", key, kv[key], want)
		}
	}
	if p50, p99, maxMs := num(t, kv, "p50_ms"), num(t, kv, "p99_ms"), num(t, kv, "max_ms"); p50 <= 0 || p99 < p50 || maxMs < p99 {
		t.Errorf("latency p50 %v p99 %v max %v", p50, p99, maxMs)
	}
	// The one wrong-password loop had its first three attempts answered
	// before the fourth let the legitimate clients in.
	attempts := num(t, kv, "flood_wrong_attempts")
	w04, w03, closed := num(t, kv, "flood_wrong_0x04"), num(t, kv, "flood_wrong_0x03"), num(t, kv, "flood_wrong_closed")
	if attempts < 3 || w04 < 1 || w03 < 1 || closed < 1 || attempts != w04+w03+closed {
		t.Errorf("wrong-password attempts %v: 0x04 %v, 0x03 %v, closed %v", attempts, w04, w03, closed)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if got := sources(b.from["legit"]); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("legitimate clients came from %v, want 127.0.0.1 only", got)
	}
	if got := sources(b.from["wrong"]); !slices.Equal(got, []string{"127.0.0.2"}) {
		t.Errorf("the wrong-password loop came from %v, want the first -flood-from address", got)
	}
	if got := sources(b.from["idle"]); !slices.Equal(got, []string{"127.0.0.2", "127.0.0.3"}) {
		t.Errorf("idle sockets came from %v, want both -flood-from addresses", got)
	}
	for i := range 5 {
		if id := "legit-c" + strconv.Itoa(i); !b.ids[id] {
			t.Errorf("no CONNECT with client id %s in %v", id, b.ids)
		}
	}
	if !b.ids["legit-w0"] {
		t.Errorf("no flood CONNECT with client id legit-w0 in %v", b.ids)
	}
}

func (b *authFake) addr() string { return b.ln.Addr().String() }

// TestSecurity02_ConnectFloodOnlyFromLoopback checks that the flood is
// refused before any socket is opened unless it goes from loopback
// addresses to a loopback address.
func TestSecurity02_ConnectFloodOnlyFromLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	for _, args := range [][]string{
		{"-flood-from", "10.0.0.2"},
		{"-flood-from", "127.0.0.2,192.168.1.2"},
		{"-flood-from", "::2"},
		{"-flood-from", "::ffff:10.0.0.2"},
		{"-flood-from", "localhost"},
		{"-flood-from", "fe80::1%lo"},
		{"-flood-idle", "1", "-addr", "192.0.2.1:1883"},
		{"-flood-idle", "1", "-addr", "localhost:1883"},
		{"-flood-idle", "1", "-flood-from", "::1"},
		{"-flood-wrong", "1"}, // no -user
		{"-n", "0"},
		{"-settle", "-1s"},
	} {
		args = append([]string{"connect", "-addr", addr, "-timeout", "200ms"}, args...)
		kv, err := runMain(t, args...)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("%q: err = %v, want ErrUsage", args, err)
		}
		if len(kv) != 0 {
			t.Errorf("%q: printed %v", args, kv)
		}
	}
	// Nothing dialled the listener: the first socket it accepts is this one.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	got, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.RemoteAddr().String() != nc.LocalAddr().String() {
		t.Errorf("the listener first accepted %s, not the test's own %s", got.RemoteAddr(), nc.LocalAddr())
	}
}

// TestSecurity02_ConnectFloodThatCannotStart checks that a run whose flood
// opens no socket fails instead of reporting numbers without a flood.
func TestSecurity02_ConnectFloodThatCannotStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	kv, err := runMain(t, "connect", "-addr", addr, "-n", "1", "-settle", "0", "-flood-idle", "3", "-flood-from", "127.0.0.2")
	if err == nil || errors.Is(err, ErrUsage) {
		t.Errorf("err = %v, want a flood start error", err)
	}
	if len(kv) != 0 {
		t.Errorf("printed %v", kv)
	}
}
