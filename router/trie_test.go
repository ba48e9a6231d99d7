package router

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

func sortSubs(s []Subscriber[string]) []Subscriber[string] {
	slices.SortFunc(s, func(a, b Subscriber[string]) int { return cmp.Compare(a.Key, b.Key) })
	return s
}

// bruteMatch is what Trie.Match must return, computed from MatchFilter over
// a plain list of subscriptions.
func bruteMatch(subs map[[2]string]byte, topic string) []Subscriber[string] {
	best := map[string]byte{}
	for k, q := range subs {
		if MatchFilter(k[1], topic) {
			if old, ok := best[k[0]]; !ok || q > old {
				best[k[0]] = q
			}
		}
	}
	var out []Subscriber[string]
	for id, q := range best {
		out = append(out, Subscriber[string]{id, q})
	}
	return sortSubs(out)
}

// isEmpty reports whether n holds nothing at all, as the root must after
// every subscription was removed.
func (n *node[K]) isEmpty() bool {
	return n.kids.list == nil && n.kids.index == nil && n.plus == nil && n.hash == nil &&
		n.subs == nil && n.index == nil && n.count == 0
}

func TestTrieMatchRules(t *testing.T) {
	for _, tc := range matchRules {
		t.Run(tc.name, func(t *testing.T) {
			tr := New[string]()
			tr.Subscribe("c", tc.filter, 1)
			got := tr.Match(tc.topic, nil)
			if matched := len(got) == 1 && got[0] == (Subscriber[string]{"c", 1}); matched != tc.want || len(got) > 1 {
				t.Errorf("filter %q, topic %q: Match = %v, want match %v", tc.filter, tc.topic, got, tc.want)
			}
		})
	}
}

func TestTrieMatchRulesTogether(t *testing.T) {
	// All rule filters in one trie, one client per filter: the walk must
	// not lose or invent matches when branches share nodes.
	tr := New[string]()
	subs := map[[2]string]byte{}
	for i, tc := range matchRules {
		id := fmt.Sprintf("c%02d", i)
		tr.Subscribe(id, tc.filter, byte(i%3))
		subs[[2]string{id, tc.filter}] = byte(i % 3)
	}
	for _, tc := range matchRules {
		got := sortSubs(tr.Match(tc.topic, nil))
		if want := bruteMatch(subs, tc.topic); !slices.Equal(got, want) {
			t.Errorf("topic %q: Match = %v, want %v", tc.topic, got, want)
		}
	}
}

func TestSubscribeReplacesQoS(t *testing.T) {
	// [MQTT-3.8.4-3] an identical filter replaces the existing subscription.
	tr := New[string]()
	if !tr.Subscribe("c", "a/+", 0) {
		t.Fatal("first Subscribe reported not new")
	}
	if tr.Subscribe("c", "a/+", 2) {
		t.Fatal("second Subscribe of the same filter reported new")
	}
	if got := tr.Match("a/b", nil); !slices.Equal(got, []Subscriber[string]{{"c", 2}}) {
		t.Fatalf("Match = %v, want the replaced QoS 2", got)
	}
	if tr.Count() != 1 {
		t.Fatalf("Count = %d, want 1", tr.Count())
	}
}

