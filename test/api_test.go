package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/inventory"
	"github.com/holdfast/holdfast/persist"
)

// Black-box tests of the console's JSON API under /api/ (admin/api.go): status codes, JSON
// shapes, paging, filters and sorts over sessions real clients made, the session actions, the
// token and cross-site guards, retained messages by prefix, top topics and the plots' series.

// apiClient asks one broker's admin listener.
type apiClient struct {
	t     *testing.T
	base  string // http://host:port
	token string
}

// apiStart starts a broker with an admin listener (token opsToken) and returns it with a client.
func apiStart(t *testing.T, bc BrokerConfig) (*Broker, apiClient) {
	t.Helper()
	bc.Extra = opsAdminExtra("0s") + bc.Extra
	b := StartBroker(t, bc)
	return b, apiClient{t, "http://" + opsAdminAddr(t, b), opsToken}
}

// do sends a request with the token and the extra headers (name, value pairs) and returns the
// status and the body.
func (a apiClient) do(method, path string, headers ...string) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	if resp.StatusCode != http.StatusUnauthorized && resp.Header.Get("Content-Type") != "application/json" {
		a.t.Errorf("%s %s: %d with Content-Type %q, want application/json", method, path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, body
}

// get asks path, fails unless the answer is 200, and decodes it into v, which must name every
// field the answer has: the JSON shape is the API's contract with scripts.
func (a apiClient) get(path string, v any) {
	a.t.Helper()
	a.call(http.MethodGet, path, v)
}

func (a apiClient) call(method, path string, v any) {
	a.t.Helper()
	code, body := a.do(method, path)
	if code != http.StatusOK {
		a.t.Fatalf("%s %s: %d %s", method, path, code, body)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		a.t.Fatalf("%s %s: %v in %s", method, path, err, body)
	}
}

// keys fails unless the JSON object at path has every key.
func (a apiClient) keys(path string, keys ...string) map[string]json.RawMessage {
	a.t.Helper()
	var m map[string]json.RawMessage
	a.get(path, &m)
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			a.t.Errorf("GET %s: no %q in %v", path, k, slices.Sorted(maps.Keys(m)))
		}
	}
	return m
}

// refused fails unless method path answers code with a JSON error that starts with prefix (the
// parameter's name and a colon, for a 400).
func (a apiClient) refused(method, path string, code int, prefix string) {
	a.t.Helper()
	got, body := a.do(method, path)
	var e struct {
		Error string `json:"error"`
	}
	if got != code || json.Unmarshal(body, &e) != nil || !strings.HasPrefix(e.Error, prefix) {
		a.t.Errorf("%s %s: %d %s, want %d with an error starting %q", method, path, got, body, code, prefix)
	}
}

// page asks for a page of sessions and returns it with its client ids.
func (a apiClient) page(query string) (inventory.Page, []string) {
	a.t.Helper()
	var p inventory.Page
	a.get("/api/sessions?"+query, &p)
	ids := make([]string, len(p.Sessions))
	for i, s := range p.Sessions {
		ids[i] = s.ClientID
	}
	return p, ids
}

func (a apiClient) session(id string) inventory.Detail {
	a.t.Helper()
	var d inventory.Detail
	a.get("/api/session?id="+url.QueryEscape(id), &d)
	return d
}

// apiPublish publishes QoS 1 messages of the given sizes on topic from a clean session, each
// acknowledged before the next, and disconnects.
func apiPublish(t *testing.T, addr, topic string, retain bool, sizes ...int) {
	t.Helper()
	payloads := make([][]byte, len(sizes))
	for i, n := range sizes {
		payloads[i] = bytes.Repeat([]byte{'x'}, n)
	}
	opsPublish(t, addr, topic, retain, payloads...)
}

// apiConnect5 connects an MQTT 5 client, persistent for five minutes.
func apiConnect5(t *testing.T, addr, id, user, password string) *mqtttest.Client {
	t.Helper()
	cp := &codec.Connect{ClientID: id, KeepAlive: 60, Props: &codec.Properties{SessionExpiry: 300}}
	if user != "" {
		cp.Username, cp.HasUsername, cp.Password, cp.HasPassword = user, true, []byte(password), true
	}
	c, _ := mustConnect5(t, addr, cp)
	return c
}

