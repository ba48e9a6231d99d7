package router

import (
	"iter"
	"strings"
)

const (
	// Children get a level index once there are more than childIndexAbove
	// of them, and lose it again below childIndexBelow; the gap stops a
	// node at the boundary from rebuilding the map on every change.
	childIndexAbove = 8
	childIndexBelow = 4
)

// Children holds the literal children of a tree node, by level: the child
// levels of Trie, and of the retained-message store of package retain.
// They are kept in a slice rather than a map because wildcards iterate
// them, and ranging over a slice was measured several times faster than
// over many small maps; most nodes have one or a few children, where a scan
// also beats hashing the level, and a map would cost a few hundred bytes
// per node. Past childIndexAbove children a map from level to child is
// added, so a node with thousands of children is still searched in
// constant time.
//
// Children allocates the child nodes itself, each together with its level
// and its position in the slice, so the nodes need not carry either. A
// scan, a lookup and a walk touch one object per child, as when the level
// was a field of the node; a slice of (level, *N) pairs instead measured
// 15-80% slower on the wildcard walks of the retained-message store, from
// the extra cache miss per child.
//
// The zero Children is empty and ready to use. A Children is not safe for
// concurrent use; the tree that holds it does the locking.
type Children[N any] struct {
	list  []*entry[N]
	index map[string]*entry[N] // by level, only for many children
}

// entry is one child: the node and where it stands in its parent.
type entry[N any] struct {
	node  N
	level string
	pos   int // in the parent's list
}

// Get returns the child for level, or nil.
func (c *Children[N]) Get(level string) *N {
	if e := c.find(level); e != nil {
		return &e.node
	}
	return nil
}

// GetOrAdd returns the child for level, adding a zero N if there is none.
// The level of a new child is cloned, so it neither pins nor aliases the
// caller's string.
func (c *Children[N]) GetOrAdd(level string) *N {
	if e := c.find(level); e != nil {
		return &e.node
	}
	e := &entry[N]{level: strings.Clone(level), pos: len(c.list)}
	c.list = append(c.list, e)
	switch {
	case c.index != nil:
		c.index[e.level] = e
	case len(c.list) > childIndexAbove:
		c.index = make(map[string]*entry[N], len(c.list))
		for _, k := range c.list {
			c.index[k.level] = k
		}
	}
	return &e.node
}

// Remove removes the child for level, if there is one. The last child
// takes its place, so the order of All changes.
func (c *Children[N]) Remove(level string) {
	e := c.find(level)
	if e == nil {
		return
	}
	last := len(c.list) - 1
	if e.pos != last {
		moved := c.list[last]
		moved.pos = e.pos
		c.list[e.pos] = moved
	}
	c.list[last] = nil
	c.list = c.list[:last]
	if c.index != nil {
		delete(c.index, level)
		if len(c.list) < childIndexBelow {
			c.index = nil
		}
	}
	// Give back the backing array of a crowd that has left.
	if n := cap(c.list); n > 4*childIndexAbove && len(c.list) < n/4 {
		c.list = append([]*entry[N](nil), c.list...)
	}
	if len(c.list) == 0 {
		c.list = nil
	}
}

// Len returns the number of children.
func (c *Children[N]) Len() int {
	return len(c.list)
}

// All yields every child with its level, in no particular order. Children
// must not be added or removed during the iteration.
func (c *Children[N]) All() iter.Seq2[string, *N] {
	return func(yield func(string, *N) bool) {
		for _, e := range c.list {
			if !yield(e.level, &e.node) {
				return
			}
		}
	}
}

// find returns the entry for level, or nil.
func (c *Children[N]) find(level string) *entry[N] {
	if c.index != nil {
		return c.index[level]
	}
	for _, e := range c.list {
		if e.level == level {
			return e
		}
	}
	return nil
}
