package router

import (
	"strings"
	"sync"
)

// Subscriber is one client's interest in a topic, at the QoS it was granted. Key names the client:
// the broker keys the trie by its session handles, so that a match needs no second look-up.
type Subscriber[K comparable] struct {
	Key K
	QoS byte
}

const (
	// A node's subscriber slice gets a client-id index once it is longer
	// than indexAbove, and loses it again below indexBelow; the gap stops a
	// node at the boundary from rebuilding the map on every change. Below
	// the threshold a linear scan beats hashing the client id.
	indexAbove = 16
	indexBelow = 8

	// Match deduplicates by probing the matched nodes or through a pooled
	// map, whichever its cost model predicts is cheaper; the model counts
	// string compares and prices one map operation at mapOpCost of them.
	// BenchmarkDedupStrategies holds the shapes it was fitted to.
	mapOpCost = 8

	// Pooled dedup maps that grew past this many entries are dropped rather
	// than kept, so one huge fan-out does not pin its memory forever.
	maxPooledMap = 1 << 14

	// Stack room for the nodes one Match or one Subscribe touches; deeper
	// or wider walks spill to the heap, which is correct, just slower.
	nodeHint = 16
)

// node is one level of a topic filter. Its own subscribers are the clients
// whose filter ends here.
type node[K comparable] struct {
	kids  Children[node[K]] // literal levels
	plus  *node[K]          // '+' level
	hash  *node[K]          // final '#' level; always a leaf
	subs  []Subscriber[K]
	index map[K]int // Key -> position in subs, only for long subs
	count int       // subscriptions here and below; 0 means prune me
}

// Trie holds every subscription of the broker, keyed by filter level. It is
// safe for concurrent use; Match takes only the read lock, so publishes do
// not serialise against each other.
//
// Subscribe keeps the key as given and copies the filter's levels, so
// callers may pass strings that alias a read buffer only for the filter.
// Filters and topics must be valid (see the package comment).
type Trie[K comparable] struct {
	mu   sync.RWMutex
	root node[K]
	maps sync.Pool // *map[K]int for deduplicating large fan-outs
}

// New returns an empty trie. The zero Trie is ready to use as well.
func New[K comparable]() *Trie[K] {
	return &Trie[K]{}
}

// Subscribe adds key's subscription to filter at qos, or replaces the
// QoS of the one it already has, since a SUBSCRIBE with an identical filter
// replaces the existing subscription [MQTT-3.8.4-3]. It returns true if the
// subscription is new.
func (t *Trie[K]) Subscribe(key K, filter string, qos byte) bool {
	var buf [nodeHint]*node[K]
	path := buf[:0]

	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.root
	for i := 0; i <= len(filter); {
		level, kind, next := FilterLevel(filter, i)
		path = append(path, n)
		n = n.childOrNew(level, kind)
		i = next
	}
	if !n.add(key, qos) {
		return false
	}
	n.count++
	for _, p := range path {
		p.count++
	}
	return true
}

// Unsubscribe removes key's subscription to filter and reports whether
// it existed. Nodes left without subscriptions below them are pruned, so the
// trie's size follows the live subscriptions, not the history of them.
func (t *Trie[K]) Unsubscribe(key K, filter string) bool {
	type step struct {
		parent *node[K]
		level  string
		kind   Kind
	}
	var buf [nodeHint]step
	path := buf[:0]

	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.root
	for i := 0; i <= len(filter); {
		level, kind, next := FilterLevel(filter, i)
		path = append(path, step{n, level, kind})
		if n = n.child(level, kind); n == nil {
			return false
		}
		i = next
	}
	if !n.remove(key) {
		return false
	}
	n.count--
	for k := len(path) - 1; k >= 0; k-- {
		s := path[k]
		s.parent.count--
		if n.count == 0 {
			s.parent.drop(s.level, s.kind)
		}
		n = s.parent
	}
	return true
}