// Sessions made by real clients (protocols 3.1, 3.1.1 and 5, users, queue depths, online and
// offline) through every filter, every sort key both ways, and paging.
func TestAPISessionsFiltersSortsPaging(t *testing.T) {
	t.Parallel()
	pw := filepath.Join(t.TempDir(), "passwd")
	secSetPassword(t, pw, "alice", "a-pass")
	secSetPassword(t, pw, "bob", "b-pass")
	b, api := apiStart(t, BrokerConfig{MQTT5: true, Extra: fmt.Sprintf("[auth]\npassword_file = %q\nallow_anonymous = true\n", pw)})

	// Offline persistent sessions go away in this order (last_seen), each subscribed to its
	// own topic at QoS 1.
	for _, cr := range []secCreds{
		{id: "s31", user: "alice", password: "a-pass", level: codec.Level31, persistent: true},
		{id: "s311", user: "bob", password: "b-pass", persistent: true},
		{id: "anon", persistent: true},
	} {
		c := secMustConnect(t, b, cr)
		secSubscribe(t, c, 1, []byte{1}, secSub("q/"+cr.id, 1))
		c.Send(&codec.Disconnect{})
		c.ExpectClosed()
	}
	// Queued in this order (oldest_queued), with counts and bytes in different orders.
	apiPublish(t, b.Addr, "q/s311", false, 100)
	apiPublish(t, b.Addr, "q/anon", false, 1, 1)
	apiPublish(t, b.Addr, "q/s31", false, 10, 10, 10)
	s5 := apiConnect5(t, b.Addr, "s5", "alice", "a-pass")
	s5.Send(&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: "q/s5", QoS: 1}}})
	mqtttest.Expect[*codec.Suback](s5)
	live := mqtttest.Dial(t, b.Addr)
	live.MustConnect("live", true)

	var p inventory.Page
	mqtttest.Eventually(t, 10*time.Second, "the five sessions, the publishers' gone", func() bool {
		p, _ = api.page("")
		return p.All == 5
	})
	rows := make(map[string]inventory.Session)
	for _, s := range p.Sessions {
		rows[s.ClientID] = s
	}
	for id, want := range map[string]inventory.Session{
		"s31":  {ClientID: "s31", Kind: "client", Username: "alice", Protocol: "3.1", Persistent: true, Subscriptions: 1, Queued: 3, QueuedBytes: 30},
		"s311": {ClientID: "s311", Kind: "client", Username: "bob", Protocol: "3.1.1", Persistent: true, Subscriptions: 1, Queued: 1, QueuedBytes: 100},
		"anon": {ClientID: "anon", Kind: "client", Protocol: "3.1.1", Persistent: true, Subscriptions: 1, Queued: 2, QueuedBytes: 2},
		"s5":   {ClientID: "s5", Kind: "client", Username: "alice", Online: true, Protocol: "5", Persistent: true, Subscriptions: 1, Listener: "tcp " + b.Addr, Remote: s5.Conn.LocalAddr().String()},
		"live": {ClientID: "live", Kind: "client", Online: true, Protocol: "3.1.1", Listener: "tcp " + b.Addr, Remote: live.Conn.LocalAddr().String()},
	} {
		got := rows[id]
		if (got.OldestQueued != nil) != (want.Queued > 0) || got.LastSeen == nil {
			t.Errorf("%s: oldest_queued %v, last_seen %v", id, got.OldestQueued, got.LastSeen)
		}
		got.OldestQueued, got.LastSeen = nil, nil
		if got != want {
			t.Errorf("row %s:\n got %+v\nwant %+v", id, got, want)
		}
	}

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"anon", "live", "s31", "s311", "s5"}},
		{"client=S3", []string{"s31", "s311"}},
		{"user=ALI", []string{"s31", "s5"}},
		{"user=bob&client=s", []string{"s311"}},
		{"online=true", []string{"live", "s5"}},
		{"online=false", []string{"anon", "s31", "s311"}},
		{"protocol=3.1", []string{"s31"}},
		{"protocol=3.1.1", []string{"anon", "live", "s311"}},
		{"protocol=5", []string{"s5"}},
		{"min_queued=2", []string{"anon", "s31"}},
		{"min_queued=4", []string{}},
		{"sort=client_id&order=desc", []string{"s5", "s311", "s31", "live", "anon"}},
		{"sort=user", []string{"anon", "live", "s31", "s5", "s311"}},
		{"sort=user&order=desc", []string{"s311", "s5", "s31", "live", "anon"}},
		{"sort=online", []string{"anon", "s31", "s311", "live", "s5"}},
		{"sort=protocol", []string{"s31", "anon", "live", "s311", "s5"}},
		{"sort=subscriptions", []string{"live", "anon", "s31", "s311", "s5"}},
		{"sort=queued", []string{"live", "s5", "s311", "anon", "s31"}},
		{"sort=queued&order=desc", []string{"s31", "anon", "s311", "s5", "live"}},
		{"sort=queued_bytes", []string{"live", "s5", "anon", "s31", "s311"}},
		{"sort=oldest_queued", []string{"live", "s5", "s311", "anon", "s31"}},
		{"sort=inflight", []string{"anon", "live", "s31", "s311", "s5"}},
		{"sort=last_seen", []string{"s31", "s311", "anon", "live", "s5"}},
		{"sort=last_seen&order=desc", []string{"s5", "live", "anon", "s311", "s31"}},
		{"online=false&sort=queued&order=desc&limit=2", []string{"s31", "anon"}},
	} {
		p, ids := api.page(tc.query)
		if !slices.Equal(ids, tc.want) {
			t.Errorf("sessions?%s: %q, want %q", tc.query, ids, tc.want)
		}
		if p.All != 5 || p.Total < len(ids) || !strings.Contains(tc.query, "limit=") && (p.Total != len(ids) || p.Limit != inventory.DefaultLimit) {
			t.Errorf("sessions?%s: total %d, all %d, limit %d", tc.query, p.Total, p.All, p.Limit)
		}
	}

	// Pages: total counts what passes the filters, all every row; pages of ties (sort by
	// subscriptions: four rows hold one) put together are the whole list, the same every time.
	_, whole := api.page("sort=subscriptions")
	for _, limit := range []int{1, 2, 3} {
		var joined []string
		for off := 0; off < 7; off += limit {
			p, ids := api.page(fmt.Sprintf("sort=subscriptions&offset=%d&limit=%d", off, limit))
			if p.Total != 5 || p.All != 5 || p.Offset != off || p.Limit != limit || len(ids) > limit {
				t.Errorf("offset %d limit %d: total %d all %d offset %d limit %d, %d rows", off, limit, p.Total, p.All, p.Offset, p.Limit, len(ids))
			}
			joined = append(joined, ids...)
		}
		if !slices.Equal(joined, whole) {
			t.Errorf("pages of %d: %q, want %q", limit, joined, whole)
		}
	}
	if p, ids := api.page("online=false&offset=1&limit=1"); p.Total != 3 || p.All != 5 || !slices.Equal(ids, []string{"s31"}) {
		t.Errorf("filtered page: %+v", p)
	}
	// Past the end: an empty list, not null.
	raw := api.keys("/api/sessions?offset=5", "total", "all", "offset", "limit", "sessions")
	if string(raw["sessions"]) != "[]" || string(raw["total"]) != "5" {
		t.Errorf("offset past the end: %s", raw)
	}
	// A row's keys as scripts read them: what is unknown or empty is left out.
	var shape struct {
		Sessions []map[string]json.RawMessage `json:"sessions"`
		Total    int                          `json:"total"`
		All      int                          `json:"all"`
		Offset   int                          `json:"offset"`
		Limit    int                          `json:"limit"`
	}
	api.get("/api/sessions?protocol=3.1", &shape)
	if len(shape.Sessions) != 1 {
		t.Fatalf("protocol=3.1: %+v", shape)
	}
	for _, k := range []string{"client_id", "kind", "username", "online", "protocol", "persistent", "subscriptions",
		"queued", "queued_bytes", "oldest_queued", "inflight", "last_seen"} {
		if _, ok := shape.Sessions[0][k]; !ok {
			t.Errorf("row of s31 lacks %q: %v", k, shape.Sessions[0])
		}
	}
	for _, k := range []string{"listener", "remote"} {
		if _, ok := shape.Sessions[0][k]; ok {
			t.Errorf("offline row of s31 has %q", k)
		}
	}

	// The overview counts the same sessions and connections.
	var ov map[string]json.RawMessage
	api.get("/api/overview", &ov)
	var sessions struct{ Online, Offline int }
	var conns []struct {
		Listener, Protocol string
		Count              int
	}
	json.Unmarshal(ov["sessions"], &sessions)
	json.Unmarshal(ov["connections"], &conns)
	if sessions.Online != 2 || sessions.Offline != 3 {
		t.Errorf("overview sessions %s, want 2 online, 3 offline", ov["sessions"])
	}
	if !slices.Contains(conns, struct {
		Listener, Protocol string
		Count              int
	}{"tcp " + b.Addr, "5", 1}) {
		t.Errorf("overview connections %s, want one MQTT 5 on tcp %s", ov["connections"], b.Addr)
	}
	api.keys("/api/overview", "version", "started", "uptime_seconds", "durability", "ready", "connections", "sessions",
		"subscriptions", "retained", "queued_messages", "queued_bytes", "inflight", "store", "dropped", "refused")
}

