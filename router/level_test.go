package router

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// matchRules are the matching rules of MQTT 3.1.1 section 4.7, each row named
// after the statement it checks. Every matcher in holdfast is run over them.
var matchRules = []struct {
	name          string
	filter, topic string
	want          bool
}{
	{"[MQTT-4.7.1-2] '#' matches parent level", "sport/#", "sport", true},
	{"[MQTT-4.7.1-2] '#' matches one level below", "sport/#", "sport/tennis", true},
	{"[MQTT-4.7.1-2] '#' matches many levels below", "sport/tennis/player1/#", "sport/tennis/player1/ranking/wimbledon", true},
	{"[MQTT-4.7.1-2] '#' alone matches every topic", "#", "sport/tennis/player1", true},
	{"[MQTT-4.7.1-2] '#' alone matches a one-level topic", "#", "sport", true},
	{"[MQTT-4.7.1-2] '#' matches an empty last level", "sport/#", "sport/", true},
	{"[MQTT-4.7.1-2] '#' does not match a sibling", "sport/tennis/#", "sport/golf", false},
	{"[MQTT-4.7.1-2] '#' does not match a longer parent level", "sport/#", "sports", false},
	{"[MQTT-4.7.1-2] '#' does not match above its parent", "sport/tennis/#", "sport", false},
	{"[MQTT-4.7.1-3] '+' matches exactly one level", "sport/tennis/+", "sport/tennis/player1", true},
	{"[MQTT-4.7.1-3] '+' does not match two levels", "sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"[MQTT-4.7.1-3] '+' does not match a missing level", "sport/+", "sport", false},
	{"[MQTT-4.7.1-3] '+' matches an empty level", "sport/+", "sport/", true},
	{"[MQTT-4.7.1-3] '+' matches an empty first level", "+/+", "/finance", true},
	{"[MQTT-4.7.1-3] '+' after a leading '/'", "/+", "/finance", true},
	{"[MQTT-4.7.1-3] '+' alone does not match two levels", "+", "/finance", false},
	{"[MQTT-4.7.1-3] '+' in the middle", "sport/+/player1", "sport/tennis/player1", true},
	{"[MQTT-4.7.1-3] '+' in the middle, wrong tail", "sport/+/player1", "sport/tennis/player2", false},
	{"[MQTT-4.7.1-3] '+' then '#'", "+/tennis/#", "sport/tennis/player1/ranking", true},
	{"[MQTT-4.7.1-3] '+' then '#' matches parent", "+/tennis/#", "sport/tennis", true},
	{"[MQTT-4.7.1-3] '+' and '+' over empty levels", "+/+", "/", true},
	{"[MQTT-4.7.2-1] '#' does not match a '$' topic", "#", "$SYS/broker/load", false},
	{"[MQTT-4.7.2-1] '#' does not match a one-level '$' topic", "#", "$SYS", false},
	{"[MQTT-4.7.2-1] first-level '+' does not match a '$' topic", "+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"[MQTT-4.7.2-1] '+/#' does not match a '$' topic", "+/#", "$SYS", false},
	{"[MQTT-4.7.2-1] '$SYS/#' matches a '$SYS' topic", "$SYS/#", "$SYS/monitor/Clients", true},
	{"[MQTT-4.7.2-1] '$SYS/#' matches its parent '$SYS'", "$SYS/#", "$SYS", true},
	{"[MQTT-4.7.2-1] '+' after a '$' level matches", "$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"[MQTT-4.7.2-1] '$' in a later level is not special", "a/+", "a/$b", true},
	{"[MQTT-4.7.2-1] '$' in a later level, '#'", "#", "a/$b", true},
	{"[MQTT-4.7.2-1] '$' not at the start is not special", "+", "a$", true},
	{"[4.7.3] empty levels are levels", "a//b", "a//b", true},
	{"[4.7.3] '+' matches an empty middle level", "a/+/b", "a//b", true},
	{"[4.7.3] an empty level is not skipped", "a/b", "a//b", false},
	{"[4.7.3] leading '/' makes a distinct topic", "/a", "a", false},
	{"[4.7.3] leading '/' makes a distinct filter", "a", "/a", false},
	{"[4.7.3] trailing '/' makes a distinct topic", "a/", "a", false},
	{"[4.7.3] a lone '/' is a valid topic", "/", "/", true},
	{"[4.7.3] '#' matches a lone '/'", "#", "/", true},
	{"[4.7.3] '+' does not match a lone '/'", "+", "/", false},
	{"[MQTT-4.7.3-4] matching is case-sensitive", "ACCOUNTS", "Accounts", false},
	{"[MQTT-4.7.3-4] no trimming of spaces", "a/b ", "a/b", false},
	{"[MQTT-4.7.3-4] spaces are ordinary", "Accounts payable/+", "Accounts payable/q1", true},
	{"[MQTT-4.7.3-4] multi-byte UTF-8 levels", "über/+/ß", "über/x/ß", true},
	{"literal match", "a/b/c", "a/b/c", true},
	{"literal filter shorter than topic", "a/b", "a/b/c", false},
	{"literal filter longer than topic", "a/b/c", "a/b", false},
}

func TestMatchFilterRules(t *testing.T) {
	for _, tc := range matchRules {
		t.Run(tc.name, func(t *testing.T) {
			if got := MatchFilter(tc.filter, tc.topic); got != tc.want {
				t.Errorf("MatchFilter(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
			}
		})
	}
}

func TestNextLevel(t *testing.T) {
	for _, s := range []string{"", "a", "/", "//", "a/b", "/a", "a/", "a//b", "sport/tennis/player1", "$SYS/x"} {
		var got []string
		for i := 0; i <= len(s); {
			var level string
			level, i = NextLevel(s, i)
			got = append(got, level)
		}
		if want := strings.Split(s, "/"); !slices.Equal(got, want) {
			t.Errorf("levels of %q = %q, want %q", s, got, want)
		}
	}
	// Out-of-range offsets end the walk instead of panicking.
	for _, i := range []int{-1, 4, 100} {
		if level, next := NextLevel("abc", i); level != "" || next != 4 {
			t.Errorf("NextLevel(abc, %d) = %q, %d; want \"\", 4", i, level, next)
		}
	}
}

func TestFilterLevel(t *testing.T) {
	tests := []struct {
		filter string
		kinds  []Kind
	}{
		{"#", []Kind{MultiLevel}},
		{"+", []Kind{SingleLevel}},
		{"a/+/#", []Kind{Literal, SingleLevel, MultiLevel}},
		{"+/+", []Kind{SingleLevel, SingleLevel}},
		{"a+/#b/++", []Kind{Literal, Literal, Literal}},
		// An invalid non-final '#' is a literal, the same in every matcher.
		{"#/a", []Kind{Literal, Literal}},
		{"", []Kind{Literal}},
	}
	for _, tc := range tests {
		var got []Kind
		for i := 0; i <= len(tc.filter); {
			var kind Kind
			_, kind, i = FilterLevel(tc.filter, i)
			got = append(got, kind)
		}
		if !slices.Equal(got, tc.kinds) {
			t.Errorf("kinds of %q = %v, want %v", tc.filter, got, tc.kinds)
		}
	}
}

func TestWildcardExempt(t *testing.T) {
	for s, want := range map[string]bool{"$SYS/x": true, "$": true, "$share": true, "a/$b": false, "": false, "/$": false} {
		if got := WildcardExempt(s); got != want {
			t.Errorf("WildcardExempt(%q) = %v, want %v", s, got, want)
		}
	}
}

func ExampleMatchFilter() {
	fmt.Println(MatchFilter("sport/#", "sport"))
	fmt.Println(MatchFilter("sport/+", "sport"))
	fmt.Println(MatchFilter("#", "$SYS/uptime"))
	fmt.Println(MatchFilter("$SYS/#", "$SYS/uptime"))
	// Output:
	// true
	// false
	// false
	// true
}

func BenchmarkMatchFilter(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !MatchFilter("site/+/device/7/#", "site/42/device/7/temp") {
			b.Fatal("no match")
		}
	}
}
