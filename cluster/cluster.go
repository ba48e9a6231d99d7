// Package cluster replicates holdfast's store across three (or more) nodes
// with raft (hashicorp/raft, log and stable store in bolt).
//
// Each group commit of the leader's persist writer becomes one raft log
// entry (Replicate); every node, the leader included, writes committed
// entries into its store through StateMachine.ApplyReplicated with the raft
// index. Snapshots are the store's backup; a follower too far behind gets
// one and replaces its store with it.
//
// A node that wins an election first appends an announcement (its id and
// MQTT address) and waits for it to apply, so every entry committed before
// is applied too, and only then reports Role{Leader: true}. Followers learn
// the leader's MQTT address from the announcements. Losing leadership is
// reported at once, and from that moment Replicate fails with ErrNotLeader.
package cluster

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/rs/zerolog"
)

// ErrNotLeader is returned (wrapped) by Replicate, AddVoter and
// RemoveServer when this node is not the established leader: it is a
// follower or candidate, it lost leadership while the call was under way, or
// it is shut down.
var ErrNotLeader = errors.New("cluster: not the leader")

// Peer is a cluster member's id and the address this node dials it at.
type Peer struct{ ID, Address string }

// ParsePeer parses "id@host:port".
func ParsePeer(s string) (Peer, error) {
	id, addr, ok := strings.Cut(s, "@")
	if !ok || id == "" || addr == "" {
		return Peer{}, fmt.Errorf("cluster: peer %q: want id@host:port", s)
	}
	if strings.ContainsAny(id, " \t@") {
		return Peer{}, fmt.Errorf("cluster: peer %q: bad id", s)
	}
	if _, _, err := splitHostPort(addr); err != nil {
		return Peer{}, fmt.Errorf("cluster: peer %q: %w", s, err)
	}
	return Peer{ID: id, Address: addr}, nil
}

// Config configures a Node.
type Config struct {
	NodeID      string
	RaftAddress string // this node's raft listener; "": its own entry in Peers
	Peers       []Peer // where this node dials each id, its own entry included
	Dir         string // raft state: bolt log and stable store, snapshots
	Advertise   string // this node's mqtt_advertise (see also SetAdvertise)

	// ElectionTimeout and HeartbeatTimeout: zero gives defaults under which
	// a failover takes well under a second on loopback.
	ElectionTimeout, HeartbeatTimeout time.Duration

	// TLS, if set, is used for both sides of every raft link: set
	// Certificates, RootCAs, ClientCAs and ClientAuth
	// (tls.RequireAndVerifyClientCert) for mutual TLS. Nil: plain TCP.
	TLS *tls.Config

	// Snapshots: raft snapshots the state (Checkpoint, Backup) every
	// SnapshotInterval once SnapshotThreshold entries were appended since
	// the last one, and keeps TrailingLogs entries behind it so a follower
	// a little behind catches up from the log, not a whole snapshot. Zero:
	// 30 s, 8192 and 4096.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64

	Log zerolog.Logger
}

// Default timeouts. Raft draws each timeout between once and twice the
// value, so a follower notices a dead leader in 250-500 ms.
const (
	DefaultHeartbeatTimeout = 250 * time.Millisecond
	DefaultElectionTimeout  = 250 * time.Millisecond
)

// rpcTimeout is the I/O deadline of a raft RPC (and of dialing a peer;
// InstallSnapshot scales it with the snapshot's size). A peer that accepts
// but does not answer, a stopped process or a black-holed link, holds a
// replication goroutine this long, and so Shutdown at most this long.
const rpcTimeout = 3 * time.Second

// StateMachine is the store the cluster replicates into.
type StateMachine interface {
	// ApplyReplicated applies one committed entry with its raft index,
	// skipping it if index <= AppliedIndex (idempotent replay). An error
	// is fatal for the node.
	ApplyReplicated(index uint64, payload []byte) error
	// AppliedIndex is the raft index of the last entry applied.
	AppliedIndex() uint64
	// Checkpoint makes everything applied so far durable.
	Checkpoint() error
	// Backup writes the whole state, including its applied index.
	Backup(w io.Writer) error
	// Replace swaps the whole state for one written by Backup.
	Replace(r io.Reader) error
}

// Role is this node's part in the cluster, as Roles reports it.
type Role struct {
	Leader     bool   // this node is the leader and every earlier entry is applied
	Term       uint64 // the leader's term, when Leader
	LeaderID   string // the current leader's id, "" if none is known
	LeaderMQTT string // the current leader's announced MQTT address, "" if not known
}