// Every bad parameter is a 400 whose JSON error names it; an unknown session is a 404, an
// unknown endpoint too.
func TestAPIBadRequests(t *testing.T) {
	t.Parallel()
	_, api := apiStart(t, BrokerConfig{})
	for _, tc := range []struct{ method, path, param string }{
		{"GET", "/api/sessions?online=maybe", "online"},
		{"GET", "/api/sessions?protocol=4", "protocol"},
		{"GET", "/api/sessions?min_queued=-1", "min_queued"},
		{"GET", "/api/sessions?sort=color", "sort"},
		{"GET", "/api/sessions?order=sideways", "order"},
		{"GET", "/api/sessions?offset=x", "offset"},
		{"GET", "/api/sessions?limit=0", "limit"},
		{"GET", "/api/sessions?limit=1001", "limit"},
		{"GET", "/api/session", "id"},
		{"POST", "/api/session/disconnect", "id"},
		{"DELETE", "/api/session", "id"},
		{"GET", "/api/retained?prefix=a/", "prefix"},
		{"GET", "/api/retained?prefix=a/%2B", "prefix"},
		{"GET", "/api/retained?prefix=%23", "prefix"},
		{"GET", "/api/topics/top?n=0", "n"},
		{"GET", "/api/topics/top?n=1001", "n"},
		{"GET", "/api/topics/top?n=many", "n"},
		{"GET", "/api/series?since=yesterday", "since"},
	} {
		api.refused(tc.method, tc.path, http.StatusBadRequest, tc.param+": ")
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/session?id=nobody"},
		{"GET", "/api/session?id="},
		{"POST", "/api/session/disconnect?id=nobody"},
		{"DELETE", "/api/session?id=nobody"},
	} {
		api.refused(tc.method, tc.path, http.StatusNotFound, "no such session")
	}
	api.refused("GET", "/api/nothing", http.StatusNotFound, "GET /api/nothing: no such endpoint")
	api.refused("PUT", "/api/session?id=x", http.StatusNotFound, "PUT /api/session: no such endpoint")
}

