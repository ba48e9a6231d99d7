package retain

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/router"
)

func msg(topic, payload string) *Message {
	return &Message{Message: message.Message{Topic: topic, Payload: []byte(payload), QoS: 1}}
}

// topics returns the sorted topics of ms.
func topics(ms []*Message) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Topic)
	}
	slices.Sort(out)
	return out
}

// isEmpty reports whether n holds nothing at all, as the root must after
// every message was cleared: no children, and no slice or index left over
// from them either.
func (n *node) isEmpty() bool {
	return reflect.ValueOf(n.kids).IsZero() && n.msg == nil && n.count == 0
}

func TestSetReplaceClear(t *testing.T) {
	s := New()
	if !s.Set(msg("a/b", "1")) {
		t.Fatal("first Set = false")
	}
	if s.Set(msg("a/b", "1")) {
		t.Fatal("Set of the same payload and QoS = true")
	}
	if !s.Set(msg("a/b", "2")) {
		t.Fatal("Set of a new payload = false")
	}
	if !s.Set(&Message{Message: message.Message{Topic: "a/b", Payload: []byte("2"), QoS: 2}}) {
		t.Fatal("Set of a new QoS = false")
	}
	if got := s.Match("a/b", nil); len(got) != 1 || string(got[0].Payload) != "2" || got[0].QoS != 2 {
		t.Fatalf("Match = %v, want the replacement", got)
	}
	if !s.Set(msg("a", "x")) || s.Len() != 2 {
		t.Fatalf("Len = %d after two topics, want 2", s.Len())
	}

	// [MQTT-3.3.1-10] an empty retained payload removes the message, and
	// [MQTT-3.3.1-11] is not stored itself.
	if !s.Set(msg("a/b", "")) {
		t.Fatal("clearing Set = false")
	}
	if got := s.Match("a/b", nil); len(got) != 0 {
		t.Fatalf("Match after clear = %v", got)
	}
	if s.Set(msg("a/b", "")) {
		t.Fatal("clearing an already clear topic = true")
	}
	if s.Set(&Message{Message: message.Message{Topic: "never/set"}}) {
		t.Fatal("clearing a topic that never existed = true")
	}
	if s.Set(msg("a/b/c", "")) || s.Set(msg("a/b", "")) {
		t.Fatal("clearing below or at an interior node = true")
	}
	if s.Len() != 1 || topics(s.Match("#", nil))[0] != "a" {
		t.Fatalf("Len = %d, want only \"a\" left", s.Len())
	}
	if s.Set(nil) {
		t.Fatal("Set(nil) = true")
	}
	if !s.Set(msg("a", "")) || s.Len() != 0 || !s.root.isEmpty() {
		t.Fatalf("store not empty after clearing everything: %+v", s.root)
	}
}

// storeTopics are retained in TestMatch; they cover empty levels, '$'
// topics and nesting.
var storeTopics = []string{
	"sport", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking",
	"sport/tennis/player2", "sport/golf", "sport/", "sports",
	"/finance", "/", "a//b", "a/b", "$SYS", "$SYS/broker/load", "$SYS/monitor/Clients", "a/$b",
}

