package bench

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/router"
)

// fakeBroker is just enough of an MQTT broker to drive the load tool in
// tests: CONNECT, SUBSCRIBE (wildcards too), PUBLISH relayed at
// min(published, granted) QoS with the acknowledgements of each QoS, and
// persistent sessions that queue while offline. dropEvery > 0 loses every
// n-th publication, to prove that loss is noticed. At level 5 a session
// outlives its connection only with a Session Expiry Interval, as the
// specification says. Shared subscriptions ($share/<name>/<topic>) give
// each message to one member in turn: see strand. With bridge set, every
// publication it routes is also routed by that broker, under bridgePrefix
// (a bridge without the network in between).
type fakeBroker struct {
	t         testing.TB
	ln        net.Listener
	dropEvery int
	stall     bool          // stop reading at the first PUBLISH, as a hung broker would
	quit      chan struct{} // closed at cleanup
	sources   sync.Map      // the clients' IP addresses (strings) seen at accept

	// Level 5: every refuseEvery-th PUBLISH (QoS 1 or 2) is answered with
	// reason code refuse and, if that is 0x80 or more, not routed.
	refuseEvery int
	refuse      codec.ReasonCode
	receiveMax  uint16           // the CONNACK's Receive Maximum; 0: absent
	pubcomp     codec.ReasonCode // of every PUBCOMP (0x92 also for a PUBREL it did not expect)

	// strand makes shared subscriptions behave as in a broker that leaves
	// a member's messages with it: members that are offline still get their
	// turn, queued in their session, and what was in flight to a member
	// whose connection ends stays with it. Without it only online members
	// take turns, and what a member had not acknowledged (PUBACK, or PUBREC
	// at QoS 2) when its connection ended goes to another, with DUP set.
	strand bool

	bridge       *fakeBroker
	bridgePrefix string

	mu       sync.Mutex
	sessions map[string]*fakeSession
	groups   map[string]*fakeGroup // by share name and topic
	routed   int
}

// fakeGroup is a shared subscription: its members in subscription order,
// where the turn goes next, and what waits for a member to come online.
type fakeGroup struct {
	topic   string
	members []fakeMember
	next    int
	queue   []*codec.Publish
}

type fakeMember struct {
	s   *fakeSession
	qos byte
}

// heldMsg is a shared subscription's message in flight to a member.
type heldMsg struct {
	g *fakeGroup
	m *codec.Publish
}

type fakeSession struct {
	filters map[string]byte
	conn    *fakeConn // nil while offline
	queue   []*codec.Publish
	clean   bool
}

// fakeConn writes through its own goroutine, so that no reader ever blocks
// on a peer's socket.
type fakeConn struct {
	nc     net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	out    []codec.Packet
	closed bool
	nextID uint16
	level  byte // set at CONNECT, before anything is sent

	held map[uint16]heldMsg // by packet identifier; under fakeBroker.mu
	// A session's QoS 1/2 messages sent on this connection and not acknowledged, in order:
	// a persistent session gets them again when the connection ends (a DISCONNECT read after
	// the messages were routed to it must not lose them). Under fakeBroker.mu.
	unacked []sentMsg
}

type sentMsg struct {
	id uint16
	m  *codec.Publish
}

