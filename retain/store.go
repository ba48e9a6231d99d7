package retain

import (
	"bytes"
	"slices"
	"sync"

	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/router"
)

// Message is one retained PUBLISH. Immutable once stored: the Store hands
// the same pointer to every subscriber without copying, so neither the
// caller of Set nor a receiver of Match may modify it or its Payload.
type Message struct {
	message.Message        // Topic, Payload, QoS and, at MQTT 5, the properties and expiry it goes out with
	Owner           string // client id of the publisher, for Limits.PerOwner; "" counts for nobody
}

// size is what a message costs against Limits.Bytes.
func (m *Message) size() int64 { return int64(len(m.Topic) + len(m.Payload)) }

// Limits bound what the store may grow to; a zero field is no limit.
type Limits struct {
	Messages int   // retained messages in all
	Bytes    int64 // their topic and payload bytes
	PerOwner int   // messages one publisher (Message.Owner) holds
}

// Stack room for the path of one Set; deeper topics spill to the heap.
const pathHint = 16

// node is one topic level. Its children are a router.Children, which '#'
// and '+' iterate: see there why that is a slice rather than a map.
type node struct {
	kids  router.Children[node]
	msg   *Message // retained at exactly this topic, or nil
	count int      // messages here and below; 0 means prune me
}

// Store holds the retained messages of the broker, one per topic. It is
// safe for concurrent use; Match takes only the read lock. Topic names and
// filters must be valid (validated by the caller); invalid ones never cause
// a panic, but what they match is unspecified.
type Store struct {
	mu     sync.RWMutex
	root   node
	bytes  int64          // topic and payload bytes of every message
	owners map[string]int // messages held per Message.Owner
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
		n = n.kids.GetOrAdd(level)
		i = next
	}
	old := n.msg
	n.msg = m
	s.account(m, 1)
	if old != nil {
		s.account(old, -1)
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
	type step struct {
		parent *node
		level  string
	}
	var buf [pathHint]step
	path := buf[:0]

	s.mu.Lock()
	defer s.mu.Unlock()
	n := &s.root
	for i := 0; i <= len(topic); {
		level, next := router.NextLevel(topic, i)
		path = append(path, step{n, level})
		if n = n.kids.Get(level); n == nil {
			return false
		}
		i = next
	}
	if n.msg == nil {
		return false
	}
	s.account(n.msg, -1)
	n.msg = nil
	n.count--
	for k := len(path) - 1; k >= 0; k-- {
		p := path[k]
		p.parent.count--
		if n.count == 0 {
			p.parent.kids.Remove(p.level)
		}
		n = p.parent
	}
	return true
}

// account adds (sign 1) or removes (-1) m from the byte and owner totals; s.mu is held.
func (s *Store) account(m *Message, sign int) {
	s.bytes += int64(sign) * m.size()
	if m.Owner == "" {
		return
	}
	if s.owners == nil {
		s.owners = make(map[string]int)
	}
	if s.owners[m.Owner] += sign; s.owners[m.Owner] == 0 {
		delete(s.owners, m.Owner)
	}
}

// Fits reports whether storing m (replacing the message at m.Topic, if any) keeps the store
// within lim, and if not, which limit it would pass. An update that does not grow a total is
// always let in, so a store that is over a limit (lowered since the messages were stored) still
// takes replacements and clears. Concurrent updates between Fits and Set can each pass the
// same check: a limit can be overshot by as many updates as run at that moment.
func (s *Store) Fits(m *Message, lim Limits) (bool, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	old := s.root.lookup(m.Topic)
	count, newCount := s.root.count, s.root.count
	bytes, newBytes := s.bytes, s.bytes+m.size()
	owned, newOwned := s.owners[m.Owner], s.owners[m.Owner]+1
	if old == nil {
		newCount++
	} else {
		newBytes -= old.size()
		if old.Owner == m.Owner {
			newOwned--
		}
	}
	switch {
	case lim.Messages > 0 && newCount > lim.Messages && newCount > count:
		return false, "messages"
	case lim.Bytes > 0 && newBytes > lim.Bytes && newBytes > bytes:
		return false, "bytes"
	case lim.PerOwner > 0 && m.Owner != "" && newOwned > lim.PerOwner && newOwned > owned:
		return false, "per_owner"
	}
	return true, ""
}

// lookup returns the message retained at exactly topic, or nil.
func (n *node) lookup(topic string) *Message {
	for i := 0; i <= len(topic); {
		level, next := router.NextLevel(topic, i)
		if n = n.kids.Get(level); n == nil {
			return nil
		}
		i = next
	}
	return n.msg
}

// Bytes returns the topic and payload bytes of every retained message.
func (s *Store) Bytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bytes
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
			for childLevel, c := range n.kids.All() {
				if !first || !router.WildcardExempt(childLevel) {
					dst = c.appendAll(dst)
				}
			}
			return dst
		case router.SingleLevel:
			for childLevel, c := range n.kids.All() {
				if first && router.WildcardExempt(childLevel) {
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
		c := n.kids.Get(level)
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
	for _, c := range n.kids.All() {
		dst = c.appendAll(dst)
	}
	return dst
}
