package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/admin"
	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/internal/syncbuf"
	"github.com/holdfast/holdfast/persist"
)

// opsRun runs a command the way main does and returns its output and exit code.
func opsRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	def, err := os.ReadFile("../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, DefaultConfig: def, Version: "test"}
	err = Run(env, args)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(UsageError)):
		fmt.Fprintln(&errb, "holdfast:", err)
		code = 2
	default:
		fmt.Fprintln(&errb, "holdfast:", err)
		code = 1
	}
	return out.String(), errb.String(), code
}

func opsMust(t *testing.T, args ...string) string {
	t.Helper()
	out, _ := opsMustErr(t, args...)
	return out
}

// opsMustErr runs a command that must succeed and returns its stdout and stderr.
func opsMustErr(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	out, errs, code := opsRun(t, args...)
	if code != 0 {
		t.Fatalf("holdfast %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out, errs
}

// opsFail runs a command that must fail with code, its stderr containing every want.
func opsFail(t *testing.T, code int, wants []string, args ...string) string {
	t.Helper()
	out, errs, got := opsRun(t, args...)
	if got != code {
		t.Fatalf("holdfast %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errs)
	}
	for _, w := range wants {
		if !strings.Contains(errs, w) {
			t.Errorf("holdfast %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, errs)
		}
	}
	return errs
}

var backupLine = regexp.MustCompile(`^backup (\S+) since=(\d+) next=(\d+) bytes=(\d+)\n$`)

// opsBackup runs backup and returns next from its output line, checking bytes against the file.
func opsBackup(t *testing.T, args ...string) uint64 {
	t.Helper()
	out := opsMust(t, append([]string{"backup"}, args...)...)
	m := backupLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("backup output %q", out)
	}
	fi, err := os.Stat(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if strconv.FormatInt(fi.Size(), 10) != m[4] {
		t.Errorf("backup says bytes=%s, the file has %d", m[4], fi.Size())
	}
	if _, err := os.Stat(m[1] + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.tmp left behind: %v", m[1], err)
	}
	next, _ := strconv.ParseUint(m[3], 10, 64)
	return next
}

func opsOptions(dir string) persist.Options {
	o := persist.DefaultOptions(dir)
	o.MemTableSize = 8 << 20
	o.NumMemtables = 2
	o.BlockCacheSize = 4 << 20
	o.IndexCacheSize = 4 << 20
	o.ValueLogFileSize = 16 << 20
	return o
}

func opsOpen(t *testing.T, dir string) *persist.Store {
	t.Helper()
	s, err := persist.Open(opsOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func opsCommit(t *testing.T, s *persist.Store, b *persist.Batch) {
	t.Helper()
	if _, err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
}

// opsEnqueue queues n messages topic/i for cids, the first of each batch shared when len(cids) > 1.
func opsEnqueue(t *testing.T, s *persist.Store, topic string, from, n int, cids ...string) {
	t.Helper()
	var targets []persist.Target
	for _, c := range cids {
		targets = append(targets, persist.Target{ClientID: c, QoS: 1})
	}
	for i := from; i < from+n; i++ {
		b := &persist.Batch{}
		b.Enqueue(&persist.Message{Topic: fmt.Sprintf("%s/%d", topic, i), Payload: []byte(strconv.Itoa(i)), QoS: 1}, targets)
		opsCommit(t, s, b)
	}
}

func opsInventory(t *testing.T, js string) *persist.Inventory {
	t.Helper()
	inv := new(persist.Inventory)
	dec := json.NewDecoder(strings.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(inv); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, js)
	}
	return inv
}

func opsSession(t *testing.T, inv *persist.Inventory, cid string) persist.SessionInfo {
	t.Helper()
	for _, s := range inv.Sessions {
		if s.ClientID == cid {
			return s
		}
	}
	t.Fatalf("no session %q in %+v", cid, inv.Sessions)
	return persist.SessionInfo{}
}

func TestBackupHeader(t *testing.T) {
	h := backupHeader{Since: 12, Next: 1 << 62, StreamBytes: 1 << 40, CRC: 0xdeadbeef, Created: time.Unix(1700000000, 0)}
	b := h.marshal()
	if len(b) != backupHeaderSize || !bytes.HasPrefix(b, []byte("holdfast-backup 1\nsince=12\nnext=4611686018427387904\n")) {
		t.Fatalf("header %q", b)
	}
	got, err := parseBackupHeader(b)
	if err != nil || got.Since != h.Since || got.Next != h.Next || got.StreamBytes != h.StreamBytes || got.CRC != h.CRC || !got.Created.Equal(h.Created) {
		t.Fatalf("parse = %+v, %v; want %+v", got, err, h)
	}
	for name, bad := range map[string][]byte{
		"placeholder":    make([]byte, backupHeaderSize),
		"badger stream":  append(binary.LittleEndian.AppendUint64(nil, 200), make([]byte, 248)...),
		"short":          b[:100],
		"next < since":   backupHeader{Since: 5, Next: 4}.marshal(),
		"missing next":   bytes.Replace(b, []byte("next="), []byte("nxt=="), 1),
		"bad number":     bytes.Replace(b, []byte("since=12"), []byte("since=1x"), 1),
		"last not \\n":   append(b[:backupHeaderSize-1:backupHeaderSize-1], ' '),
		"other magic":    bytes.Replace(b, []byte("backup 1"), []byte("backup 2"), 1),
		"empty":          nil,
		"negative bytes": bytes.Replace(b, []byte("stream-bytes=1"), []byte("stream-bytes=-"), 1),
	} {
		if _, err := parseBackupHeader(bad); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// A backup of a stopped store, an incremental on top, restored in order into a new directory:
// everything is there; the chain rules and the refusals hold.
func TestBackupRestoreOffline(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data")
	s := opsOpen(t, dir)
	b := &persist.Batch{}
	b.PutSession("a", persist.SessionRecord{ProtocolLevel: 4, DisconnectedAt: time.Now()})
	b.PutSession("b", persist.SessionRecord{ProtocolLevel: 3, DisconnectedAt: time.Now()})
	b.PutSubscription("a", persist.Subscription{Filter: "t/#", SubOptions: persist.SubOptions{QoS: 1}})
	b.PutSubscription("b", persist.Subscription{Filter: "t/+", SubOptions: persist.SubOptions{QoS: 1}})
	b.PutRetained(&persist.Message{Topic: "r", Payload: []byte("kept"), QoS: 1, Retain: true})
	opsCommit(t, s, b)
	opsEnqueue(t, s, "t", 0, 10, "a", "b")
	opsEnqueue(t, s, "t/a", 10, 5, "a")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	full := filepath.Join(tmp, "full.hfb")
	next1 := opsBackup(t, "--data", dir, "--out", full)
	if next1 == 0 {
		t.Fatal("next=0 for a store with data")
	}
	opsFail(t, 1, []string{"already exists"}, "backup", "--data", dir, "--out", full)

	s = opsOpen(t, dir)
	opsEnqueue(t, s, "t", 100, 7, "a", "b")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	inc := filepath.Join(tmp, "inc.hfb")
	next2 := opsBackup(t, "--data", dir, "--out", inc, "--since", strconv.FormatUint(next1, 10))
	if next2 <= next1 {
		t.Fatalf("incremental next=%d, not above the full backup's %d", next2, next1)
	}
	// Nothing changed: an empty incremental whose next is its since.
	empty := filepath.Join(tmp, "empty.hfb")
	if n := opsBackup(t, "--data", dir, "--out", empty, "--since", strconv.FormatUint(next2, 10)); n != next2 {
		t.Errorf("empty incremental next=%d, want %d", n, next2)
	}

	restored := filepath.Join(tmp, "restored")
	out := opsMust(t, "restore", "--data", restored, "--in", full, "--in", inc, "--in", empty)
	if !strings.Contains(out, "restored "+restored) {
		t.Errorf("restore output %q", out)
	}
	if out := opsMust(t, "verify", "--data", restored); !strings.Contains(out, "OK: consistent") || !strings.Contains(out, "queued 39") {
		t.Errorf("verify of the restored store:\n%s", out)
	}
	inv := opsInventory(t, opsMust(t, "inspect", "--data", restored, "--json"))
	if a := opsSession(t, inv, "a"); a.QueueDepth != 22 || len(a.Subscriptions) != 1 || a.Subscriptions[0] != (persist.SubscriptionInfo{Filter: "t/#", QoS: 1}) || a.Connected {
		t.Errorf("restored a = %+v", a)
	}
	if b := opsSession(t, inv, "b"); b.QueueDepth != 17 || b.ProtocolLevel != 3 {
		t.Errorf("restored b = %+v", b)
	}
	if len(inv.Retained) != 1 || inv.Retained[0] != (persist.RetainedInfo{Topic: "r", QoS: 1, PayloadBytes: 4}) {
		t.Errorf("restored retained = %+v", inv.Retained)
	}
	human := opsMust(t, "inspect", "--data", restored)
	for _, w := range []string{"CLIENT ID", "offline since", "t/# (QoS 1)", "3.1.1", "RETAINED TOPIC", "2 sessions, 39 queued messages"} {
		if !strings.Contains(human, w) {
			t.Errorf("inspect lacks %q:\n%s", w, human)
		}
	}

	// Without the incremental the later messages are missing: the test above can fail.
	only := filepath.Join(tmp, "only-full")
	opsMust(t, "restore", "--data", only, "--in", full)
	if inv := opsInventory(t, opsMust(t, "inspect", "--data", only, "--json")); opsSession(t, inv, "a").QueueDepth != 15 {
		t.Errorf("full backup alone: a = %+v", opsSession(t, inv, "a"))
	}

	fresh := func() string { return filepath.Join(t.TempDir(), "r") }
	opsFail(t, 1, []string{"not empty", "MANIFEST"}, "restore", "--data", restored, "--in", full)
	opsFail(t, 1, []string{"first --in must be a full backup"}, "restore", "--data", fresh(), "--in", inc)
	opsFail(t, 1, []string{"does not follow"}, "restore", "--data", fresh(), "--in", full, "--in", empty)
	opsFail(t, 2, []string{"--in"}, "restore", "--data", fresh())

	// A damaged byte in the stream: the checksum catches it and nothing is left.
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(tmp, "bad.hfb")
	data[len(data)-3] ^= 0x40
	if err := os.WriteFile(bad, data, 0o600); err != nil {
		t.Fatal(err)
	}
	target := fresh()
	opsFail(t, 1, []string{"checksum"}, "restore", "--data", target, "--in", bad)
	if ents, err := os.ReadDir(target); err == nil && len(ents) > 0 {
		t.Errorf("a failed restore left %d entries in %s", len(ents), target)
	}
	// Cut short.
	if err := os.WriteFile(bad, data[:len(data)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	opsFail(t, 1, []string{"truncated"}, "restore", "--data", fresh(), "--in", bad)
	// Not a backup at all.
	opsFail(t, 1, []string{"not a holdfast backup"}, "restore", "--data", fresh(), "--in", filepath.Join(restored, "MANIFEST"))
}

func TestBackupUsage(t *testing.T) {
	tmp := t.TempDir()
	cfg := func(body string) string {
		p := filepath.Join(tmp, strconv.Itoa(len(body))+".toml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	out := filepath.Join(tmp, "f")
	opsFail(t, 2, []string{"--out"}, "backup", "--data", tmp)
	opsFail(t, 2, []string{"either -c"}, "backup", "--out", out)
	opsFail(t, 2, []string{"either -c"}, "backup", "--out", out, "--data", tmp, "-c", cfg(""))
	opsFail(t, 2, []string{"no [admin] address", "--data"}, "backup", "--out", out, "-c", cfg(""))
	opsFail(t, 2, []string{"port 0"}, "backup", "--out", out, "-c", cfg("[admin]\naddress = \"127.0.0.1:0\"\n"))
	opsFail(t, 2, []string{"no [admin] address"}, "inspect", "-c", cfg(""))
	opsFail(t, 2, []string{"--data"}, "verify")
	opsFail(t, 1, []string{"no holdfast store"}, "backup", "--out", out, "--data", tmp)
	opsFail(t, 1, []string{"no store"}, "verify", "--data", tmp)
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed backup left %s: %v", out, err)
	}
	// Nobody listens: a clear message.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	opsFail(t, 1, []string{"cannot reach the admin listener"}, "backup", "--out", out, "-c", cfg(fmt.Sprintf("[admin]\naddress = %q\n", addr)))
	for _, cmd := range []string{"backup", "restore", "verify", "inspect"} {
		_, errs, code := opsRun(t, cmd, "-h")
		if code != 0 || !strings.Contains(errs, "usage: holdfast "+cmd) {
			t.Errorf("%s -h: exit %d\n%s", cmd, code, errs)
		}
	}
}

// While a store is open (a running broker), the stopped-store commands say so.
func TestVerifyInspectBackupLocked(t *testing.T) {
	dir := t.TempDir()
	s := opsOpen(t, dir)
	defer s.Close()
	opsFail(t, 1, []string{"the broker is running"}, "verify", "--data", dir)
	opsFail(t, 1, []string{"the broker is running", "inspect -c"}, "inspect", "--data", dir)
	opsFail(t, 1, []string{"running broker", "-c config.toml"}, "backup", "--data", dir, "--out", filepath.Join(t.TempDir(), "f"))

	// A copy of the live directory is what a crash leaves: verify says how to recover it.
	b := &persist.Batch{}
	b.PutSession("a", persist.SessionRecord{ProtocolLevel: 4})
	opsCommit(t, s, b)
	crashed := filepath.Join(t.TempDir(), "crashed")
	os.MkdirAll(crashed, 0o700)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(crashed, e.Name()), data, 0o600)
	}
	os.Remove(filepath.Join(crashed, "LOCK"))
	opsFail(t, 1, []string{"not closed cleanly", "start holdfast on it once and stop it"}, "verify", "--data", crashed)
}

func TestVerifyReportsProblems(t *testing.T) {
	// A store whose newest value-log entry is cut: verify lists the key and exits 1.
	dir := t.TempDir()
	s := opsOpen(t, dir)
	b := &persist.Batch{}
	b.PutSession("big", persist.SessionRecord{ProtocolLevel: 4})
	opsCommit(t, s, b)
	b = &persist.Batch{}
	b.Enqueue(&persist.Message{Topic: "big", Payload: bytes.Repeat([]byte("x"), 600<<10), QoS: 1}, []persist.Target{{ClientID: "big", QoS: 1}})
	opsCommit(t, s, b)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if out := opsMust(t, "verify", "--data", dir); !strings.Contains(out, "OK") {
		t.Fatalf("verify of a good store:\n%s", out)
	}
	vlogs, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if len(vlogs) == 0 {
		t.Fatal("no value log")
	}
	newest := vlogs[len(vlogs)-1]
	fi, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(newest, fi.Size()-100); err != nil {
		t.Fatal(err)
	}
	out, errs, code := opsRun(t, "verify", "--data", dir)
	if code != 1 || !strings.Contains(out, "PROBLEMS (1)") || !strings.Contains(out, `client "big"`) || !strings.Contains(out, "empty value") || !strings.Contains(errs, "not consistent") {
		t.Errorf("verify of a truncated value log: exit %d\n%s%s", code, out, errs)
	}
	// And a backup of it fails, leaving no file. (persist's error names the empty value, or
	// is "context canceled" when Badger's stream loses it in a race: see the report.)
	f := filepath.Join(t.TempDir(), "f")
	opsFail(t, 1, []string{"failed", "holdfast verify --data"}, "backup", "--data", dir, "--out", f)
	if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed backup left %s", f)
	}
}

// startAdmin serves the real admin handler on a store (no broker: /backup and /inspect use only
// the store) and returns a configuration file naming it.
func startAdmin(t *testing.T, s *persist.Store, token string) (cfgPath, addr string) {
	t.Helper()
	a, err := admin.Start("127.0.0.1:0", token, nil, s, prometheus.NewRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown(context.Background()) })
	cfgPath = filepath.Join(t.TempDir(), "config.toml")
	body := fmt.Sprintf("[admin]\naddress = %q\ntoken = %q\n", a.Addr().String(), token)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, a.Addr().String()
}

func TestBackupOnlineAndInspectThroughAdmin(t *testing.T) {
	tmp := t.TempDir()
	s := opsOpen(t, filepath.Join(tmp, "data"))
	defer s.Close()
	b := &persist.Batch{}
	b.PutSession("a", persist.SessionRecord{ProtocolLevel: 4})
	b.PutSubscription("a", persist.Subscription{Filter: "t/#", SubOptions: persist.SubOptions{QoS: 1}})
	opsCommit(t, s, b)
	opsEnqueue(t, s, "t", 0, 3, "a")
	cfg, addr := startAdmin(t, s, "s3cret")

	full := filepath.Join(tmp, "full")
	next := opsBackup(t, "-c", cfg, "--out", full)
	opsEnqueue(t, s, "t", 3, 2, "a")
	inc := filepath.Join(tmp, "inc")
	opsBackup(t, "-c", cfg, "--out", inc, "--since", strconv.FormatUint(next, 10))
	restored := filepath.Join(tmp, "restored")
	opsMust(t, "restore", "--data", restored, "--in", full, "--in", inc)
	inv := opsInventory(t, opsMust(t, "inspect", "--data", restored, "--json"))
	if a := opsSession(t, inv, "a"); a.QueueDepth != 5 || !a.Connected {
		t.Errorf("restored a = %+v", a)
	}
	live := opsInventory(t, opsMust(t, "inspect", "-c", cfg, "--json"))
	if a := opsSession(t, live, "a"); a.QueueDepth != 5 {
		t.Errorf("live a = %+v", a)
	}
	if out := opsMust(t, "inspect", "-c", cfg); !strings.Contains(out, "t/# (QoS 1)") || !strings.Contains(out, "http://"+addr) {
		t.Errorf("inspect -c:\n%s", out)
	}

	// A wrong token or none: 401, said clearly.
	wrong := filepath.Join(tmp, "wrong.toml")
	os.WriteFile(wrong, []byte(fmt.Sprintf("[admin]\naddress = %q\ntoken = \"nope\"\n", addr)), 0o600)
	opsFail(t, 1, []string{"refused admin.token"}, "backup", "-c", wrong, "--out", filepath.Join(tmp, "x"))
	none := filepath.Join(tmp, "none.toml")
	os.WriteFile(none, []byte(fmt.Sprintf("[admin]\naddress = %q\n", addr)), 0o600)
	opsFail(t, 1, []string{"requires a bearer token"}, "inspect", "-c", none)
	if _, err := os.Stat(filepath.Join(tmp, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused backup left a file")
	}
}

// A broker whose backup fails mid-stream (no trailer) or cuts a frame: no file is left.
func TestBackupOnlineIncompleteStream(t *testing.T) {
	frame := func(n int) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, uint64(n)), make([]byte, n)...)
	}
	cases := map[string]func(w http.ResponseWriter){
		"no trailer": func(w http.ResponseWriter) {
			w.Header().Set("Trailer", admin.NextSinceTrailer)
			w.Write(frame(10))
		},
		"cut frame": func(w http.ResponseWriter) {
			w.Header().Set("Trailer", admin.NextSinceTrailer)
			w.Write(frame(10)[:12])
			w.Header().Set(admin.NextSinceTrailer, "5")
		},
		"server error": func(w http.ResponseWriter) { http.Error(w, "boom", http.StatusInternalServerError) },
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { h(w) })}
			go srv.Serve(l)
			defer srv.Close()
			cfg := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(cfg, []byte(fmt.Sprintf("[admin]\naddress = %q\n", l.Addr().String())), 0o600)
			out := filepath.Join(t.TempDir(), "f")
			opsFail(t, 1, []string{"not written"}, "backup", "-c", cfg, "--out", out)
			ents, _ := os.ReadDir(filepath.Dir(out))
			if len(ents) != 0 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}

func TestInspectTable(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	inv := &persist.Inventory{FormatVersion: 1, Writer: "holdfast",
		Sessions: []persist.SessionInfo{
			{ClientID: "on", HasRecord: true, ProtocolLevel: 4, Connected: true, Subscriptions: []persist.SubscriptionInfo{{Filter: "a/#", QoS: 1}, {Filter: "b", QoS: 0}}, QueueDepth: 3, QueueBytes: 30, Inflight: 2},
			{ClientID: "off line", HasRecord: true, ProtocolLevel: 3, DisconnectedAt: &at, Subscriptions: []persist.SubscriptionInfo{}, InboundQoS2: []uint16{4}},
			{ClientID: "orphan", Subscriptions: []persist.SubscriptionInfo{}},
		},
		Retained: []persist.RetainedInfo{{Topic: "r/1", QoS: 2, PayloadBytes: 99}},
		Problems: []string{"something odd"},
	}
	var b bytes.Buffer
	printInventory(&b, "DIR", inv, at.Add(3*time.Hour))
	out := b.String()
	for _, w := range []string{
		"DIR: format version 1", "3 sessions, 3 queued messages (30 B), 2 in flight, 1 retained",
		"a/# (QoS 1), b (QoS 0)", "connected", `"off line"`, "offline since", "(3h ago)", "3.1 ", "1 inbound QoS 2 ids",
		"ORPHAN", "r/1", "99", "PROBLEMS (1", "something odd",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}
	lines := strings.Split(out, "\n")
	// Columns line up: the QUEUED column starts at the same offset in the header and rows.
	col := strings.Index(lines[2], "QUEUED")
	if col < 0 || !strings.HasPrefix(lines[3][col:], "3 ") {
		t.Errorf("columns:\n%s", out)
	}
}

// openPTY returns the two ends of a new pseudo-terminal: what a command writes to tty, the test
// reads from ptm.
func openPTY(t *testing.T) (ptm, tty *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("a pseudo-terminal for the progress display: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlocking the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("naming the pseudo-terminal: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return ptm, tty
}

// stalledBackup serves GET /backup on 127.0.0.1 as a broker does, announcing the whole stream's
// length in EstimatedBytesHeader, and stalls half way until resume is closed. It returns a
// configuration naming it, and the stream's length at the stall and in all.
func stalledBackup(t *testing.T, resume <-chan struct{}) (cfg string, half, total int) {
	t.Helper()
	frame := func(n int) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, uint64(n)), make([]byte, n)...)
	}
	first, rest := frame(300<<10), append(frame(500<<10), frame(7)...)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", admin.NextSinceTrailer)
		w.Header().Set(admin.EstimatedBytesHeader, strconv.Itoa(len(first)+len(rest)))
		w.Write(first)
		w.(http.Flusher).Flush()
		select { // the stall the display must show
		case <-resume:
		case <-r.Context().Done():
			return
		}
		w.Write(rest)
		w.Header().Set(admin.NextSinceTrailer, "9")
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	cfg = filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[admin]\naddress = %q\n", l.Addr().String())), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, len(first), len(first) + len(rest)
}

// startBackup runs holdfast backup -c cfg in the background, its stderr to stderr.
func startBackup(t *testing.T, cfg string, stdout, stderr io.Writer, flags ...string) <-chan error {
	t.Helper()
	def, err := os.ReadFile("../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	args := append([]string{"backup", "-c", cfg, "--out", filepath.Join(t.TempDir(), "f")}, flags...)
	go func() {
		env := &Env{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr, DefaultConfig: def, Version: "test"}
		done <- Run(env, args)
	}()
	return done
}

// waitShown waits for want in what a running backup has written, and then lets the stream go on.
func waitShown(t *testing.T, shown *syncbuf.Buffer, want string, resume chan struct{}, done <-chan error) {
	t.Helper()
	ok := mqtttest.Within(20*time.Second, func() bool { return strings.Contains(shown.String(), want) })
	close(resume)
	if !ok {
		state := "still running"
		select {
		case err := <-done:
			state = fmt.Sprintf("ended: %v", err)
		default:
		}
		t.Fatalf("no progress %q within 20 s of a stream stalled half way; stderr ends with %q; the backup is %s", want, lastBytes(shown.String(), 300), state)
	}
	if err := <-done; err != nil {
		t.Fatalf("backup: %v", err)
	}
}

var progressAmount = regexp.MustCompile(`\rbackup(?: \[[#-]+\] +\d+% |: )([0-9.]+) (B|KiB|MiB)`)

// TestBackupProgress: a backup through the admin listener that runs past a second shows a bar
// on a terminal, redrawn in place: the bytes received so far of the broker's estimate while
// the stream stalls half way, never going down, and on a last line, ended by a newline, the
// size of the whole stream and the time taken.
func TestBackupProgress(t *testing.T) {
	resume := make(chan struct{})
	cfg, half, total := stalledBackup(t, resume)
	ptm, tty := openPTY(t)
	var shown syncbuf.Buffer
	go io.Copy(&shown, ptm)
	done := startBackup(t, cfg, io.Discard, tty)
	stalled := fmt.Sprintf("%s of ~%s, ", humanBytes(float64(half)), humanBytes(float64(total)))
	waitShown(t, &shown, stalled, resume, done)
	full := half * barCells / total
	if bar := fmt.Sprintf("\rbackup [%s%s] %3d%% %s", strings.Repeat("#", full), strings.Repeat("-", barCells-full), half*100/total, stalled); !strings.Contains(shown.String(), bar) {
		t.Errorf("no bar %q at the stall: %q", bar, lastBytes(shown.String(), 300))
	}
	final := "\rbackup: " + humanBytes(float64(total)) + " in "
	if !mqtttest.Within(5*time.Second, func() bool {
		out := shown.String()
		i := strings.Index(out, final)
		return i >= 0 && strings.Contains(out[i:], "\n")
	}) {
		t.Fatalf("no last line %q ended by a newline after the backup; the terminal ends with %q", final, lastBytes(shown.String(), 300))
	}
	out := shown.String()
	bars := out[:strings.Index(out, final)]
	if strings.Contains(bars, "\n") {
		t.Errorf("the bar is not redrawn in place:\n%q", bars)
	}
	ms := progressAmount.FindAllStringSubmatch(out, -1)
	unit := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20}
	prev := -1.0
	for i, m := range ms {
		v, _ := strconv.ParseFloat(m[1], 64)
		if v *= unit[m[2]]; v < prev {
			t.Errorf("progress %d shows %s %s, less than the one before it:\n%q", i+1, m[1], m[2], out)
		}
		prev = v
	}
	if len(ms) < 2 || !strings.HasPrefix(ms[len(ms)-1][0], final[:len(final)-len(" in ")]) {
		t.Errorf("progress %q: want bars, then the whole stream", ms)
	}
}

// TestBackupProgressPlain: on a stderr that is no terminal, the same backup writes plain lines,
// one every plainEvery (the stall lasts long enough for one), then a last line; none goes to
// stdout. With --quiet, none at all.
func TestBackupProgressPlain(t *testing.T) {
	resume := make(chan struct{})
	cfg, half, total := stalledBackup(t, resume)
	var stdout, stderr syncbuf.Buffer
	done := startBackup(t, cfg, &stdout, &stderr)
	waitShown(t, &stderr, fmt.Sprintf("backup: %s of ~%s (%d%%), ", humanBytes(float64(half)), humanBytes(float64(total)), half*100/total), resume, done)
	errs := stderr.String()
	final := regexp.MustCompile(`(?m)^backup: ` + regexp.QuoteMeta(humanBytes(float64(total))) + ` in [0-9.]+m?s \([0-9.]+ [KM]?i?B/s\)$`)
	if !final.MatchString(errs) || strings.Contains(errs, "\r") {
		t.Errorf("stderr %q: want plain lines, no \\r, and the last one matching %s", errs, final)
	}
	if strings.Contains(stdout.String(), "backup:") {
		t.Errorf("progress on stdout: %q", stdout.String())
	}

	var quiet syncbuf.Buffer
	if err := <-startBackup(t, cfg, io.Discard, &quiet, "--quiet"); err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`(?m)^backup`).MatchString(quiet.String()) {
		t.Errorf("--quiet: %q", quiet.String())
	}
}

// lastBytes is the end of s, for failure messages.
func lastBytes(s string, n int) string { return s[max(0, len(s)-n):] }

var _ io.Writer = (*streamWriter)(nil)
