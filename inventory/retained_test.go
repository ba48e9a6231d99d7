package inventory

import (
	"reflect"
	"testing"
)

func TestRetainedSumUnder(t *testing.T) {
	var r RetainedSum
	for topic, n := range map[string]int{
		"a":       1,
		"a/b":     10,
		"a/b/c":   100,
		"a/b/d":   1000,
		"a/x/y/z": 10000,
		"ab":      100000, // shares a's letters, not its level
		"/lead":   7,      // an empty first level is a level
	} {
		r.Add(topic, n)
	}
	for _, tc := range []struct {
		prefix string
		want   Retained
	}{
		{"", Retained{Prefix: "", Count: 7, Bytes: 111118, Children: []RetainedChild{
			{Topic: "", Count: 1, Bytes: 7},
			{Topic: "a", Count: 5, Bytes: 11111, Leaf: true},
			{Topic: "ab", Count: 1, Bytes: 100000, Leaf: true},
		}}},
		// The prefix's own message counts at the prefix, not as a child.
		{"a", Retained{Prefix: "a", Count: 5, Bytes: 11111, Children: []RetainedChild{
			{Topic: "a/b", Count: 3, Bytes: 1110, Leaf: true},
			{Topic: "a/x", Count: 1, Bytes: 10000},
		}}},
		{"a/b", Retained{Prefix: "a/b", Count: 3, Bytes: 1110, Children: []RetainedChild{
			{Topic: "a/b/c", Count: 1, Bytes: 100, Leaf: true},
			{Topic: "a/b/d", Count: 1, Bytes: 1000, Leaf: true},
		}}},
		{"a/b/c", Retained{Prefix: "a/b/c", Count: 1, Bytes: 100, Children: []RetainedChild{}}},
		{"a/x", Retained{Prefix: "a/x", Count: 1, Bytes: 10000, Children: []RetainedChild{{Topic: "a/x/y", Count: 1, Bytes: 10000}}}},
		{"nothing", Retained{Prefix: "nothing", Children: []RetainedChild{}}},
		{"a/", Retained{Prefix: "a/", Children: []RetainedChild{}}}, // the API refuses it; here it matches nothing
	} {
		if got := r.Under(tc.prefix); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Under(%q) =\n%+v, want\n%+v", tc.prefix, got, tc.want)
		}
	}
	var empty RetainedSum
	if got := empty.Under(""); got.Count != 0 || got.Children == nil || len(got.Children) != 0 {
		t.Errorf("nothing added: Under(\"\") = %+v, want no children (JSON [])", got)
	}
}
