package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
)

// fakeSM is a StateMachine keeping the applied payloads in a list. It
// outlives a Node, as a store on disk would, and notes every index it is
// handed that it had already applied.
type fakeSM struct {
	mu       sync.Mutex
	applied  uint64
	entries  []fakeEntry
	again    []uint64 // indexes handed to ApplyReplicated at or below applied
	replaced int
	checks   int
	failOn   string // ApplyReplicated fails on this payload
}

var errFake = errors.New("fake state machine failure")

type fakeEntry struct {
	index   uint64
	payload string
}

func (s *fakeSM) ApplyReplicated(index uint64, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.applied {
		s.again = append(s.again, index)
		return nil
	}
	if s.failOn != "" && string(payload) == s.failOn {
		return errFake
	}
	s.entries = append(s.entries, fakeEntry{index, string(payload)})
	s.applied = index
	return nil
}

func (s *fakeSM) AppliedIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

func (s *fakeSM) Checkpoint() error {
	s.mu.Lock()
	s.checks++
	s.mu.Unlock()
	return nil
}

func (s *fakeSM) Backup(w io.Writer) error {
	s.mu.Lock()
	b := binary.BigEndian.AppendUint64(nil, s.applied)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.entries)))
	for _, e := range s.entries {
		b = binary.BigEndian.AppendUint64(b, e.index)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.payload)))
		b = append(b, e.payload...)
	}
	s.mu.Unlock()
	_, err := w.Write(b)
	return err
}

func (s *fakeSM) Replace(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(b) < 12 {
		return errors.New("short backup")
	}
	applied := binary.BigEndian.Uint64(b)
	n := binary.BigEndian.Uint32(b[8:])
	b = b[12:]
	var entries []fakeEntry
	for range n {
		idx := binary.BigEndian.Uint64(b)
		l := binary.BigEndian.Uint32(b[8:])
		entries = append(entries, fakeEntry{idx, string(b[12 : 12+l])})
		b = b[12+l:]
	}
	s.mu.Lock()
	s.applied, s.entries = applied, entries
	s.replaced++
	s.mu.Unlock()
	return nil
}

func (s *fakeSM) payloads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.entries))
	for i, e := range s.entries {
		out[i] = e.payload
	}
	return out
}

func (s *fakeSM) reapplied() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.again...)
}

// testCluster runs nodes n1..nN in this process on 127.0.0.1.
type testCluster struct {
	t     *testing.T
	cfgs  []Config
	sms   []*fakeSM
	nodes []*Node

	mu     sync.Mutex
	roles  []Role // latest Role each node reported
	stops  []chan struct{}
	seenBy []int // how many roles each node reported
}

func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

func newCluster(t *testing.T, n int, tune func(i int, c *Config)) *testCluster {
	t.Helper()
	addrs := freePorts(t, n)
	var peers []Peer
	for i := range n {
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), Address: addrs[i]})
	}
	c := &testCluster{t: t, nodes: make([]*Node, n), roles: make([]Role, n),
		stops: make([]chan struct{}, n), seenBy: make([]int, n)}
	for i := range n {
		cfg := Config{
			NodeID:      peers[i].ID,
			RaftAddress: addrs[i],
			Peers:       peers,
			Dir:         t.TempDir(),
			Advertise:   fmt.Sprintf("127.0.0.1:%d", 1883+i),
			Log:         testLogger(t, peers[i].ID),
		}
		if tune != nil {
			tune(i, &cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
		c.sms = append(c.sms, &fakeSM{})
	}
	for i := range n {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	return c
}

func testLogger(t *testing.T, id string) zerolog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") == "" {
		return zerolog.Nop()
	}
	return zerolog.New(zerolog.NewTestWriter(t)).With().Timestamp().Str("node", id).Logger()
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	n, err := Start(c.cfgs[i], c.sms[i])
	if err != nil {
		c.t.Fatalf("start %s: %v", c.cfgs[i].NodeID, err)
	}
	stop := make(chan struct{})
	c.mu.Lock()
	c.nodes[i], c.stops[i], c.roles[i] = n, stop, Role{}
	c.mu.Unlock()
	go func() {
		for {
			select {
			case r := <-n.Roles():
				c.mu.Lock()
				c.roles[i] = r
				c.seenBy[i]++
				c.mu.Unlock()
			case <-stop:
				return
			}
		}
	}()
}

