package test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// Regression tests of the second security review (issue 11), one per item, named after it.

// secUntil returns the PUBLISH packets c receives before (and excluding) the marker payload on
// topic: tests send a marker after what must not be delivered and look at what came first.
func secUntil(t *testing.T, c *mqtttest.Client, topic, marker string) []*codec.Publish {
	t.Helper()
	c = c.For(t)
	var got []*codec.Publish
	for {
		p := c.NextPublish()
		if p.Topic == topic && string(p.Payload) == marker {
			return got
		}
		got = append(got, p)
	}
}

// secNoneUnder fails if any of got is on a topic under prefix.
func secNoneUnder(t *testing.T, got []*codec.Publish, prefix string) {
	t.Helper()
	for _, p := range got {
		if strings.HasPrefix(p.Topic, prefix) {
			t.Errorf("received %q %q (retain=%v), which the ACL does not let this client read", p.Topic, p.Payload, p.Retain)
		}
	}
}

const sec2ACL = `user writer
topic readwrite #

user reader
topic read #
topic deny secret/#

user narrow
topic read public/#
topic write public/marker
`

// TestSecurity01_RetainedMessagesHonourTheACL: every delivery path asks the same read check. A
// reader whose ACL denies secret/# subscribes to # (3.1.1) or to secret/# and $SYS/# (3.1, where
// a refused filter is answered with the requested QoS) and gets no retained message under
// secret/ or $SYS/, no live or will message under secret/, nor a queued one.
func TestSecurity01_RetainedMessagesHonourTheACL(t *testing.T) {
	dir := t.TempDir()
	pw, acl := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	for _, u := range []string{"writer", "reader", "narrow"} {
		secSetPassword(t, pw, u, u+" pw")
	}
	secWriteFile(t, acl, sec2ACL)
	b := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf("[auth]\npassword_file = %q\nacl_file = %q\n[admin]\nsys_interval = \"50ms\"\n", pw, acl)})
	user := func(name, id string) secCreds { return secCreds{id: id, user: name, password: name + " pw"} }

	writer := secMustConnect(t, b, user("writer", "writer"))
	for i, topic := range []string{"secret/a", "secret/b/c", "public/a"} {
		msg := &codec.Publish{Topic: topic, Payload: []byte("retained " + topic), QoS: 1, Retain: true, PacketID: uint16(i + 1)}
		writer.Send(msg)
		writer.Await(codec.TypePuback)
	}

	t.Run("3.1.1 reader subscribing to #", func(t *testing.T) {
		r := secMustConnect(t, b, user("reader", "reader-311"))
		secSubscribe(t, r, 1, []byte{1}, secSub("#", 1))
		secPublish(t, writer, 10, "public/marker", "m1", 1)
		got := secUntil(t, r, "public/marker", "m1")
		secNoneUnder(t, got, "secret/")
		seen := false
		for _, p := range got {
			seen = seen || p.Topic == "public/a" && p.Retain
		}
		if !seen {
			t.Errorf("the retained message on public/a, which the reader may read, was not delivered (got %d messages)", len(got))
		}
	})

	t.Run("3.1 client subscribing to refused filters", func(t *testing.T) {
		cr := user("narrow", "narrow-31")
		cr.level = codec.Level31
		r := secMustConnect(t, b, cr)
		// 3.1 has no failure code: the refused filters are answered with the requested QoS.
		secSubscribe(t, r, 1, []byte{1, 0, 1}, secSub("secret/#", 1), secSub("$SYS/#", 0), secSub("public/#", 1))
		secPublish(t, writer, 11, "public/marker", "m2", 1)
		got := secUntil(t, r, "public/marker", "m2")
		secNoneUnder(t, got, "secret/")
		secNoneUnder(t, got, "$SYS/")
	})

	t.Run("live, queued and will messages", func(t *testing.T) {
		r := secMustConnect(t, b, secCreds{id: "reader-p", user: "reader", password: "reader pw", persistent: true})
		secSubscribe(t, r, 1, []byte{1}, secSub("#", 1))
		secUntil(t, r, "public/a", "retained public/a")
		r.Conn.Close()
		// Offline: both are routed now, only the readable one may be queued.
		secPublish(t, writer, 12, "secret/queued", "q", 1)
		secPublish(t, writer, 13, "public/queued", "q", 1)
		w := secCreds{id: "will-owner", user: "writer", password: "writer pw",
			will: &codec.Will{Topic: "secret/will", Payload: []byte("will"), QoS: 1}}
		wc := secMustConnect(t, b, w)
		wc.Conn.Close() // no DISCONNECT: the will is published
		r = secMustConnect(t, b, secCreds{id: "reader-p", user: "reader", password: "reader pw", persistent: true})
		secPublish(t, writer, 14, "secret/live", "l", 1)
		secPublish(t, writer, 15, "public/marker", "m3", 1)
		got := secUntil(t, r, "public/marker", "m3")
		secNoneUnder(t, got, "secret/")
		queued := false
		for _, p := range got {
			queued = queued || p.Topic == "public/queued"
		}
		if !queued {
			t.Errorf("the readable message queued while offline was not delivered")
		}
	})
}