// Member is one server in the raft configuration.
type Member struct {
	ID, Address string
	Suffrage    string // "voter", "nonvoter" or "staging"
}

// Follower is the leader's view of one follower.
type Follower struct {
	ID          string
	MatchIndex  uint64    // last index it acknowledged in this leadership
	Lag         uint64    // leader's last index - MatchIndex
	LastContact time.Time // last successful AppendEntries; zero if none yet
}

// Status is a snapshot of this node's raft state.
type Status struct {
	ID, State                            string // State: Follower, Candidate, Leader, Shutdown
	Term                                 uint64
	LeaderID, LeaderMQTT                 string
	Leading                              bool // leadership established (Role.Leader)
	CommitIndex, AppliedIndex, LastIndex uint64
	Members                              []Member
	Followers                            []Follower // only on the leader
	Err                                  string     // the fatal state-machine error, if any
}

// Node is one member of the cluster.
type Node struct {
	cfg   Config
	log   zerolog.Logger
	raft  *raft.Raft
	fsm   *fsm
	trans *progressTransport
	bolt  *raftboltdb.BoltStore

	advertise atomic.Pointer[string]
	leadTerm  atomic.Uint64 // term of the established leadership; 0 when not leading

	wake    chan struct{} // 1-slot doorbell for the role loop
	obs     chan raft.Observation
	roleMu  sync.Mutex
	roles   chan Role
	last    Role // last Role sent (role loop only)
	sent    bool
	stopped bool // raft stopped after a fatal error (role loop only)

	done     chan struct{}
	wg       sync.WaitGroup
	shutOnce sync.Once
	shutErr  error
}