func (c *testCluster) stop(i int) {
	c.t.Helper()
	c.mu.Lock()
	n, stop := c.nodes[i], c.stops[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return
	}
	if err := n.Shutdown(); err != nil {
		c.t.Errorf("shutdown %s: %v", c.cfgs[i].NodeID, err)
	}
	close(stop)
}

func (c *testCluster) role(i int) Role {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.roles[i]
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %v", what, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settled waits until exactly one running node reports Role{Leader: true}
// and every other running node reports it as leader with its MQTT address;
// it returns the leader's index.
func (c *testCluster) settled(timeout time.Duration) int {
	c.t.Helper()
	leader := -1
	waitFor(c.t, timeout, "one leader known to all", func() error {
		leader = -1
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, r := range c.roles {
			if c.nodes[i] != nil && r.Leader {
				if leader >= 0 {
					return fmt.Errorf("two leaders: %s and %s", c.cfgs[leader].NodeID, c.cfgs[i].NodeID)
				}
				leader = i
			}
		}
		if leader < 0 {
			return errors.New("no leader")
		}
		want := Role{LeaderID: c.cfgs[leader].NodeID, LeaderMQTT: c.cfgs[leader].Advertise}
		for i, r := range c.roles {
			if c.nodes[i] != nil && i != leader && r != want {
				return fmt.Errorf("%s reports %+v, want %+v", c.cfgs[i].NodeID, r, want)
			}
		}
		return nil
	})
	return leader
}

func (c *testCluster) replicate(leader int, from, to int) {
	c.t.Helper()
	for k := from; k < to; k++ {
		if err := c.nodes[leader].Replicate([]byte(fmt.Sprintf("p%04d", k))); err != nil {
			c.t.Fatalf("replicate p%04d on %s: %v", k, c.cfgs[leader].NodeID, err)
		}
	}
}

func wantPayloads(n int) []string {
	out := make([]string, n)
	for k := range n {
		out[k] = fmt.Sprintf("p%04d", k)
	}
	return out
}

// converged waits until every running node's state machine holds exactly
// want, in order.
func (c *testCluster) converged(want []string, timeout time.Duration) {
	c.t.Helper()
	waitFor(c.t, timeout, "state machines converge", func() error {
		for i, sm := range c.sms {
			if c.nodes[i] == nil {
				continue
			}
			got := sm.payloads()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("%s has %d entries (%.60v...), want %d", c.cfgs[i].NodeID, len(got), got, len(want))
			}
		}
		return nil
	})
}

func TestFormsReplicatesAndRefusesFollowers(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.settled(5 * time.Second)

	c.replicate(leader, 0, 30)
	// Replicate returned: the leader's own state machine has applied it.
	if got := c.sms[leader].payloads(); fmt.Sprint(got) != fmt.Sprint(wantPayloads(30)) {
		t.Fatalf("leader applied %v before Replicate returned", got)
	}
	c.converged(wantPayloads(30), 5*time.Second)

	for i := range c.nodes {
		if i == leader {
			continue
		}
		err := c.nodes[i].Replicate([]byte("nope"))
		if !errors.Is(err, ErrNotLeader) {
			t.Fatalf("Replicate on follower %s: %v, want ErrNotLeader", c.cfgs[i].NodeID, err)
		}
	}

	st := c.nodes[leader].Status()
	if st.State != "Leader" || !st.Leading || st.LeaderID != c.cfgs[leader].NodeID || len(st.Members) != 3 {
		t.Fatalf("leader status %+v", st)
	}
	waitFor(t, 3*time.Second, "followers caught up in the leader's status", func() error {
		st := c.nodes[leader].Status()
		if len(st.Followers) != 2 {
			return fmt.Errorf("followers %+v", st.Followers)
		}
		for _, f := range st.Followers {
			if f.Lag != 0 || f.MatchIndex != st.LastIndex {
				return fmt.Errorf("follower %+v, last index %d", f, st.LastIndex)
			}
		}
		return nil
	})
	fst := c.nodes[(leader+1)%3].Status()
	if fst.State != "Follower" || fst.LeaderID != c.cfgs[leader].NodeID ||
		fst.LeaderMQTT != c.cfgs[leader].Advertise || len(fst.Followers) != 0 {
		t.Fatalf("follower status %+v", fst)
	}
	for _, sm := range c.sms {
		if r := sm.reapplied(); len(r) > 0 {
			t.Fatalf("indexes applied twice: %v", r)
		}
	}
}