// TestSecurity05_ACLReloadReachesQueuedMessages: after SIGHUP takes read access away, messages
// already queued for a session are not delivered, and the subscription the new ACL refuses is
// removed.
func TestSecurity05_ACLReloadReachesQueuedMessages(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	const v1 = "topic readwrite q/#\ntopic readwrite m/#\n"
	const v2 = "topic write q/#\ntopic readwrite m/#\n"
	secWriteFile(t, acl, v1)
	b, api := apiStart(t, BrokerConfig{Extra: fmt.Sprintf("[auth]\nacl_file = %q\n", acl)})
	secWaitReady(t, b)

	pub := secMustConnect(t, b, secCreds{id: "pub"})
	sub := secMustConnect(t, b, secCreds{id: "sub", persistent: true})
	secSubscribe(t, sub, 1, []byte{1, 1}, secSub("q/#", 1), secSub("m/#", 1))
	sub.Send(&codec.Disconnect{})
	sub.ExpectClosed()
	// The broker closes the socket before it takes the session offline: a message published in
	// between is sent on the dying connection and resent after the reconnect (where the reloaded
	// ACL stops it too: session's TestResendAsksMayRead). This test is about messages queued
	// while offline.
	for deadline := time.Now().Add(10 * time.Second); api.session("sub").Online; {
		if time.Now().After(deadline) {
			t.Fatal("the session is still online 10 s after its DISCONNECT")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 5 {
		secPublish(t, pub, uint16(i+1), "q/x", fmt.Sprintf("queued %d", i), 1)
	}

	secWriteFile(t, acl, v2)
	secSIGHUP(t, b, `"subscription removed"`, func(l secLogLine) bool {
		return strings.Contains(l.raw, "subscription removed") && strings.Contains(l.raw, `"q/#"`)
	})

	sub = secMustConnect(t, b, secCreds{id: "sub", persistent: true})
	secPublish(t, pub, 10, "q/x", "after reload", 1)
	secPublish(t, pub, 11, "m/x", "marker", 1)
	got := secUntil(t, sub, "m/x", "marker")
	secNoneUnder(t, got, "q/")
	// The subscription is gone: subscribing again is refused by the new rules.
	secSubscribe(t, sub, 2, []byte{0x80}, secSub("q/#", 1))
}

// TestSecurity08_ClientsCannotPublishToSYS: a client's PUBLISH to $SYS/... is acknowledged and
// dropped unless the ACL grants that topic explicitly.
func TestSecurity08_ClientsCannotPublishToSYS(t *testing.T) {
	t.Run("no ACL", func(t *testing.T) {
		b := StartBroker(t, BrokerConfig{})
		sub := secMustConnect(t, b, secCreds{id: "sub"})
		secSubscribe(t, sub, 1, []byte{1, 1}, secSub("$SYS/fake/#", 1), secSub("m", 1))
		pub := secMustConnect(t, b, secCreds{id: "pub"})
		for qos := byte(0); qos <= 2; qos++ {
			secPublish(t, pub, uint16(qos+1), "$SYS/fake/x", "forged", qos)
		}
		pub.Send(&codec.Publish{Topic: "$SYS/fake/r", Payload: []byte("forged retained"), Retain: true})
		secPublish(t, pub, 9, "m", "marker", 1)
		secNoneUnder(t, secUntil(t, sub, "m", "marker"), "$SYS/")
		late := secMustConnect(t, b, secCreds{id: "late"})
		secSubscribe(t, late, 1, []byte{1, 1}, secSub("$SYS/fake/#", 1), secSub("m", 1))
		secPublish(t, pub, 10, "m", "marker 2", 1)
		secNoneUnder(t, secUntil(t, late, "m", "marker 2"), "$SYS/")
	})
	t.Run("ACL grants it", func(t *testing.T) {
		acl := filepath.Join(t.TempDir(), "acl")
		secWriteFile(t, acl, "topic readwrite $SYS/fake/#\ntopic readwrite m\ntopic write $SYS/other\n")
		b := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf("[auth]\nacl_file = %q\n", acl)})
		sub := secMustConnect(t, b, secCreds{id: "sub"})
		secSubscribe(t, sub, 1, []byte{1, 1}, secSub("$SYS/fake/#", 1), secSub("m", 1))
		pub := secMustConnect(t, b, secCreds{id: "pub"})
		secPublish(t, pub, 1, "$SYS/fake/x", "granted", 1)
		secExpectNext(t, sub, "$SYS/fake/x", "granted")
	})
}

