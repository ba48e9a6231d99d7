package broker

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/router"
	"github.com/holdfast/holdfast/session"
)

// groupHandle is how the broker holds one shared subscription group: the state machine and the
// lock that serialises the events fed to it. Its lock comes before any session's.
type groupHandle struct {
	id string // the store id of its queue, immutable
	mu sync.Mutex
	g  *session.Group[*sessionHandle]
	bl backlog
}

// unlock releases the group, and with it the publishers waiting for its backlog once that has
// halved or no member is online.
func (gh *groupHandle) unlock() {
	if gh.bl.waited() {
		n, _ := gh.g.Queued()
		_, online := gh.g.Members()
		gh.bl.drained(n, online > 0)
	}
	gh.mu.Unlock()
}

// congested is sessionHandle.congested for the group's queue: publishers wait while its members
// fall behind.
func (gh *groupHandle) congested() <-chan struct{} {
	gh.mu.Lock()
	defer gh.unlock()
	n, _ := gh.g.Queued()
	_, online := gh.g.Members()
	return gh.bl.congested(n, online > 0)
}

func (gh *groupHandle) markStuck() {
	gh.mu.Lock()
	gh.bl.stuck = true
	gh.unlock()
}

func (gh *groupHandle) String() string { return router.SharePrefix + gh.label() }

// label names the group in logs and metrics: "{name}/{filter}".
func (gh *groupHandle) label() string { return gh.g.Name + "/" + gh.g.Filter }

// groups holds the shared subscription groups: by store id, and in a trie by filter for routing.
type groups struct {
	mu   sync.Mutex
	byID map[string]*groupHandle
	trie *router.Trie[*groupHandle]
	n    atomic.Int32 // len(byID), read without the lock: most brokers have no groups
	opts session.GroupOptions

	// The reads of group queues from disk, for loadLoop: asked for where no disk read may
	// happen (persist's callback), at most one per group at a time.
	lmu   sync.Mutex
	loads []groupLoad
	wake  chan struct{}
}

type groupLoad struct {
	gh *groupHandle
	l  *session.Load
}

func newGroups(opts session.GroupOptions) *groups {
	return &groups{byID: make(map[string]*groupHandle), trie: router.New[*groupHandle](), opts: opts, wake: make(chan struct{}, 1)}
}

// get returns the group of store id, or nil.
func (gs *groups) get(id string) *groupHandle {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return gs.byID[id]
}

// snapshot returns every group at the time of the call.
func (gs *groups) snapshot() []*groupHandle {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return slices.Collect(maps.Values(gs.byID))
}

// match appends the groups whose filter matches topic.
func (gs *groups) match(topic string, dst []router.Subscriber[*groupHandle]) []router.Subscriber[*groupHandle] {
	if gs.n.Load() == 0 {
		return dst
	}
	return gs.trie.Match(topic, dst)
}

// groupOf returns the group of name and filter, making it (with an empty queue) if there is none;
// made reports that it was.
func (s *Server) groupOf(name, filter string) (gh *groupHandle, made bool) {
	gs := s.groups
	id := session.GroupID(name, filter)
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if gh = gs.byID[id]; gh != nil {
		return gh, false
	}
	gh = &groupHandle{id: id, g: session.NewGroup[*sessionHandle](name, filter, &s.sessOpts, &gs.opts), bl: backlog{high: s.backlogHigh}}
	gs.byID[id] = gh
	gs.n.Add(1)
	gs.trie.Subscribe(gh, filter, 0)
	return gh, true
}

// groupRecord is the store's record of a group's queue: a session record, so that persist
// queues for it like for any session.
var groupRecord = persist.SessionRecord{ProtocolLevel: codec.Level5}

// joinGroup makes sess a member of share name's group on filter at qos. A new group's record
// goes into b (nil at recovery, where the store holds it).
func (s *Server) joinGroup(sess *sessionHandle, name, filter string, qos byte, b *persist.Batch) {
	gh, made := s.groupOf(name, filter)
	if made && b != nil {
		b.PutSession(gh.id, groupRecord)
	}
	gh.mu.Lock()
	gh.g.Join(sess, sess.ID, qos)
	gh.unlock()
	s.memberOnline(sess, gh)
}

