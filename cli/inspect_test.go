package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/inventory"
	"github.com/holdfast/holdfast/persist"
)

// verify and inspect of a stopped store show what MQTT 5 stores: session expiry, subscription
// options and identifiers, wills, retained expiry.
func TestVerifyInspectShowMQTT5(t *testing.T) {
	dir := t.TempDir()
	s := opsOpen(t, dir)
	b := &persist.Batch{}
	b.PutSession("v5", persist.SessionRecord{ProtocolLevel: 5, HasSessionExpiry: true, SessionExpiry: 0xFFFFFFFF})
	b.PutSession("short", persist.SessionRecord{ProtocolLevel: 5, HasSessionExpiry: true, SessionExpiry: 90})
	b.PutSubscription("v5", persist.Subscription{Filter: "a/#", SubOptions: persist.SubOptions{QoS: 1, NoLocal: true, RetainAsPublished: true, ID: 7}})
	b.PutWill("v5", &codec.Will{Topic: "gone/v5", Payload: []byte("bye"), QoS: 1, Retain: true, Props: &codec.Properties{WillDelay: 30}})
	b.PutRetained(&persist.Message{Topic: "r/x", Payload: []byte("p"), QoS: 1, Expires: time.Date(2030, 1, 2, 3, 4, 5, 0, time.Local)})
	opsCommit(t, s, b)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out := opsMust(t, "verify", "--data", dir)
	if !strings.Contains(out, "wills 1") {
		t.Errorf("verify:\n%s", out)
	}
	out = opsMust(t, "inspect", "--data", dir)
	for _, w := range []string{"a/# (QoS 1, no local, retain as published, id 7)", "[session expiry never]", "[session expiry 90s]",
		"[will on gone/v5 (QoS 1, 3 bytes, retained, delay 30s)]", "2030-01-02 03:04:05"} {
		if !strings.Contains(out, w) {
			t.Errorf("inspect lacks %q:\n%s", w, out)
		}
	}
}

// verify and inspect of a stopped store show the entries of a shared subscription group's queue
// that members hold (they answered PUBREC), and by whom.
func TestVerifyInspectShowHolders(t *testing.T) {
	dir := t.TempDir()
	s := opsOpen(t, dir)
	const group = "\x00$share/g/t"
	b := &persist.Batch{}
	b.PutSession(group, persist.SessionRecord{ProtocolLevel: 5})
	opsCommit(t, s, b)
	opsEnqueue(t, s, "t", 0, 4, group)
	q, err := s.ReadQueue(group, 0, 10)
	if err != nil || len(q) != 4 {
		t.Fatalf("ReadQueue = %v, %v", q, err)
	}
	b = &persist.Batch{}
	b.Hold(group, q[0].Seq, persist.Released, 1, "w 2")
	b.Hold(group, q[1].Seq, persist.Released, 2, "w1")
	b.Hold(group, q[2].Seq, persist.Released, 3, "w 2")
	b.SetQueueState(group, q[3].Seq, persist.Sent, 4)
	opsCommit(t, s, b)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if out := opsMust(t, "verify", "--data", dir); !strings.Contains(out, "in flight 4 (3 held by shared subscription members)") ||
		!strings.Contains(out, "OK: consistent") {
		t.Errorf("verify:\n%s", out)
	}
	if out := opsMust(t, "inspect", "--data", dir); !strings.Contains(out, `[3 held by shared subscription members: "w 2" (2), w1 (1)]`) ||
		!strings.Contains(out, "$share/g/t (shared group queue)") {
		t.Errorf("inspect:\n%s", out)
	}
	si := opsSession(t, opsInventory(t, opsMust(t, "inspect", "--data", dir, "--json")), group)
	want := []persist.HeldInfo{{Seq: q[0].Seq, PacketID: 1, Holder: "w 2"}, {Seq: q[1].Seq, PacketID: 2, Holder: "w1"}, {Seq: q[2].Seq, PacketID: 3, Holder: "w 2"}}
	if si.Inflight != 4 || !slices.Equal(si.Held, want) {
		t.Errorf("inspect --json: group %+v, want held %+v", si, want)
	}
}

// inspectStore writes a stopped store of five sessions (three users, protocols 3.1, 3.1.1 and 5,
// queues of 0 to 3 messages, one connected when it stopped) and retained messages.
func inspectStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s := opsOpen(t, dir)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := &persist.Batch{}
	for _, r := range []struct {
		id, user string
		level    byte
		off      time.Duration // offline since at+off; 0: connected
	}{
		{"alpha", "alice", 3, time.Minute},
		{"beta", "bob", 4, 2 * time.Minute},
		{"gamma", "alice", 5, 0},
		{"delta", "", 4, 3 * time.Minute},
		{"eps", "Alicia", 5, 4 * time.Minute},
	} {
		rec := persist.SessionRecord{ProtocolLevel: r.level, HasOwner: true, Username: r.user, Anonymous: r.user == ""}
		if r.off != 0 {
			rec.DisconnectedAt = at.Add(r.off)
		}
		b.PutSession(r.id, rec)
		b.PutSubscription(r.id, persist.Subscription{Filter: r.id + "/#", SubOptions: persist.SubOptions{QoS: 1}})
	}
	for _, topic := range []string{"a", "a/b", "a/b/c", "a/x/y", "z", "$x/y"} {
		b.PutRetained(&persist.Message{Topic: topic, Payload: []byte(topic), QoS: 1})
	}
	opsCommit(t, s, b)
	opsEnqueue(t, s, "beta", 0, 3, "beta")
	opsEnqueue(t, s, "delta", 0, 1, "delta")
	opsEnqueue(t, s, "alpha", 0, 2, "alpha")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// inspectPage decodes inspect's --json page, which must have the API's shape exactly.