// Match appends to dst every client with a filter that matches topic, once
// per client at the highest QoS among its matching filters [MQTT-3.3.5-1],
// and returns the extended slice. Only the entries Match appends are
// deduplicated; what dst held before is left alone. With enough capacity in
// dst, Match does not allocate, so callers should reuse it.
func (t *Trie[K]) Match(topic string, dst []Subscriber[K]) []Subscriber[K] {
	var buf [nodeHint]*node[K]

	t.mu.RLock()
	defer t.mu.RUnlock()
	nodes := t.root.collect(topic, 0, true, buf[:0])
	switch len(nodes) {
	case 0:
		return dst
	case 1:
		// A node lists each client once: nothing to deduplicate.
		return append(dst, nodes[0].subs...)
	}
	if probingIsCheaper(nodes) {
		return appendProbed(dst, nodes)
	}
	return t.appendMapped(dst, nodes)
}

// Count returns the number of (client, filter) subscriptions.
func (t *Trie[K]) Count() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.root.count
}

// Walk calls fn for every subscription, in no particular order, holding the read lock: fn must
// not call back into t.
func (t *Trie[K]) Walk(fn func(filter string, key K, qos byte)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	t.root.walk(nil, fn)
}

// walk calls fn for the subscriptions at n and below; levels are those of n's filter.
func (n *node[K]) walk(levels []string, fn func(filter string, key K, qos byte)) {
	if len(n.subs) > 0 {
		filter := strings.Join(levels, "/")
		for _, s := range n.subs {
			fn(filter, s.Key, s.QoS)
		}
	}
	for level, c := range n.kids.All() {
		c.walk(append(levels, level), fn)
	}
	if n.plus != nil {
		n.plus.walk(append(levels, "+"), fn)
	}
	if n.hash != nil {
		n.hash.walk(append(levels, "#"), fn)
	}
}

// collect appends to out every node with subscribers whose filter matches
// the levels of topic from offset i on; n is the node for the levels before
// i, and first says that i is the topic's first level.
func (n *node[K]) collect(topic string, i int, first bool, out []*node[K]) []*node[K] {
	for {
		if i > len(topic) {
			if len(n.subs) > 0 {
				out = append(out, n)
			}
			if n.hash != nil {
				out = append(out, n.hash) // '#' also matches its parent level
			}
			return out
		}
		level, next := NextLevel(topic, i)
		if !first || !WildcardExempt(topic) {
			if n.hash != nil {
				out = append(out, n.hash)
			}
			if n.plus != nil {
				out = n.plus.collect(topic, next, false, out)
			}
		}
		c := n.kids.Get(level)
		if c == nil {
			return out
		}
		n, i, first = c, next, false
	}
}

// probingIsCheaper predicts whether appendProbed beats appendMapped on
// nodes. Probing copies the largest node for free and then pays, for every
// other subscriber, one look into each matched node: a scan of a short node
// or one map lookup in an indexed one. The map pays for every subscriber
// an insert or a lookup and update, and then the clear, about three map
// operations in all as measured by BenchmarkDedupStrategies.
func probingIsCheaper[K comparable](nodes []*node[K]) bool {
	total, largest, probe := 0, 0, 0
	for _, n := range nodes {
		total += len(n.subs)
		largest = max(largest, len(n.subs))
		if n.index != nil {
			probe += mapOpCost
		} else {
			probe += len(n.subs)
		}
	}
	return (total-largest)*probe <= total*3*mapOpCost
}

// appendProbed deduplicates without scratch memory by asking the matched
// nodes themselves whether they list a client. The largest node is copied
// out whole, since a node lists each client once; later nodes raise the QoS
// of a client it already emitted in place (its position in dst is its
// position in that node). Any other client is emitted at the first node
// that lists it, at the highest QoS of the nodes after that one, and skipped
// at those later nodes.
func appendProbed[K comparable](dst []Subscriber[K], nodes []*node[K]) []Subscriber[K] {
	big := 0
	for k, n := range nodes {
		if len(n.subs) > len(nodes[big].subs) {
			big = k
		}
	}
	nodes[0], nodes[big] = nodes[big], nodes[0]
	first, base := nodes[0], len(dst)
	dst = append(dst, first.subs...)
	for k := 1; k < len(nodes); k++ {
	subs:
		for _, s := range nodes[k].subs {
			if i := first.find(s.Key); i >= 0 {
				dst[base+i].QoS = max(dst[base+i].QoS, s.QoS)
				continue
			}
			for j := 1; j < k; j++ {
				if nodes[j].find(s.Key) >= 0 {
					continue subs
				}
			}
			for _, m := range nodes[k+1:] {
				if q, ok := m.qosOf(s.Key); ok {
					s.QoS = max(s.QoS, q)
				}
			}
			dst = append(dst, s)
		}
	}
	return dst
}