// leaveGroup ends sess's membership: what it held and had not PUBREC'd goes to another member.
// The last member's leaving ends the group and its queue, in b or a commit of its own.
func (s *Server) leaveGroup(sess *sessionHandle, name, filter string, b *persist.Batch) {
	gh := s.groups.get(session.GroupID(name, filter))
	if gh == nil {
		return
	}
	back := sess.lock().Unshare(gh.id)
	sess.unlock()
	gs := s.groups
	gs.mu.Lock()
	gh.mu.Lock()
	s.takeBack(gh, back)
	empty := gh.g.Leave(sess)
	if empty {
		delete(gs.byID, gh.id)
		gs.n.Add(-1)
		gs.trie.Unsubscribe(gh, gh.g.Filter)
	}
	gh.unlock()
	gs.mu.Unlock()
	if !empty {
		s.dispatch(gh)
		return
	}
	if b != nil {
		b.DeleteSession(gh.id)
		return
	}
	var own persist.Batch
	own.DeleteSession(gh.id)
	s.store.Submit(&own, s.logCommitError("deleting shared group "+gh.label()))
}

// takeBack returns entries a member gave back to gh (locked), logging and removing those that
// came back too often.
func (s *Server) takeBack(gh *groupHandle, back []*message.Entry) {
	if len(back) == 0 {
		return
	}
	poison, ws := gh.g.Return(back)
	for _, e := range poison {
		s.log.Warn().Str("group", gh.label()).Str("topic", e.Message.Topic).
			Int("max_redeliveries", s.cfg.Shared.MaxRedeliveries).
			Msg("shared group: message dropped, it came back from members more than shared.max_redeliveries times (poison)")
	}
	if len(ws) > 0 {
		var b persist.Batch
		addWrites(&b, gh.id, ws...)
		s.store.Submit(&b, s.logCommitError("dropping a poison message"))
	}
}

// sharedOf calls fn with the group of each shared subscription of sess.
func (s *Server) sharedOf(sess *sessionHandle, fn func(gh *groupHandle)) {
	subs := sess.lock().Subscriptions()
	sess.unlock()
	for f := range subs {
		if name, filter, shared, _ := router.ParseShared(f); shared {
			if gh := s.groups.get(session.GroupID(name, filter)); gh != nil {
				fn(gh)
			}
		}
	}
}

// membersOnline tells sess's groups that its connection is attached (after Attach).
func (s *Server) membersOnline(sess *sessionHandle) {
	s.sharedOf(sess, func(gh *groupHandle) { s.memberOnline(sess, gh) })
}

// memberOnline tells gh whether sess is online, and with which window, and hands it messages.
func (s *Server) memberOnline(sess *sessionHandle, gh *groupHandle) {
	m := sess.lock()
	online, conn, window := m.Online(), m.Conn(), m.Window()
	sess.unlock()
	if !online {
		return
	}
	gh.mu.Lock()
	gh.g.Online(sess, conn, window)
	gh.unlock()
	s.dispatch(gh)
}

// membersOffline gives sess's groups back what it held (back, from Detach) and tells them it is
// gone, so that its messages go to the members still online at once.
func (s *Server) membersOffline(sess *sessionHandle, back []*message.Entry) {
	s.sharedOf(sess, func(gh *groupHandle) {
		gh.mu.Lock()
		gh.g.Offline(sess)
		var mine []*message.Entry
		for _, e := range back {
			if e.Group == gh.id {
				mine = append(mine, e)
			}
		}
		s.takeBack(gh, mine)
		gh.unlock()
		s.dispatch(gh)
	})
}

// dispatch hands gh's pending messages to its online members, and starts a read of its queue
// when memory ran dry. It may run in persist's completion callback: it takes locks briefly and
// submits nothing. (A member whose client may not read a message's topic drops it when its
// writer gets to it, as for its own queue: see Outgoing.MayRead.)
func (s *Server) dispatch(gh *groupHandle) {
	for {
		gh.mu.Lock()
		hand, load := gh.g.Dispatch(nil)
		gh.unlock()
		if load != nil {
			s.groups.askLoad(gh, load)
		}
		refused := false
		for _, h := range hand {
			m := h.Member.lock()
			ok := m.Lease(h.Entry, h.Conn)
			o := m.Outlet()
			h.Member.unlock()
			if ok {
				wake(o)
				continue
			}
			gh.mu.Lock()
			gh.g.Refused(h.Member, h.Conn, h.Entry)
			gh.unlock()
			refused = true
		}
		if !refused {
			return
		}
	}
}

// askLoad asks loadLoop to read the next window of gh's queue.
func (gs *groups) askLoad(gh *groupHandle, l *session.Load) {
	gs.lmu.Lock()
	gs.loads = append(gs.loads, groupLoad{gh, l})
	gs.lmu.Unlock()
	select {
	case gs.wake <- struct{}{}:
	default:
	}
}