func TestOverlappingSubscriptionsMaxQoS(t *testing.T) {
	// [MQTT-3.3.5-1] one delivery per client, at the highest QoS of all its
	// matching subscriptions.
	tr := New[string]()
	tr.Subscribe("a", "sport/tennis/player1", 0)
	tr.Subscribe("a", "sport/+/player1", 2)
	tr.Subscribe("a", "sport/#", 1)
	tr.Subscribe("a", "#", 0)
	tr.Subscribe("b", "sport/#", 0)
	tr.Subscribe("b", "+/tennis/#", 1)
	tr.Subscribe("c", "sport/tennis/player2", 2)
	got := sortSubs(tr.Match("sport/tennis/player1", nil))
	want := []Subscriber[string]{{"a", 2}, {"b", 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("Match = %v, want %v", got, want)
	}
}

func TestMatchAppendsAfterDst(t *testing.T) {
	tr := New[string]()
	tr.Subscribe("a", "x", 0)
	tr.Subscribe("a", "#", 1)
	dst := []Subscriber[string]{{"a", 0}, {"z", 2}}
	got := tr.Match("x", dst)
	want := []Subscriber[string]{{"a", 0}, {"z", 2}, {"a", 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("Match = %v, want the old entries untouched and %v", got, want)
	}
}

func TestUnsubscribe(t *testing.T) {
	tr := New[string]()
	tr.Subscribe("a", "x/y", 1)
	tr.Subscribe("b", "x/y", 1)
	for _, tc := range []struct{ id, filter string }{
		{"c", "x/y"}, // client not subscribed to that filter
		{"a", "x"},   // a node on the path, without subscribers
		{"a", "x/y/z"},
		{"a", "x/+"},
		{"a", "x/#"},
		{"a", "#"},
		{"a", ""},
	} {
		if tr.Unsubscribe(tc.id, tc.filter) {
			t.Errorf("Unsubscribe(%q, %q) of a missing subscription = true", tc.id, tc.filter)
		}
	}
	if tr.Count() != 2 {
		t.Fatalf("Count = %d after missing unsubscribes, want 2", tr.Count())
	}
	if !tr.Unsubscribe("a", "x/y") {
		t.Fatal("Unsubscribe of an existing subscription = false")
	}
	if tr.Unsubscribe("a", "x/y") {
		t.Fatal("second Unsubscribe = true")
	}
	if got := tr.Match("x/y", nil); !slices.Equal(got, []Subscriber[string]{{"b", 1}}) {
		t.Fatalf("Match = %v, want only b", got)
	}
}

func TestPrune(t *testing.T) {
	tr := New[string]()
	var filters []string
	for i := range 10000 {
		var f string
		switch i % 5 {
		case 0:
			f = fmt.Sprintf("site/%d/device/%d/temp", i%97, i)
		case 1:
			f = fmt.Sprintf("site/%d/+/%d", i%13, i)
		case 2:
			f = fmt.Sprintf("site/%d/#", i)
		case 3:
			f = fmt.Sprintf("+/%d//+/#", i)
		default:
			f = fmt.Sprintf("$SYS/%d", i)
		}
		filters = append(filters, f)
		if !tr.Subscribe(fmt.Sprintf("c%d", i%50), f, byte(i%3)) {
			t.Fatalf("Subscribe(%q) not new", f)
		}
	}
	if tr.Count() != len(filters) {
		t.Fatalf("Count = %d, want %d", tr.Count(), len(filters))
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(filters), func(i, j int) { filters[i], filters[j] = filters[j], filters[i] })
	for i, f := range filters {
		// The client of filter f is recoverable only before the shuffle,
		// so unsubscribe every client; exactly one of them holds f.
		removed := 0
		for c := range 50 {
			if tr.Unsubscribe(fmt.Sprintf("c%d", c), f) {
				removed++
			}
		}
		if removed != 1 {
			t.Fatalf("filter %q removed %d times", f, removed)
		}
		if want := len(filters) - i - 1; tr.Count() != want {
			t.Fatalf("Count = %d, want %d", tr.Count(), want)
		}
	}
	if !tr.root.isEmpty() {
		t.Fatalf("root not empty after removing everything: %+v", tr.root)
	}
}

func TestManySubscribersOneFilter(t *testing.T) {
	// Crosses the per-node index thresholds both ways and checks that the
	// index and the slice agree all along.
	tr := New[string]()
	const n = 200
	for i := range n {
		tr.Subscribe(fmt.Sprintf("c%03d", i), "a/b", byte(i%3))
	}
	tr.Subscribe("c007", "a/b", 2) // replace through the index
	for i := 0; i < n; i += 2 {
		if !tr.Unsubscribe(fmt.Sprintf("c%03d", i), "a/b") {
			t.Fatalf("Unsubscribe c%03d failed", i)
		}
	}
	got := sortSubs(tr.Match("a/b", nil))
	if len(got) != n/2 {
		t.Fatalf("Match returned %d subscribers, want %d", len(got), n/2)
	}
	for _, s := range got {
		var i int
		fmt.Sscanf(s.Key, "c%d", &i)
		want := byte(i % 3)
		if i == 7 {
			want = 2
		}
		if i%2 == 0 || s.QoS != want {
			t.Fatalf("unexpected %v", s)
		}
	}
	for i := 1; i < n; i += 2 {
		if !tr.Unsubscribe(fmt.Sprintf("c%03d", i), "a/b") {
			t.Fatalf("Unsubscribe c%03d failed", i)
		}
		if nd := tr.root.kids.Get("a"); nd != nil {
			if b := nd.kids.Get("b"); b != nil && b.index != nil && len(b.index) != len(b.subs) {
				t.Fatalf("index has %d entries, subs %d", len(b.index), len(b.subs))
			}
		}
	}
	if !tr.root.isEmpty() {
		t.Fatal("root not empty")
	}
}

func TestDedupStrategiesAgree(t *testing.T) {
	// Shapes that send Match through the probing and the map-based
	// deduplication, with clients shared between the matching filters.
	for _, shape := range []struct{ perFilter, filters int }{
		{1, 2}, {3, 4}, {10, 3}, {40, 2}, {40, 6}, {500, 3}, {5, 20}, {12, 9}, {16, 9},
	} {
		tr := New[string]()
		subs := map[[2]string]byte{}
		filters := []string{"a/b/c/d", "a/+/c/d", "a/#", "#", "+/b/#", "a/b/+/d", "+/+/+/+", "a/b/c/#", "a/b/#"}
		rng := rand.New(rand.NewPCG(uint64(shape.perFilter), uint64(shape.filters)))
		for f := 0; f < shape.filters; f++ {
			filter := filters[f%len(filters)]
			for range shape.perFilter {
				id := fmt.Sprintf("c%d", rng.IntN(shape.perFilter*2))
				q := byte(rng.IntN(3))
				tr.Subscribe(id, filter, q)
				subs[[2]string{id, filter}] = q
			}
		}
		got := sortSubs(tr.Match("a/b/c/d", nil))
		if want := bruteMatch(subs, "a/b/c/d"); !slices.Equal(got, want) {
			t.Errorf("shape %+v: Match = %v, want %v", shape, got, want)
		}
	}
}

// randLevel draws from a small alphabet so random filters and topics
// collide often; it includes empty levels and '$' levels.
func randLevel(rng *rand.Rand) string {
	return [...]string{"a", "b", "c", "", "$s", "ab", "A"}[rng.IntN(7)]
}

func randTopic(rng *rand.Rand) string {
	n := 1 + rng.IntN(5)
	levels := make([]string, n)
	for i := range levels {
		levels[i] = randLevel(rng)
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
			levels[i] = randLevel(rng)
		}
	}
	return strings.Join(levels, "/")
}

func TestTrieAgreesWithMatchFilter(t *testing.T) {
	// Property: for random filters and topics, Trie.Match returns exactly
	// the clients whose filters MatchFilter accepts, at their highest QoS.
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 50 {
		tr := New[string]()
		subs := map[[2]string]byte{}
		for range 1 + rng.IntN(300) {
			id := fmt.Sprintf("c%d", rng.IntN(40))
			f := randFilter(rng)
			q := byte(rng.IntN(3))
			tr.Subscribe(id, f, q)
			subs[[2]string{id, f}] = q
		}
		// Remove some again so pruned shapes are covered as well.
		for k := range subs {
			if rng.IntN(4) == 0 {
				if !tr.Unsubscribe(k[0], k[1]) {
					t.Fatalf("Unsubscribe(%q, %q) = false", k[0], k[1])
				}
				delete(subs, k)
			}
		}
		if tr.Count() != len(subs) {
			t.Fatalf("round %d: Count = %d, want %d", round, tr.Count(), len(subs))
		}
		for range 200 {
			topic := randTopic(rng)
			got := sortSubs(tr.Match(topic, nil))
			if want := bruteMatch(subs, topic); !slices.Equal(got, want) {
				t.Fatalf("round %d topic %q: Match = %v, want %v", round, topic, got, want)
			}
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tr := New[string]()
	for i := range 1000 {
		tr.Subscribe(fmt.Sprintf("c%d", i), fmt.Sprintf("site/%d/device/+/temp", i), 1)
	}
	tr.Subscribe("x", "site/7/#", 0)
	tr.Subscribe("x", "site/+/device/3/temp", 2)
	tr.Subscribe("y", "#", 2)
	tr.Subscribe("y", "+/7/device/#", 2)
	dst := make([]Subscriber[string], 0, 16)
	allocs := testing.AllocsPerRun(100, func() {
		dst = tr.Match("site/7/device/3/temp", dst[:0])
	})
	if allocs != 0 {
		t.Fatalf("Match allocated %v times per run", allocs)
	}
	if got := sortSubs(dst); !slices.Equal(got, []Subscriber[string]{{"c7", 1}, {"x", 2}, {"y", 2}}) {
		t.Fatalf("Match = %v", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	tr := New[string]()
	tr.Subscribe("stable", "t/#", 2)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			id := fmt.Sprintf("w%d", w)
			for range 2000 {
				f := "t/" + randFilter(rng)
				tr.Subscribe(id, f, byte(rng.IntN(3)))
				if rng.IntN(2) == 0 {
					tr.Unsubscribe(id, f)
				}
			}
		})
	}
	for r := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 5))
			var dst []Subscriber[string]
			for range 2000 {
				dst = tr.Match("t/"+randTopic(rng), dst[:0])
				if !slices.Contains(dst, Subscriber[string]{"stable", 2}) {
					t.Errorf("stable subscriber missing from %v", dst)
					return
				}
				_ = tr.Count()
			}
		})
	}
	wg.Wait()
}