func TestFailover(t *testing.T) {
	c := newCluster(t, 3, nil)
	old := c.settled(5 * time.Second)
	c.replicate(old, 0, 10)
	c.converged(wantPayloads(10), 5*time.Second)

	oldNode := c.nodes[old]
	began := time.Now()
	c.stop(old)
	if err := oldNode.Replicate([]byte("after shutdown")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Replicate on a shut down node: %v, want ErrNotLeader", err)
	}
	leader := c.settled(3 * time.Second)
	took := time.Since(began)
	t.Logf("failover took %v", took)
	if leader == old {
		t.Fatal("the stopped node still leads")
	}
	for i := range c.nodes {
		if i != old && i != leader {
			if r := c.role(i); r.LeaderMQTT != c.cfgs[leader].Advertise {
				t.Fatalf("follower %s reports %+v", c.cfgs[i].NodeID, r)
			}
		}
	}
	c.replicate(leader, 10, 20)
	c.converged(wantPayloads(20), 5*time.Second)

	// The old leader comes back as a follower of the new one and catches up.
	c.start(old)
	c.converged(wantPayloads(20), 5*time.Second)
	if got := c.settled(5 * time.Second); got != leader {
		t.Logf("leadership moved again to %s", c.cfgs[got].NodeID)
	}
}

func TestLeadershipLossFailsReplicate(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.settled(5 * time.Second)
	ln := c.nodes[leader]
	// Stop both followers: the leader cannot reach a quorum, steps down
	// after its lease, and must report that and refuse to replicate.
	for i := range c.nodes {
		if i != leader {
			c.stop(i)
		}
	}
	waitFor(t, 3*time.Second, "the isolated leader steps down", func() error {
		if r := c.role(leader); r.Leader {
			return fmt.Errorf("still reports %+v", r)
		}
		return nil
	})
	if err := ln.Replicate([]byte("x")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Replicate after stepping down: %v, want ErrNotLeader", err)
	}
	if st := ln.Status(); st.Leading || st.State == "Leader" {
		t.Fatalf("status after stepping down: %+v", st)
	}
}

func TestStateMachineFailureStopsTheNode(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.settled(5 * time.Second)
	c.replicate(leader, 0, 5)
	c.sms[leader].mu.Lock()
	c.sms[leader].failOn = "p0005"
	c.sms[leader].mu.Unlock()
	ln := c.nodes[leader]
	if err := ln.Replicate([]byte("p0005")); !errors.Is(err, errFake) {
		t.Fatalf("Replicate when the leader's state machine fails: %v", err)
	}
	if !errors.Is(ln.Err(), errFake) {
		t.Fatalf("Err() = %v", ln.Err())
	}
	waitFor(t, 3*time.Second, "the failed node stops", func() error {
		if st := ln.Status(); st.State != "Shutdown" || st.Leading || st.Err == "" {
			return fmt.Errorf("status %+v", st)
		}
		if r := c.role(leader); r.Leader {
			return fmt.Errorf("role %+v", r)
		}
		return nil
	})
	if err := ln.Replicate([]byte("p0006")); err == nil {
		t.Fatal("a failed node replicated")
	}
	// The entry was committed: the other two applied it, and one of them
	// leads now.
	c.stop(leader)
	next := c.settled(3 * time.Second)
	c.replicate(next, 6, 8)
	c.converged(wantPayloads(8), 5*time.Second)
}

