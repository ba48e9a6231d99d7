package persist

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/holdfast/holdfast/internal/syncbuf"
)

// extractFixture unpacks testdata/name (a tar.gz of a directory "data") into a new temporary
// directory and returns the path of its data directory.
func extractFixture(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(root, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(path, root+string(filepath.Separator)) {
			t.Fatalf("fixture entry %q outside the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o700)
		case tar.TypeReg:
			var out *os.File
			if out, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
				_, err = io.Copy(out, tr)
				if cerr := out.Close(); err == nil {
					err = cerr
				}
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, "data")
}

func readSchema(t *testing.T, dir string) uint32 {
	t.Helper()
	var format uint32
	rawUpdate(t, dir, func(txn *badger.Txn) error {
		item, err := txn.Get(schemaKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			format, _, err = decodeSchema(v)
			return err
		})
	})
	return format
}

// TestFormat1Migrates opens a data directory that holdfast wrote in store format 1 (made by
// testdata/format1/make.sh: every kind of record a 3.1.1 broker stores), finds every record,
// then reopens it, now of the current format, and finds them again.
func TestFormat1Migrates(t *testing.T) { testFixtureMigrates(t, 1) }

// TestFormat2Migrates does the same with a directory of format 2, the format before in-flight
// states with a holder, which also holds MQTT 5 records; the migrated store then takes a held
// state.
func TestFormat2Migrates(t *testing.T) {
	dir := testFixtureMigrates(t, 2)
	s, err := Open(testOptions(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	q, err := s.ReadQueue("inflight", 0, 10)
	if err != nil || len(q) != 3 {
		t.Fatalf("queue of inflight = %v, %v", q, err)
	}
	b := &Batch{}
	b.Hold("inflight", q[1].Seq, Released, q[1].PacketID, "member")
	if _, err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(testOptions(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	held, err := s.ReadHeld("inflight")
	if err != nil || len(held) != 3 || held[1].Holder != "member" || held[1].State != Released || held[0].Holder != "" {
		t.Errorf("ReadHeld after a held state in the migrated store = %v, %v", fmtHeld(held), err)
	}
}

// testFixtureMigrates checks the fixture of the given format (testdata/formatN.tar.gz) before
// and after the migration to FormatVersion, and returns its directory.
func testFixtureMigrates(t *testing.T, format uint32) string {
	dir := extractFixture(t, fmt.Sprintf("format%d.tar.gz", format))
	rep, err := Verify(dir)
	if err != nil || rep.FormatVersion != format || !rep.OK() {
		t.Fatalf("Verify of the format-%d fixture = %+v, %v", format, rep, err)
	}
	for round, wantLog := range []bool{true, false} {
		logs := &syncbuf.Buffer{}
		s, err := Open(testOptions(dir, logs))
		if err != nil {
			t.Fatalf("round %d: Open: %v", round, err)
		}
		if got := strings.Contains(logs.String(), "migrated the store"); got != wantLog {
			t.Errorf("round %d: migration logged %t, want %t:\n%s", round, got, wantLog, logs)
		}
		checkFixture(t, s, format)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if f := readSchema(t, dir); f != FormatVersion {
			t.Fatalf("round %d: format version %d after Open, want %d", round, f, FormatVersion)
		}
	}
	return dir
}

// checkFixture checks what make.sh's client left in a store of the given format.
func checkFixture(t *testing.T, s *Store, format uint32) {
	t.Helper()
	st, err := s.Recover()
	if err != nil {
		t.Fatal(err)
	}
	type sub struct {
		filter string
		qos    byte
	}
	want := map[string]struct {
		subs    []sub
		queued  int
		inbound []uint16
	}{
		"sub-a":    {subs: []sub{{"fx/a/#", 2}, {"fx/all", 1}}, queued: 3},
		"sub-b":    {subs: []sub{{"fx/all", 2}, {"fx/b", 0}}, queued: 1},
		"inflight": {subs: []sub{{"fx/if/#", 2}}, queued: 3},
		"pub":      {inbound: []uint16{77}},
	}
	sessions := len(want)
	if format >= 2 {
		sessions++
		checkV5Fixture(t, s, st)
	}
	if format >= 3 {
		sessions += 2
		checkHeldFixture(t, s, st)
	}
	if len(st.Sessions) != sessions {
		t.Errorf("%d sessions, want %d: %+v", len(st.Sessions), sessions, st.Sessions)
	}
	for cid, w := range want {
		ss := session(st, cid)
		if ss == nil || ss.Orphan || ss.Record.ProtocolLevel != 4 || ss.Record.DisconnectedAt.IsZero() || !ss.Record.HasOwner ||
			ss.Record.HasSessionExpiry || ss.Will != nil || ss.QueuedCount != w.queued || len(ss.Subscriptions) != len(w.subs) ||
			len(ss.InboundQoS2) != len(w.inbound) || (len(w.inbound) > 0 && ss.InboundQoS2[0] != w.inbound[0]) {
			t.Errorf("session %s = %+v, want %+v", cid, ss, w)
			continue
		}
		for i, sb := range w.subs {
			if got := ss.Subscriptions[i]; got != (Subscription{Filter: sb.filter, SubOptions: SubOptions{QoS: sb.qos}}) {
				t.Errorf("%s: subscription %d = %+v, want %+v", cid, i, got, sb)
			}
		}
	}

	type entry struct {
		topic, payload string
		qos, pubQoS    byte
		state          QueueState
	}
	queues := map[string][]entry{
		"sub-a": {{"fx/a/1", "inline qos1", 1, 1, Queued}, {"fx/a/2", "inline qos2 retain", 2, 2, Queued}, {"fx/all", "shared by a and b", 1, 1, Queued}},
		"sub-b": {{"fx/all", "shared by a and b", 1, 1, Queued}},
		"inflight": {{"fx/if/0", "in flight 0", 1, 1, Sent}, {"fx/if/1", "in flight 1", 2, 2, Sent},
			{"fx/if/2", "in flight 2", 2, 2, Released}},
	}
	for cid, w := range queues {
		q, err := s.ReadQueue(cid, 0, 100)
		if err != nil || len(q) != len(w) {
			t.Errorf("queue of %s = %+v, %v; want %d entries", cid, q, err, len(w))
			continue
		}
		for i, e := range q {
			m := e.Message
			if m.Topic != w[i].topic || string(m.Payload) != w[i].payload || e.QoS != w[i].qos || m.QoS != w[i].pubQoS ||
				e.State != w[i].state || (e.State != Queued) != (e.PacketID != 0) || m.Props != nil || !m.Expires.IsZero() || e.Holder != "" ||
				!m.Arrived.IsZero() {
				t.Errorf("%s entry %d = %+v %+v, want %+v", cid, i, e, m, w[i])
			}
		}
	}

	retained := map[string]struct {
		payload string
		qos     byte
	}{"fx/a/2": {"inline qos2 retain", 2}, "fx/ret/0": {"retained qos0", 0}, "fx/ret/1": {"retained qos1", 1}}
	if format >= 2 {
		retained["fx/v5/ret"] = struct {
			payload string
			qos     byte
		}{"v5 retained", 1}
	}
	if len(st.Retained) != len(retained) {
		t.Errorf("retained = %+v", st.Retained)
	}
	for _, m := range st.Retained {
		w, ok := retained[m.Topic]
		if !ok || string(m.Payload) != w.payload || m.QoS != w.qos || !m.Retain {
			t.Errorf("retained %+v", m)
		}
		if v5 := m.Topic == "fx/v5/ret"; v5 != (m.Props != nil) || (v5 && !hasFixtureProps(&m)) {
			t.Errorf("retained %s: properties %+v, expires %v", m.Topic, m.Props, m.Expires)
		}
	}
}

// checkV5Fixture checks what make.sh's client left of MQTT 5 (format 2 on): session "v5" with
// its expiry interval, subscription options and two queued messages with properties.
func checkV5Fixture(t *testing.T, s *Store, st *State) {
	t.Helper()
	ss := session(st, "v5")
	wantSub := Subscription{Filter: "fx/v5/#", SubOptions: SubOptions{QoS: 1, NoLocal: true, RetainAsPublished: true, ID: 7}}
	if ss == nil || ss.Orphan || ss.Record.ProtocolLevel != 5 || !ss.Record.HasSessionExpiry || ss.Record.SessionExpiry != 3600 ||
		ss.Record.DisconnectedAt.IsZero() || ss.QueuedCount != 2 || len(ss.Subscriptions) != 1 || ss.Subscriptions[0] != wantSub {
		t.Errorf("session v5 = %+v", ss)
		return
	}
	q, err := s.ReadQueue("v5", 0, 10)
	if err != nil || len(q) != 2 {
		t.Fatalf("queue of v5 = %+v, %v", q, err)
	}
	for i, w := range []struct {
		topic, payload string
		retain         bool
	}{{"fx/v5/q", "v5 queued", false}, {"fx/v5/ret", "v5 retained", true}} {
		m := q[i].Message
		if m.Topic != w.topic || string(m.Payload) != w.payload || q[i].QoS != 1 || m.RetainPublished != w.retain || !hasFixtureProps(m) ||
			!m.Arrived.IsZero() {
			t.Errorf("v5 entry %d = %+v %+v", i, q[i], m)
		}
	}
}

// fixtureGroup is the store id of the queue of the fixture's shared subscription group.
const fixtureGroup = "\x00$share/g/fx/sh/#"

// checkHeldFixture checks what make.sh's client left of shared subscriptions (format 3 on):
// session "member" holding the group's message, Released.
func checkHeldFixture(t *testing.T, s *Store, st *State) {
	t.Helper()
	m := session(st, "member")
	wantSub := Subscription{Filter: "$share/g/fx/sh/#", SubOptions: SubOptions{QoS: 2}}
	if m == nil || m.Orphan || m.QueuedCount != 0 || len(m.Subscriptions) != 1 || m.Subscriptions[0] != wantSub {
		t.Errorf("session member = %+v", m)
	}
	if g := session(st, fixtureGroup); g == nil || g.Orphan || g.QueuedCount != 1 {
		t.Errorf("group queue session = %+v", g)
	}
	held, err := s.ReadHeld(fixtureGroup)
	if err != nil || len(held) != 1 {
		t.Fatalf("ReadHeld of the group = %v, %v", fmtHeld(held), err)
	}
	e := held[0]
	if e.State != Released || e.Holder != "member" || e.QoS != 2 || e.Message.Topic != "fx/sh/1" ||
		string(e.Message.Payload) != "held by member" || !e.Message.Arrived.IsZero() {
		t.Errorf("held entry = %+v %+v", e, e.Message)
	}
}

// hasFixtureProps reports whether m carries the properties the client publishes with.
func hasFixtureProps(m *Message) bool {
	p := m.Props
	return p != nil && p.ContentType == "text/plain" && len(p.User) == 1 && p.User[0].Name == "k" && p.User[0].Value == "v" &&
		!m.Expires.IsZero()
}

// A format-1 store with a record that does not decode is refused, and stays of format 1.
func TestFormat1MigrationRefusesDamage(t *testing.T) {
	dir := extractFixture(t, "format1.tar.gz")
	rawUpdate(t, dir, func(txn *badger.Txn) error {
		return txn.Set(subKey("sub-a", "fx/b"), []byte{1, 7}) // QoS 7
	})
	_, err := Open(testOptions(dir, nil))
	if !errors.Is(err, ErrCorrupt) || !containsAll(err.Error(), "migrate", "format version 1", `subscription key (client "sub-a", filter "fx/b")`) {
		t.Fatalf("Open = %v, want ErrCorrupt naming the key", err)
	}
	if f := readSchema(t, dir); f != 1 {
		t.Fatalf("format version %d after the refusal, want 1", f)
	}
}
