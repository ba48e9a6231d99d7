package auth

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/router"
)

func TestFilterCovers(t *testing.T) {
	for _, tc := range []struct {
		outer, inner string
		want         bool
	}{
		{"#", "#", true},
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"#", "+", true},
		{"#", "+/#", true},
		{"#", "/x", true},
		{"#", "$SYS", false},
		{"#", "$SYS/#", false},
		{"+/#", "$SYS/x", false},
		{"+", "$x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/#", "$SYS/+/y", true},
		{"$SYS/+", "$SYS/#", false},
		{"a/#", "a", true},
		{"a/#", "a/+", true},
		{"a/#", "a/#", true},
		{"a/#", "a/+/c/#", true},
		{"a/#", "b/#", false},
		{"a/#", "+", false},
		{"a/#", "#", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"a/b", "a/+", false},
		{"a/b", "a/b", true},
		{"a/b", "a/b/#", false},
		{"a/b", "a", false},
		{"a/b/#", "a/#", false},
		{"sensors/#", "sensors/+/temp", true},
		{"sensors/+/temp", "sensors/#", false},
		{"sensors/+/temp", "sensors/+/temp", true},
		{"sensors/+/temp", "sensors/kitchen/temp", true},
		{"sensors/+/temp", "+/kitchen/temp", false},
		{"+/+", "a/b", true},
		{"+/+", "+/+", true},
		{"+/+", "a", false},
		{"+/+", "a/b/c", false},
		{"a/+/b", "a//b", true}, // an empty level is a level
		{"a//b", "a/+/b", false},
		{"+", "+", true},
		{"+", "#", false},
		{"+/#", "#", true},
		{"+/#", "+", true},
		{"a", "a", true},
		{"a", "A", false},
	} {
		if got := FilterCovers(tc.outer, tc.inner); got != tc.want {
			t.Errorf("FilterCovers(%q, %q) = %v, want %v", tc.outer, tc.inner, got, tc.want)
		}
	}
}

// Random filters and topics over a small alphabet, so that random pairs often
// relate. "$s" exercises the '$' rule; "" is an empty level.
var (
	testLiterals = []string{"a", "b", "$s", ""}
	// the universe adds "z", a level no filter names
	universeLevels = append(append([]string(nil), testLiterals...), "z")
)

func randFilter(rng *rand.Rand, wildcards bool) string {
	n := 1 + rng.IntN(3)
	lv := make([]string, 0, n+1)
	for range n {
		if wildcards && rng.IntN(3) == 0 {
			lv = append(lv, "+")
		} else {
			lv = append(lv, testLiterals[rng.IntN(len(testLiterals))])
		}
	}
	if wildcards && rng.IntN(3) == 0 {
		if rng.IntN(4) == 0 {
			lv = lv[:len(lv)-1] // "#" alone, or after fewer levels
		}
		lv = append(lv, "#")
	}
	return strings.Join(lv, "/")
}

// universe lists every topic name of 1 to 5 levels over universeLevels. A
// filter of at most 4 levels that does not cover another is shown wrong by a
// topic in it: one level deeper than both, or differing at one level, with a
// level no filter names, or with "$s" for the '$' rule.
func universe() []string {
	var out []string
	var grow func(prefix string, depth int)
	grow = func(prefix string, depth int) {
		for _, l := range universeLevels {
			t := l
			if depth > 0 {
				t = prefix + "/" + l
			}
			out = append(out, t)
			if depth < 4 {
				grow(t, depth+1)
			}
		}
	}
	grow("", 0)
	return out
}

// TestFilterCoversTopicIsMatchFilter: for a topic name, covering is matching.
func TestFilterCoversTopicIsMatchFilter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		f, topic := randFilter(rng, true), randFilter(rng, false)
		want := router.MatchFilter(f, topic)
		if got := FilterCovers(f, topic); got != want {
			t.Fatalf("FilterCovers(%q, %q) = %v, router.MatchFilter = %v", f, topic, got, want)
		}
		if got := covers(splitLevels(f, false), nil, topic, false); got != want {
			t.Fatalf("covers(%q, topic %q) = %v, router.MatchFilter = %v", f, topic, got, want)
		}
	}
}

