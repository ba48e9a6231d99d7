package broker

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// subscriptionCopies returns the three copies of the subscriptions, by client id: the trie's, the
// registered sessions', and the store's (persistent sessions only); stale names the client ids of
// sessions in the trie that are not the registered ones.
func subscriptionCopies(t *testing.T, b *testBroker) (trie, sessions, store map[string]map[string]byte, stale []string) {
	t.Helper()
	trie, sessions, store = map[string]map[string]byte{}, map[string]map[string]byte{}, map[string]map[string]byte{}
	add := func(m map[string]map[string]byte, id, filter string, qos byte) {
		if m[id] == nil {
			m[id] = map[string]byte{}
		}
		m[id][filter] = qos
	}
	b.srv.trie.Walk(func(filter string, sess *sessionHandle, qos byte) {
		if b.srv.sessions.get(sess.ID) != sess {
			stale = append(stale, sess.ID)
		}
		add(trie, sess.ID, filter, qos)
	})
	for _, sess := range b.srv.sessions.snapshot() {
		subs := sess.lock().Subscriptions()
		sess.unlock()
		for f, q := range subs {
			add(sessions, sess.ID, f, q.QoS)
		}
	}
	inv, err := b.store.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	for _, si := range inv.Sessions {
		for _, sub := range si.Subscriptions {
			add(store, si.ClientID, sub.Filter, sub.QoS)
		}
	}
	return trie, sessions, store, stale
}

// agree reports how the copies differ, or "" when they agree: the trie and the sessions hold the
// same subscriptions, and the store those of the persistent sessions.
func agree(t *testing.T, b *testBroker, persistent func(id string) bool) string {
	trie, sessions, store, stale := subscriptionCopies(t, b)
	if len(stale) > 0 {
		return fmt.Sprintf("the trie holds sessions of %v that are not the registered ones", stale)
	}
	if !maps.EqualFunc(trie, sessions, maps.Equal) {
		return fmt.Sprintf("trie %v, sessions %v", trie, sessions)
	}
	durable := map[string]map[string]byte{}
	for id, subs := range sessions {
		if persistent(id) {
			durable[id] = subs
		}
	}
	if !maps.EqualFunc(durable, store, maps.Equal) {
		return fmt.Sprintf("persistent sessions %v, store %v", durable, store)
	}
	return ""
}

// TestSubscriptionCopiesAgree runs random subscribes, unsubscribes, disconnects, reconnects (a
// persistent client id coming back with clean session discards its session) and restarts, and
// checks after every step that the trie, the sessions and the store hold the same subscriptions.
func TestSubscriptionCopiesAgree(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	b := startBroker(t, func(c *config.Config) { c.Admin.SysInterval.Duration = 0 })
	ids := []string{"p1", "p2", "p3", "c1", "c2"}
	filters := []string{"a", "a/b", "a/+", "#", "a/#", "+/b", "$SYS/x"}
	clean := map[string]bool{} // how each id last connected
	conns := map[string]*mqtttest.Client{}
	persistent := func(id string) bool { return !clean[id] }
	connect := func(id string, cleanSession bool) *mqtttest.Client {
		if c := conns[id]; c != nil {
			c.Send(&codec.Disconnect{})
			c.ExpectClosed()
		}
		c := b.dial()
		c.MustConnect(id, cleanSession)
		clean[id], conns[id] = cleanSession, c
		return c
	}
	pid := uint16(0)
	for step := range 300 {
		id := ids[rng.IntN(len(ids))]
		c := conns[id]
		if c == nil {
			c = connect(id, id[0] == 'c')
		}
		pid++
		var what string
		switch op := rng.IntN(20); {
		case op < 8:
			var subs []codec.Subscription
			for range 1 + rng.IntN(3) {
				subs = append(subs, codec.Subscription{Filter: filters[rng.IntN(len(filters))], QoS: byte(rng.IntN(3))})
			}
			c.Send(&codec.Subscribe{PacketID: pid, Subscriptions: subs})
			mqtttest.Expect[*codec.Suback](c)
			what = fmt.Sprintf("%s subscribes %v", id, subs)
		case op < 14:
			f := []string{filters[rng.IntN(len(filters))], filters[rng.IntN(len(filters))]}
			c.Send(&codec.Unsubscribe{PacketID: pid, Filters: f})
			mqtttest.Expect[*codec.Unsuback](c)
			what = fmt.Sprintf("%s unsubscribes %v", id, f)
		case op < 16:
			c.Send(&codec.Disconnect{})
			c.ExpectClosed()
			delete(conns, id)
			what = id + " disconnects"
		case op < 18:
			cleanSession := rng.IntN(4) == 0 || id[0] == 'c'
			connect(id, cleanSession)
			what = fmt.Sprintf("%s reconnects, clean session %v", id, cleanSession)
		default:
			for id, c := range conns {
				c.Send(&codec.Disconnect{})
				c.ExpectClosed()
				delete(conns, id)
			}
			b.restart()
			what = "restart"
		}
		var diff string
		if !mqtttest.Within(2*time.Second, func() bool { diff = agree(t, b, persistent); return diff == "" }) {
			t.Fatalf("step %d (%s): the copies disagree: %s", step, what, diff)
		}
	}
}
