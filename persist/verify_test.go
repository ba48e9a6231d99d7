package persist

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

var disconnectedAt = time.Date(2025, 6, 7, 8, 9, 10, 11, time.UTC)

// fixture is the content buildStore writes.
type fixture struct {
	dir        string
	opt        Options
	inline     uint64 // seq of a's inline entry (in-flight: Sent, pid 7)
	shared     uint64 // seq of the entry shared by a and b
	bigPayload []byte
}

// buildStore writes a small store with every family and closes it:
// a (connected, MQTT 3.1.1) and b (disconnected, MQTT 5) with subscriptions,
// an inline entry of a in flight, an entry shared by a and b, an inbound id
// of b, one retained message.
func buildStore(t *testing.T, withBig bool) fixture {
	t.Helper()
	f := fixture{dir: t.TempDir()}
	f.opt = testOptions(f.dir, nil)
	s, err := Open(f.opt)
	if err != nil {
		t.Fatal(err)
	}
	commit := func(b *Batch) uint64 {
		t.Helper()
		seq, err := s.Commit(b)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	b := &Batch{}
	b.PutSession("a", SessionRecord{ProtocolLevel: 4})
	b.PutSession("b", SessionRecord{ProtocolLevel: 5, DisconnectedAt: disconnectedAt})
	b.PutSubscription("a", Subscription{Filter: "x/#", SubOptions: SubOptions{QoS: 1}})
	b.PutSubscription("a", Subscription{Filter: "y", SubOptions: SubOptions{QoS: 2}})
	b.PutSubscription("b", Subscription{Filter: "z", SubOptions: SubOptions{QoS: 0}})
	b.PutRetained(&Message{Topic: "r/1", Payload: []byte("hello"), QoS: 1, Retain: true})
	b.PutInbound("b", 9)
	commit(b)
	b = &Batch{}
	b.Enqueue(msg("t/1", "one", 1), []Target{{"a", 1}})
	f.inline = commit(b)
	b = &Batch{}
	b.Enqueue(msg("t/2", "two!", 2), []Target{{"a", 2}, {"b", 1}})
	f.shared = commit(b)
	b = &Batch{}
	b.SetQueueState("a", f.inline, Sent, 7)
	commit(b)
	if withBig {
		// Two values in the value log; the queue entry is the newest.
		f.bigPayload = bytes.Repeat([]byte("z"), 400<<10)
		b = &Batch{}
		b.PutRetained(&Message{Topic: "big", Payload: f.bigPayload, QoS: 0})
		commit(b)
		b = &Batch{}
		b.Enqueue(&Message{Topic: "big", Payload: f.bigPayload, QoS: 1}, []Target{{"b", 1}})
		commit(b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

func verify(t *testing.T, dir string) *Report {
	t.Helper()
	rep, err := Verify(dir)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func TestVerifyGood(t *testing.T) {
	f := buildStore(t, false)
	rep := verify(t, f.dir)
	want := Report{FormatVersion: FormatVersion, Writer: "holdfast", Sessions: 2, Subscriptions: 3, Queued: 3, Inflight: 1,
		Bodies: 1, Retained: 1, Inbound: 1, Problems: []string{}}
	if !reflect.DeepEqual(*rep, want) {
		t.Errorf("report = %+v\nwant %+v", *rep, want)
	}
	if !rep.OK() {
		t.Error("not OK")
	}
	// Verify changed nothing: it verifies again, and the store opens.
	if rep := verify(t, f.dir); !rep.OK() {
		t.Errorf("second Verify: %v", rep.Problems)
	}
	s, err := Open(f.opt)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestVerifyFindsProblems(t *testing.T) {
	cases := []struct {
		name  string
		raw   func(f fixture, txn *badger.Txn) error
		wants []string // one problem each, in order
	}{
		{
			name: "queue entry without its shared body",
			raw:  func(f fixture, txn *badger.Txn) error { return txn.Delete(bodyKey(f.shared)) },
			wants: []string{
				`queue entry key (client "a", seq 2): refers to shared body seq 2, which does not exist`,
				`queue entry key (client "b", seq 2): refers to shared body seq 2, which does not exist`,
			},
		},
		{
			name: "in-flight state without its entry",
			raw: func(f fixture, txn *badger.Txn) error {
				return txn.Set(inflightKey("b", f.inline), encodeInflight(Released, 3, ""))
			},
			wants: []string{`in-flight state key (client "b", seq 1): no queue entry (client "b", seq 1) for this state`},
		},
		{
			name: "queue data without a session record",
			raw: func(f fixture, txn *badger.Txn) error {
				if err := txn.Set(queueKey("ghost", 99), encodeQueueInline(1, msg("t", "p", 1))); err != nil {
					return err
				}
				return txn.Delete(sessionKey("b"))
			},
			wants: []string{
				`subscription key (client "b", filter "z"): client "b" has no session record (1 subscription keys of this client)`,
				`queue entry key (client "b", seq 2): client "b" has no session record (1 queue entry keys of this client)`,
				`queue entry key (client "ghost", seq 99): client "ghost" has no session record (1 queue entry keys`,
				`inbound QoS 2 key (client "b", packet id 9): client "b" has no session record (1 inbound QoS 2 keys`,
			},
		},
		{
			name: "values that do not decode",
			raw: func(f fixture, txn *badger.Txn) error {
				if err := txn.Set(sessionKey("a"), []byte{9, 4}); err != nil {
					return err
				}
				if err := txn.Set(subKey("a", "y"), []byte{1, 7}); err != nil {
					return err
				}
				if err := txn.Set(retainedKey("r/1"), []byte{1}); err != nil {
					return err
				}
				return txn.Set(queueKey("a", f.inline), encodeQueueInline(1, msg("t/1", "one", 1))[:9])
			},
			wants: []string{
				`session key (client "a"): unknown record version 9`,
				`subscription key (client "a", filter "y"): bad subscription value 0107`,
				`retained key (topic "r/1"): value of 1 bytes, want at least 2`,
				`queue entry key (client "a", seq 1): inline message header truncated`,
			},
		},
		{
			name: "body without references, inline entry with a body, unknown family",
			raw: func(f fixture, txn *badger.Txn) error {
				if err := txn.Set(bodyKey(500), encodeBody(msg("t", "p", 0))); err != nil {
					return err
				}
				if err := txn.Set(bodyKey(f.inline), encodeBody(msg("t/1", "one", 1))); err != nil {
					return err
				}
				return txn.Set([]byte{0x42, 'x'}, []byte("?"))
			},
			wants: []string{
				`queue entry key (client "a", seq 1): inline entry, but shared body seq 1 exists`,
				`shared body key (seq 1): no queue entry refers to it`,
				`shared body key (seq 500): no queue entry refers to it`,
				`unknown family 0x42 key 4278 (malformed): unknown key family`,
			},
		},
		{
			name: "newer format version",
			raw: func(f fixture, txn *badger.Txn) error {
				return txn.Set(schemaKey, encodeSchema(FormatVersion+1, "holdfast-next"))
			},
			wants: []string{fmt.Sprintf(`meta key "schema": format version %d (written by "holdfast-next") is newer than this build's %d`, FormatVersion+1, FormatVersion)},
		},
		{
			name:  "no format version",
			raw:   func(f fixture, txn *badger.Txn) error { return txn.Delete(schemaKey) },
			wants: []string{`meta key "schema": missing (no format version)`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := buildStore(t, false)
			rawUpdate(t, f.dir, func(txn *badger.Txn) error { return c.raw(f, txn) })
			rep := verify(t, f.dir)
			if rep.OK() || len(rep.Problems) != len(c.wants) {
				t.Fatalf("problems = %q\nwant %d: %q", rep.Problems, len(c.wants), c.wants)
			}
			for i, w := range c.wants {
				if !strings.HasPrefix(rep.Problems[i], w) {
					t.Errorf("problem %d = %q\nwant prefix %q", i, rep.Problems[i], w)
				}
			}
		})
	}
}

// The newest value-log file of a closed store loses its last 100 bytes (the
// tail of the last value). Badger opens it read-only without complaint and
// reads that value as empty, logging "Unable to read" but returning no error;
// Verify reports the key. A read-write Open truncates the file to its last
// whole entry and goes on; Recover and Backup then fail with ErrCorrupt.
func TestVerifyTruncatedValueLog(t *testing.T) {
	f := buildStore(t, true)
	vlogs, err := filepath.Glob(filepath.Join(f.dir, "*.vlog"))
	if err != nil || len(vlogs) == 0 {
		t.Fatalf("value-log files: %v %v", vlogs, err)
	}
	slices.Sort(vlogs)
	newest := vlogs[len(vlogs)-1]
	fi, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(newest, fi.Size()-100); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, f.dir)
	bigKey := describeKey(queueKey("b", f.shared+1))
	if len(rep.Problems) != 1 || !containsAll(rep.Problems[0], bigKey, "empty value", "value log") {
		t.Fatalf("problems = %q, want one naming %s", rep.Problems, bigKey)
	}
	inv, err := InspectDir(f.dir)
	if err != nil || len(inv.Problems) != 1 || len(inv.Sessions) != 2 {
		t.Fatalf("InspectDir: %+v %v", inv, err)
	}

	s, err := Open(f.opt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if _, err := s.Recover(); !errors.Is(err, ErrCorrupt) || !containsAll(err.Error(), bigKey, "empty value") {
		t.Errorf("Recover: %v", err)
	}
	if _, err := s.Backup(io.Discard, 0); !errors.Is(err, ErrCorrupt) || !containsAll(err.Error(), bigKey, "empty") {
		t.Errorf("Backup: %v", err)
	}
}

func TestVerifyLocked(t *testing.T) {
	ts := openTest(t)
	_, err := Verify(ts.dir)
	if !errors.Is(err, ErrLocked) || !containsAll(err.Error(), ts.dir, "in use") {
		t.Errorf("Verify of a live store: %v", err)
	}
	if _, err := InspectDir(ts.dir); !errors.Is(err, ErrLocked) {
		t.Errorf("InspectDir of a live store: %v", err)
	}
}

// A copy of a live store's directory is what a crash leaves: Badger refuses
// to open it read-only ("Log truncate required") until a read-write open has
// replayed the write-ahead log.
func TestVerifyUnclean(t *testing.T) {
	ts := openTest(t)
	ts.sessions("a", "b")
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, ts.dir, crashed)
	_, err := Verify(crashed)
	if !errors.Is(err, ErrUnclean) || !containsAll(err.Error(), crashed, "not closed cleanly") {
		t.Fatalf("Verify of a crashed store: %v", err)
	}
	if _, err := InspectDir(crashed); !errors.Is(err, ErrUnclean) {
		t.Errorf("InspectDir of a crashed store: %v", err)
	}
	s, err := Open(testOptions(crashed, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verify(t, crashed); !rep.OK() || rep.Sessions != 2 {
		t.Errorf("after a read-write open: %+v", rep)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyNotAStore(t *testing.T) {
	empty := t.TempDir()
	if _, err := Verify(empty); err == nil || !strings.Contains(err.Error(), "no store") {
		t.Errorf("Verify of an empty directory: %v", err)
	}
	if _, err := Verify(filepath.Join(empty, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Verify of a missing directory: %v", err)
	}
	if _, err := InspectDir(filepath.Join(empty, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("InspectDir of a missing directory: %v", err)
	}
}

func TestInspect(t *testing.T) {
	f := buildStore(t, false)
	s, err := Open(f.opt)
	if err != nil {
		t.Fatal(err)
	}
	b := &Batch{}
	b.PutSubscription("orphan", Subscription{Filter: "o", SubOptions: SubOptions{QoS: 1}}) // no record
	if _, err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	disc := disconnectedAt
	want := &Inventory{
		FormatVersion: FormatVersion,
		Writer:        "holdfast",
		Sessions: []SessionInfo{
			{
				ClientID: "a", HasRecord: true, ProtocolLevel: 4, Connected: true,
				Subscriptions: []SubscriptionInfo{{Filter: "x/#", QoS: 1}, {Filter: "y", QoS: 2}},
				QueueDepth:    2, QueueBytes: int64(len("one") + len("two!")), Inflight: 1,
				InboundQoS2: []uint16{},
			},
			{
				ClientID: "b", HasRecord: true, ProtocolLevel: 5, DisconnectedAt: &disc,
				Subscriptions: []SubscriptionInfo{{Filter: "z", QoS: 0}},
				QueueDepth:    1, QueueBytes: int64(len("two!")),
				InboundQoS2: []uint16{9},
			},
			{
				ClientID: "orphan", Subscriptions: []SubscriptionInfo{{Filter: "o", QoS: 1}}, InboundQoS2: []uint16{},
			},
		},
		Retained: []RetainedInfo{{Topic: "r/1", QoS: 1, PayloadBytes: 5}},
		Problems: []string{`subscription key (client "orphan", filter "o"): client "orphan" has no session record (1 subscription keys of this client)`},
	}
	live, err := s.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(live, want) {
		t.Errorf("live Inspect =\n%s\nwant\n%s", jsonString(t, live), jsonString(t, want))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Inspect(); !errors.Is(err, ErrClosed) {
		t.Errorf("Inspect after Close: %v", err)
	}
	stopped, err := InspectDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(stopped, want) {
		t.Errorf("InspectDir =\n%s\nwant\n%s", jsonString(t, stopped), jsonString(t, want))
	}

	// The JSON for scripts: snake_case keys, [] rather than null, times in
	// RFC 3339, no disconnected_at while connected.
	js := jsonString(t, stopped)
	for _, k := range []string{fmt.Sprintf(`"format_version":%d`, FormatVersion), `"client_id":"a"`, `"has_record":true`, `"protocol_level":4`,
		`"connected":true`, `"disconnected_at":"2025-06-07T08:09:10.000000011Z"`, `"queue_depth":2`, `"queue_bytes":7`,
		`"inflight":1`, `"inbound_qos2":[9]`, `"inbound_qos2":[]`, `"filter":"x/#"`, `"qos":1`, `"payload_bytes":5`,
		`"topic":"r/1"`, `"problems":[`} {
		if !strings.Contains(js, k) {
			t.Errorf("JSON lacks %s:\n%s", k, js)
		}
	}
	if strings.Contains(js, "null") || strings.Count(js, "disconnected_at") != 1 {
		t.Errorf("JSON:\n%s", js)
	}
	var back Inventory
	if err := json.Unmarshal([]byte(js), &back); err != nil || !reflect.DeepEqual(&back, stopped) {
		t.Errorf("JSON does not round-trip: %v", err)
	}

	// In memory (Durability None) the live inventory works too.
	ts := openTest(t, withOptions(func(o *Options) { o.Durability = None; o.Dir = "" }))
	ts.sessions("m")
	if inv, err := ts.Inspect(); err != nil || len(inv.Sessions) != 1 || inv.Sessions[0].ClientID != "m" {
		t.Errorf("Inspect in None mode: %+v %v", inv, err)
	}
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