// One session: its subscriptions sorted, its queue head in order with each entry's state (a
// QoS 1 message in flight to a connected client that does not acknowledge it is "sent", the
// one past max_inflight "queued"), its will.
func TestAPISessionDetail(t *testing.T) {
	t.Parallel()
	b, api := apiStart(t, BrokerConfig{Extra: "[limits]\nmax_inflight = 2\n"})
	c := mqtttest.Dial(t, b.Addr)
	ack := c.Connect(&codec.Connect{ClientID: "det", KeepAlive: 60, Will: &codec.Will{Topic: "gone/det", Payload: []byte("bye!"), QoS: 1}})
	if ack.ReturnCode != codec.Accepted {
		t.Fatalf("CONNACK %v", ack.ReturnCode)
	}
	if rc := c.Subscribe(1, 1, "d/1", "d/0"); !bytes.Equal(rc, []byte{1, 1}) {
		t.Fatalf("SUBACK %v", rc)
	}
	start := time.Now()
	apiPublish(t, b.Addr, "d/1", false, 1, 22, 333)
	var pids []uint16
	for range 2 {
		pids = append(pids, mqtttest.Expect[*codec.Publish](c).PacketID) // not acknowledged
	}
	d := api.session("det")
	if d.ClientID != "det" || !d.Online || !d.Persistent || d.Protocol != "3.1.1" || d.Queued != 3 || d.QueuedBytes != 356 ||
		d.Inflight != 2 || d.Subscriptions != 2 || d.Remote != c.Conn.LocalAddr().String() {
		t.Errorf("session det: %+v", d.Session)
	}
	if want := []inventory.Subscription{{Filter: "d/0", QoS: 1}, {Filter: "d/1", QoS: 1}}; !slices.Equal(d.SubscriptionList, want) {
		t.Errorf("subscriptions %+v, want %+v", d.SubscriptionList, want)
	}
	if d.Will == nil || *d.Will != (persist.WillInfo{Topic: "gone/det", QoS: 1, PayloadBytes: 4}) {
		t.Errorf("will %+v", d.Will)
	}
	if len(d.QueueHead) != 3 {
		t.Fatalf("queue head %+v, want 3 entries", d.QueueHead)
	}
	for i, want := range []struct {
		bytes int
		state string
		pid   uint16
	}{{1, "sent", pids[0]}, {22, "sent", pids[1]}, {333, "queued", 0}} {
		e := d.QueueHead[i]
		if e.Topic != "d/1" || e.QoS != 1 || e.Bytes != want.bytes || e.State != want.state || e.PacketID != want.pid ||
			i > 0 && e.Seq <= d.QueueHead[i-1].Seq || e.Arrived == nil || e.Arrived.Before(start.Add(-time.Second)) {
			t.Errorf("queue head [%d] %+v, want %d bytes %s with packet id %d", i, e, want.bytes, want.state, want.pid)
		}
	}
	// Acknowledged, the first leaves and the third goes out.
	c.Send(&codec.Puback{PacketID: pids[0]})
	third := mqtttest.Expect[*codec.Publish](c)
	d = api.session("det")
	if len(d.QueueHead) != 2 || d.QueueHead[0].State != "sent" || d.QueueHead[1].State != "sent" ||
		d.QueueHead[1].PacketID != third.PacketID || d.QueueHead[1].Bytes != 333 {
		t.Errorf("after PUBACK, queue head %+v", d.QueueHead)
	}
	raw := api.keys("/api/session?id=det", "client_id", "subscriptions_list", "queue_head", "will")
	if _, ok := raw["expiry_seconds"]; ok {
		t.Errorf("a 3.1.1 session has expiry_seconds: %s", raw["expiry_seconds"])
	}
}

