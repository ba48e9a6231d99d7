package router

import (
	"slices"
	"testing"
)

func TestParseShared_MQTT_4_8_2_1(t *testing.T) {
	for _, c := range []struct {
		in           string
		name, filter string
		shared, ok   bool
	}{
		{"a/b", "", "a/b", false, true},
		{"$share/g/a/#", "g", "a/#", true, true},
		{"$share/g//", "g", "/", true, true},
		{"$share/g", "", "", true, false},
		{"$share//a", "", "a", true, false},
		{"$share/g/", "g", "", true, false},
		{"$share/g+/a", "g+", "a", true, false},
		{"$share/#/a", "#", "a", true, false},
		{"$shared/g/a", "", "$shared/g/a", false, true},
	} {
		name, filter, shared, ok := ParseShared(c.in)
		if shared != c.shared || ok != c.ok || ok && (name != c.name || filter != c.filter) {
			t.Errorf("ParseShared(%q) = %q %q %v %v, want %q %q %v %v", c.in, name, filter, shared, ok, c.name, c.filter, c.shared, c.ok)
		}
	}
}

// Each group gets one copy, in turn among its members, preferring online ones.
func TestSharedPick(t *testing.T) {
	var s Shared[string]
	for _, k := range []string{"a", "b", "c"} {
		s.Subscribe(k, "g", "t/+", 1)
	}
	s.Subscribe("x", "h", "t/#", 2)
	all := func(string) bool { return true }
	var got []string
	for range 6 {
		for _, m := range s.Pick("t/1", all, nil) {
			got = append(got, m.Key)
		}
	}
	if want := []string{"a", "x", "b", "x", "c", "x", "a", "x", "b", "x", "c", "x"}; !slices.Equal(sorted2(got), sorted2(want)) || len(got) != 12 {
		t.Fatalf("picks %v", got)
	}
	onlyC := func(k string) bool { return k == "c" }
	for range 3 {
		if m := s.Pick("t/1", onlyC, nil); m[0].Key != "c" && m[1].Key != "c" {
			t.Fatalf("offline members picked while c is online: %v", m)
		}
	}
	none := func(string) bool { return false }
	seen := map[string]int{}
	for range 3 {
		for _, m := range s.Pick("t/1", none, nil) {
			seen[m.Key]++
		}
	}
	if seen["a"] != 1 || seen["b"] != 1 || seen["c"] != 1 {
		t.Fatalf("with every member offline the turns are %v, want one each", seen)
	}
	if !s.Unsubscribe("x", "h", "t/#") || s.Unsubscribe("x", "h", "t/#") {
		t.Fatal("Unsubscribe must remove a member once")
	}
	if m := s.Pick("t/1", all, nil); len(m) != 1 {
		t.Fatalf("after the last member of h left: %v", m)
	}
	if m := s.Pick("u/1", all, nil); len(m) != 0 {
		t.Fatalf("a topic no group filter matches: %v", m)
	}
}

// sorted2 sorts each pair of picks (one per group, in no set order).
func sorted2(s []string) []string {
	out := slices.Clone(s)
	for i := 0; i+1 < len(out); i += 2 {
		if out[i] > out[i+1] {
			out[i], out[i+1] = out[i+1], out[i]
		}
	}
	return out
}