func inspectPage(t *testing.T, js string) (inventory.Page, []string) {
	t.Helper()
	var p inventory.Page
	dec := json.NewDecoder(strings.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, js)
	}
	ids := make([]string, len(p.Sessions))
	for i, s := range p.Sessions {
		ids[i] = s.ClientID
	}
	return p, ids
}

// The console's filters, sorts and paging on a stopped store.
func TestInspectFiltersStoppedStore(t *testing.T) {
	dir := inspectStore(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--sort", "client_id"}, []string{"alpha", "beta", "delta", "eps", "gamma"}},
		{[]string{"--client", "ET"}, []string{"beta"}},
		{[]string{"--user", "ALI"}, []string{"alpha", "eps", "gamma"}},
		{[]string{"--online=true"}, []string{"gamma"}},
		{[]string{"--online", "false", "--protocol", "3.1.1"}, []string{"beta", "delta"}},
		{[]string{"--protocol", "3.1"}, []string{"alpha"}},
		{[]string{"--min-queued", "2"}, []string{"alpha", "beta"}},
		{[]string{"--sort", "queued", "--desc"}, []string{"beta", "alpha", "delta", "gamma", "eps"}},
		{[]string{"--sort", "user"}, []string{"delta", "eps", "alpha", "gamma", "beta"}},
		{[]string{"--sort", "last_seen", "--desc", "--limit", "2"}, []string{"eps", "delta"}},
		{[]string{"--sort", "last_seen", "--offset", "1", "--limit", "2"}, []string{"alpha", "beta"}},
		{[]string{"--offset", "9"}, []string{}},
	} {
		p, ids := inspectPage(t, opsMust(t, append([]string{"inspect", "--data", dir, "--json"}, tc.args...)...))
		if !slices.Equal(ids, tc.want) {
			t.Errorf("inspect %q: %q, want %q", tc.args, ids, tc.want)
		}
		if p.All != 5 {
			t.Errorf("inspect %q: all %d, want 5", tc.args, p.All)
		}
	}
	p, _ := inspectPage(t, opsMust(t, "inspect", "--data", dir, "--json", "--user", "alice"))
	if s := p.Sessions[0]; s.ClientID != "alpha" || s.Username != "alice" || s.Protocol != "3.1" || s.Online || s.Queued != 2 ||
		s.QueuedBytes != 2 || s.Subscriptions != 1 || s.LastSeen == nil || p.Total != 2 || p.Limit != inventory.DefaultLimit {
		t.Errorf("alpha's row: %+v of %+v", s, p)
	}

	out := opsMust(t, "inspect", "--data", dir, "--sort", "queued", "--desc", "--limit", "2", "--offset", "1")
	for _, w := range []string{dir + ": sessions 2-3 of 5 that match (5 in all)", "CLIENT ID", "OLDEST QUEUED", "alpha", "delta", "alice", "offline since"} {
		if !strings.Contains(out, w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "beta") || strings.Contains(out, "RETAINED") {
		t.Errorf("table holds more than the page:\n%s", out)
	}
	if out := opsMust(t, "inspect", "--data", dir, "--client", "nobody"); !strings.Contains(out, "no sessions from row 1 on: 0 match of 5") {
		t.Errorf("no match:\n%s", out)
	}
}

// --retained-prefix sums the retained messages as GET /api/retained does: by the next level,
// without $ topics unless the prefix is one.
func TestInspectRetainedPrefix(t *testing.T) {
	dir := inspectStore(t)
	for prefix, want := range map[string]inventory.Retained{
		"": {Count: 5, Bytes: 1 + 3 + 5 + 5 + 1, Children: []inventory.RetainedChild{
			{Topic: "a", Count: 4, Bytes: 14, Leaf: true}, {Topic: "z", Count: 1, Bytes: 1, Leaf: true}}},
		"a": {Prefix: "a", Count: 4, Bytes: 14, Children: []inventory.RetainedChild{
			{Topic: "a/b", Count: 2, Bytes: 8, Leaf: true}, {Topic: "a/x", Count: 1, Bytes: 5}}},
		"$x":    {Prefix: "$x", Count: 1, Bytes: 4, Children: []inventory.RetainedChild{{Topic: "$x/y", Count: 1, Bytes: 4, Leaf: true}}},
		"a/b/c": {Prefix: "a/b/c", Count: 1, Bytes: 5, Children: []inventory.RetainedChild{}},
	} {
		var got inventory.Retained
		js := opsMust(t, "inspect", "--data", dir, "--json", "--retained-prefix", prefix)
		dec := json.NewDecoder(strings.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("--retained-prefix %q: %v\n%s", prefix, err, js)
		}
		if got.Prefix != want.Prefix || got.Count != want.Count || got.Bytes != want.Bytes || !slices.Equal(got.Children, want.Children) {
			t.Errorf("--retained-prefix %q:\n got %+v\nwant %+v", prefix, got, want)
		}
	}
	out := opsMust(t, "inspect", "--data", dir, "--retained-prefix", "a")
	for _, w := range []string{"retained messages on a and under: 4 (14 B)", "a/b  ", "a/x  ", "yes", "no"} {
		if !strings.Contains(out, w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}
	// Both at once: the page, then the sum.
	js := opsMust(t, "inspect", "--data", dir, "--json", "--retained-prefix", "z", "--min-queued", "3")
	var both struct {
		Sessions inventory.Page     `json:"sessions"`
		Retained inventory.Retained `json:"retained"`
	}
	if err := json.Unmarshal([]byte(js), &both); err != nil || both.Sessions.Total != 1 || both.Retained.Count != 1 {
		t.Errorf("page and sum: %v %+v", err, both)
	}
}

// Bad values are usage errors (exit 2) that name the flag; without a filter the output is the
// inventory as before.
func TestInspectFilterErrors(t *testing.T) {
	dir := inspectStore(t)
	for _, tc := range []struct{ args []string }{
		{[]string{"--online", "maybe"}},
		{[]string{"--protocol", "4"}},
		{[]string{"--min-queued", "-1"}},
		{[]string{"--sort", "colour"}},
		{[]string{"--limit", "0"}},
		{[]string{"--limit", "1001"}},
		{[]string{"--offset", "x"}},
		{[]string{"--retained-prefix", "a/"}},
		{[]string{"--retained-prefix", "a/+"}},
	} {
		opsFail(t, 2, []string{"inspect: " + tc.args[0] + ": "}, append([]string{"inspect", "--data", dir}, tc.args...)...)
	}
	if inv := opsInventory(t, opsMust(t, "inspect", "--data", dir, "--json")); len(inv.Sessions) != 5 || len(inv.Retained) != 6 {
		t.Errorf("inspect --json without filters: %+v", inv)
	}
}

// With -c the filters go to the running broker's GET /api/sessions as the API's parameters, with
// the token; the API's refusal is the command's error.
func TestInspectFiltersAskTheAPI(t *testing.T) {
	var asked []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r)
		switch r.URL.Path {
		case "/api/sessions":
			if r.URL.Query().Get("client") == "bad" {
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(`{"error":"client: what the broker says"}`))
				return
			}
			w.Write([]byte(`{"total":7,"all":9,"offset":2,"limit":1,"sessions":[{"client_id":"c1","kind":"client","online":true,"protocol":"5","persistent":true,"subscriptions":1,"queued":4,"queued_bytes":40,"inflight":1}]}`))
		case "/api/retained":
			w.Write([]byte(`{"prefix":"a","count":1,"bytes":3,"children":[{"topic":"a/b","count":1,"bytes":3,"leaf":true}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cfg := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[admin]\naddress = %q\ntoken = \"tok\"\n", srv.Listener.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	out := opsMust(t, "inspect", "-c", cfg, "--user", "Al i", "--online=false", "--protocol", "5", "--min-queued", "3",
		"--sort", "queued", "--desc", "--offset", "2", "--limit", "1", "--retained-prefix", "a")
	for _, w := range []string{"sessions 3-3 of 7 that match (9 in all)", "c1", "connected", "retained messages on a and under: 1 (3 B)", "a/b"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if len(asked) != 2 {
		t.Fatalf("asked %d requests, want 2", len(asked))
	}
	no := false
	want := inventory.Query{User: "Al i", Online: &no, Protocol: "5", MinQueued: 3, Sort: "queued", Desc: true, Offset: 2, Limit: 1}
	if q, err := inventory.ParseQuery(asked[0].URL.Query()); err != nil || !reflect.DeepEqual(q, want) || asked[0].URL.Path != "/api/sessions" {
		t.Errorf("asked %s: %+v, %v; want %+v", asked[0].URL, q, err, want)
	}
	if asked[1].URL.Path != "/api/retained" || asked[1].URL.Query().Get("prefix") != "a" {
		t.Errorf("asked %s, want /api/retained?prefix=a", asked[1].URL)
	}
	for _, r := range asked {
		if r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("%s: Authorization %q", r.URL, r.Header.Get("Authorization"))
		}
	}
	opsFail(t, 1, []string{"400 Bad Request", "client: what the broker says"}, "inspect", "-c", cfg, "--client", "bad")
}