// Messages sent to a persistent session's last connection and not acknowledged are its in-flight
// count while it is offline, the same to the running broker, to inspect of the stopped store, and
// after a restart: they are on disk in their sent state, to be sent again first.
func TestAPIInflightOfAnOfflineSession(t *testing.T) {
	t.Parallel()
	addr := bridgeFreeAddr(t)
	b := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf("[admin]\naddress = %q\ntoken = %q\nsys_interval = \"0s\"\n", addr, opsToken)})
	api := apiClient{t, "http://" + opsAdminAddr(t, b), opsToken}
	c := mqtttest.Dial(t, b.Addr)
	c.MustConnect("away", false)
	if rc := c.Subscribe(1, 1, "w/#"); !bytes.Equal(rc, []byte{1}) {
		t.Fatalf("SUBACK %v", rc)
	}
	apiPublish(t, b.Addr, "w/1", false, 1, 2, 3)
	for range 3 {
		mqtttest.Expect[*codec.Publish](c) // not acknowledged
	}
	c.Conn.Close()
	mqtttest.Eventually(t, 10*time.Second, "away offline", func() bool { return !api.session("away").Online })
	if d := api.session("away"); d.Queued != 3 || d.Inflight != 3 {
		t.Errorf("offline: queued %d, in flight %d; want 3 and 3", d.Queued, d.Inflight)
	}

	b.Stop()
	var stopped struct {
		Sessions []inventory.Session `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(opsMustCmd(t, "inspect", "--data", b.Dir, "--json", "--sort", "client_id")), &stopped); err != nil {
		t.Fatal(err)
	}
	if len(stopped.Sessions) != 1 || stopped.Sessions[0].Queued != 3 || stopped.Sessions[0].Inflight != 3 {
		t.Errorf("inspect of the stopped store: %+v; want away with 3 queued, 3 in flight", stopped.Sessions)
	}

	b.Start()
	mqtttest.Eventually(t, 20*time.Second, "the admin listener after the restart", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if d := api.session("away"); d.Queued != 3 || d.Inflight != 3 {
		t.Errorf("restarted: queued %d, in flight %d; want 3 and 3", d.Queued, d.Inflight)
	}
	c = mqtttest.Dial(t, b.Addr)
	c.MustConnect("away", false)
	for range 3 {
		if p := mqtttest.Expect[*codec.Publish](c); !p.Dup {
			t.Errorf("resent %q without DUP", p.Payload)
		}
	}
	if d := api.session("away"); d.Inflight != 3 {
		t.Errorf("reconnected: in flight %d, want the 3 sent again", d.Inflight)
	}
}

// Disconnect closes the client's socket (MQTT 5: after DISCONNECT 0x98, Administrative action);
// a persistent session then stays, offline, and disconnecting it again is a 409.
func TestAPIDisconnect(t *testing.T) {
	t.Parallel()
	b, api := apiStart(t, BrokerConfig{MQTT5: true})
	v5 := apiConnect5(t, b.Addr, "v5", "", "")
	v3 := mqtttest.Dial(t, b.Addr)
	v3.MustConnect("v3", true)

	var ok map[string]bool
	api.call(http.MethodPost, "/api/session/disconnect?id=v5", &ok)
	if !ok["disconnected"] {
		t.Errorf("disconnect v5: %v", ok)
	}
	got, err := v5.Closed(mqtttest.Timeout, nil)
	if err != nil {
		t.Fatalf("v5 after disconnect: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("v5 received %d packets before the close, want DISCONNECT 0x98: %v", len(got), got)
	}
	if dis, ok := got[0].(*codec.Disconnect); !ok || dis.Reason != codec.ReasonAdministrativeAction {
		t.Fatalf("v5 received %s, want DISCONNECT 0x98", mqtttest.String(got[0]))
	}
	if d := api.session("v5"); d.Online || !d.Persistent || d.ExpirySeconds == nil || *d.ExpirySeconds != 300 {
		t.Errorf("v5 after disconnect: %+v (expiry %v)", d.Session, d.ExpirySeconds)
	}
	api.refused(http.MethodPost, "/api/session/disconnect?id=v5", http.StatusConflict, "the session has no connection")

	// A 3.1.1 client gets no packet: its socket closes, and its clean session ends with it.
	api.call(http.MethodPost, "/api/session/disconnect?id=v3", &ok)
	if got := v3.ExpectClosed(); len(got) != 0 {
		t.Errorf("v3 received %v before the close", got)
	}
	mqtttest.Eventually(t, 5*time.Second, "v3's clean session to end", func() bool {
		code, _ := api.do(http.MethodGet, "/api/session?id=v3")
		return code == http.StatusNotFound
	})
	api.refused(http.MethodPost, "/api/session/disconnect?id=v3", http.StatusNotFound, "no such session")
}

// DELETE removes a session durably: its connection first if it has one; after a restart it is
// still gone and its client finds no session.
func TestAPIDeleteSession(t *testing.T) {
	t.Parallel()
	// The admin listener keeps its port across the restart.
	addr := bridgeFreeAddr(t)
	b := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf("[admin]\naddress = %q\ntoken = %q\nsys_interval = \"0s\"\n", addr, opsToken)})
	api := apiClient{t, "http://" + opsAdminAddr(t, b), opsToken}
	opsPersistentSessions(t, b.Addr, "del/#", "gone", "kept")
	apiPublish(t, b.Addr, "del/x", false, 5, 5)
	on := mqtttest.Dial(t, b.Addr)
	on.MustConnect("online", false)
	on.Subscribe(1, 1, "del/#")
	// A shared subscription group's queue is not a client's session: it is refused.
	sh := mqtttest.Dial(t, b.Addr)
	sh.MustConnect("member", true)
	sh.Subscribe(1, 1, "$share/g/del/#")

	if d := api.session("gone"); d.Queued != 2 || d.Subscriptions != 1 {
		t.Fatalf("gone before DELETE: %+v", d.Session)
	}
	var ok map[string]bool
	api.call(http.MethodDelete, "/api/session?id=gone", &ok)
	if !ok["deleted"] {
		t.Errorf("DELETE gone: %v", ok)
	}
	api.refused(http.MethodGet, "/api/session?id=gone", http.StatusNotFound, "no such session")
	api.refused(http.MethodDelete, "/api/session?id=gone", http.StatusNotFound, "no such session")
	api.call(http.MethodDelete, "/api/session?id=online", &ok)
	on.ExpectClosed()
	api.refused(http.MethodGet, "/api/session?id=online", http.StatusNotFound, "no such session")

	group := ""
	_, ids := api.page("client=$share/g/")
	if len(ids) == 1 {
		group = ids[0]
	} else {
		t.Errorf("the group's row: %q", ids)
	}
	api.refused(http.MethodDelete, "/api/session?id="+url.QueryEscape(group), http.StatusConflict, "not a client's session")
	if _, ids := api.page(""); !slices.Equal(ids, []string{group, "kept", "member"}) {
		t.Errorf("sessions after DELETE: %q", ids)
	}

	b.Stop()
	b.Start()
	mqtttest.Eventually(t, 20*time.Second, "the admin listener after the restart", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	for _, id := range []string{"gone", "online"} {
		api.refused(http.MethodGet, "/api/session?id="+id, http.StatusNotFound, "no such session")
	}
	if d := api.session("kept"); d.Queued != 2 {
		t.Errorf("kept after the restart: %+v", d.Session)
	}
	c := mqtttest.Dial(t, b.Addr)
	if c.MustConnect("gone", false) {
		t.Errorf("gone reconnecting with clean=false: session present 1")
	}
	if d := api.session("gone"); d.Queued != 0 || d.Subscriptions != 0 {
		t.Errorf("gone, reconnected: %+v", d.Session)
	}
}

// With admin.token set every /api/ endpoint answers 401 without it; POST and DELETE that a page
// of another site makes a browser send are refused (403) even with it, and change nothing.
func TestAPITokenAndCrossSite(t *testing.T) {
	t.Parallel()
	b, api := apiStart(t, BrokerConfig{})
	opsPersistentSessions(t, b.Addr, "x", "victim")
	endpoints := []struct{ method, path string }{
		{"GET", "/api/overview"}, {"GET", "/api/series"}, {"GET", "/api/sessions"}, {"GET", "/api/session?id=victim"},
		{"POST", "/api/session/disconnect?id=victim"}, {"DELETE", "/api/session?id=victim"}, {"GET", "/api/retained"},
		{"GET", "/api/topics/top"}, {"GET", "/api/nothing"},
	}
	for _, token := range []string{"", "wrong"} {
		anon := api
		anon.token = token
		for _, e := range endpoints {
			if code, body := anon.do(e.method, e.path); code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d %s, want 401", e.method, e.path, token, code, body)
			}
		}
	}
	for _, e := range endpoints[:4] {
		if code, body := api.do(e.method, e.path); code != http.StatusOK {
			t.Errorf("%s %s with the token: %d %s", e.method, e.path, code, body)
		}
	}
	host := strings.TrimPrefix(api.base, "http://")
	for _, e := range endpoints[4:6] {
		for _, h := range [][]string{
			{"Sec-Fetch-Site", "cross-site"},
			{"Sec-Fetch-Site", "same-site"},
			{"Origin", "http://evil.example"},
			{"Origin", "http://" + host + ".evil.example"},
			{"Origin", "null"},
			{"Sec-Fetch-Site", "same-origin", "Origin", "http://evil.example"},
		} {
			code, body := api.do(e.method, e.path, h...)
			if code != http.StatusForbidden || !strings.Contains(string(body), `"error":"refused`) {
				t.Errorf("%s %s with %q: %d %s, want 403", e.method, e.path, h, code, body)
			}
		}
	}
	if d := api.session("victim"); d.Subscriptions != 1 {
		t.Fatalf("victim after refused requests: %+v", d.Session)
	}
	// The console's own page says same-origin, with its own Origin.
	if code, body := api.do("DELETE", "/api/session?id=victim", "Sec-Fetch-Site", "same-origin", "Origin", "http://"+host); code != http.StatusOK {
		t.Errorf("same-origin DELETE: %d %s", code, body)
	}
	api.refused("GET", "/api/session?id=victim", http.StatusNotFound, "no such session")
}