// appendMapped deduplicates through a map from client id to its position
// in dst, for fan-outs where probing every node would cost more.
func (t *Trie[K]) appendMapped(dst []Subscriber[K], nodes []*node[K]) []Subscriber[K] {
	seen, _ := t.maps.Get().(*map[K]int)
	if seen == nil {
		m := make(map[K]int)
		seen = &m
	}
	for _, n := range nodes {
		for _, s := range n.subs {
			if i, ok := (*seen)[s.Key]; ok {
				dst[i].QoS = max(dst[i].QoS, s.QoS)
				continue
			}
			(*seen)[s.Key] = len(dst)
			dst = append(dst, s)
		}
	}
	if len(*seen) <= maxPooledMap {
		clear(*seen)
		t.maps.Put(seen)
	}
	return dst
}

// child returns the child of n for a filter level, or nil.
func (n *node[K]) child(level string, kind Kind) *node[K] {
	switch kind {
	case SingleLevel:
		return n.plus
	case MultiLevel:
		return n.hash
	}
	return n.kids.Get(level)
}

// childOrNew returns the child of n for a filter level, creating it.
func (n *node[K]) childOrNew(level string, kind Kind) *node[K] {
	switch kind {
	case SingleLevel:
		if n.plus == nil {
			n.plus = &node[K]{}
		}
		return n.plus
	case MultiLevel:
		if n.hash == nil {
			n.hash = &node[K]{}
		}
		return n.hash
	}
	return n.kids.GetOrAdd(level)
}

// drop unlinks the child of n for a filter level.
func (n *node[K]) drop(level string, kind Kind) {
	switch kind {
	case SingleLevel:
		n.plus = nil
	case MultiLevel:
		n.hash = nil
	default:
		n.kids.Remove(level)
	}
}

// find returns the position of key in n.subs, or -1.
func (n *node[K]) find(key K) int {
	if n.index != nil {
		if i, ok := n.index[key]; ok {
			return i
		}
		return -1
	}
	for i := range n.subs {
		if n.subs[i].Key == key {
			return i
		}
	}
	return -1
}

// qosOf returns the QoS key subscribed with at n, if it did.
func (n *node[K]) qosOf(key K) (byte, bool) {
	if i := n.find(key); i >= 0 {
		return n.subs[i].QoS, true
	}
	return 0, false
}

// add inserts key at qos, or replaces its QoS; true if it was new.
func (n *node[K]) add(key K, qos byte) bool {
	if i := n.find(key); i >= 0 {
		n.subs[i].QoS = qos
		return false
	}
	n.subs = append(n.subs, Subscriber[K]{Key: key, QoS: qos})
	switch {
	case n.index != nil:
		n.index[key] = len(n.subs) - 1
	case len(n.subs) > indexAbove:
		n.index = make(map[K]int, len(n.subs))
		for i, s := range n.subs {
			n.index[s.Key] = i
		}
	}
	return true
}

// remove deletes key from n.subs; true if it was there.
func (n *node[K]) remove(key K) bool {
	i := n.find(key)
	if i < 0 {
		return false
	}
	last := len(n.subs) - 1
	if i != last {
		n.subs[i] = n.subs[last]
		if n.index != nil {
			n.index[n.subs[i].Key] = i
		}
	}
	n.subs[last] = Subscriber[K]{} // let the key be collected
	n.subs = n.subs[:last]
	if n.index != nil {
		delete(n.index, key)
		if len(n.subs) < indexBelow {
			n.index = nil
		}
	}
	// Give back the backing array of a crowd that has left.
	if c := cap(n.subs); c > 4*indexAbove && len(n.subs) < c/4 {
		n.subs = append([]Subscriber[K](nil), n.subs...)
	}
	if len(n.subs) == 0 {
		n.subs = nil
	}
	return true
}