// loadLoop reads the windows of group queues that dispatch asked for, and dispatches them.
func (s *Server) loadLoop() {
	defer s.wg.Done()
	gs := s.groups
	for {
		select {
		case <-s.quit:
			return
		case <-gs.wake:
		}
		gs.lmu.Lock()
		loads := gs.loads
		gs.loads = nil
		gs.lmu.Unlock()
		for _, ld := range loads {
			gh := ld.gh
			entries, err := s.store.ReadQueue(gh.id, ld.l.After, ld.l.Limit)
			gh.mu.Lock()
			if err != nil {
				gh.g.LoadFailed()
			} else {
				gh.g.Loaded(ld.l, entries)
			}
			gh.unlock()
			if err != nil {
				// Asked again by the next dispatch (a member's acknowledgement or connect).
				s.log.Error().Err(err).Str("group", gh.label()).Msg("reading a shared group's queue failed")
				continue
			}
			s.dispatch(gh)
		}
	}
}

// settle tells the groups about what their members finished or PUBREC'd (ws from a session),
// rewriting a finished entry's Write to what the group holds of it, and hands the freed windows
// new messages.
func (s *Server) settle(ws []session.Write) {
	var touched []*groupHandle
	for i := range ws {
		w := &ws[i]
		if w.Group == "" {
			continue
		}
		gh := s.groups.get(w.Group)
		if gh == nil {
			continue // the group ended; its queue went with it
		}
		gh.mu.Lock()
		*w = gh.g.Settled(*w)
		gh.unlock()
		if !slices.Contains(touched, gh) {
			touched = append(touched, gh)
		}
	}
	for _, gh := range touched {
		s.dispatch(gh)
	}
}

// recoverGroups settles the groups at start, with what it must write in b: a group no persistent
// session is a member of any more ends with its queue; one that is missing its record gets it;
// the entries PUBREC'd by a member go back to that member, and those whose holder's session is
// gone are finished (their exchange ended with the clean session that held them).
func (s *Server) recoverGroups(stored map[string]bool, b *persist.Batch) error {
	gs := s.groups
	pinned := false // a Sent entry went back to its member
	for _, gh := range gs.snapshot() {
		if all, _ := gh.g.Members(); all == 0 {
			gs.mu.Lock()
			delete(gs.byID, gh.id)
			gs.n.Add(-1)
			gs.trie.Unsubscribe(gh, gh.g.Filter)
			gs.mu.Unlock()
			b.DeleteSession(gh.id)
			continue
		}
		if !stored[gh.id] {
			b.PutSession(gh.id, groupRecord)
		}
		held, err := s.store.ReadHeld(gh.id)
		if err != nil {
			return fmt.Errorf("recovering shared group %s/%s: %w", gh.g.Name, gh.g.Filter, err)
		}
		for i := range held {
			e := &held[i]
			holder := s.sessions.get(e.Holder)
			switch {
			case holder != nil && gh.g.Adopt(holder, e):
				e.Group = gh.id
				holder.lock().Adopt(e)
				holder.unlock()
				pinned = pinned || e.State == persist.Sent
			case e.State == persist.Released:
				b.Ack(gh.id, e.Seq)
				gh.g.Unreserve(len(e.Message.Payload))
			default:
				// Its member is gone: queued again for the others.
				b.SetQueueState(gh.id, e.Seq, persist.Queued, 0)
			}
		}
	}
	if grace := s.cfg.Shared.ReconnectGrace.Duration; pinned {
		time.AfterFunc(grace, s.releasePinned)
	}
	return nil
}

// releasePinned runs reconnect_grace after the start: the QoS 2 messages that were in flight to a
// member when the broker stopped, and whose member has not come back since, go to the others.
func (s *Server) releasePinned() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	for _, sess := range s.sessions.snapshot() {
		if sess.online() {
			continue // it got them again with DUP; they go back if it leaves
		}
		s.sharedOf(sess, func(gh *groupHandle) {
			back := sess.lock().Unshare(gh.id)
			sess.unlock()
			gh.mu.Lock()
			s.takeBack(gh, back)
			gh.unlock()
			s.dispatch(gh)
		})
	}
}

// GroupStats is one shared subscription group's state, for metrics.
type GroupStats struct {
	Name, Filter string
	Members      int   // subscribed
	Online       int   // of those, connected
	Queued       int   // messages the group holds, in flight included
	Inflight     int   // handed to a member and not acknowledged
	Redelivered  int64 // taken back from a member that went away
	Poisoned     int64 // dropped after shared.max_redeliveries returns
}

// Groups returns the state of every shared subscription group.
func (s *Server) Groups() []GroupStats {
	all := s.groups.snapshot()
	out := make([]GroupStats, 0, len(all))
	for _, gh := range all {
		gh.mu.Lock()
		g := gh.g
		st := GroupStats{Name: g.Name, Filter: g.Filter, Redelivered: g.Redelivered, Poisoned: g.Poisoned}
		st.Members, st.Online = g.Members()
		st.Queued, st.Inflight = g.Queued()
		gh.unlock()
		out = append(out, st)
	}
	return out
}