// Retained messages by prefix: count and payload bytes at and under it, by the next level, with
// leaf set where a message is on exactly that topic.
func TestAPIRetained(t *testing.T) {
	t.Parallel()
	b, api := apiStart(t, BrokerConfig{})
	for topic, size := range map[string]int{"a": 1, "a/b": 10, "a/b/c": 100, "a/x/y": 1000, "z": 5, "ab": 7} {
		apiPublish(t, b.Addr, topic, true, size)
	}
	check := func(prefix string, want inventory.Retained) {
		t.Helper()
		var got inventory.Retained
		api.get("/api/retained?prefix="+url.QueryEscape(prefix), &got)
		if got.Prefix != want.Prefix || got.Count != want.Count || got.Bytes != want.Bytes || !slices.Equal(got.Children, want.Children) {
			t.Errorf("retained under %q:\n got %+v\nwant %+v", prefix, got, want)
		}
	}
	check("", inventory.Retained{Count: 6, Bytes: 1123, Children: []inventory.RetainedChild{
		{Topic: "a", Count: 4, Bytes: 1111, Leaf: true}, {Topic: "ab", Count: 1, Bytes: 7, Leaf: true}, {Topic: "z", Count: 1, Bytes: 5, Leaf: true},
	}})
	check("a", inventory.Retained{Prefix: "a", Count: 4, Bytes: 1111, Children: []inventory.RetainedChild{
		{Topic: "a/b", Count: 2, Bytes: 110, Leaf: true}, {Topic: "a/x", Count: 1, Bytes: 1000},
	}})
	check("a/b/c", inventory.Retained{Prefix: "a/b/c", Count: 1, Bytes: 100, Children: []inventory.RetainedChild{}})
	check("none", inventory.Retained{Prefix: "none", Children: []inventory.RetainedChild{}})
	if raw := api.keys("/api/retained?prefix=none", "prefix", "count", "bytes", "children"); string(raw["children"]) != "[]" {
		t.Errorf("no children: %s, want []", raw["children"])
	}
	// An empty retained message clears the topic.
	apiPublish(t, b.Addr, "a/b/c", true, 0)
	check("a", inventory.Retained{Prefix: "a", Count: 3, Bytes: 1011, Children: []inventory.RetainedChild{
		{Topic: "a/b", Count: 1, Bytes: 10, Leaf: true}, {Topic: "a/x", Count: 1, Bytes: 1000},
	}})
}

