package persist

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
)

const crashDirEnv = "HOLDFAST_PERSIST_CRASH_DIR"

// TestCrashChild is the child of TestCrashNoAckedLoss: it commits numbered
// Enqueues in Sync mode from several goroutines (every fifth one also to the
// client "shared", so its body is shared; every message with MQTT 5 properties
// and expiry, crashMessage) and prints "cid seq shared" for each one whose
// Commit returned, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child process of TestCrashNoAckedLoss")
	}
	s, err := Open(testOptions(dir, nil))
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	// Session records first: Enqueue skips targets without one. Idempotent
	// across rounds.
	putSessions(t, s, "crash0", "crash1", "crash2", "crash3", "crash4", "crash5", "crash6", "crash7", "shared")
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cid := fmt.Sprintf("crash%d", g)
			for i := 0; ; i++ {
				b := &Batch{}
				targets := []Target{{cid, 1}}
				shared := i%5 == 0
				if shared {
					targets = append(targets, Target{"shared", 1})
				}
				b.Enqueue(crashMessage(cid, i), targets)
				seq, err := s.Commit(b)
				if err != nil {
					fmt.Println("commit:", err)
					os.Exit(4)
				}
				// Acknowledged: printed (one unbuffered write) only after the
				// durable commit.
				mu.Lock()
				fmt.Fprintf(os.Stdout, "%s %d %t\n", cid, seq, shared)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestCrashNoAckedLoss SIGKILLs a child mid-stream and checks that every seq it
// reported as committed is in the store after reopening. Three rounds on the
// same directory: each child also recovers from the previous crash.
func TestCrashNoAckedLoss(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	acked := map[string][]uint64{}
	for round := 0; round < 3; round++ {
		n := runCrashChild(t, dir, 500+round*300, acked)
		t.Logf("round %d: child acknowledged %d commits before SIGKILL", round, n)

		s, err := Open(testOptions(dir, nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkInvariants(s.db, s.w); err != nil {
			t.Fatalf("invariants after crash: %v", err)
		}
		st, err := s.Recover()
		if err != nil {
			t.Fatal(err)
		}
		for cid, seqs := range acked {
			if lost := lostSeqs(t, s, cid, seqs); lost > 0 {
				t.Errorf("round %d: %s: %d of %d acknowledged seqs lost", round, cid, lost, len(seqs))
			}
			checkCrashMessages(t, s, cid)
			if ss := session(st, cid); ss == nil || ss.Orphan || ss.QueuedCount < len(seqs) {
				t.Errorf("%s: recovered %+v, %d acknowledged", cid, ss, len(seqs))
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			return
		}
	}
}

// crashMessage is the i-th message of client cid in TestCrashChild, with every MQTT 5 part the
// store keeps, each derived from cid and i.
func crashMessage(cid string, i int) *Message {
	n := strconv.Itoa(i)
	return &Message{Topic: "crash/" + cid, Payload: []byte(n), QoS: 1, Expires: time.Unix(2000000000, int64(i)).UTC(),
		Props: &codec.Properties{PayloadFormat: 1, ContentType: cid, CorrelationData: []byte(n),
			User: []codec.UserProperty{{Name: "i", Value: n}, {Name: "cid", Value: cid}}}}
}

// checkCrashMessages checks that every message in cid's queue is the crashMessage its topic and
// payload name, its properties and expiry included.
func checkCrashMessages(t *testing.T, s *Store, cid string) {
	t.Helper()
	q, err := s.ReadQueue(cid, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range q {
		i, err := strconv.Atoi(string(e.Message.Payload))
		if want := crashMessage(strings.TrimPrefix(e.Message.Topic, "crash/"), i); err != nil || !sameMessage(e.Message, want) {
			t.Fatalf("%s seq %d: %+v %+v, want %+v %+v", cid, e.Seq, e.Message, e.Message.Props, want, want.Props)
		}
	}
}

// runCrashChild starts the child on dir, reads its acknowledgements into
// acked, SIGKILLs it after killAfter lines, and returns how many it read.
func runCrashChild(t *testing.T, dir string, killAfter int, acked map[string][]uint64) int {
	t.Helper()
	c := startChild(t, "TestCrashChild", 10*time.Second, crashDirEnv+"="+dir)
	n := 0
	for c.lines.Scan() {
		f := strings.Fields(c.lines.Text())
		if len(f) != 3 {
			t.Fatalf("child: %q", c.lines.Text())
		}
		seq, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			t.Fatalf("child: %q", c.lines.Text())
		}
		acked[f[0]] = append(acked[f[0]], seq)
		if f[2] == "true" {
			acked["shared"] = append(acked["shared"], seq)
		}
		if n++; n == killAfter {
			c.kill() // mid-stream; lines already in the pipe are still read
		}
	}
	err := c.wait()
	if n < killAfter {
		t.Fatalf("child stopped after %d lines: %v", n, err)
	}
	return n
}

// child is this test binary running one of its tests in another process.
type child struct {
	cmd   *exec.Cmd
	lines *bufio.Scanner // its standard output
	kill  func()         // SIGKILL: no Close, no flush
	timer *time.Timer
}

// startChild runs the test named test in a child process with env added to the environment,
// and SIGKILLs it after limit (bounding the test if the child stalls) or when the test ends.
func startChild(t *testing.T, test string, limit time.Duration, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	c := &child{cmd: cmd, lines: bufio.NewScanner(stdout)}
	c.kill = func() { once.Do(func() { _ = cmd.Process.Kill() }) }
	c.timer = time.AfterFunc(limit, c.kill)
	t.Cleanup(c.kill)
	return c
}

// wait waits for the child to exit, once its output is read.
func (c *child) wait() error {
	c.timer.Stop()
	return c.cmd.Wait()
}

// lostSeqs returns how many of seqs are not in cid's queue in s.
func lostSeqs(t *testing.T, s *Store, cid string, seqs []uint64) int {
	t.Helper()
	q, err := s.ReadQueue(cid, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[uint64]bool, len(q))
	for _, e := range q {
		have[e.Seq] = true
	}
	lost := 0
	for _, seq := range seqs {
		if !have[seq] {
			lost++
		}
	}
	return lost
}
