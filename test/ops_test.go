package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/persist"
)

// The operators' tests: online backup and restore under load, restore's refusals, verify on
// damaged stores, inspect, /metrics and $SYS.

const opsToken = "ops-test-token"

// opsAdminExtra is BrokerConfig.Extra for a broker with an admin listener on a free port.
func opsAdminExtra(sysInterval string) string {
	return fmt.Sprintf("[admin]\naddress = \"127.0.0.1:0\"\ntoken = %q\nsys_interval = %q\n", opsToken, sysInterval)
}

// opsAdminAddr waits for the broker's "admin listening" log line and returns its address.
func opsAdminAddr(t testing.TB, b *Broker) string {
	t.Helper()
	var addr string
	if _, ok := b.logLine(0, 20*time.Second, func(line string) bool {
		var rec struct {
			Message string `json:"message"`
			Address string `json:"address"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Message != "admin listening" {
			return false
		}
		addr = rec.Address
		return true
	}); !ok {
		t.Fatalf("no admin listener within 20 s\n%s", b.Log())
	}
	return addr
}

// opsOperatorConfig writes the configuration an operator uses with -c for a running broker
// whose admin listener is at addr (the broker's own file says port 0).
func opsOperatorConfig(t *testing.T, b *Broker, addr string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "operator.toml")
	body := fmt.Sprintf("data_dir = %q\n[admin]\naddress = %q\ntoken = %q\n", b.Dir, addr, opsToken)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// opsBrokerOn starts a broker on an existing data directory (a restored one).
func opsBrokerOn(t *testing.T, dataDir string) *Broker {
	t.Helper()
	cfg := fmt.Sprintf(`data_dir = %q
durability = "sync"
[log]
level = "info"
format = "json"
[[listener]]
type = "tcp"
address = "127.0.0.1:0"
[store]
memtable_size = 16777216
block_cache_size = 4194304
index_cache_size = 4194304
`, dataDir)
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &Broker{t: t, Dir: dataDir, Config: path}
	b.Start()
	t.Cleanup(func() {
		b.Kill()
		if t.Failed() {
			t.Logf("broker on %s, log:\n%s", dataDir, b.Log())
		}
	})
	return b
}

// opsCmd runs the holdfast binary with args and returns its output and exit code.
func opsCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	// The race runtime sleeps 1 s at exit by default: these short commands need not.
	cmd.Env = append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("holdfast %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

func opsMustCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := opsCmd(t, args...)
	if code != 0 {
		t.Fatalf("holdfast %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// opsFailCmd runs a command that must exit with code, its stderr holding every want.
func opsFailCmd(t *testing.T, code int, wants []string, args ...string) {
	t.Helper()
	out, errs, got := opsCmd(t, args...)
	if got != code {
		t.Fatalf("holdfast %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errs)
	}
	for _, w := range wants {
		if !strings.Contains(errs, w) {
			t.Errorf("holdfast %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, errs)
		}
	}
}

var opsBackupLine = regexp.MustCompile(`(?m)^backup (\S+) since=(\d+) next=(\d+) bytes=(\d+)$`)

// opsBackup runs holdfast backup and returns the next= it prints.
func opsBackup(t *testing.T, args ...string) uint64 {
	t.Helper()
	out := opsMustCmd(t, append([]string{"backup"}, args...)...)
	m := opsBackupLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("backup printed %q", out)
	}
	next, err := strconv.ParseUint(m[3], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

// opsPersistentSessions creates persistent sessions subscribed to filter at QoS 1 and leaves
// them offline (the broker has closed each connection when this returns).
func opsPersistentSessions(t *testing.T, addr, filter string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		c := mqtttest.Dial(t, addr)
		c.MustConnect(id, false)
		if rc := c.Subscribe(1, 1, filter); rc[0] != 1 {
			t.Fatalf("%s: SUBACK %v", id, rc)
		}
		c.Send(&codec.Disconnect{})
		c.ExpectClosed()
	}
}

// opsPublish publishes QoS 1 messages and waits for each PUBACK.
func opsPublish(t *testing.T, addr, topic string, retain bool, payloads ...[]byte) {
	t.Helper()
	c := mqtttest.Dial(t, addr)
	c.MustConnect("", true)
	for i, p := range payloads {
		pid := uint16(i + 1)
		c.Send(&codec.Publish{QoS: 1, Retain: retain, Topic: topic, PacketID: pid, Payload: p})
		if ack := mqtttest.Expect[*codec.Puback](c); ack.PacketID != pid {
			t.Fatalf("PUBACK %d, want %d", ack.PacketID, pid)
		}
	}
	c.Send(&codec.Disconnect{})
	c.ExpectClosed()
}

// opsPublisher keeps publishing numbered QoS 1 messages (payload: the number in decimal) with a
// window of unacknowledged ones, and records which were acknowledged.
type opsPublisher struct {
	c      *mqtttest.Client
	topic  string
	window chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	pids     map[uint16]int // outstanding: packet id -> number
	acked    map[int]bool
	sent     int
	stopping bool
	err      error
}

func startOpsPublisher(t *testing.T, addr, topic string) *opsPublisher {
	t.Helper()
	c := mqtttest.Dial(t, addr)
	c.MustConnect("ops-publisher", true)
	p := &opsPublisher{c: c, topic: topic, window: make(chan struct{}, 16), stop: make(chan struct{}),
		pids: map[uint16]int{}, acked: map[int]bool{}}
	p.wg.Add(2)
	go p.send()
	go p.read()
	t.Cleanup(func() { p.finish(t) })
	return p
}

func (p *opsPublisher) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil && !p.stopping {
		p.err = err
	}
}

func (p *opsPublisher) send() {
	defer p.wg.Done()
	var pid uint16
	for n := 1; ; n++ {
		select {
		case <-p.stop:
			return
		case p.window <- struct{}{}:
		}
		if pid++; pid == 0 {
			pid = 1
		}
		p.mu.Lock()
		p.pids[pid] = n
		p.sent = n
		p.mu.Unlock()
		if err := p.c.Write(&codec.Publish{QoS: 1, Topic: p.topic, PacketID: pid, Payload: []byte(strconv.Itoa(n))}); err != nil {
			p.fail(err)
			return
		}
	}
}

func (p *opsPublisher) read() {
	defer p.wg.Done()
	for {
		pk, err := p.c.TryRead(30 * time.Second)
		if err != nil {
			p.fail(err)
			return
		}
		ack, ok := pk.(*codec.Puback)
		if !ok {
			p.fail(fmt.Errorf("publisher got %s", pk.Type()))
			return
		}
		p.mu.Lock()
		n, ok := p.pids[ack.PacketID]
		delete(p.pids, ack.PacketID)
		if ok {
			p.acked[n] = true
		}
		p.mu.Unlock()
		if !ok {
			p.fail(fmt.Errorf("PUBACK for unknown packet id %d", ack.PacketID))
			return
		}
		<-p.window
	}
}

// ackedSet returns a copy of the numbers acknowledged so far.
func (p *opsPublisher) ackedSet() map[int]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int]bool, len(p.acked))
	for n := range p.acked {
		out[n] = true
	}
	return out
}

// waitAcked waits until at least n messages are acknowledged.
func (p *opsPublisher) waitAcked(t *testing.T, n int) {
	t.Helper()
	var got int
	var err error
	mqtttest.Within(30*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		got, err = len(p.acked), p.err
		return err != nil || got >= n
	})
	switch {
	case err != nil:
		t.Fatalf("publisher: %v", err)
	case got < n:
		t.Fatalf("publisher: %d of %d messages acknowledged after 30 s", got, n)
	}
}

// finish stops publishing, waits (up to 10 s) for the outstanding acknowledgements and closes.
func (p *opsPublisher) finish(t *testing.T) {
	select {
	case <-p.stop:
		return
	default:
		close(p.stop)
	}
	mqtttest.Within(10*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.pids) == 0 || p.err != nil
	})
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	p.c.Conn.Close()
	p.wg.Wait()
	if p.err != nil {
		t.Errorf("publisher: %v", p.err)
	}
}

// opsCollect connects the persistent session id (clean=0) and reads (acknowledging) until every
// number in want has arrived; it fails the test when one does not within 10 s of silence.
func opsCollect(t *testing.T, addr, id string, want map[int]bool) {
	t.Helper()
	c := mqtttest.Dial(t, addr)
	if !c.MustConnect(id, false) {
		t.Fatalf("%s: no session present on the restored broker", id)
	}
	got := map[int]bool{}
	missing := len(want)
	for missing > 0 {
		pk, err := c.TryRead(10 * time.Second)
		if err != nil {
			var miss []int
			for n := range want {
				if !got[n] {
					miss = append(miss, n)
				}
			}
			sort.Ints(miss)
			t.Fatalf("%s: %d of the %d messages acknowledged before the backup are missing after restore (first: %v; %d distinct received): %v",
				id, len(miss), len(want), miss[:min(len(miss), 20)], len(got), err)
		}
		pub, ok := pk.(*codec.Publish)
		if !ok {
			continue
		}
		if pub.QoS == 1 {
			c.Send(&codec.Puback{PacketID: pub.PacketID})
		}
		n, err := strconv.Atoi(string(pub.Payload))
		if err != nil {
			t.Fatalf("%s: payload %q", id, pub.Payload)
		}
		if want[n] && !got[n] {
			missing--
		}
		got[n] = true
	}
	c.Send(&codec.Disconnect{})
}

// Test 1: an online backup taken while a publisher sends QoS 1 messages to two offline
// persistent sessions holds every message acknowledged before the backup started; so does a
// full backup plus an incremental taken from the version the first one printed.
func TestBackupOnlineRestoreUnderLoad(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: opsAdminExtra("0s")})
	cfg := opsOperatorConfig(t, b, opsAdminAddr(t, b))
	sessions := []string{"ops-a", "ops-b"}
	opsPersistentSessions(t, b.Addr, "ops/#", sessions...)

	pub := startOpsPublisher(t, b.Addr, "ops/load")
	pub.waitAcked(t, 200)
	tmp := t.TempDir()
	full, inc := filepath.Join(tmp, "full.hfb"), filepath.Join(tmp, "inc.hfb")

	before1 := pub.ackedSet()
	next1 := opsBackup(t, "-c", cfg, "--out", full)
	after1 := len(pub.ackedSet())
	if after1 == len(before1) {
		t.Logf("no message acknowledged while the first backup ran")
	}
	pub.waitAcked(t, after1+200)
	before2 := pub.ackedSet()
	next2 := opsBackup(t, "-c", cfg, "--out", inc, "--since", strconv.FormatUint(next1, 10))
	pub.finish(t)
	if next2 <= next1 {
		t.Fatalf("incremental next=%d, not above %d", next2, next1)
	}
	t.Logf("full backup: %d acknowledged before it, next=%d; incremental: %d acknowledged before it, next=%d; %d published",
		len(before1), next1, len(before2), next2, pub.sent)

	// The full backup alone.
	dir1 := filepath.Join(t.TempDir(), "restored-full")
	opsMustCmd(t, "restore", "--data", dir1, "--in", full)
	if out := opsMustCmd(t, "verify", "--data", dir1); !strings.Contains(out, "OK: consistent") {
		t.Errorf("verify of the restored full backup:\n%s", out)
	}
	b2 := opsBrokerOn(t, dir1)
	for _, id := range sessions {
		opsCollect(t, b2.Addr, id, before1)
	}
	b2.Stop()

	// The full backup and the incremental on top.
	dir2 := filepath.Join(t.TempDir(), "restored-chain")
	opsMustCmd(t, "restore", "--data", dir2, "--in", full, "--in", inc)
	b3 := opsBrokerOn(t, dir2)
	for _, id := range sessions {
		opsCollect(t, b3.Addr, id, before2)
	}
	b3.Stop()

	// The incremental's order matters: it cannot come first.
	opsFailCmd(t, 1, []string{"full backup"}, "restore", "--data", filepath.Join(t.TempDir(), "x"), "--in", inc, "--in", full)
}

// Test 2a: restore refuses a running broker's directory and a non-empty one; the stopped-store
// commands refuse a running broker's directory and say what to do instead.
func TestRestoreRefusesNonEmptyDirectory(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: opsAdminExtra("0s")})
	cfg := opsOperatorConfig(t, b, opsAdminAddr(t, b))
	opsPersistentSessions(t, b.Addr, "r/#", "ops-r")
	opsPublish(t, b.Addr, "r/1", false, []byte("one"), []byte("two"))
	tmp := t.TempDir()
	f := filepath.Join(tmp, "online.hfb")
	opsBackup(t, "-c", cfg, "--out", f)

	opsFailCmd(t, 1, []string{"running broker", "-c config.toml"}, "backup", "--data", b.Dir, "--out", filepath.Join(tmp, "offline.hfb"))
	opsFailCmd(t, 1, []string{"running broker", "pid"}, "restore", "--data", b.Dir, "--in", f)
	opsFailCmd(t, 1, []string{"the broker is running"}, "verify", "--data", b.Dir)
	opsFailCmd(t, 1, []string{"the broker is running"}, "inspect", "--data", b.Dir)
	b.Stop()

	opsFailCmd(t, 1, []string{"not empty", b.Dir}, "restore", "--data", b.Dir, "--in", f)
	stray := filepath.Join(tmp, "stray")
	os.MkdirAll(stray, 0o700)
	os.WriteFile(filepath.Join(stray, "notes.txt"), []byte("x"), 0o600)
	opsFailCmd(t, 1, []string{"not empty", "notes.txt"}, "restore", "--data", stray, "--in", f)
	if b, _ := os.ReadFile(filepath.Join(stray, "notes.txt")); string(b) != "x" {
		t.Error("a refused restore touched the directory")
	}

	// The same store backed up offline restores to the same inventory as the online backup.
	off := filepath.Join(tmp, "offline.hfb")
	opsBackup(t, "--data", b.Dir, "--out", off)
	var invs []*persist.Inventory
	for i, in := range []string{f, off} {
		dir := filepath.Join(tmp, "r"+strconv.Itoa(i))
		opsMustCmd(t, "restore", "--data", dir, "--in", in)
		opsMustCmd(t, "verify", "--data", dir)
		invs = append(invs, opsInventory(t, opsMustCmd(t, "inspect", "--data", dir, "--json")))
	}
	for _, inv := range invs {
		if s := opsSession(t, inv, "ops-r"); s.QueueDepth != 2 || len(s.Subscriptions) != 1 {
			t.Errorf("restored ops-r = %+v", s)
		}
	}
}

func opsInventory(t *testing.T, js string) *persist.Inventory {
	t.Helper()
	inv := new(persist.Inventory)
	dec := json.NewDecoder(strings.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(inv); err != nil {
		t.Fatalf("inspect --json does not parse into persist.Inventory: %v\n%s", err, js)
	}
	return inv
}

func opsSession(t *testing.T, inv *persist.Inventory, id string) persist.SessionInfo {
	t.Helper()
	for _, s := range inv.Sessions {
		if s.ClientID == id {
			return s
		}
	}
	t.Fatalf("no session %q in the inventory: %+v", id, inv.Sessions)
	return persist.SessionInfo{}
}

func opsCopyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(filepath.Join(dst, e.Name()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Test 2b: verify passes a good store and catches a truncated value log and a queue entry
// whose message is gone.
func TestVerifyCatchesCorruption(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{})
	opsPersistentSessions(t, b.Addr, "big/#", "ops-big")
	opsPersistentSessions(t, b.Addr, "ops/#", "ops-a", "ops-b")
	// Payloads above the value threshold (min(1 MB, memtable_size*15%/4) = 614 KB with the
	// harness's 16 MB memtables) go to the value log.
	big := bytes.Repeat([]byte("v"), 700<<10)
	opsPublish(t, b.Addr, "big/x", false, big, big, big)
	// Messages for two sessions are stored once, as shared bodies.
	opsPublish(t, b.Addr, "ops/x", false, []byte("1"), []byte("2"), []byte("3"))
	b.Stop()

	out := opsMustCmd(t, "verify", "--data", b.Dir)
	if !strings.Contains(out, "OK: consistent") || !strings.Contains(out, "queued 9") || !strings.Contains(out, "shared bodies 3") {
		t.Fatalf("verify of the good store:\n%s", out)
	}

	// (a) The newest value-log file loses its last 100 bytes: the last big message's tail.
	truncated := filepath.Join(t.TempDir(), "truncated")
	opsCopyDir(t, b.Dir, truncated)
	vlogs, err := filepath.Glob(filepath.Join(truncated, "*.vlog"))
	if err != nil || len(vlogs) == 0 {
		t.Fatalf("no value-log file in %s: %v", truncated, err)
	}
	slices.Sort(vlogs)
	newest := vlogs[len(vlogs)-1]
	fi, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < int64(len(big)) {
		t.Fatalf("the newest value-log file %s holds %d bytes: the big messages are not in it", newest, fi.Size())
	}
	if err := os.Truncate(newest, fi.Size()-100); err != nil {
		t.Fatal(err)
	}
	out, errs, code := opsCmd(t, "verify", "--data", truncated)
	if code != 1 || !strings.Contains(out, "PROBLEMS (1)") || !strings.Contains(out, `client "ops-big"`) ||
		!strings.Contains(out, "empty value") || !strings.Contains(errs, "not consistent") {
		t.Errorf("verify of a truncated value log: exit %d\n%s%s", code, out, errs)
	}

	// (b) A shared body deleted under its queue entries (raw Badger writes: key 0x06 seq).
	noBody := filepath.Join(t.TempDir(), "no-body")
	opsCopyDir(t, b.Dir, noBody)
	db, err := badger.Open(badger.DefaultOptions(noBody).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	err = db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{0x06}})
		it.Rewind()
		if !it.Valid() {
			it.Close()
			return errors.New("no shared body (0x06) key")
		}
		k := it.Item().KeyCopy(nil)
		it.Close()
		if len(k) != 9 {
			return fmt.Errorf("body key %x", k)
		}
		seq = uint64(k[1])<<56 | uint64(k[2])<<48 | uint64(k[3])<<40 | uint64(k[4])<<32 | uint64(k[5])<<24 | uint64(k[6])<<16 | uint64(k[7])<<8 | uint64(k[8])
		return txn.Delete(k)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	out, errs, code = opsCmd(t, "verify", "--data", noBody)
	want := fmt.Sprintf("refers to shared body seq %d, which does not exist", seq)
	if code != 1 || !strings.Contains(out, "PROBLEMS (2)") || strings.Count(out, want) != 2 ||
		!strings.Contains(out, `client "ops-a"`) || !strings.Contains(out, `client "ops-b"`) {
		t.Errorf("verify of a store missing body %d: exit %d, want 2 problems %q\n%s%s", seq, code, want, out, errs)
	}

	// The good store is untouched by all this.
	if out := opsMustCmd(t, "verify", "--data", b.Dir); !strings.Contains(out, "OK: consistent") {
		t.Errorf("verify of the original store afterwards:\n%s", out)
	}
}

// Test 3: inspect --json parses into persist.Inventory and shows the sessions, subscriptions,
// queue depths and in-flight messages, through the running broker and from the stopped store.
func TestInspectJSON(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: opsAdminExtra("0s")})
	cfg := opsOperatorConfig(t, b, opsAdminAddr(t, b))

	c := mqtttest.Dial(t, b.Addr)
	c.MustConnect("ops-a", false)
	c.Subscribe(1, 1, "ops/#")
	c.Subscribe(2, 0, "x/+")
	c.Send(&codec.Disconnect{})
	c.ExpectClosed()
	opsPersistentSessions(t, b.Addr, "ops/#", "ops-b")
	// ops-live stays connected and acknowledges nothing: its messages are in flight.
	live := mqtttest.Dial(t, b.Addr)
	live.MustConnect("ops-live", false)
	live.Subscribe(1, 1, "live/#")

	opsPublish(t, b.Addr, "ops/m", false, []byte("1"), []byte("22"), []byte("333"), []byte("4444"), []byte("55555"))
	opsPublish(t, b.Addr, "live/x", false, []byte("a"), []byte("b"))
	opsPublish(t, b.Addr, "keep/r", true, []byte("retained!"))
	for range 2 {
		mqtttest.Expect[*codec.Publish](live)
	}

	check := func(inv *persist.Inventory, where string, online bool) {
		t.Helper()
		a := opsSession(t, inv, "ops-a")
		wantSubs := []persist.SubscriptionInfo{{Filter: "ops/#", QoS: 1}, {Filter: "x/+", QoS: 0}}
		if !a.HasRecord || a.ProtocolLevel != 4 || a.Connected || a.DisconnectedAt == nil ||
			a.QueueDepth != 5 || a.QueueBytes != 15 || a.Inflight != 0 || !slices.Equal(a.Subscriptions, wantSubs) {
			t.Errorf("%s: ops-a = %+v", where, a)
		}
		if s := opsSession(t, inv, "ops-b"); s.QueueDepth != 5 || len(s.Subscriptions) != 1 {
			t.Errorf("%s: ops-b = %+v", where, s)
		}
		l := opsSession(t, inv, "ops-live")
		if l.QueueDepth != 2 || l.Inflight != 2 || l.Connected != online {
			t.Errorf("%s: ops-live = %+v (want 2 queued, 2 in flight, connected %v)", where, l, online)
		}
		if !slices.Contains(inv.Retained, persist.RetainedInfo{Topic: "keep/r", QoS: 1, PayloadBytes: 9}) {
			t.Errorf("%s: retained = %+v", where, inv.Retained)
		}
		if len(inv.Problems) != 0 || inv.FormatVersion != persist.FormatVersion {
			t.Errorf("%s: format %d, problems %q", where, inv.FormatVersion, inv.Problems)
		}
	}
	// The broker sends the PUBLISHes after their commit: wait until both are in flight.
	var inv *persist.Inventory
	mqtttest.Within(10*time.Second, func() bool {
		inv = opsInventory(t, opsMustCmd(t, "inspect", "-c", cfg, "--json"))
		return opsSession(t, inv, "ops-live").Inflight >= 2
	})
	check(inv, "inspect -c", true)
	human := opsMustCmd(t, "inspect", "-c", cfg)
	for _, w := range []string{"ops-a", "offline since", "ops/# (QoS 1), x/+ (QoS 0)", "ops-live", "connected", "keep/r"} {
		if !strings.Contains(human, w) {
			t.Errorf("inspect -c lacks %q:\n%s", w, human)
		}
	}
	// A wrong token is refused.
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte(fmt.Sprintf("[admin]\naddress = %q\ntoken = \"wrong\"\n", opsAdminAddr(t, b))), 0o600)
	opsFailCmd(t, 1, []string{"refused admin.token"}, "inspect", "-c", bad)

	live.Conn.Close()
	b.Stop()
	check(opsInventory(t, opsMustCmd(t, "inspect", "--data", b.Dir, "--json")), "inspect --data", false)
	if out := opsMustCmd(t, "verify", "--data", b.Dir); !strings.Contains(out, "OK: consistent") {
		t.Errorf("verify:\n%s", out)
	}
}

// opsScrape reads /metrics into "name{labels}" -> value.
func opsScrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp := opsGet(t, base+"/metrics", opsToken)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("/metrics line %q", line)
		}
		m[line[:i]] = v
	}
	return m
}

func opsGet(t *testing.T, url, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func opsStatus(t *testing.T, url, token string) int {
	t.Helper()
	resp := opsGet(t, url, token)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Test 4: /metrics needs the token, and its counters move with real traffic.
func TestMetricsMoveWithTraffic(t *testing.T) {
	t.Parallel()
	b := StartBroker(t, BrokerConfig{Extra: opsAdminExtra("0s")})
	base := "http://" + opsAdminAddr(t, b)
	for _, p := range []string{"/metrics", "/inspect", "/backup", "/debug/pprof/"} {
		if code := opsStatus(t, base+p, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", p, code)
		}
		if code := opsStatus(t, base+p, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", p, code)
		}
	}
	// The probes answer without credentials, as orchestrators call them.
	if code := opsStatus(t, base+"/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code := opsStatus(t, base+"/readyz", ""); code != http.StatusOK {
		t.Errorf("/readyz: %d", code)
	}

	const n = 25
	const received1 = `holdfast_messages_received_total{qos="1"}`
	const sent1 = `holdfast_messages_sent_total{qos="1"}`
	const commits = "holdfast_store_commits_total"
	const commitCount = "holdfast_store_commit_duration_seconds_count"
	before := opsScrape(t, base)
	for _, k := range []string{received1, sent1, commits, commitCount, "holdfast_connections", `holdfast_store_commit_duration_seconds_bucket{le="+Inf"}`} {
		if _, ok := before[k]; !ok {
			t.Fatalf("/metrics has no %s", k)
		}
	}
	if before["holdfast_connections"] != 0 {
		t.Errorf("holdfast_connections = %v with no client", before["holdfast_connections"])
	}

	// A persistent subscriber (its messages go through the store) and a publisher.
	sub := mqtttest.Dial(t, b.Addr)
	sub.MustConnect("ops-metrics-sub", false)
	sub.Subscribe(1, 1, "m/#")
	pubc := mqtttest.Dial(t, b.Addr)
	pubc.MustConnect("ops-metrics-pub", true)
	// Connected clients, as the gauge counts them once the CONNACKs are out.
	var conns float64
	if !mqtttest.Within(5*time.Second, func() bool { conns = opsScrape(t, base)["holdfast_connections"]; return conns == 2 }) {
		t.Fatalf("holdfast_connections = %v with 2 clients connected", conns)
	}
	for i := 1; i <= n; i++ {
		pubc.Send(&codec.Publish{QoS: 1, Topic: "m/" + strconv.Itoa(i), PacketID: uint16(i), Payload: []byte("payload")})
		mqtttest.Expect[*codec.Puback](pubc)
	}
	for range n {
		p := mqtttest.Expect[*codec.Publish](sub)
		sub.Send(&codec.Puback{PacketID: p.PacketID})
	}
	after := opsScrape(t, base)
	if d := after[received1] - before[received1]; d != n {
		t.Errorf("%s grew by %v, want %d", received1, d, n)
	}
	if d := after[sent1] - before[sent1]; d < n {
		t.Errorf("%s grew by %v, want at least %d", sent1, d, n)
	}
	if after[commits] <= before[commits] {
		t.Errorf("%s: %v -> %v", commits, before[commits], after[commits])
	}
	if after[commitCount] <= before[commitCount] {
		t.Errorf("%s: %v -> %v", commitCount, before[commitCount], after[commitCount])
	}
	if after[commitCount] != after[`holdfast_store_commit_duration_seconds_bucket{le="+Inf"}`] {
		t.Errorf("commit-duration histogram: count %v, +Inf bucket %v", after[commitCount], after[`holdfast_store_commit_duration_seconds_bucket{le="+Inf"}`])
	}
	// Every acknowledged QoS 1 message waited for an fdatasync, so the fsync histogram moved too.
	const syncCount = "holdfast_store_fsync_duration_seconds_count"
	if after[syncCount] <= before[syncCount] || after[syncCount] != after[`holdfast_store_fsync_duration_seconds_bucket{le="+Inf"}`] {
		t.Errorf("fsync histogram: count %v -> %v, +Inf bucket %v", before[syncCount], after[syncCount], after[`holdfast_store_fsync_duration_seconds_bucket{le="+Inf"}`])
	}
	if got := after[`holdfast_payload_bytes_received_total{qos="1"}`] - before[`holdfast_payload_bytes_received_total{qos="1"}`]; got != n*7 {
		t.Errorf("payload bytes received grew by %v, want %d", got, n*7)
	}
	if after["holdfast_connections"] != 2 || after["holdfast_connections_total"] < 2 {
		t.Errorf("holdfast_connections %v, total %v", after["holdfast_connections"], after["holdfast_connections_total"])
	}
	if after[`holdfast_clients{state="connected"}`] != 2 {
		t.Errorf(`holdfast_clients{state="connected"} = %v`, after[`holdfast_clients{state="connected"}`])
	}
}

// Test 5: $SYS topics with Mosquitto's names, read with mosquitto_sub.
func TestSysTopicsWithMosquittoSub(t *testing.T) {
	t.Parallel()
	sub := needTool(t, "mosquitto_sub", "mosquitto-clients")
	b := StartBroker(t, BrokerConfig{Extra: opsAdminExtra("1s")})
	host, port, err := net.SplitHostPort(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, sub, append([]string{"-h", host, "-p", port, "-V", "mqttv311"}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("mosquitto_sub %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	}
	lines := run("-t", "$SYS/broker/uptime", "-C", "1", "-W", "10")
	if len(lines) != 1 || !regexp.MustCompile(`^\d+ seconds$`).MatchString(lines[0]) {
		t.Errorf("$SYS/broker/uptime: %q, want \"N seconds\"", lines)
	}
	// The first message is the retained value of the last tick; the second comes from a tick
	// that counts this subscriber.
	lines = run("-t", "$SYS/broker/clients/connected", "-C", "2", "-W", "10")
	if n, err := strconv.Atoi(lines[len(lines)-1]); len(lines) != 2 || err != nil || n < 1 {
		t.Errorf("$SYS/broker/clients/connected: %q, want a count >= 1", lines)
	}
	// '$SYS/#' with -v: Mosquitto's names are all there.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-t", "$SYS/#", "-v")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	want := map[string]bool{}
	for _, s := range []string{"version", "uptime", "clients/connected", "clients/disconnected", "clients/total",
		"messages/received", "messages/sent", "bytes/received", "bytes/sent", "load/messages/received/1min",
		"subscriptions/count", "retained messages/count"} {
		want["$SYS/broker/"+s] = true
	}
	sc := bufio.NewScanner(stdout)
	for len(want) > 0 && sc.Scan() {
		line := sc.Text() // topic, space, value; "retained messages/count" holds a space
		if v, ok := strings.CutPrefix(line, "$SYS/broker/version "); ok && !strings.HasPrefix(v, "holdfast") {
			t.Errorf("$SYS/broker/version = %q", v)
		}
		for topic := range want {
			if strings.HasPrefix(line, topic+" ") {
				delete(want, topic)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("$SYS/# lacks %v", want)
	}
}
