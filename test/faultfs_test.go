package test

// The broker on a file system that fails (internal/faultfs, FUSE): what it acknowledged must be on
// the disk whatever the disk does next.

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/faultfs"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

const (
	faultfsTopic  = "faultfs/t"
	faultfsWindow = 32 // the publisher's in-flight window
)

// faultfsBroker starts holdfast with the given durability and its data directory at dataDir (on
// a faultfs mount).
func faultfsBroker(t *testing.T, dataDir, durability string) *Broker {
	t.Helper()
	return StartBroker(t, BrokerConfig{DataDir: dataDir, Durability: durability})
}

// faultfsPublisher publishes QoS 1 messages numbered from 1 (the packet identifier; the payload
// is base plus the number) with a window, and records the PUBACKs, until the connection ends.
type faultfsPublisher struct {
	c       *mqtttest.Client
	base    int
	started atomic.Int64 // the highest number whose write has begun
	mu      sync.Mutex
	acked   []faultfsAck
	done    chan struct{} // the reader has ended: the connection is gone
}

// faultfsAck is a PUBACK the publisher read: the message's number and when it arrived.
type faultfsAck struct {
	n  int
	at time.Time
}

func faultfsPublish(t *testing.T, addr string, base int) *faultfsPublisher {
	p := &faultfsPublisher{c: mqtttest.Dial(t, addr), base: base, done: make(chan struct{})}
	p.c.MustConnect("faultfs-pub", true)
	window := make(chan struct{}, faultfsWindow)
	go func() {
		defer close(p.done)
		for {
			pk, err := p.c.TryRead(30 * time.Second)
			if err != nil {
				return
			}
			if ack, ok := pk.(*codec.Puback); ok {
				p.mu.Lock()
				p.acked = append(p.acked, faultfsAck{p.base + int(ack.PacketID), time.Now()})
				p.mu.Unlock()
				<-window
			}
		}
	}()
	go func() {
		for n := 1; n <= 65535; n++ {
			select {
			case window <- struct{}{}:
			case <-p.done:
				return
			}
			p.started.Store(int64(n))
			if p.c.Write(&codec.Publish{QoS: 1, Topic: faultfsTopic, PacketID: uint16(n), Payload: []byte(strconv.Itoa(p.base + n))}) != nil {
				return
			}
		}
	}()
	return p
}

func (p *faultfsPublisher) ackedNumbers() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	ns := make([]int, len(p.acked))
	for i, a := range p.acked {
		ns[i] = a.n
	}
	return ns
}

func (p *faultfsPublisher) acks() []faultfsAck {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]faultfsAck(nil), p.acked...)
}

// faultfsReceive reconnects the persistent subscriber id, failing the test if its session is gone,
// and acknowledges what it is sent until every number of want has been delivered or nothing has
// come for 10 s (err). It returns the connection and the numbers delivered.
func faultfsReceive(t *testing.T, addr, id string, want []int) (c *mqtttest.Client, got map[int]bool, err error) {
	t.Helper()
	c = mqtttest.Dial(t, addr)
	if !c.MustConnect(id, false) {
		t.Fatalf("%s: session-present is false after the restart", id)
	}
	missing := map[int]bool{}
	for _, n := range want {
		missing[n] = true
	}
	got = map[int]bool{}
	for len(missing) > 0 {
		pk, err := c.TryRead(10 * time.Second)
		if err != nil {
			return c, got, err
		}
		pub, ok := pk.(*codec.Publish)
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(string(pub.Payload))
		got[n] = true
		delete(missing, n)
		c.Send(&codec.Puback{PacketID: pub.PacketID})
	}
	return c, got, nil
}

// faultfsDrain is faultfsReceive of the numbers want, which were acknowledged to the publisher
// (others may come too: published, stored, not acknowledged): it fails with the missing ones.
func faultfsDrain(t *testing.T, addr, id string, want []int) *mqtttest.Client {
	t.Helper()
	c, got, err := faultfsReceive(t, addr, id, want)
	if err != nil {
		missing := map[int]bool{}
		for _, n := range want {
			if !got[n] {
				missing[n] = true
			}
		}
		t.Fatalf("%d of %d acknowledged messages not delivered after the restart (%v), e.g. %v",
			len(missing), len(want), err, faultfsSome(missing))
	}
	t.Logf("%s: all %d acknowledged messages delivered after the restart, and %d not acknowledged", id, len(want), len(got)-len(want))
	return c
}

func faultfsSome(m map[int]bool) []int {
	var s []int
	for n := range m {
		if s = append(s, n); len(s) == 5 {
			break
		}
	}
	return s
}