// validFilter and validTopic stand in for package codec's validation, which
// this package may not import.
func validFilter(f string) bool {
	if f == "" || len(f) > 65535 || strings.IndexByte(f, 0) >= 0 {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && l != "+" && l != "#" {
			return false
		}
		if l == "#" && i != len(levels)-1 {
			return false
		}
	}
	return true
}

func validTopic(s string) bool {
	return s != "" && len(s) <= 65535 && !strings.ContainsAny(s, "+#\x00")
}

func FuzzMatch(f *testing.F) {
	for _, tc := range matchRules {
		f.Add(tc.filter, tc.topic)
	}
	f.Add("#/a", "#/a")
	f.Add("", "")
	f.Add("//+//#", "////")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		// Any strings: no panic anywhere, and the trie is empty again after.
		want := MatchFilter(filter, topic)
		tr := New[string]()
		tr.Subscribe("c", filter, 1)
		got := len(tr.Match(topic, nil)) == 1
		if !tr.Unsubscribe("c", filter) || !tr.root.isEmpty() {
			t.Fatalf("filter %q not removed cleanly", filter)
		}
		if validFilter(filter) && validTopic(topic) && got != want {
			t.Fatalf("filter %q topic %q: trie %v, MatchFilter %v", filter, topic, got, want)
		}
	})
}

func TestTrieWalk(t *testing.T) {
	tr := New[string]()
	want := map[[2]string]byte{
		{"a", "x/y"}: 0, {"b", "x/y"}: 1, {"a", "x/+"}: 2, {"c", "#"}: 1, {"c", "/lead"}: 0,
		{"d", "x/+/z/#"}: 2, {"e", "$SYS/#"}: 0, {"a", "+"}: 1,
	}
	for k, q := range want {
		tr.Subscribe(k[0], k[1], q)
	}
	tr.Unsubscribe("b", "x/y")
	delete(want, [2]string{"b", "x/y"})
	got := map[[2]string]byte{}
	tr.Walk(func(filter, key string, qos byte) {
		if _, dup := got[[2]string{key, filter}]; dup {
			t.Errorf("Walk visited %s %q twice", key, filter)
		}
		got[[2]string{key, filter}] = qos
	})
	if len(got) != len(want) {
		t.Errorf("Walk visited %d subscriptions, want %d: %v", len(got), len(want), got)
	}
	for k, q := range want {
		if g, ok := got[k]; !ok || g != q {
			t.Errorf("subscription %s %q: walked %v (qos %d), want qos %d", k[0], k[1], ok, g, q)
		}
	}
}
