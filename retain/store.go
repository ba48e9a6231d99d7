package retain

import (
	"bytes"
	"slices"
	"strings"
	"sync"

	"github.com/holdfast/holdfast/router"
)

// Message is one retained PUBLISH. Immutable once stored: the Store hands
// the same pointer to every subscriber without copying, so neither the
// caller of Set nor a receiver of Match may modify it or its Payload.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
}

const (
	// Stack room for the path of one Set; deeper topics spill to the heap.
	pathHint = 16

	// A node's children get a level index once there are more than
	// indexAbove of them and lose it below indexBelow. Most nodes have one
	// or a few children, where a scan is faster than hashing and a map
	// would cost a few hundred bytes per node.
	indexAbove = 8
	indexBelow = 4
)

// node is one topic level. Children are a slice rather than a map because
// '#' and '+' iterate them, and ranging over a slice of pointers is several
// times faster than over many small maps.
type node struct {
	level string
	kids  []*node
	index map[string]int // level -> position in kids, only for many kids
	pos   int            // position in the parent's kids
	msg   *Message       // retained at exactly this topic, or nil
	count int            // messages here and below; 0 means prune me
}

// Store holds the retained messages of the broker, one per topic. It is
// safe for concurrent use; Match takes only the read lock. Topic names and
// filters must be valid (validated by the caller); invalid ones never cause
// a panic, but what they match is unspecified.
type Store struct {
	mu   sync.RWMutex
	root node
}

// New returns an empty store. The zero Store is ready to use as well.
func New() *Store {
	return &Store{}
}

// Set stores m under m.Topic, replacing the message retained there. A
// message with an empty payload is not stored but clears the topic instead
// ([MQTT-3.3.1-10], [MQTT-3.3.1-11]). Set reports whether anything a
// subscriber could observe changed: a topic gained or lost its message, or
// the payload or QoS of its message changed. A false result means there is
// nothing new to persist.
//
// The Store keeps m itself (see Message); a nil m changes nothing.
func (s *Store) Set(m *Message) bool {
	if m == nil {
		return false
	}
	if len(m.Payload) == 0 {
		return s.clear(m.Topic)
	}
	var buf [pathHint]*node
	path := buf[:0]

	s.mu.Lock()
	defer s.mu.Unlock()
	n := &s.root
	for i := 0; i <= len(m.Topic); {
		level, next := router.NextLevel(m.Topic, i)
		path = append(path, n)
		n = n.childOrNew(level)
		i = next
	}
	old := n.msg
	n.msg = m
	if old != nil {
		return old.QoS != m.QoS || !bytes.Equal(old.Payload, m.Payload)
	}
	n.count++
	for _, p := range path {
		p.count++
	}
	return true
}

// clear removes the message retained at topic and prunes the nodes that
// are left empty, so the tree does not keep topics that were ever used.
func (s *Store) clear(topic string) bool {
	var buf [pathHint]*node
	path := buf[:0]

	s.mu.Lock()
	defer s.mu.Unlock()
	n := &s.root
	for i := 0; i <= len(topic); {
		level, next := router.NextLevel(topic, i)
		path = append(path, n)
		if n = n.child(level); n == nil {
			return false
		}
		i = next
	}
	if n.msg == nil {
		return false
	}
	n.msg = nil
	n.count--
	for k := len(path) - 1; k >= 0; k-- {
		parent := path[k]
		parent.count--
		if n.count == 0 {
			parent.unlink(n)
		}
		n = parent
	}
	return true
}

// Match appends to dst every retained message whose topic matches filter,
// with the same rules as router.MatchFilter, and returns the extended slice.
// The order of the messages is unspecified.
func (s *Store) Match(filter string, dst []*Message) []*Message {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.root.match(filter, 0, true, dst)
}

// Len returns the number of retained messages.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.root.count
}

// match appends the messages below n that match the levels of filter from
// offset i on; n is the node for the topic levels before i, and first says
// that i is the filter's first level.
func (n *node) match(filter string, i int, first bool, dst []*Message) []*Message {
	for {
		level, kind, next := router.FilterLevel(filter, i)
		last := next > len(filter)
		switch kind {
		case router.MultiLevel:
			dst = slices.Grow(dst, n.count)
			if n.msg != nil {
				dst = append(dst, n.msg) // '#' also matches its parent level
			}
			for _, c := range n.kids {
				if !first || !router.WildcardExempt(c.level) {
					dst = c.appendAll(dst)
				}
			}
			return dst
		case router.SingleLevel:
			for _, c := range n.kids {
				if first && router.WildcardExempt(c.level) {
					continue
				}
				if last {
					if c.msg != nil {
						dst = append(dst, c.msg)
					}
				} else {
					dst = c.match(filter, next, false, dst)
				}
			}
			return dst
		}
		c := n.child(level)
		if c == nil {
			return dst
		}
		if last {
			if c.msg != nil {
				dst = append(dst, c.msg)
			}
			return dst
		}
		n, i, first = c, next, false
	}
}

// appendAll appends every message in the subtree of n.
func (n *node) appendAll(dst []*Message) []*Message {
	if n.msg != nil {
		dst = append(dst, n.msg)
	}
	for _, c := range n.kids {
		dst = c.appendAll(dst)
	}
	return dst
}

// child returns the child of n for a topic level, or nil.
func (n *node) child(level string) *node {
	if n.index != nil {
		if i, ok := n.index[level]; ok {
			return n.kids[i]
		}
		return nil
	}
	for _, c := range n.kids {
		if c.level == level {
			return c
		}
	}
	return nil
}

// childOrNew returns the child of n for a topic level, creating it.
func (n *node) childOrNew(level string) *node {
	if c := n.child(level); c != nil {
		return c
	}
	// Cloned so the level does not pin the topic of a message that may be
	// replaced long before this node goes away.
	c := &node{level: strings.Clone(level), pos: len(n.kids)}
	n.kids = append(n.kids, c)
	switch {
	case n.index != nil:
		n.index[c.level] = c.pos
	case len(n.kids) > indexAbove:
		n.index = make(map[string]int, len(n.kids))
		for i, k := range n.kids {
			n.index[k.level] = i
		}
	}
	return c
}

// unlink removes the child c from n.
func (n *node) unlink(c *node) {
	last := len(n.kids) - 1
	if c.pos != last {
		moved := n.kids[last]
		moved.pos = c.pos
		n.kids[c.pos] = moved
		if n.index != nil {
			n.index[moved.level] = moved.pos
		}
	}
	n.kids[last] = nil
	n.kids = n.kids[:last]
	if n.index != nil {
		delete(n.index, c.level)
		if len(n.kids) < indexBelow {
			n.index = nil
		}
	}
	if c := cap(n.kids); c > 4*indexAbove && len(n.kids) < c/4 {
		n.kids = append([]*node(nil), n.kids...)
	}
	if len(n.kids) == 0 {
		n.kids = nil
	}
}