// TestSecurity13_UsernameWithoutPasswordRefused: a CONNECT with a username and no password flag
// is refused with 0x04, even for a user whose password is empty.
func TestSecurity13_UsernameWithoutPasswordRefused(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "passwd")
	secSetPassword(t, pw, "empty", "")
	secSetPassword(t, pw, "alice", "alice pw")
	b := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf("[auth]\npassword_file = %q\n", pw)})
	secExpectCode(t, b, secCreds{id: "e1", user: "empty", noPassword: true}, codec.RefusedBadUsernameOrPassword)
	secExpectCode(t, b, secCreds{id: "a1", user: "alice", noPassword: true}, codec.RefusedBadUsernameOrPassword)
	secExpectCode(t, b, secCreds{id: "a2", user: "alice", noPassword: true, level: codec.Level31}, codec.RefusedBadUsernameOrPassword)
	secMustConnect(t, b, secCreds{id: "e2", user: "empty", password: ""})
	secMustConnect(t, b, secCreds{id: "a3", user: "alice", password: "alice pw"})
}

// secRetainedTopics subscribes a fresh client to filter and returns the topics of the retained
// messages it gets before a marker published by pub on topic m.
func secRetainedTopics(t *testing.T, b *Broker, pub *mqtttest.Client, id, filter string) []string {
	t.Helper()
	c := secMustConnect(t, b, secCreds{id: id})
	secSubscribe(t, c, 1, []byte{1, 1}, secSub(filter, 1), secSub("m", 1))
	secPublish(t, pub, 999, "m", "marker "+id, 1)
	got := secUntil(t, c, "m", "marker "+id)
	// Nothing orders a SUBSCRIBE's retained messages against another client's publish that
	// follows its SUBACK: the marker may overtake retained messages still being queued (seen once
	// in CI, with the subscriber's reader descheduled). Those come next, before the connection
	// falls silent.
	for {
		p, err := c.TryRead(500 * time.Millisecond)
		if mqtttest.IsTimeout(err) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pub, ok := p.(*codec.Publish)
		if !ok {
			t.Fatalf("got %s after the marker, want retained PUBLISH packets or silence", mqtttest.String(p))
		}
		got = append(got, pub)
	}
	var topics []string
	for _, p := range got {
		if !p.Retain {
			t.Errorf("%q arrived without the retain flag while only retained messages were expected", p.Topic)
		}
		topics = append(topics, p.Topic)
	}
	slices.Sort(topics)
	return topics
}