// Start opens the raft state in cfg.Dir, listens on cfg.RaftAddress and
// joins the cluster. A node with no raft state bootstraps the configuration
// of every peer id (sorted, each id its own address), the same on every
// node, so nodes started with the same peers form the cluster by
// themselves.
func Start(cfg Config, sm StateMachine) (*Node, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("cluster: node id is empty")
	}
	if cfg.Dir == "" {
		return nil, errors.New("cluster: dir is empty")
	}
	peers := peerAddrs{}
	for _, p := range cfg.Peers {
		if _, dup := peers[p.ID]; dup {
			return nil, fmt.Errorf("cluster: peer %q listed twice", p.ID)
		}
		peers[p.ID] = p.Address
	}
	if _, ok := peers[cfg.NodeID]; !ok {
		return nil, fmt.Errorf("cluster: node %q is not among the peers", cfg.NodeID)
	}
	if cfg.RaftAddress == "" {
		cfg.RaftAddress = peers[cfg.NodeID]
	}
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.ElectionTimeout == 0 {
		cfg.ElectionTimeout = max(DefaultElectionTimeout, cfg.HeartbeatTimeout)
	}
	if cfg.ElectionTimeout < cfg.HeartbeatTimeout {
		return nil, fmt.Errorf("cluster: election timeout %v is shorter than the heartbeat timeout %v",
			cfg.ElectionTimeout, cfg.HeartbeatTimeout)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}

	n := &Node{
		cfg:   cfg,
		log:   cfg.Log,
		wake:  make(chan struct{}, 1),
		obs:   make(chan raft.Observation, 16),
		roles: make(chan Role, 1),
		done:  make(chan struct{}),
	}
	n.advertise.Store(&cfg.Advertise)
	hl := newHclog(cfg.Log.With().Str("component", "raft").Logger())

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout
	rc.CommitTimeout = min(rc.CommitTimeout, cfg.HeartbeatTimeout/5)
	rc.NoSnapshotRestoreOnStart = true
	rc.SnapshotThreshold = cmp.Or(cfg.SnapshotThreshold, 8192)
	rc.SnapshotInterval = cmp.Or(cfg.SnapshotInterval, 30*time.Second)
	rc.TrailingLogs = cmp.Or(cfg.TrailingLogs, 4096)
	rc.BatchApplyCh = true
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}

	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("cluster: open raft log: %w", err)
	}
	n.bolt = bolt
	ok := false
	defer func() {
		if !ok {
			bolt.Close()
		}
	}()
	logs, err := raft.NewLogCache(512, bolt)
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hl.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}

	stream, err := newStreamLayer(cfg.RaftAddress, cfg.NodeID, cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listener: %w", err)
	}
	n.trans = &progressTransport{
		NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			ServerAddressProvider: peers,
			Logger:                hl.Named("net"),
			Stream:                stream,
			MaxPool:               3,
			MaxRPCsInFlight:       1, // every AppendEntries through progressTransport
			Timeout:               rpcTimeout,
		}),
		progress: map[raft.ServerID]followerProgress{},
	}
	defer func() {
		if !ok {
			n.trans.Close()
		}
	}()

	n.fsm = &fsm{
		sm:     sm,
		log:    cfg.Log.With().Str("component", "cluster").Logger(),
		stable: bolt,
		notify: n.ring,
		floor:  sm.AppliedIndex(),
		mqtt:   map[string]string{},
	}
	ids := make([]string, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	n.fsm.loadAnnounced(ids)

	existing, err := raft.HasExistingState(logs, bolt, snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if !existing {
		var conf raft.Configuration
		for _, id := range ids {
			conf.Servers = append(conf.Servers, raft.Server{
				Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id),
			})
		}
		if err := raft.BootstrapCluster(rc, logs, bolt, snaps, n.trans, conf); err != nil {
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
		n.log.Info().Strs("members", ids).Msg("bootstrapped the raft configuration")
	}

	r, err := raft.NewRaft(rc, n.fsm, logs, bolt, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.raft = r
	ok = true
	r.RegisterObserver(raft.NewObserver(n.obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	}))
	n.log.Info().Str("id", cfg.NodeID).Str("raft", stream.listenAddr().String()).
		Uint64("applied", n.fsm.floor).Bool("existing_state", existing).Msg("raft started")
	n.wg.Add(1)
	go n.run()
	return n, nil
}

func splitHostPort(addr string) (string, string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && port == "" {
		err = errors.New("missing port")
	}
	return host, port, err
}

// ring wakes the role loop.
func (n *Node) ring() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Roles delivers this node's role each time it changes. The channel holds
// one value; a newer role replaces one not yet received.
func (n *Node) Roles() <-chan Role { return n.roles }

// SetAdvertise sets this node's MQTT address, announced when it leads. A
// leader announces the new address at once.
func (n *Node) SetAdvertise(mqtt string) {
	n.advertise.Store(&mqtt)
	n.ring()
}

// Replicate commits payload as one raft entry and returns nil once it is
// committed and applied on this node (ApplyReplicated returned nil). It
// fails with an error wrapping ErrNotLeader unless this node is the
// established leader for the whole call; such an error does not say the
// entry was not committed.
func (n *Node) Replicate(payload []byte) error {
	term := n.leadTerm.Load()
	if term == 0 || n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if err := n.fsm.err(); err != nil {
		return err
	}
	f := n.raft.Apply(encodeStore(term, payload), 0)
	if err := f.Error(); err != nil {
		return leaderErr(err)
	}
	if err, isErr := f.Response().(error); isErr {
		if errors.Is(err, errStaleTerm) {
			return fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		return err
	}
	return nil
}

// leaderErr wraps the raft errors that mean "not (or no longer) leader" in
// ErrNotLeader.
func leaderErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	return fmt.Errorf("cluster: %w", err)
}

// AddVoter adds a voting member (or updates its address); addr is where
// every node dials it unless its own peers say otherwise. Leader only.
func (n *Node) AddVoter(id, addr string) error {
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error(); err != nil {
		return leaderErr(err)
	}
	return nil
}

// RemoveServer removes a member. Leader only.
func (n *Node) RemoveServer(id string) error {
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		return leaderErr(err)
	}
	return nil
}

// Snapshot takes a snapshot now and truncates the log behind it (keeping
// TrailingLogs entries).
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	return nil
}

// Err is the fatal state-machine error that stopped this node, if any.
func (n *Node) Err() error { return n.fsm.err() }