// Top topics: counting starts with the first question; of two topics published at different
// rates the faster comes first.
func TestAPITopTopics(t *testing.T) {
	t.Parallel()
	b, api := apiStart(t, BrokerConfig{})
	type top struct {
		CountingSince time.Time `json:"counting_since"`
		WindowSeconds float64   `json:"window_seconds"`
		Topics        []struct {
			Topic     string  `json:"topic"`
			PerSecond float64 `json:"per_second"`
		} `json:"topics"`
	}
	var first top
	api.get("/api/topics/top", &first)
	if first.CountingSince.IsZero() || first.Topics == nil {
		t.Errorf("top topics before any publish: %+v", first)
	}
	pub := mqtttest.Dial(t, b.Addr)
	pub.MustConnect("pub", true)
	var got top
	mqtttest.Eventually(t, 20*time.Second, "t/fast ahead of t/slow", func() bool {
		for i := range 6 {
			topic := "t/fast"
			if i == 0 {
				topic = "t/slow"
			}
			pub.Send(&codec.Publish{Topic: topic, Payload: []byte("m")})
		}
		pub.Send(&codec.Pingreq{})
		mqtttest.Expect[*codec.Pingresp](pub)
		api.get("/api/topics/top", &got)
		return len(got.Topics) == 2 && got.Topics[0].Topic == "t/fast" && got.Topics[1].Topic == "t/slow" &&
			got.Topics[0].PerSecond > 2*got.Topics[1].PerSecond && got.WindowSeconds > 0
	})
	if !got.CountingSince.Equal(first.CountingSince) {
		t.Errorf("counting since %v, then %v: counting restarted", first.CountingSince, got.CountingSince)
	}
	api.get("/api/topics/top?n=1", &got)
	if len(got.Topics) != 1 || got.Topics[0].Topic != "t/fast" {
		t.Errorf("n=1: %+v", got.Topics)
	}
}

// The series grows a point every 2 s; since= returns only the later ones.
func TestAPISeries(t *testing.T) {
	t.Parallel()
	_, api := apiStart(t, BrokerConfig{})
	type series struct {
		IntervalMs int64                        `json:"interval_ms"`
		Points     []map[string]json.RawMessage `json:"points"`
	}
	var s series
	api.get("/api/series", &s)
	if s.IntervalMs != 2000 || s.Points == nil {
		t.Fatalf("series: %+v", s)
	}
	n := len(s.Points)
	mqtttest.Eventually(t, 10*time.Second, "two more points", func() bool {
		api.get("/api/series", &s)
		return len(s.Points) >= n+2
	})
	ts := make([]int64, len(s.Points))
	for i, p := range s.Points {
		if err := json.Unmarshal(p["t"], &ts[i]); err != nil {
			t.Fatalf("point %d: t %s", i, p["t"])
		}
		for _, k := range []string{"in", "out", "fsync_p50_ms", "fsync_p99_ms", "free_bytes", "store_bytes", "dropped", "refused", "connections", "queued_messages"} {
			if _, ok := p[k]; !ok {
				t.Errorf("point %d lacks %q: %v", i, k, p)
			}
		}
		// The test has asked for the series since the broker started: the queued-messages
		// plot is on.
		if i >= n && string(p["queued_messages"]) == "null" {
			t.Errorf("point %d: queued_messages null while watched", i)
		}
	}
	for i := 1; i < len(ts); i++ {
		if d := ts[i] - ts[i-1]; d < 1500 || d > 2500 {
			t.Errorf("points %d and %d are %d ms apart, want about 2000", i-1, i, d)
		}
	}
	api.get(fmt.Sprintf("/api/series?since=%d", ts[0]), &s)
	if len(s.Points) < len(ts)-1 {
		t.Errorf("since the first point: %d points, want at least %d", len(s.Points), len(ts)-1)
	}
	for _, p := range s.Points {
		var t1 int64
		json.Unmarshal(p["t"], &t1)
		if t1 <= ts[0] {
			t.Errorf("since=%d returned a point at %d", ts[0], t1)
		}
	}
	api.get(fmt.Sprintf("/api/series?since=%d", time.Now().Add(time.Hour).UnixMilli()), &s)
	if s.Points == nil || len(s.Points) != 0 {
		t.Errorf("since an hour ahead: %d points, want [] ", len(s.Points))
	}
}

