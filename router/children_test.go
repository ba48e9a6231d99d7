package router

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"unsafe"
)

type testNode struct{ id int }

// checkChildren fails t unless c holds exactly want, every child knows its
// position in the slice, every lookup through the slice or the index finds
// the right child, the index exists exactly when indexed says so and agrees
// with the slice, and missing levels are not found.
func checkChildren(t *testing.T, c *Children[testNode], want map[string]*testNode, indexed bool) {
	t.Helper()
	if c.Len() != len(want) || len(c.list) != len(want) {
		t.Fatalf("Len = %d, list %d, want %d", c.Len(), len(c.list), len(want))
	}
	if (c.index != nil) != indexed {
		t.Fatalf("with %d children: index present = %v, want %v", len(want), c.index != nil, indexed)
	}
	for i, e := range c.list {
		if e.pos != i {
			t.Fatalf("child %q at %d says it is at %d", e.level, i, e.pos)
		}
	}
	if c.index != nil {
		if len(c.index) != len(c.list) {
			t.Fatalf("index has %d entries, list %d", len(c.index), len(c.list))
		}
		for _, e := range c.list {
			if c.index[e.level] != e {
				t.Fatalf("index[%q] = %p, want %p", e.level, c.index[e.level], e)
			}
		}
	}
	for level, n := range want {
		if got := c.Get(level); got != n {
			t.Fatalf("Get(%q) = %p, want %p", level, got, n)
		}
	}
	for _, level := range []string{"missing", "", "x/y"} {
		if _, ok := want[level]; !ok && c.Get(level) != nil {
			t.Fatalf("Get(%q) of a missing level = %v", level, c.Get(level))
		}
	}
	if got := maps.Collect(c.All()); !maps.Equal(got, want) {
		t.Fatalf("All = %v, want %v", got, want)
	}
	if c.Len() == 0 && (c.list != nil || c.index != nil) {
		t.Fatalf("empty Children keeps list %v, index %v", c.list, c.index)
	}
}

func TestChildrenIndexThresholds(t *testing.T) {
	var c Children[testNode]
	want := map[string]*testNode{}
	checkChildren(t, &c, want, false)

	// Past childIndexAbove children the index appears, and is kept in step
	// from then on.
	for i := range 3 * childIndexAbove {
		level := fmt.Sprintf("l%d", i)
		n := c.GetOrAdd(level)
		if n == nil || *n != (testNode{}) {
			t.Fatalf("GetOrAdd(%q) = %v, want a new zero node", level, n)
		}
		n.id = i
		want[level] = n
		checkChildren(t, &c, want, len(want) > childIndexAbove)
		if again := c.GetOrAdd(level); again != n {
			t.Fatalf("second GetOrAdd(%q) = %p, want the same %p", level, again, n)
		}
	}

	// Removing keeps the index until fewer than childIndexBelow remain,
	// even below childIndexAbove, so a node at the boundary does not
	// rebuild the map on every change.
	for i := 3*childIndexAbove - 1; i >= 0; i-- {
		level := fmt.Sprintf("l%d", i)
		c.Remove(level)
		delete(want, level)
		checkChildren(t, &c, want, len(want) >= childIndexBelow)
		c.Remove(level) // a missing level is a no-op
		checkChildren(t, &c, want, len(want) >= childIndexBelow)
	}

	// Growing again from below childIndexBelow: no index until past
	// childIndexAbove.
	for i := range childIndexAbove + 1 {
		level := fmt.Sprintf("m%d", i)
		want[level] = c.GetOrAdd(level)
		checkChildren(t, &c, want, len(want) > childIndexAbove)
	}
}

func TestChildrenSwapRemoval(t *testing.T) {
	// Random adds and removes, in and out of the indexed range: the child
	// moved into a removed one's place must still be found, through the
	// slice and through the index alike.
	rng := rand.New(rand.NewPCG(9, 10))
	var c Children[testNode]
	want := map[string]*testNode{}
	indexed, flips := false, 0
	for step := range 5000 {
		level := fmt.Sprintf("l%d", rng.IntN(40))
		// Drift between many and few children so the index comes and goes.
		addP := 0.8
		if step/500%2 == 1 {
			addP = 0.08
		}
		if rng.Float64() < addP {
			n := c.GetOrAdd(level)
			if old, ok := want[level]; ok && old != n {
				t.Fatalf("GetOrAdd(%q) replaced an existing child", level)
			}
			want[level] = n
		} else {
			c.Remove(level)
			delete(want, level)
		}
		checkChildren(t, &c, want, c.index != nil)
		if n := len(want); n > childIndexAbove && c.index == nil || n < childIndexBelow && c.index != nil {
			t.Fatalf("step %d: %d children, index present %v", step, n, c.index != nil)
		}
		if c.index != nil != indexed {
			indexed = c.index != nil
			flips++
		}
	}
	if flips < 4 {
		t.Fatalf("the index came or went only %d times", flips)
	}
}

func TestChildrenRemoveClearsSlot(t *testing.T) {
	// The vacated slot past the end must not keep the level or the node
	// alive.
	var c Children[testNode]
	for i := range 3 {
		c.GetOrAdd(fmt.Sprint(i))
	}
	c.Remove("0")
	if tail := c.list[:3][2]; tail != nil {
		t.Fatalf("vacated slot holds %+v", tail)
	}
}

func TestChildrenShrink(t *testing.T) {
	// A crowd that has left gives back its backing array.
	var c Children[testNode]
	const n = 1000
	for i := range n {
		c.GetOrAdd(fmt.Sprint(i))
	}
	grown := cap(c.list)
	for i := range n - 10 {
		c.Remove(fmt.Sprint(i))
		if l, k := len(c.list), cap(c.list); k > 4*childIndexAbove && l < k/4 {
			t.Fatalf("after removing %d: len %d, cap %d not shrunk", i+1, l, k)
		}
	}
	if cap(c.list) >= grown/4 {
		t.Fatalf("cap %d with %d children, was %d", cap(c.list), len(c.list), grown)
	}
	for i := n - 10; i < n; i++ {
		if c.Get(fmt.Sprint(i)) == nil {
			t.Fatalf("child %d lost in the shrink", i)
		}
	}
	for i := n - 10; i < n; i++ {
		c.Remove(fmt.Sprint(i))
	}
	if c.list != nil || c.index != nil || c.Len() != 0 {
		t.Fatalf("empty Children keeps list %v, index %v", c.list, c.index)
	}
}

func TestChildrenClonesLevel(t *testing.T) {
	var c Children[testNode]
	buf := []byte("abc/def")
	level := unsafe.String(&buf[0], 3) // aliases buf, like a read buffer
	c.GetOrAdd(level)
	if stored := c.list[0].level; unsafe.StringData(stored) == &buf[0] {
		t.Fatal("GetOrAdd kept the caller's string")
	}
	copy(buf, "xyz")
	if c.Get("abc") == nil {
		t.Fatal("child lost when the caller's buffer changed")
	}
}

func TestChildrenAllStopsEarly(t *testing.T) {
	var c Children[testNode]
	for i := range 5 {
		c.GetOrAdd(fmt.Sprint(i))
	}
	seen := 0
	for range c.All() {
		seen++
		if seen == 2 {
			break
		}
	}
	if seen != 2 {
		t.Fatalf("saw %d children, want to stop at 2", seen)
	}
}