func TestRestartCatchesUpWithoutReapplying(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.settled(5 * time.Second)
	c.replicate(leader, 0, 20)
	c.converged(wantPayloads(20), 5*time.Second)

	f := (leader + 1) % 3
	// A snapshot on the follower: its restart replays the log only past it,
	// so not the leader's announcement.
	if err := c.nodes[f].Snapshot(); err != nil {
		t.Fatal(err)
	}
	c.stop(f)
	c.replicate(leader, 20, 40)
	// Same Dir and the same state machine (its data survived): raft
	// replays its log from the start, the node must not hand the state
	// machine what it already has.
	c.start(f)
	c.converged(wantPayloads(40), 5*time.Second)
	if r := c.sms[f].reapplied(); len(r) > 0 {
		t.Fatalf("restarted node handed its state machine indexes it had applied: %v", r)
	}
	// The leader did not change, so no new announcement: the restarted
	// node knows the leader's address from its own stable store.
	if got := c.settled(5 * time.Second); got != leader {
		t.Fatalf("leader moved from %d to %d", leader, got)
	}
	c.replicate(leader, 40, 45)
	c.converged(wantPayloads(45), 5*time.Second)
}

func TestSnapshotInstallsOnWipedNode(t *testing.T) {
	c := newCluster(t, 3, func(i int, cfg *Config) {
		cfg.TrailingLogs = 4
		cfg.SnapshotThreshold = 1 << 20 // only the snapshots the test asks for
	})
	leader := c.settled(5 * time.Second)
	f := (leader + 1) % 3
	c.replicate(leader, 0, 30)
	c.converged(wantPayloads(30), 5*time.Second)

	c.stop(f)
	c.replicate(leader, 30, 60)
	for i := range c.nodes {
		if c.nodes[i] == nil {
			continue
		}
		if err := c.nodes[i].Snapshot(); err != nil {
			t.Fatalf("snapshot on %s: %v", c.cfgs[i].NodeID, err)
		}
		c.sms[i].mu.Lock()
		checks := c.sms[i].checks
		c.sms[i].mu.Unlock()
		if checks == 0 {
			t.Fatalf("snapshot on %s without a Checkpoint", c.cfgs[i].NodeID)
		}
	}
	c.replicate(leader, 60, 65)

	// Wipe the stopped node: no raft state, an empty state machine.
	if err := os.RemoveAll(c.cfgs[f].Dir); err != nil {
		t.Fatal(err)
	}
	c.sms[f] = &fakeSM{}
	c.start(f)
	c.converged(wantPayloads(65), 10*time.Second)
	c.sms[f].mu.Lock()
	replaced := c.sms[f].replaced
	c.sms[f].mu.Unlock()
	if replaced == 0 {
		t.Fatal("the wiped node caught up without a snapshot: the log was not truncated")
	}
	// The leader's address came with the snapshot.
	if got := c.settled(5 * time.Second); got != leader {
		t.Fatalf("leader moved from %d to %d", leader, got)
	}
	if r := c.sms[f].reapplied(); len(r) > 0 {
		t.Fatalf("wiped node re-applied %v", r)
	}
}

