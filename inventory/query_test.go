package inventory

import (
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/session"
)

// Every bad parameter is refused with an error that starts with its name, so that the API's 400
// tells which one.
func TestParseQueryErrors(t *testing.T) {
	for _, tc := range []struct{ query, param string }{
		{"online=yes", "online"},
		{"protocol=4", "protocol"},
		{"protocol=3.1.2", "protocol"},
		{"min_queued=-1", "min_queued"},
		{"min_queued=x", "min_queued"},
		{"min_queued=2147483648", "min_queued"},
		{"sort=size", "sort"},
		{"sort=CLIENT_ID", "sort"},
		{"order=up", "order"},
		{"offset=-1", "offset"},
		{"offset=1.5", "offset"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=ten", "limit"},
	} {
		v, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseQuery(v)
		if err == nil || !strings.HasPrefix(err.Error(), tc.param+": ") {
			t.Errorf("ParseQuery(%s) = %v, want an error naming %s", tc.query, err, tc.param)
		}
	}
}

func TestParseQueryDefaults(t *testing.T) {
	q, err := ParseQuery(url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Query{Sort: "client_id", Limit: DefaultLimit}); !reflect.DeepEqual(q, want) {
		t.Errorf("ParseQuery() = %+v, want %+v", q, want)
	}
	// Every sort key is accepted, and the list the error shows is the one SortKeys gives.
	for _, k := range SortKeys() {
		if q, err := ParseQuery(url.Values{"sort": {k}}); err != nil || q.Sort != k {
			t.Errorf("sort=%s: %+v, %v", k, q, err)
		}
	}
	_, err = ParseQuery(url.Values{"sort": {"nope"}})
	if err == nil || !strings.Contains(err.Error(), strings.Join(SortKeys(), ", ")) {
		t.Errorf("sort=nope: %v, want the list of keys", err)
	}
}

// A running broker is asked with q.Values(): it must read back the same query.
func TestValuesRoundTrip(t *testing.T) {
	yes, no := true, false
	for _, q := range []Query{
		{Sort: "client_id", Limit: DefaultLimit},
		{Sort: "client_id", Limit: 1},
		{Client: "a b&c=d", User: "Ünï", Online: &yes, Protocol: "3.1", MinQueued: 3, Sort: "queued", Desc: true, Offset: 7, Limit: MaxLimit},
		{Online: &no, Protocol: "3.1.1", Sort: "last_seen", Limit: 20},
		{Protocol: "5", Sort: "oldest_queued", Offset: 1 << 30, Limit: 2},
	} {
		got, err := ParseQuery(q.Values())
		if err != nil {
			t.Errorf("%+v: ParseQuery(%s): %v", q, q.Values().Encode(), err)
			continue
		}
		if !reflect.DeepEqual(got, q) {
			t.Errorf("ParseQuery(%s) = %+v, want %+v", q.Values().Encode(), got, q)
		}
	}
}

func ids(p Page) []string {
	out := make([]string, len(p.Sessions))
	for i, s := range p.Sessions {
		out[i] = s.ClientID
	}
	return out
}

var group = session.GroupID("g", "t/#")

func testRows() []Session {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	return []Session{
		{ClientID: "d", Username: "Alice", Online: true, Protocol: "5", Queued: 2, LastSeen: &t1},
		{ClientID: "b", Username: "bob", Protocol: "3.1.1", Queued: 5, OldestQueued: &t0, LastSeen: &t0},
		{ClientID: "a", Protocol: "3.1", Queued: 2},
		{ClientID: "c", Username: "alicia", Online: true, Protocol: "3.1.1", Queued: 0, LastSeen: &t1},
		{ClientID: group, Kind: KindShared, Online: true, Queued: 9},
	}
}

func TestApplyFilters(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name string
		q    Query
		want []string
	}{
		{"everything", Query{}, []string{group, "a", "b", "c", "d"}},
		{"user, any case", Query{User: "ALI"}, []string{"c", "d"}},
		{"online", Query{Online: &yes}, []string{group, "c", "d"}},
		{"offline", Query{Online: &no}, []string{"a", "b"}},
		{"protocol", Query{Protocol: "3.1.1"}, []string{"b", "c"}},
		{"protocol 3.1 is not 3.1.1", Query{Protocol: "3.1"}, []string{"a"}},
		{"min queued", Query{MinQueued: 2}, []string{group, "a", "b", "d"}},
		{"a shared group by its subscription", Query{Client: "$SHARE/g/"}, []string{group}},
		{"all filters at once", Query{Client: "d", User: "a", Online: &yes, Protocol: "5", MinQueued: 2}, []string{"d"}},
	} {
		rows := testRows()
		p := tc.q.Apply(rows)
		if got := ids(p); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if p.Total != len(tc.want) || p.All != 5 {
			t.Errorf("%s: total %d all %d, want %d and 5", tc.name, p.Total, p.All, len(tc.want))
		}
	}
}