// TestFailStopExitCode3: every fsync of the disk fails from some moment on. The broker must stop
// with exit code 3 at once, acknowledge nothing published after that moment, and after a restart
// on a healthy disk deliver everything it had acknowledged.
func TestFailStopExitCode3(t *testing.T) {
	disk, mnt := t.TempDir(), t.TempDir()
	fs := faultfs.Mount(t, disk, mnt)
	b := faultfsBroker(t, filepath.Join(mnt, "data"), "sync")
	logFrom := len(b.Log())

	sub := mqtttest.Dial(t, b.Addr)
	sub.MustConnect("faultfs-sub", false)
	sub.Subscribe(1, 1, "faultfs/#")
	sub.Send(&codec.Disconnect{})
	sub.ExpectClosed()

	pub := faultfsPublish(t, b.Addr, 0)
	mqtttest.Eventually(t, 30*time.Second, "500 PUBACKs", func() bool { return len(pub.ackedNumbers()) >= 500 })
	fs.FailSync(syscall.EIO)
	failedAt := time.Now()
	after := int(pub.started.Load()) // numbers above were all written after the failure

	// A failed store's Close must not flush Badger to the failing disk (Badger retries a failed
	// flush for ever): a broker that does not exit is killed, the rest is checked, and the test
	// fails at the end.
	hung := false
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		hung = true
		b.Kill()
	}
	stopped := time.Since(failedAt)
	var ee *exec.ExitError
	if !hung && (!errors.As(b.exitErr, &ee) || ee.ExitCode() != 3) {
		t.Fatalf("the broker exited with %v, want exit code 3", b.exitErr)
	}
	select {
	case <-pub.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the publisher's connection outlived the broker")
	}

	var errorLines []string
	for l := range strings.Lines(b.Log()[logFrom:]) {
		if strings.Contains(l, `"level":"error"`) {
			errorLines = append(errorLines, strings.TrimSpace(l))
		}
	}
	if len(errorLines) != 1 || !strings.Contains(errorLines[0], "sync write-ahead log") || !strings.Contains(errorLines[0], "holdfast.wal") {
		t.Errorf("want one error line naming the failed operation (sync write-ahead log) and the file, got %q", errorLines)
	}

	acked := pub.ackedNumbers()
	late := 0
	for _, n := range acked {
		if n > after {
			late++
		}
	}
	if late > 0 {
		t.Errorf("%d PUBACKs for messages published after every fsync began to fail", late)
	}
	t.Logf("stopped %v after the failure (hung: %v); %d messages acknowledged, the last one written before the failure was number %d, %d written in all; %d error lines",
		stopped.Round(time.Millisecond), hung, len(acked), after, pub.started.Load(), len(errorLines))

	// Restart on a healthy disk: everything acknowledged is there.
	if err := fs.Unmount(); err != nil {
		t.Fatal(err)
	}
	faultfs.Mount(t, disk, mnt)
	b.Start()
	t.Cleanup(b.Kill) // before the mount's cleanup unmounts it
	faultfsDrain(t, b.Addr, "faultfs-sub", acked)
	b.Stop()
	if hung {
		t.Fatal("after the fail-stop the broker did not exit within 10 s")
	}
}

// TestFailedCloseExitCode3: the disk fails while the broker is idle, and the checkpoint that
// closing the store does at SIGTERM is the first write to meet it. That is a storage error like
// any other: exit code 3, so that the unit restarts the broker and the start recovers from the
// log, not 0 as after a clean stop.
func TestFailedCloseExitCode3(t *testing.T) {
	disk, mnt := t.TempDir(), t.TempDir()
	fs := faultfs.Mount(t, disk, mnt)
	b := faultfsBroker(t, filepath.Join(mnt, "data"), "sync")
	t.Cleanup(b.Kill) // before the mount's cleanup unmounts it
	sub := mqtttest.Dial(t, b.Addr)
	sub.MustConnect("close-sub", false) // something for the checkpoint to write
	sub.Subscribe(1, 1, "close/#")
	fs.FailSync(syscall.EIO)
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the broker did not exit within 30 s of SIGTERM")
	}
	var ee *exec.ExitError
	if !errors.As(b.exitErr, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("the broker exited with %v, want exit code 3\n%s", b.exitErr, b.Log())
	}
}