// holdfast inspect with the console's filters answers alike for a running broker (-c, through
// the API) and, once it stopped, for its data directory (--data).
func TestInspectFiltersRunningAndStopped(t *testing.T) {
	t.Parallel()
	pw := filepath.Join(t.TempDir(), "passwd")
	secSetPassword(t, pw, "alice", "a-pass")
	secSetPassword(t, pw, "bob", "b-pass")
	b, api := apiStart(t, BrokerConfig{Extra: fmt.Sprintf("[auth]\npassword_file = %q\nallow_anonymous = true\n", pw)})
	for i, cr := range []secCreds{
		{id: "s31", user: "alice", password: "a-pass", level: codec.Level31, persistent: true},
		{id: "s311", user: "bob", password: "b-pass", persistent: true},
		{id: "anon", persistent: true},
		{id: "alice-2", user: "alice", password: "a-pass", persistent: true},
	} {
		c := secMustConnect(t, b, cr)
		secSubscribe(t, c, 1, []byte{1}, secSub("q/"+cr.id, 1))
		c.Send(&codec.Disconnect{})
		c.ExpectClosed()
		apiPublish(t, b.Addr, "q/"+cr.id, false, slices.Repeat([]int{10 - i}, i)...)
	}
	for topic, size := range map[string]int{"a": 1, "a/b": 10, "a/b/c": 100, "z": 5} {
		apiPublish(t, b.Addr, topic, true, size)
	}
	mqtttest.Eventually(t, 10*time.Second, "only the four persistent sessions", func() bool {
		p, _ := api.page("")
		return p.All == 4
	})
	cfg := opsOperatorConfig(t, b, strings.TrimPrefix(api.base, "http://"))
	queries := [][]string{
		{"--sort", "client_id"},
		{"--user", "ALI"},
		{"--protocol", "3.1"},
		{"--protocol", "3.1.1", "--online=false"},
		{"--min-queued", "2", "--sort", "queued", "--desc"},
		{"--sort", "queued_bytes"},
		{"--sort", "user", "--limit", "2", "--offset", "1"},
		{"--client", "S3", "--sort", "subscriptions", "--desc"},
		{"--sort", "last_seen", "--desc"},
		{"--offset", "4"},
		{"--retained-prefix", "a"},
		{"--retained-prefix", ""},
		{"--retained-prefix", "a/b", "--user", "bob"},
	}
	running := make([]string, len(queries))
	for i, q := range queries {
		running[i] = opsMustCmd(t, append([]string{"inspect", "-c", cfg, "--json"}, q...)...)
	}
	b.Stop()
	for i, q := range queries {
		stopped := opsMustCmd(t, append([]string{"inspect", "--data", b.Dir, "--json"}, q...)...)
		if a, b := apiComparable(t, running[i]), apiComparable(t, stopped); a != b {
			t.Errorf("inspect %q:\nrunning: %s\nstopped: %s", q, a, b)
		}
	}
	if !strings.Contains(running[2], `"client_id": "s31"`) || !strings.Contains(running[10], `"count": 3`) {
		t.Errorf("inspect --protocol 3.1: %s\ninspect --retained-prefix a: %s", running[2], running[10])
	}
}

// apiComparable is inspect's JSON without what only a running broker knows (when a queue's
// oldest message arrived), its times in UTC (the store's zone).
func apiComparable(t *testing.T, js string) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		t.Fatalf("%v: %s", err, js)
	}
	pages := []any{v}
	if s, ok := v["sessions"].(map[string]any); ok {
		pages = []any{s}
	}
	for _, p := range pages {
		rows, _ := p.(map[string]any)["sessions"].([]any)
		for _, r := range rows {
			row := r.(map[string]any)
			delete(row, "oldest_queued")
			if s, ok := row["last_seen"].(string); ok {
				if ts, err := time.Parse(time.RFC3339Nano, s); err == nil {
					row["last_seen"] = ts.UTC().Format(time.RFC3339Nano)
				}
			}
		}
	}
	out, _ := json.Marshal(v)
	return string(out)
}