// TestFilterCoversBruteForce checks FilterCovers against its definition on a
// finite universe of topics: outer covers inner iff every topic inner matches
// outer matches too.
func TestFilterCoversBruteForce(t *testing.T) {
	topics := universe()
	rng := rand.New(rand.NewPCG(3, 4))
	n := 1500
	if testing.Short() {
		n = 200
	}
	var yes int
	for range n {
		outer, inner := randFilter(rng, true), randFilter(rng, true)
		if rng.IntN(4) == 0 {
			inner = outer[:strings.LastIndexByte(outer, '/')+1] + "+" // a narrower sibling
		}
		want := true
		for _, topic := range topics {
			if router.MatchFilter(inner, topic) && !router.MatchFilter(outer, topic) {
				want = false
				break
			}
		}
		if got := FilterCovers(outer, inner); got != want {
			t.Fatalf("FilterCovers(%q, %q) = %v, want %v by brute force", outer, inner, got, want)
		}
		if want {
			yes++
		}
	}
	if yes < n/10 {
		t.Fatalf("only %d of %d random pairs covered: the test is too weak", yes, n)
	}
}

// TestPatternSubstitution: a pattern matches and covers exactly what the
// filter with the values written in does.
func TestPatternSubstitution(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	values := []string{"a", "b", "", "x1", "%c", "%u"}
	pieces := []string{"a", "b", "", "%c", "%u", "p_%c", "%c%u", "%u-", "%%c"}
	for range 20000 {
		n := 1 + rng.IntN(3)
		var lv []string
		for range n {
			switch rng.IntN(5) {
			case 0:
				lv = append(lv, "+")
			default:
				lv = append(lv, pieces[rng.IntN(len(pieces))])
			}
		}
		if rng.IntN(3) == 0 {
			lv = append(lv, "#")
		}
		pattern := strings.Join(lv, "/")
		if pattern == "" {
			continue // not a filter
		}
		c := Client{ID: values[rng.IntN(len(values))], Username: values[rng.IntN(len(values))]}
		expanded := strings.NewReplacer("%c", c.ID, "%u", c.Username).Replace(pattern)
		r, err := parseRule("pattern", pattern)
		if err != nil {
			t.Fatalf("pattern %q: %v", pattern, err)
		}
		topic, filter := randFilter(rng, false), randFilter(rng, true)
		if rng.IntN(2) == 0 {
			topic = strings.NewReplacer("+", "a", "/#", "", "#", "b").Replace(expanded)
		}
		if got, want := r.applies(&c, topic, false), router.MatchFilter(expanded, topic); got != want {
			t.Fatalf("pattern %q client %+v topic %q: %v, want %v (as %q)", pattern, c, topic, got, want, expanded)
		}
		if got, want := r.applies(&c, filter, true), FilterCovers(expanded, filter); got != want {
			t.Fatalf("pattern %q client %+v filter %q: %v, want %v (as %q)", pattern, c, filter, got, want, expanded)
		}
	}
}

func TestTokens(t *testing.T) {
	for s, want := range map[string]string{
		"abc":     "",
		"%c":      "[c]",
		"x%cy%uz": "x[c]y[u]z",
		"%%c":     "%[c]",
		"%x%c%":   "%x[c]%",
		"%":       "",
		"%u%c":    "[u][c]",
	} {
		var b strings.Builder
		for _, tk := range tokens(s) {
			if tk.ph != 0 {
				b.WriteString("[" + string(tk.ph) + "]")
			} else {
				b.WriteString(tk.lit)
			}
		}
		if b.String() != want {
			t.Errorf("tokens(%q) = %s, want %s", s, b.String(), want)
		}
	}
}