// TestPowerCutAcknowledgedSurvive: QoS 1 messages for an offline persistent subscriber, and the
// power is cut at a random moment (what was not fsynced is dropped, the broker is killed). After
// each restart the session is still there and holds every message that was acknowledged.
func TestPowerCutAcknowledgedSurvive(t *testing.T) {
	const cycles = 20
	disk, mnt := t.TempDir(), t.TempDir()
	fs := faultfs.Mount(t, disk, mnt)
	b := faultfsBroker(t, filepath.Join(mnt, "data"), "sync")
	sub := mqtttest.Dial(t, b.Addr)
	sub.MustConnect("faultfs-sub", false)
	sub.Subscribe(1, 1, "faultfs/#")
	acked := 0
	for cycle := range cycles {
		sub.Send(&codec.Disconnect{})
		sub.ExpectClosed()
		pub := faultfsPublish(t, b.Addr, cycle*100000)
		cut := 50 + rand.IntN(400) // acknowledgements before the cut
		mqtttest.Eventually(t, 30*time.Second, "PUBACKs", func() bool { return len(pub.ackedNumbers()) >= cut })
		if err := fs.PowerCut(); err != nil {
			t.Fatal(err)
		}
		b.Kill()
		if err := fs.Unmount(); err != nil {
			t.Fatal(err)
		}
		<-pub.done
		want := pub.ackedNumbers()
		acked += len(want)

		fs = faultfs.Mount(t, disk, mnt)
		b.Start()
		t.Cleanup(b.Kill) // before the mount's cleanup unmounts it
		sub = faultfsDrain(t, b.Addr, "faultfs-sub", want)
		t.Logf("cycle %d: %d acknowledged before the cut, %d written", cycle, len(want), pub.started.Load())
	}
	t.Logf("%d power cuts, %d acknowledged messages, none lost", cycles, acked)
	b.Stop()
}

// TestPowerCutCrashScenario is the crash test's scenario (crash_test.go: QoS 1 and 2, a publisher
// that re-sends, an offline and an online slow persistent subscriber, exactly once, session-present,
// order) with 24 power cuts for kills, on a faultfs mount from the first start. Each of the four
// cells (offline, in flight x QoS 1, 2) must have had acknowledged messages at stake at 20 cuts
// at least, so that each is tested by 20 (issue 13). The margin is for a loaded machine, where
// the in-flight subscriber sometimes has nothing unfinished at the moment of a cut.
func TestPowerCutCrashScenario(t *testing.T) {
	powerCutScenario(t, codec.Level311)
}

// TestPowerCutCrashScenarioV5 is its twin with MQTT 5 clients and what crash5_test.go adds.
func TestPowerCutCrashScenarioV5(t *testing.T) {
	powerCutScenario(t, codec.Level5)
}

// powerCutScenario runs TestPowerCutCrashScenario with clients of the protocol level.
func powerCutScenario(t *testing.T, level byte) {
	const cuts, perCell = 24, 20
	b, cut := powerCutBroker(t, BrokerConfig{Durability: "sync", MQTT5: level == codec.Level5})
	cells := crashScenario(t, b, level, cuts, "power cut", cut)
	for _, c := range cells {
		if len(c.stake) < perCell {
			t.Errorf("%s x QoS %d had messages at stake in %d of %d power cuts, want %d", c.s.name, c.qos, len(c.stake), cuts, perCell)
		}
	}
}

// TestPowerCutSharedGroup is the shared-group crash scenario (crash_shared_test.go: a publisher
// that re-sends, a group of three persistent members, one slow, one leaving for good halfway)
// with 20 power cuts for kills: no acknowledged message lost, no QoS 2 message reaching the
// group twice as new, though what the broker wrote and did not fsync is gone at each restart.
func TestPowerCutSharedGroup(t *testing.T) {
	b, cut := powerCutBroker(t, BrokerConfig{Durability: "sync"})
	sharedCrashScenario(t, b, 20, "power cut", cut)
}

// powerCutBroker starts holdfast with bc on a new faultfs mount, and returns with it the way the
// crash scenarios bring it down: cut the power, kill it, and mount the disk again for b.Start.
func powerCutBroker(t *testing.T, bc BrokerConfig) (*Broker, func(*Broker)) {
	disk, mnt := t.TempDir(), t.TempDir()
	fs := faultfs.Mount(t, disk, mnt)
	bc.DataDir = filepath.Join(mnt, "data")
	return StartBroker(t, bc), func(b *Broker) {
		if err := fs.PowerCut(); err != nil {
			t.Fatal(err)
		}
		b.Kill()
		if err := fs.Unmount(); err != nil {
			t.Fatal(err)
		}
		fs = faultfs.Mount(t, disk, mnt)
		t.Cleanup(b.Kill) // before the mount's cleanup unmounts it
	}
}