func TestMatch(t *testing.T) {
	s := New()
	for _, tp := range storeTopics {
		s.Set(msg(tp, "p"))
	}
	tests := []struct {
		name, filter string
		want         []string
	}{
		{"[MQTT-4.7.1-2] '#' matches parent level and below", "sport/tennis/player1/#",
			[]string{"sport/tennis/player1", "sport/tennis/player1/ranking"}},
		{"[MQTT-4.7.1-2] 'sport/#' includes 'sport' and 'sport/'", "sport/#",
			[]string{"sport", "sport/", "sport/golf", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player2"}},
		{"[MQTT-4.7.2-1] '#' skips '$' topics", "#",
			[]string{"/", "/finance", "a//b", "a/$b", "a/b", "sport", "sport/", "sport/golf", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player2", "sports"}},
		{"[MQTT-4.7.1-3] '+' matches one level", "sport/tennis/+",
			[]string{"sport/tennis/player1", "sport/tennis/player2"}},
		{"[MQTT-4.7.1-3] '+' matches an empty level", "sport/+",
			[]string{"sport/", "sport/golf", "sport/tennis"}},
		{"[MQTT-4.7.1-3] '+' alone, first level, skips '$'", "+",
			[]string{"sport", "sports"}},
		{"[MQTT-4.7.1-3] '+/+' over empty levels", "+/+",
			[]string{"/", "/finance", "a/$b", "a/b", "sport/", "sport/golf", "sport/tennis"}},
		{"[MQTT-4.7.2-1] first-level '+' skips '$' topics", "+/monitor/Clients", nil},
		{"[MQTT-4.7.2-1] '$SYS/#' matches '$SYS' and below", "$SYS/#",
			[]string{"$SYS", "$SYS/broker/load", "$SYS/monitor/Clients"}},
		{"[MQTT-4.7.2-1] '+' after a '$' level", "$SYS/+/load", []string{"$SYS/broker/load"}},
		{"[MQTT-4.7.2-1] '$' in a later level is not special", "a/+", []string{"a/$b", "a/b"}},
		{"[4.7.3] empty middle level", "a/+/b", []string{"a//b"}},
		{"[4.7.3] literal with an empty level", "a//b", []string{"a//b"}},
		{"[4.7.3] lone '/'", "/", []string{"/"}},
		{"[MQTT-4.7.3-4] case-sensitive", "SPORT/#", nil},
		{"literal", "sport/tennis", []string{"sport/tennis"}},
		{"literal, interior node without a message", "sport/tennis/player1/ranking/x", nil},
		{"no such branch", "nope/+/#", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := topics(s.Match(tc.filter, nil))
			slices.Sort(tc.want)
			if !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
				t.Errorf("Match(%q) = %q, want %q", tc.filter, got, tc.want)
			}
		})
	}
}

func TestMatchAppends(t *testing.T) {
	s := New()
	s.Set(msg("a", "1"))
	first := msg("z", "0")
	got := s.Match("a", []*Message{first})
	if len(got) != 2 || got[0] != first || got[1].Topic != "a" {
		t.Fatalf("Match = %v, want the old entry then a", got)
	}
}

func randTopic(rng *rand.Rand) string {
	n := 1 + rng.IntN(5)
	levels := make([]string, n)
	for i := range levels {
		levels[i] = [...]string{"a", "b", "c", "", "$s", "ab"}[rng.IntN(6)]
	}
	return strings.Join(levels, "/")
}

func randFilter(rng *rand.Rand) string {
	n := 1 + rng.IntN(5)
	levels := make([]string, n)
	for i := range levels {
		switch r := rng.IntN(10); {
		case r < 3:
			levels[i] = "+"
		case r < 4 && i == n-1:
			levels[i] = "#"
		default:
			levels[i] = [...]string{"a", "b", "c", "", "$s", "ab"}[rng.IntN(6)]
		}
	}
	return strings.Join(levels, "/")
}

func TestMatchAgreesWithMatchFilter(t *testing.T) {
	// Property: the tree walk returns exactly the stored topics that the
	// reference matcher accepts.
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 50 {
		s := New()
		stored := map[string]bool{}
		for range rng.IntN(200) {
			tp := randTopic(rng)
			if rng.IntN(4) == 0 {
				s.Set(msg(tp, ""))
				delete(stored, tp)
			} else {
				s.Set(msg(tp, "x"))
				stored[tp] = true
			}
		}
		if s.Len() != len(stored) {
			t.Fatalf("round %d: Len = %d, want %d", round, s.Len(), len(stored))
		}
		for range 200 {
			f := randFilter(rng)
			var want []string
			for tp := range stored {
				if router.MatchFilter(f, tp) {
					want = append(want, tp)
				}
			}
			slices.Sort(want)
			if got := topics(s.Match(f, nil)); !slices.Equal(got, want) && len(got)+len(want) > 0 {
				t.Fatalf("round %d: Match(%q) = %q, want %q", round, f, got, want)
			}
		}
	}
}

func TestPrune(t *testing.T) {
	s := New()
	var all []string
	for i := range 10000 {
		tp := fmt.Sprintf("site/%d/device/%d/temp", i%97, i)
		if i%3 == 0 {
			tp = fmt.Sprintf("$SYS/%d//x", i)
		}
		all = append(all, tp)
		s.Set(msg(tp, "v"))
	}
	rand.New(rand.NewPCG(5, 6)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for _, tp := range all {
		if !s.Set(msg(tp, "")) {
			t.Fatalf("clear %q = false", tp)
		}
	}
	if s.Len() != 0 || !s.root.isEmpty() {
		t.Fatalf("store not empty: Len %d, root %+v", s.Len(), s.root)
	}
}

func TestNeverPanics(t *testing.T) {
	s := New()
	for _, tp := range []string{"", "/", "#", "+", "a/#/b", "a/+", "\x00", "#/#"} {
		s.Set(msg(tp, "x"))
		for _, f := range []string{"", "/", "#", "+", "#/a", "a/#/b", "+/#", "//", "\x00"} {
			s.Match(f, nil)
		}
		s.Set(msg(tp, ""))
	}
	if s.Len() != 0 {
		t.Fatalf("Len = %d", s.Len())
	}
}

func TestConcurrentUse(t *testing.T) {
	s := New()
	s.Set(msg("keep/this", "k"))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 2000 {
				payload := ""
				if rng.IntN(2) == 0 {
					payload = "v"
				}
				s.Set(msg("t/"+randTopic(rng), payload))
			}
		})
	}
	for r := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 2))
			var dst []*Message
			for range 2000 {
				dst = s.Match(randFilter(rng), dst[:0])
				if got := s.Match("keep/#", dst[:0]); len(got) != 1 {
					t.Errorf("Match(keep/#) = %d messages", len(got))
					return
				}
				_ = s.Len()
			}
		})
	}
	wg.Wait()
}