// TestSecurity07_RetainedStoreLimits: past limits.max_retained_messages, max_retained_bytes or
// max_retained_per_client a retained PUBLISH is delivered but not stored, and logged once per
// connection; replacing and clearing always work; a restart with a store over a lowered limit
// starts and serves.
func TestSecurity07_RetainedStoreLimits(t *testing.T) {
	b := StartBroker(t, BrokerConfig{Extra: "[limits]\nmax_retained_messages = 6\nmax_retained_bytes = 1000\nmax_retained_per_client = 3\n"})
	live := secMustConnect(t, b, secCreds{id: "live"})
	secSubscribe(t, live, 1, []byte{1}, secSub("r/#", 1))
	retained := func(c *mqtttest.Client, pid uint16, topic, payload string) {
		t.Helper()
		c.Send(&codec.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: true, PacketID: pid})
		c.Await(codec.TypePuback)
		secExpectNext(t, live, topic, payload) // delivered live whether it is stored or not
	}
	a := secMustConnect(t, b, secCreds{id: "client-a"})
	for i := 1; i <= 4; i++ {
		retained(a, uint16(i), fmt.Sprintf("r/a%d", i), "a")
	}
	if got, want := secRetainedTopics(t, b, a, "late1", "r/#"), []string{"r/a1", "r/a2", "r/a3"}; !slices.Equal(got, want) {
		t.Errorf("per-client limit 3: retained %v, want %v", got, want)
	}
	retained(a, 5, "r/a1", "a replaced") // a replacement does not grow the count
	bc := secMustConnect(t, b, secCreds{id: "client-b"})
	for i := 1; i <= 4; i++ {
		retained(bc, uint16(i), fmt.Sprintf("r/b%d", i), "b")
	}
	if got, want := secRetainedTopics(t, b, a, "late2", "r/#"), []string{"r/a1", "r/a2", "r/a3", "r/b1", "r/b2", "r/b3"}; !slices.Equal(got, want) {
		t.Errorf("broker limit 6: retained %v, want %v", got, want)
	}
	for i, topic := range []string{"r/a2", "r/a3"} { // clearing is always allowed
		a.Send(&codec.Publish{Topic: topic, Retain: true, QoS: 1, PacketID: uint16(10 + i)})
		a.Await(codec.TypePuback)
		secExpectNext(t, live, topic, "")
	}
	d := secMustConnect(t, b, secCreds{id: "client-d"})
	retained(d, 1, "r/d1", "d")
	// 5 messages of a few bytes each: 990 more pass max_retained_bytes (1000).
	retained(d, 2, "r/big", strings.Repeat("x", 990))
	if got, want := secRetainedTopics(t, b, a, "late3", "r/#"), []string{"r/a1", "r/b1", "r/b2", "r/b3", "r/d1"}; !slices.Equal(got, want) {
		t.Errorf("after clearing two: retained %v, want %v", got, want)
	}
	if n := strings.Count(b.Log(), `"client_id":"client-a","topic":"r/a4","limit":"per_owner"`); n != 1 {
		t.Errorf("client-a's refused retained message logged %d times, want 1", n)
	}
	if n := strings.Count(b.Log(), `"client_id":"client-d","topic":"r/big","limit":"bytes"`); n != 1 {
		t.Errorf("client-d's refusal by max_retained_bytes logged %d times, want 1", n)
	}
	if n := strings.Count(b.Log(), `"client_id":"client-b"`+`,"topic":"r/b4","limit":"messages"`); n != 1 {
		t.Errorf("client-b's refusal logged %d times, want once:\n%s", n, b.Log())
	}

	t.Run("restart over a lowered limit", func(t *testing.T) {
		b.Stop()
		cfg, err := os.ReadFile(b.Config)
		if err != nil {
			t.Fatal(err)
		}
		secWriteFile(t, b.Config, strings.Replace(string(cfg), "max_retained_messages = 6", "max_retained_messages = 3", 1))
		b.Start()
		if !strings.Contains(b.Log(), "more retained messages than the limits allow") {
			t.Errorf("no warning that the store is over the lowered limit")
		}
		pub := secMustConnect(t, b, secCreds{id: "client-a"})
		pub.Send(&codec.Publish{Topic: "r/new", Payload: []byte("n"), QoS: 1, Retain: true, PacketID: 1})
		pub.Await(codec.TypePuback)
		pub.Send(&codec.Publish{Topic: "r/b1", Payload: []byte("b1 replaced"), QoS: 1, Retain: true, PacketID: 2})
		pub.Await(codec.TypePuback)
		if got, want := secRetainedTopics(t, b, pub, "late4", "r/#"), []string{"r/a1", "r/b1", "r/b2", "r/b3", "r/d1"}; !slices.Equal(got, want) {
			t.Errorf("after restart: retained %v, want %v", got, want)
		}
	})
}

// secRace sends the CONNECTs of creds at once, each on its own connection, and returns, for each,
// the CONNACK code (or -1 when the connection closed without one) and whether the connection is
// still served once every CONNECT has been answered.
func secRace(t *testing.T, b *Broker, creds []secCreds) (codes []int, alive []bool) {
	t.Helper()
	clients := make([]*mqtttest.Client, len(creds))
	for i := range creds {
		clients[i] = mqtttest.Dial(t, b.Addr)
	}
	codes, alive = make([]int, len(creds)), make([]bool, len(creds))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Write(creds[i].packet()); err != nil {
				codes[i] = -1
				return
			}
			p, err := c.TryRead(mqtttest.Timeout)
			if ack, ok := p.(*codec.Connack); err == nil && ok {
				codes[i] = int(ack.ReturnCode)
			} else {
				codes[i] = -1
			}
		}()
	}
	wg.Wait()
	// Every claim has happened (a CONNACK follows its claim, and a take-over closes the previous
	// connection before the new one is answered): only the last owner may still be served.
	for i, c := range clients {
		if codes[i] != 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Write(&codec.Pingreq{}); err != nil {
				return
			}
			p, err := c.TryRead(mqtttest.Timeout)
			_, alive[i] = p.(*codec.Pingresp)
			alive[i] = alive[i] && err == nil
		}()
	}
	wg.Wait()
	return codes, alive
}

