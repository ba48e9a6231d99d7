package router

import (
	"strings"
	"sync"
	"sync/atomic"
)

// SharePrefix starts the filter of a shared subscription: $share/{ShareName}/{filter} (§4.8.2).
const SharePrefix = "$share/"

// ParseShared splits a shared subscription's filter into its share name and the filter it
// subscribes to. shared is false for an ordinary filter; ok is false for a shared one that is
// malformed: an empty share name or filter, or a name with '+' or '#' [MQTT-4.8.2-1],
// [MQTT-4.8.2-2].
func ParseShared(f string) (name, filter string, shared, ok bool) {
	rest, shared := strings.CutPrefix(f, SharePrefix)
	if !shared {
		return "", f, false, true
	}
	name, filter, found := strings.Cut(rest, "/")
	ok = found && name != "" && filter != "" && !strings.ContainsAny(name, "+#")
	return name, filter, true, ok
}

// Shared holds the shared subscriptions: the subscribers to one filter under one share name form
// a group, and each message that matches the filter goes to one member of each group. It is safe
// for concurrent use; Pick calls its callback holding the lock, so the callback must not call
// back into Shared.
type Shared[K comparable] struct {
	mu     sync.Mutex
	trie   Trie[*group[K]]
	groups map[string]*group[K] // by share name and filter
	n      atomic.Int32         // len(groups), read without the lock: most brokers have none
}

// group is one share name's subscribers to one filter, in subscription order; next is where the
// round robin resumes.
type group[K comparable] struct {
	members []Subscriber[K]
	next    int
}

func groupKey(name, filter string) string { return name + "\x00" + filter }

// Subscribe adds key to the group of name and filter at qos, or replaces its QoS; true if new.
func (s *Shared[K]) Subscribe(key K, name, filter string, qos byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := groupKey(name, filter)
	g := s.groups[k]
	if g == nil {
		if s.groups == nil {
			s.groups = make(map[string]*group[K])
		}
		g = &group[K]{}
		s.groups[k] = g
		s.n.Add(1)
		s.trie.Subscribe(g, filter, 0)
	}
	for i := range g.members {
		if g.members[i].Key == key {
			g.members[i].QoS = qos
			return false
		}
	}
	g.members = append(g.members, Subscriber[K]{Key: key, QoS: qos})
	return true
}

// Unsubscribe removes key from the group of name and filter; true if it was a member. The last
// member's leaving removes the group.
func (s *Shared[K]) Unsubscribe(key K, name, filter string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := groupKey(name, filter)
	g := s.groups[k]
	if g == nil {
		return false
	}
	for i := range g.members {
		if g.members[i].Key != key {
			continue
		}
		g.members = append(g.members[:i], g.members[i+1:]...)
		if i < g.next {
			g.next--
		}
		if len(g.members) == 0 {
			delete(s.groups, k)
			s.n.Add(-1)
			s.trie.Unsubscribe(g, filter)
		}
		return true
	}
	return false
}

// Pick appends to dst, for every group whose filter matches topic, the member that gets the
// message: the next one in turn that online accepts, or, when none does, the next one in turn
// (its session keeps the message until it is back). Every member takes its turn.
func (s *Shared[K]) Pick(topic string, online func(K) bool, dst []Subscriber[K]) []Subscriber[K] {
	if s.n.Load() == 0 {
		return dst // without taking the lock that every publish would otherwise contend for
	}
	var buf [nodeHint]Subscriber[*group[K]]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.trie.Match(topic, buf[:0]) {
		g := m.Key
		n := len(g.members)
		pick := g.next % n
		for i := range n {
			if j := (g.next + i) % n; online(g.members[j].Key) {
				pick = j
				break
			}
		}
		g.next = (pick + 1) % n
		dst = append(dst, g.members[pick])
	}
	return dst
}