func FuzzSetMatch(f *testing.F) {
	f.Add("sport/tennis", "sport/#")
	f.Add("$SYS/x", "+/x")
	f.Add("a//b", "a/+/b")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, topic, filter string) {
		s := New()
		s.Set(msg(topic, "x"))
		got := len(s.Match(filter, nil)) == 1
		if want := router.MatchFilter(filter, topic); got != want {
			t.Fatalf("topic %q filter %q: store %v, MatchFilter %v", topic, filter, got, want)
		}
		if !s.Set(msg(topic, "")) || !s.root.isEmpty() {
			t.Fatalf("topic %q not removed cleanly", topic)
		}
	})
}

// retained100k stores 100,000 topics of a fleet: 1000 sites with 100
// devices each, one reading per device.
func retained100k() *Store {
	s := New()
	payload := []byte("21.5")
	for i := range 100_000 {
		s.Set(&Message{Message: message.Message{Topic: fmt.Sprintf("site/%d/device/%d/temp", i%1000, i/1000), Payload: payload}})
	}
	return s
}

func benchmarkMatch(b *testing.B, filter string) {
	s := retained100k()
	dst := s.Match(filter, nil)
	b.ReportAllocs()
	for b.Loop() {
		dst = s.Match(filter, dst[:0])
	}
	b.ReportMetric(float64(len(dst)), "matches")
}

func BenchmarkMatchAll100k(b *testing.B)         { benchmarkMatch(b, "#") }
func BenchmarkMatchSingleLevel100k(b *testing.B) { benchmarkMatch(b, "site/+/device/7/temp") }
func BenchmarkMatchSite100k(b *testing.B)        { benchmarkMatch(b, "site/42/#") }
func BenchmarkMatchExact100k(b *testing.B)       { benchmarkMatch(b, "site/42/device/7/temp") }

