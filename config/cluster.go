package config

import (
	"net"
	"slices"
	"strings"
	"time"
)

// Cluster makes the node one of several that replicate every commit through raft ([cluster]).
// Without node_id the broker is a single node.
type Cluster struct {
	NodeID      string `toml:"node_id"`
	RaftAddress string `toml:"raft_address"` // this node's raft listener: bind and advertise
	// Peers are the initial members, "id@host:port" each, this node included: where this node
	// dials each of them.
	Peers            []string `toml:"peers"`
	MQTTAdvertise    string   `toml:"mqtt_advertise"` // sent to clients as the leader's Server Reference
	ElectionTimeout  Duration `toml:"election_timeout"`
	HeartbeatTimeout Duration `toml:"heartbeat_timeout"`
	// TLS secures the raft links with the certificate, key and client CA of the [[listener]] of
	// type tls, both ways: each node proves itself to the other.
	TLS bool `toml:"tls"`
}

// Peer is one member as this node reaches it.
type Peer struct{ ID, Address string }

// Enabled reports whether the node runs in a cluster.
func (c Cluster) Enabled() bool { return c.NodeID != "" }

// PeerList returns the peers parsed (validate has checked them).
func (c Cluster) PeerList() []Peer {
	out := make([]Peer, 0, len(c.Peers))
	for _, p := range c.Peers {
		id, addr, _ := strings.Cut(p, "@")
		out = append(out, Peer{ID: id, Address: addr})
	}
	return out
}

// TLSListener returns the listener whose certificates secure the raft links.
func (c *Config) TLSListener() (Listener, bool) {
	for _, l := range c.Listeners {
		if l.Type == "tls" {
			return l, true
		}
	}
	return Listener{}, false
}

func (c *Config) validateCluster() error {
	cl := c.Cluster
	if !cl.Enabled() {
		if cl.RaftAddress != "" || len(cl.Peers) > 0 || cl.MQTTAdvertise != "" {
			return keyError("cluster.node_id", "must be set when other [cluster] keys are")
		}
		return nil
	}
	if strings.ContainsAny(cl.NodeID, "@ \t") {
		return keyError("cluster.node_id", "must not contain '@' or spaces: %q", cl.NodeID)
	}
	if _, _, err := net.SplitHostPort(cl.RaftAddress); err != nil {
		return keyError("cluster.raft_address", "not host:port: %q", cl.RaftAddress)
	}
	if _, _, err := net.SplitHostPort(cl.MQTTAdvertise); err != nil {
		return keyError("cluster.mqtt_advertise", "not host:port: %q (clients are sent it to find the leader)", cl.MQTTAdvertise)
	}
	var ids []string
	for _, p := range cl.Peers {
		id, addr, ok := strings.Cut(p, "@")
		if _, _, err := net.SplitHostPort(addr); !ok || id == "" || err != nil {
			return keyError("cluster.peers", "%q is not id@host:port", p)
		}
		if slices.Contains(ids, id) {
			return keyError("cluster.peers", "names %q twice", id)
		}
		ids = append(ids, id)
	}
	if !slices.Contains(ids, cl.NodeID) {
		return keyError("cluster.peers", "must include this node, %q", cl.NodeID)
	}
	if c.Durability != "sync" {
		return keyError("durability", "must be \"sync\" in a cluster: an entry is acknowledged once a majority has synced it, not %q", c.Durability)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"cluster.election_timeout", cl.ElectionTimeout.Duration}, {"cluster.heartbeat_timeout", cl.HeartbeatTimeout.Duration}} {
		if d.v < 0 || d.v > 0 && d.v < 10*time.Millisecond {
			return keyError(d.key, "must be 0 (the default) or at least 10ms, not %s", d.v)
		}
	}
	if e, h := cl.ElectionTimeout.Duration, cl.HeartbeatTimeout.Duration; e > 0 && h > e {
		return keyError("cluster.heartbeat_timeout", "must not exceed cluster.election_timeout (%s > %s)", h, e)
	}
	if cl.TLS {
		l, ok := c.TLSListener()
		if !ok || l.ClientCAFile == "" {
			return keyError("cluster.tls", "needs a [[listener]] of type tls with client_ca_file: its certificate, key and CA secure the raft links both ways")
		}
	}
	return nil
}