func newFakeBroker(t testing.TB) *fakeBroker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{t: t, ln: ln, sessions: map[string]*fakeSession{}, groups: map[string]*fakeGroup{}, quit: make(chan struct{})}
	var wg sync.WaitGroup
	var conns sync.Map
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(nc, true)
			b.sources.Store(nc.RemoteAddr().(*net.TCPAddr).IP.String(), true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.serve(nc)
				conns.Delete(nc)
			}()
		}
	}()
	t.Cleanup(func() {
		close(b.quit)
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	return b
}

func (b *fakeBroker) addr() string { return b.ln.Addr().String() }

func (c *fakeConn) send(p codec.Packet) {
	c.mu.Lock()
	c.out = append(c.out, p)
	c.mu.Unlock()
	c.cond.Signal()
}

func (c *fakeConn) writeLoop() {
	var buf []byte
	for {
		c.mu.Lock()
		for len(c.out) == 0 && !c.closed {
			c.cond.Wait()
		}
		if len(c.out) == 0 {
			c.mu.Unlock()
			return
		}
		out, level := c.out, c.level
		c.out = nil
		c.mu.Unlock()
		buf = buf[:0]
		for _, p := range out {
			buf = p.AppendLevel(buf, level)
		}
		if _, err := c.nc.Write(buf); err != nil {
			c.nc.Close()
			return
		}
	}
}

// deliver sends m to s's connection with a fresh packet identifier, which
// it returns, or queues it while s is offline; own says m is the session's,
// not a shared group's (whose messages go back to the group instead). b.mu
// is held.
func (s *fakeSession) deliver(m *codec.Publish, own bool) uint16 {
	if s.conn == nil {
		s.queue = append(s.queue, m)
		return 0
	}
	out := *m
	if out.QoS > 0 {
		s.conn.nextID = s.conn.nextID%65535 + 1
		out.PacketID = s.conn.nextID
	}
	if out.QoS > 0 && own {
		s.conn.unacked = append(s.conn.unacked, sentMsg{out.PacketID, m})
	}
	s.conn.send(&out)
	return out.PacketID
}

// share gives m to the member whose turn it is, or keeps it in the group
// while no member can take it. b.mu is held.
func (b *fakeBroker) share(g *fakeGroup, m *codec.Publish) {
	for i := range g.members {
		k := (g.next + i) % len(g.members)
		mem := g.members[k]
		if mem.s.conn == nil && !b.strand {
			continue
		}
		g.next = k + 1
		out := *m
		out.QoS = min(m.QoS, mem.qos)
		id := mem.s.deliver(&out, false)
		if out.QoS > 0 && id != 0 && !b.strand {
			mem.s.conn.held[id] = heldMsg{g, m}
		}
		return
	}
	g.queue = append(g.queue, m)
}

// leaveGroups ends s's shared subscriptions. b.mu is held.
func (b *fakeBroker) leaveGroups(s *fakeSession) {
	for _, g := range b.groups {
		g.members = slices.DeleteFunc(g.members, func(m fakeMember) bool { return m.s == s })
	}
}

func (b *fakeBroker) serve(nc net.Conn) {
	c := &fakeConn{nc: nc, held: map[uint16]heldMsg{}}
	c.cond = sync.NewCond(&c.mu)
	go c.writeLoop()
	defer func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cond.Signal()
	}()
	r := codec.NewReader(nc, 0)
	r.AcceptLevel5()
	inbound2 := map[uint16]bool{} // QoS 2 packet identifiers awaiting PUBREL
	var sess *fakeSession
	var id string
	defer func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if sess != nil && sess.conn == c {
			sess.conn = nil
			if sess.clean {
				delete(b.sessions, id)
				b.leaveGroups(sess)
			} else {
				for _, u := range c.unacked {
					sess.queue = append(sess.queue, u.m)
				}
			}
		}
		for _, h := range c.held {
			again := *h.m
			again.Dup = true
			b.share(h.g, &again)
		}
	}()
	for {
		p, err := r.ReadPacket()
		if err != nil {
			return
		}
		switch p := p.(type) {
		case *codec.Connect:
			id = p.ClientID
			b.mu.Lock()
			sess = b.sessions[id]
			present := sess != nil && !p.CleanSession
			if !present {
				if sess != nil {
					b.leaveGroups(sess)
				}
				sess = &fakeSession{filters: map[string]byte{}}
				b.sessions[id] = sess
			}
			sess.clean = p.CleanSession || p.ProtocolLevel == codec.Level5 && (p.Props == nil || p.Props.SessionExpiry == 0)
			sess.conn = c
			c.mu.Lock()
			c.level = p.ProtocolLevel
			c.mu.Unlock()
			ack := &codec.Connack{SessionPresent: present && p.ProtocolLevel >= codec.Level311}
			if b.receiveMax > 0 {
				ack.Props = &codec.Properties{ReceiveMaximum: b.receiveMax}
			}
			c.send(ack)
			queued := sess.queue
			sess.queue = nil
			for _, m := range queued {
				sess.deliver(m, true)
			}
			b.mu.Unlock()
		case *codec.Subscribe:
			codes := make([]byte, len(p.Subscriptions))
			b.mu.Lock()
			for i, s := range p.Subscriptions {
				codes[i] = s.QoS
				name, topic, shared, _ := router.ParseShared(s.Filter)
				if !shared {
					sess.filters[s.Filter] = s.QoS
					continue
				}
				g := b.groups[name+"/"+topic]
				if g == nil {
					g = &fakeGroup{topic: topic}
					b.groups[name+"/"+topic] = g
				}
				g.members = append(g.members, fakeMember{sess, s.QoS})
				// Sent before the SUBACK, as a broker may (§3.8.4).
				waiting := g.queue
				g.queue = nil
				for _, m := range waiting {
					b.share(g, m)
				}
			}
			b.mu.Unlock()
			c.send(&codec.Suback{PacketID: p.PacketID, ReturnCodes: codes})
		case *codec.Publish:
			if b.stall {
				<-b.quit
				return
			}
			b.mu.Lock()
			b.routed++
			var rc codec.ReasonCode
			if b.refuseEvery > 0 && p.QoS > 0 && b.routed%b.refuseEvery == 0 {
				rc = b.refuse
			}
			if (b.dropEvery == 0 || b.routed%b.dropEvery != 0) && rc < 0x80 {
				b.route(p)
				if r := b.bridge; r != nil {
					m := *p
					m.Topic = b.bridgePrefix + p.Topic
					r.mu.Lock()
					r.route(&m)
					r.mu.Unlock()
				}
			}
			b.mu.Unlock()
			switch p.QoS {
			case 1:
				c.send(&codec.Puback{PacketID: p.PacketID, Reason: rc})
			case 2:
				inbound2[p.PacketID] = rc < 0x80
				c.send(&codec.Pubrec{PacketID: p.PacketID, Reason: rc})
			}
		case *codec.Pubrel:
			rc := b.pubcomp
			if !inbound2[p.PacketID] {
				rc = codec.ReasonPacketIdentifierNotFound
			}
			delete(inbound2, p.PacketID)
			c.send(&codec.Pubcomp{PacketID: p.PacketID, Reason: rc})
		case *codec.Pubrec:
			b.release(c, p.PacketID)
			c.send(&codec.Pubrel{PacketID: p.PacketID})
		case *codec.Puback:
			b.release(c, p.PacketID)
		case *codec.Pubcomp:
		case *codec.Pingreq:
			c.send(&codec.Pingresp{})
		case *codec.Disconnect:
			return
		default:
			b.t.Errorf("fake broker: unexpected %s", p.Type())
			return
		}
	}
}

// route gives p to the sessions and groups subscribed to its topic. b.mu is held.
func (b *fakeBroker) route(p *codec.Publish) {
	for _, s := range b.sessions {
		for f, granted := range s.filters {
			if router.MatchFilter(f, p.Topic) {
				m := *p
				m.QoS = min(p.QoS, granted)
				s.deliver(&m, true)
				break // one copy per session, however many of its filters match
			}
		}
	}
	for _, g := range b.groups {
		if g.topic == p.Topic {
			m := *p
			b.share(g, &m)
		}
	}
}

// release ends c's hold on a shared subscription's message: acknowledged
// (PUBACK), or received (PUBREC) and so kept by that member.
func (b *fakeBroker) release(c *fakeConn, id uint16) {
	b.mu.Lock()
	delete(c.held, id)
	c.unacked = slices.DeleteFunc(c.unacked, func(u sentMsg) bool { return u.id == id })
	b.mu.Unlock()
}

// sessionCount reports how many sessions the fake holds once the
// connections that just closed have been noticed.
func (b *fakeBroker) sessionCount(want int) int {
	var n int
	mqtttest.Within(2*time.Second, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		n = len(b.sessions)
		return n == want
	})
	return n
}