func TestMutualTLS(t *testing.T) {
	ca, caKey := newCA(t, "holdfast test CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	confs := make([]*tls.Config, 3)
	for i := range confs {
		confs[i] = &tls.Config{
			Certificates: []tls.Certificate{newLeaf(t, ca, caKey, fmt.Sprintf("n%d", i+1))},
			RootCAs:      pool,
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS13,
		}
	}
	c := newCluster(t, 3, func(i int, cfg *Config) { cfg.TLS = confs[i] })
	leader := c.settled(5 * time.Second)
	c.replicate(leader, 0, 10)
	c.converged(wantPayloads(10), 5*time.Second)

	// The raft listener speaks TLS with the node's certificate, and takes a
	// client with a certificate from the cluster's CA.
	good, err := tls.Dial("tcp", c.cfgs[leader].RaftAddress, confs[(leader+1)%3])
	if err != nil {
		t.Fatalf("TLS dial with a cluster certificate: %v", err)
	}
	if cn := good.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != c.cfgs[leader].NodeID {
		t.Fatalf("raft listener presented %q", cn)
	}
	good.Close()

	// A client without a certificate, and one with a certificate from
	// another CA, are turned away.
	other, otherKey := newCA(t, "someone else")
	stranger := newLeaf(t, other, otherKey, "stranger")
	for name, cert := range map[string][]tls.Certificate{"no certificate": nil, "foreign CA": {stranger}} {
		conn, err := tls.Dial("tcp", c.cfgs[leader].RaftAddress, &tls.Config{
			RootCAs: pool, Certificates: cert, MinVersion: tls.VersionTLS13,
		})
		if err != nil {
			continue // refused in the handshake
		}
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("%s: the raft listener accepted the connection (read: %v)", name, err)
		}
	}
	// A plain TCP peer cannot talk raft to a TLS listener either.
	plain, err := net.Dial("tcp", c.cfgs[leader].RaftAddress)
	if err != nil {
		t.Fatal(err)
	}
	plain.SetDeadline(time.Now().Add(3 * time.Second))
	plain.Write(bytes.Repeat([]byte{0}, 64))
	_, err = plain.Read(make([]byte, 1))
	plain.Close()
	if err == nil {
		t.Fatal("plain TCP got an answer from the TLS raft listener")
	}

	// A connection that never starts the handshake is dropped after the
	// RPC timeout.
	silent, err := net.Dial("tcp", c.cfgs[leader].RaftAddress)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetDeadline(time.Now().Add(2 * rpcTimeout))
	began := time.Now()
	_, err = silent.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("a silent connection was kept (read: %v after %v)", err, time.Since(began))
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func newLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestParsePeer(t *testing.T) {
	p, err := ParsePeer("n2@127.0.0.1:7947")
	if err != nil || p != (Peer{ID: "n2", Address: "127.0.0.1:7947"}) {
		t.Fatalf("got %+v, %v", p, err)
	}
	for _, bad := range []string{"", "n1", "@127.0.0.1:1", "n1@", "n1@127.0.0.1", "n 1@127.0.0.1:1"} {
		if _, err := ParsePeer(bad); err == nil {
			t.Errorf("ParsePeer(%q) accepted", bad)
		}
	}
}

func TestFSMSkipsStaleTermAndAppliedIndexes(t *testing.T) {
	sm := &fakeSM{applied: 5}
	f := &fsm{sm: sm, log: zerolog.Nop(), stable: raft.NewInmemStore(), mqtt: map[string]string{}, floor: 5}
	apply := func(index, term, entryTerm uint64, p string) interface{} {
		return f.Apply(&raft.Log{Index: index, Term: term, Type: raft.LogCommand, Data: encodeStore(entryTerm, []byte(p))})
	}
	if r := apply(5, 2, 2, "old"); r != nil {
		t.Fatalf("index at the floor: %v", r)
	}
	if r := apply(6, 3, 2, "stale"); !errors.Is(r.(error), errStaleTerm) {
		t.Fatalf("stale term: %v", r)
	}
	if r := apply(7, 3, 3, "ok"); r != nil {
		t.Fatalf("apply: %v", r)
	}
	if got := sm.payloads(); fmt.Sprint(got) != "[ok]" || len(sm.reapplied()) != 0 {
		t.Fatalf("state machine got %v, reapplied %v", got, sm.reapplied())
	}
	r := f.Apply(&raft.Log{Index: 8, Term: 3, Type: raft.LogCommand, Data: encodeAnnounce("n1", "127.0.0.1:1883")})
	if r != announcedTerm(3) || f.mqttOf("n1") != "127.0.0.1:1883" {
		t.Fatalf("announcement: %v, %q", r, f.mqttOf("n1"))
	}
}

func TestSnapshotHeaderRoundTrip(t *testing.T) {
	var b bytes.Buffer
	in := map[string]string{"n1": "127.0.0.1:1883", "n2": ""}
	if err := writeSnapshotHeader(&b, in); err != nil {
		t.Fatal(err)
	}
	b.WriteString("rest")
	out, err := readSnapshotHeader(&b)
	if err != nil || fmt.Sprint(out) != fmt.Sprint(in) || b.String() != "rest" {
		t.Fatalf("got %v, %v, rest %q", out, err, b.String())
	}
	if _, err := readSnapshotHeader(bytes.NewReader([]byte("PK\x03\x04junkjunk"))); err == nil {
		t.Fatal("foreign snapshot accepted")
	}
}
