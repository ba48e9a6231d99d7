package config

import (
	"strings"
	"testing"
)

// Bad [cluster] keys stop start-up naming the key and the file; a good table parses its peers.
func TestClusterKeysChecked(t *testing.T) {
	const good = `node_id = "n1"
raft_address = "127.0.0.1:7946"
peers = ["n1@127.0.0.1:7946", "n2@127.0.0.1:7947", "n3@127.0.0.1:7948"]
mqtt_advertise = "127.0.0.1:1883"
`
	for _, tc := range []struct{ table, top, want string }{
		{good, "", ""},
		{good + `election_timeout = "1s"` + "\nheartbeat_timeout = \"500ms\"\n", "", ""},
		{`raft_address = "127.0.0.1:7946"`, "", "cluster.node_id"},
		{strings.Replace(good, `raft_address = "127.0.0.1:7946"`, `raft_address = "7946"`, 1), "", "cluster.raft_address"},
		{strings.Replace(good, `mqtt_advertise = "127.0.0.1:1883"`, ``, 1), "", "cluster.mqtt_advertise"},
		{strings.Replace(good, `"n3@127.0.0.1:7948"`, `"n3-127.0.0.1:7948"`, 1), "", "cluster.peers"},
		{strings.Replace(good, `"n3@127.0.0.1:7948"`, `"n2@127.0.0.1:7948"`, 1), "", "cluster.peers"},
		{strings.Replace(good, `node_id = "n1"`, `node_id = "n4"`, 1), "", "cluster.peers"},
		{good, `durability = "async"` + "\n", "durability"},
		{good + `election_timeout = "1ms"` + "\n", "", "cluster.election_timeout"},
		{good + `election_timeout = "1s"` + "\nheartbeat_timeout = \"2s\"\n", "", "cluster.heartbeat_timeout"},
		{good + "tls = true\n", "", "cluster.tls"},
	} {
		c, err := Load(defaults(t), "my.toml", []byte(tc.top+"[cluster]\n"+tc.table))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.table, err)
		case tc.want == "":
			if p := c.Cluster.PeerList(); len(p) != 3 || p[1] != (Peer{ID: "n2", Address: "127.0.0.1:7947"}) || !c.Cluster.Enabled() {
				t.Errorf("peers %+v", p)
			}
		case err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "my.toml"):
			t.Errorf("%s%s: %v, want an error naming %s and the file", tc.top, tc.table, err, tc.want)
		}
	}
	if c, err := Load(defaults(t), "", nil); err != nil || c.Cluster.Enabled() {
		t.Errorf("the embedded defaults: %v, cluster enabled %v", err, err == nil && c.Cluster.Enabled())
	}
}