func TestApplySortAndPaging(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    Query
		want []string
	}{
		// Ties (a and d both hold 2) go by client id, reversed with the rest under desc, so that
		// every page is the same whichever order the rows came in.
		{"queued", Query{Sort: "queued"}, []string{"c", "a", "d", "b", "g"}},
		{"queued desc", Query{Sort: "queued", Desc: true}, []string{"g", "b", "d", "a", "c"}},
		{"user: none first", Query{Sort: "user"}, []string{"a", "g", "d", "c", "b"}},
		{"online: offline first", Query{Sort: "online"}, []string{"a", "b", "c", "d", "g"}},
		{"protocol: unknown first", Query{Sort: "protocol"}, []string{"g", "a", "b", "c", "d"}},
		{"oldest queued: unknown first", Query{Sort: "oldest_queued"}, []string{"a", "c", "d", "g", "b"}},
		{"last seen desc", Query{Sort: "last_seen", Desc: true}, []string{"d", "c", "b", "g", "a"}},
		{"client id desc", Query{Desc: true}, []string{"g", "d", "c", "b", "a"}},
		{"a page", Query{Sort: "queued", Offset: 1, Limit: 2}, []string{"a", "d"}},
		{"the last page, short", Query{Sort: "queued", Offset: 4, Limit: 2}, []string{"g"}},
		{"offset at the end", Query{Offset: 5, Limit: 2}, []string{}},
		{"offset past the end", Query{Offset: 1 << 30, Limit: MaxLimit}, []string{}},
		{"no limit", Query{Offset: 3}, []string{"d", "g"}},
	} {
		rows := testRows()
		rows[4].ClientID = "g" // a plain id, so that the orders read easily
		for _, rev := range []bool{false, true} {
			in := slices.Clone(rows)
			if rev {
				slices.Reverse(in)
			}
			p := tc.q.Apply(in)
			if got := ids(p); !slices.Equal(got, tc.want) {
				t.Errorf("%s (input reversed %v): %q, want %q", tc.name, rev, got, tc.want)
			}
			if p.Sessions == nil {
				t.Errorf("%s: nil sessions (JSON null), want []", tc.name)
			}
			if p.Total != 5 || p.All != 5 || p.Offset != tc.q.Offset || p.Limit != tc.q.Limit {
				t.Errorf("%s: page %d/%d at %d limit %d", tc.name, p.Total, p.All, p.Offset, p.Limit)
			}
		}
	}
}

// Apply on no rows at all is an empty page, not a null one.
func TestApplyEmpty(t *testing.T) {
	q := Query{Sort: "queued", Desc: true, Offset: 3, Limit: 10}
	p := q.Apply(nil)
	if p.Sessions == nil || len(p.Sessions) != 0 || p.Total != 0 || p.All != 0 {
		t.Errorf("Apply(nil) = %+v", p)
	}
}