// Status reports this node's raft state.
func (n *Node) Status() Status {
	_, leader := n.raft.LeaderWithID()
	st := Status{
		ID:           n.cfg.NodeID,
		State:        n.raft.State().String(),
		Term:         n.raft.CurrentTerm(),
		LeaderID:     string(leader),
		LeaderMQTT:   n.fsm.mqttOf(string(leader)),
		Leading:      n.leadTerm.Load() != 0,
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		LastIndex:    n.raft.LastIndex(),
	}
	if leader == "" {
		st.LeaderMQTT = ""
	}
	if err := n.fsm.err(); err != nil {
		st.Err = err.Error()
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Members = append(st.Members, Member{
				ID: string(s.ID), Address: string(s.Address), Suffrage: suffrage(s.Suffrage),
			})
			if st.Leading && string(s.ID) != n.cfg.NodeID {
				fl := Follower{ID: string(s.ID)}
				if p, ok := n.trans.followerProgress(s.ID); ok {
					fl.MatchIndex, fl.LastContact = p.match, p.contact
				}
				if st.LastIndex > fl.MatchIndex {
					fl.Lag = st.LastIndex - fl.MatchIndex
				}
				st.Followers = append(st.Followers, fl)
			}
		}
	}
	return st
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	case raft.Staging:
		return "staging"
	}
	return s.String()
}

// Shutdown stops raft, reports the loss of leadership if this node led,
// and closes the raft log. It may be called more than once.
func (n *Node) Shutdown() error {
	n.shutOnce.Do(func() {
		n.shutErr = n.raft.Shutdown().Error()
		close(n.done)
		n.wg.Wait()
		if err := n.bolt.Close(); err != nil && n.shutErr == nil {
			n.shutErr = err
		}
		n.log.Info().Msg("raft stopped")
	})
	return n.shutErr
}

// run is the role loop: it follows raft's leadership changes, establishes
// leadership (announcement), and publishes Roles.
func (n *Node) run() {
	defer n.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	n.sync()
	for {
		select {
		case <-n.done:
			n.sync()
			return
		case <-n.raft.LeaderCh():
		case <-n.obs:
		case <-n.wake:
		case <-tick.C:
		}
		n.sync()
	}
}

// sync brings the published role in line with raft's state. Role loop only.
func (n *Node) sync() {
	if err := n.fsm.err(); err != nil && !n.stopped {
		n.stopped = true
		n.log.Error().Err(err).Msg("stopping raft after a state-machine failure")
		if err := n.raft.Shutdown().Error(); err != nil {
			n.log.Warn().Err(err).Msg("raft shutdown")
		}
	}
	state := n.raft.State()
	if lt := n.leadTerm.Load(); lt != 0 {
		if state == raft.Leader && n.raft.CurrentTerm() == lt {
			if a := *n.advertise.Load(); a != n.fsm.mqttOf(n.cfg.NodeID) {
				if err := n.raft.Apply(encodeAnnounce(n.cfg.NodeID, a), 0).Error(); err != nil {
					n.log.Warn().Err(err).Msg("could not announce the new MQTT address")
				}
			}
			return
		}
		n.leadTerm.Store(0)
		n.log.Warn().Uint64("term", lt).Str("state", state.String()).Msg("lost the leadership")
		n.publish(n.followerRole())
	}
	if state == raft.Leader && !n.stopped && n.establish() {
		return
	}
	n.publish(n.followerRole())
}

// establish announces this node as leader and waits for the announcement
// to apply: then every entry committed before it is applied too.
func (n *Node) establish() bool {
	a := *n.advertise.Load()
	n.trans.resetProgress()
	f := n.raft.Apply(encodeAnnounce(n.cfg.NodeID, a), 0)
	if err := f.Error(); err != nil {
		n.log.Warn().Err(err).Msg("could not announce the leadership")
		return false
	}
	term, ok := f.Response().(announcedTerm)
	if !ok || n.raft.State() != raft.Leader || n.raft.CurrentTerm() != uint64(term) {
		return false
	}
	n.leadTerm.Store(uint64(term))
	n.log.Info().Uint64("term", uint64(term)).Uint64("index", f.Index()).Str("mqtt", a).Msg("leading")
	n.publish(Role{Leader: true, Term: uint64(term), LeaderID: n.cfg.NodeID, LeaderMQTT: a})
	return true
}

func (n *Node) followerRole() Role {
	_, id := n.raft.LeaderWithID()
	if id == "" || string(id) == n.cfg.NodeID {
		// No leader, or raft still names this node which no longer leads.
		return Role{}
	}
	return Role{LeaderID: string(id), LeaderMQTT: n.fsm.mqttOf(string(id))}
}

// publish sends r unless it is the role last sent, replacing an unreceived
// older role.
func (n *Node) publish(r Role) {
	if n.sent && r == n.last {
		return
	}
	n.sent, n.last = true, r
	n.roleMu.Lock()
	defer n.roleMu.Unlock()
	select {
	case <-n.roles:
	default:
	}
	n.roles <- r
}
