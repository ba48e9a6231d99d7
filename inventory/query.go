package inventory

import (
	"cmp"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Paging bounds.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Query selects, orders and pages session rows. The zero Query is every session by client id,
// unpaged (Limit 0); ParseQuery gives a paged one.
type Query struct {
	Client    string // case-insensitive substring of the client id (a shared group's: of its subscription)
	User      string // case-insensitive substring of the username
	Online    *bool
	Protocol  string // "3.1", "3.1.1" or "5"; "" any
	MinQueued int
	Sort      string // one of SortKeys
	Desc      bool
	Offset    int
	Limit     int // 0: no limit
}

// sortKeys orders rows by one column; ties go by client id, so that pages are stable.
var sortKeys = map[string]func(a, b *Session) int{
	"client_id":     func(a, b *Session) int { return 0 },
	"user":          func(a, b *Session) int { return strings.Compare(a.Username, b.Username) },
	"online":        func(a, b *Session) int { return cmpBool(a.Online, b.Online) },
	"protocol":      func(a, b *Session) int { return strings.Compare(a.Protocol, b.Protocol) },
	"subscriptions": func(a, b *Session) int { return cmp.Compare(a.Subscriptions, b.Subscriptions) },
	"queued":        func(a, b *Session) int { return cmp.Compare(a.Queued, b.Queued) },
	"queued_bytes":  func(a, b *Session) int { return cmp.Compare(a.QueuedBytes, b.QueuedBytes) },
	"oldest_queued": func(a, b *Session) int { return cmpTime(a.OldestQueued, b.OldestQueued) },
	"inflight":      func(a, b *Session) int { return cmp.Compare(a.Inflight, b.Inflight) },
	"last_seen":     func(a, b *Session) int { return cmpTime(a.LastSeen, b.LastSeen) },
}

// SortKeys lists the columns rows can be sorted by.
func SortKeys() []string { return slices.Sorted(maps.Keys(sortKeys)) }

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// cmpTime orders unknown times first.
func cmpTime(a, b *time.Time) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return a.Compare(*b)
}

// ParseQuery reads a query from URL parameters (the names of the JSON API: client, user, online,
// protocol, min_queued, sort, order, offset, limit). An error names the parameter and what it
// takes.
func ParseQuery(v url.Values) (Query, error) {
	q := Query{Client: v.Get("client"), User: v.Get("user"), Sort: "client_id", Limit: DefaultLimit}
	if s := v.Get("online"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return q, fmt.Errorf("online: %q is not true or false", s)
		}
		q.Online = &b
	}
	switch p := v.Get("protocol"); p {
	case "", "3.1", "3.1.1", "5":
		q.Protocol = p
	default:
		return q, fmt.Errorf("protocol: %q is not 3.1, 3.1.1 or 5", p)
	}
	var err error
	if q.MinQueued, err = intParam(v, "min_queued", 0, 0, 1<<31-1); err != nil {
		return q, err
	}
	if s := v.Get("sort"); s != "" {
		if _, ok := sortKeys[s]; !ok {
			return q, fmt.Errorf("sort: %q is not one of %s", s, strings.Join(SortKeys(), ", "))
		}
		q.Sort = s
	}
	switch o := v.Get("order"); o {
	case "", "asc":
	case "desc":
		q.Desc = true
	default:
		return q, fmt.Errorf("order: %q is not asc or desc", o)
	}
	if q.Offset, err = intParam(v, "offset", 0, 0, 1<<31-1); err != nil {
		return q, err
	}
	if q.Limit, err = intParam(v, "limit", DefaultLimit, 1, MaxLimit); err != nil {
		return q, err
	}
	return q, nil
}

func intParam(v url.Values, name string, def, lo, hi int) (int, error) {
	s := v.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s: %q is not a whole number from %d to %d", name, s, lo, hi)
	}
	return n, nil
}

// Values is the query as URL parameters, for asking a running broker.
func (q Query) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("client", q.Client)
	set("user", q.User)
	if q.Online != nil {
		v.Set("online", strconv.FormatBool(*q.Online))
	}
	set("protocol", q.Protocol)
	if q.MinQueued > 0 {
		v.Set("min_queued", strconv.Itoa(q.MinQueued))
	}
	if q.Sort != "" && q.Sort != "client_id" {
		v.Set("sort", q.Sort)
	}
	if q.Desc {
		v.Set("order", "desc")
	}
	if q.Offset > 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Match reports whether a row passes the query's filters.
func (q *Query) Match(s *Session) bool {
	switch {
	case q.Client != "" && !containsFold(DisplayID(s.ClientID), q.Client):
		return false
	case q.User != "" && !containsFold(s.Username, q.User):
		return false
	case q.Online != nil && s.Online != *q.Online:
		return false
	case q.Protocol != "" && s.Protocol != q.Protocol:
		return false
	case s.Queued < q.MinQueued:
		return false
	}
	return true
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// Page is one page of rows.
type Page struct {
	Total    int       `json:"total"` // rows that pass the filters
	All      int       `json:"all"`   // rows before filtering
	Offset   int       `json:"offset"`
	Limit    int       `json:"limit"`
	Sessions []Session `json:"sessions"`
}

// Apply filters, sorts and pages rows. It sorts pointers, not rows: a row is wide, and a page of
// 100,000 sessions is asked for at every click.
func (q *Query) Apply(rows []Session) Page {
	p := Page{All: len(rows), Offset: q.Offset, Limit: q.Limit}
	kept := make([]*Session, 0, len(rows))
	for i := range rows {
		if q.Match(&rows[i]) {
			kept = append(kept, &rows[i])
		}
	}
	p.Total = len(kept)
	by := sortKeys[q.Sort]
	if by == nil {
		by = sortKeys["client_id"]
	}
	slices.SortFunc(kept, func(a, b *Session) int {
		c := by(a, b)
		if c == 0 {
			c = strings.Compare(a.ClientID, b.ClientID)
		}
		if q.Desc {
			return -c
		}
		return c
	})
	lo := min(q.Offset, len(kept))
	hi := len(kept)
	if q.Limit > 0 {
		hi = min(lo+q.Limit, hi)
	}
	p.Sessions = make([]Session, 0, hi-lo)
	for _, s := range kept[lo:hi] {
		p.Sessions = append(p.Sessions, *s)
	}
	return p
}