// BenchmarkMatchPlusC100k is the a/+/c shape over 100,000 topics of that
// shape: 1000 middle levels, each with 100 last levels, one of them c.
func BenchmarkMatchPlusC100k(b *testing.B) {
	s := New()
	payload := []byte("x")
	for i := range 100_000 {
		s.Set(&Message{Message: message.Message{Topic: fmt.Sprintf("a/%d/c%d", i%1000, i/1000), Payload: payload}})
		if i < 1000 {
			s.Set(&Message{Message: message.Message{Topic: fmt.Sprintf("a/%d/c", i), Payload: payload}})
		}
	}
	dst := s.Match("a/+/c", nil)
	b.ReportAllocs()
	for b.Loop() {
		dst = s.Match("a/+/c", dst[:0])
	}
	b.ReportMetric(float64(len(dst)), "matches")
}

func BenchmarkSet(b *testing.B) {
	s := retained100k()
	m := msg("site/42/device/7/temp", "22.0")
	b.ReportAllocs()
	for b.Loop() {
		s.Set(m)
	}
}

// BenchmarkMemory100k reports the heap the store of retained100k takes per
// message, beyond the messages themselves (the payload is shared).
func BenchmarkMemory100k(b *testing.B) {
	var s *Store
	var before, after runtime.MemStats
	for b.Loop() {
		s = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		s = retained100k()
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	perMsg := float64(after.HeapAlloc-before.HeapAlloc) / float64(s.Len())
	b.ReportMetric(perMsg, "heapB/msg")
}

func TestFitsLimits(t *testing.T) {
	s := New()
	msg := func(topic, owner string, n int) *Message {
		return &Message{Message: message.Message{Topic: topic, Payload: make([]byte, n)}, Owner: owner}
	}
	lim := Limits{Messages: 3, Bytes: 100, PerOwner: 2}
	for _, m := range []*Message{msg("a", "x", 10), msg("b", "x", 10), msg("c", "y", 10)} {
		if ok, why := s.Fits(m, lim); !ok {
			t.Fatalf("%s refused (%s) below every limit", m.Topic, why)
		}
		s.Set(m)
	}
	cases := []struct {
		m    *Message
		want string
	}{
		{msg("d", "z", 1), "messages"}, // a fourth topic
		{msg("a", "x", 11), ""},        // replacing does not grow the count
		{msg("a", "y", 1), ""},         // y takes a over from x: two for y
		{msg("d", "x", 1), "messages"}, // the count is checked first
		{msg("b", "y", 80), "bytes"},   // 10+80+10 plus the topics > 100
		{msg("c", "y", 1), ""},
	}
	for _, c := range cases {
		ok, why := s.Fits(c.m, lim)
		if ok != (c.want == "") || why != c.want {
			t.Errorf("Fits(%s, owner %s, %d bytes) = %v %q, want %q", c.m.Topic, c.m.Owner, len(c.m.Payload), ok, why, c.want)
		}
	}
	s.Set(msg("a", "y", 1))
	if ok, why := s.Fits(msg("b", "y", 1), lim); ok || why != "per_owner" {
		t.Errorf("a third message of owner y: %v %q, want refused per_owner", ok, why)
	}
	s.Set(&Message{Message: message.Message{Topic: "c"}}) // clear
	if s.Len() != 2 || s.Bytes() != int64(len("a")+1+len("b")+10) {
		t.Errorf("after clearing c: %d messages, %d bytes", s.Len(), s.Bytes())
	}
	over := Limits{Messages: 1}
	if ok, _ := s.Fits(msg("b", "x", 5), over); !ok {
		t.Errorf("a replacement in a store already over its limit was refused")
	}
}