// TestSecurity09_ClientIDTakeOverRaces: 100 CONNECTs for one client id at once end with exactly
// one owner; when two users race for it, only one user ever gets it; with
// auth.client_id_prefix_from_username a user is confined to its own ids.
func TestSecurity09_ClientIDTakeOverRaces(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "passwd")
	secSetPassword(t, pw, "alice", "alice pw")
	secSetPassword(t, pw, "bob", "bob pw")
	// All 100 CONNECTs come from 127.0.0.1 at once: the password queue must hold them (its
	// per-address bound is TestSecurity02's subject, not this test's).
	const queue = "password_queue = 256\npassword_queue_per_address = 128\n"
	b := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf("[auth]\npassword_file = %q\n%s", pw, queue)})

	t.Run("one user, 100 at once", func(t *testing.T) {
		creds := make([]secCreds, 100)
		for i := range creds {
			creds[i] = secCreds{id: "alice-race", user: "alice", password: "alice pw", persistent: i%2 == 0}
		}
		codes, alive := secRace(t, b, creds)
		n := 0
		for i := range creds {
			// -1: taken over between its claim and its CONNACK, and closed.
			if codes[i] != 0 && codes[i] != -1 {
				t.Errorf("attempt %d: CONNACK %d, want 0 (a take-over by the same user is allowed)", i, codes[i])
			}
			if alive[i] {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d connections hold the client id, want exactly 1", n)
		}
	})

	t.Run("two users, 100 at once", func(t *testing.T) {
		secRaceTwoUsers(t, b)
	})
	t.Run("two usernames without a password file, 100 at once", func(t *testing.T) {
		// Usernames are only names here: nothing slows the CONNECTs down, so they truly race.
		secRaceTwoUsers(t, StartBroker(t, BrokerConfig{}))
	})

	t.Run("client_id_prefix_from_username", func(t *testing.T) {
		b := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf("[auth]\npassword_file = %q\nclient_id_prefix_from_username = true\n%s", pw, queue)})
		secExpectCode(t, b, secCreds{id: "bob-1", user: "alice", password: "alice pw"}, codec.RefusedIdentifierRejected)
		secExpectCode(t, b, secCreds{id: "alicex", user: "alice", password: "alice pw"}, codec.RefusedIdentifierRejected)
		secMustConnect(t, b, secCreds{id: "alice", user: "alice", password: "alice pw"})
		secMustConnect(t, b, secCreds{id: "alice/kitchen", user: "alice", password: "alice pw"})
		secMustConnect(t, b, secCreds{id: "bob-1", user: "bob", password: "bob pw"})
		secMustConnect(t, b, secCreds{id: "", user: "bob", password: "bob pw"}) // assigned "bob-holdfast-..."
	})
}

// secRaceTwoUsers races 50 CONNECTs of alice and 50 of bob for one client id: only one user may
// ever get it, and exactly one connection holds it at the end.
func secRaceTwoUsers(t *testing.T, b *Broker) {
	creds := make([]secCreds, 100)
	for i := range creds {
		creds[i] = secCreds{id: "shared-race", user: "alice", password: "alice pw"}
		if i%2 == 1 {
			creds[i].user, creds[i].password = "bob", "bob pw"
		}
	}
	codes, alive := secRace(t, b, creds)
	accepted := map[string]int{}
	n := 0
	for i := range creds {
		switch codes[i] {
		case 0:
			accepted[creds[i].user]++
		case int(codec.RefusedNotAuthorized), -1:
		default:
			t.Errorf("attempt %d (%s): CONNACK %d, want 0 or 5", i, creds[i].user, codes[i])
		}
		if alive[i] {
			n++
		}
	}
	if len(accepted) != 1 {
		t.Errorf("accepted by user: %v; the id went to both users", accepted)
	}
	if n != 1 {
		t.Errorf("%d connections hold the client id, want exactly 1", n)
	}
}
