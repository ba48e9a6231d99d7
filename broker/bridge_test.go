package broker

import (
	"testing"

	"github.com/holdfast/holdfast/config"
)

// Prefixes as Mosquitto's bridges apply them: out, the local prefix of a matching topic becomes
// the remote one; in, the reverse; a topic no rule of that direction matches does not cross.
func TestBridgeTopicPrefixes(t *testing.T) {
	b := &bridge{cfg: &config.Bridge{Topics: []config.BridgeTopic{
		{Pattern: "sensors/#", Direction: "out", LocalPrefix: "edge/", RemotePrefix: "fleet/t17/"},
		{Pattern: "cmd/#", Direction: "in", LocalPrefix: "", RemotePrefix: "fleet/t17/"},
		{Pattern: "both/+", Direction: "both"},
	}}}
	for _, tc := range []struct{ local, remote string }{
		{"edge/sensors/temp", "fleet/t17/sensors/temp"},
		{"sensors/temp", ""}, // without the local prefix it is no out topic
		{"cmd/reboot", ""},   // in only
		{"both/x", "both/x"},
	} {
		if got := b.remoteTopic(tc.local); got != tc.remote {
			t.Errorf("remoteTopic(%q) = %q, want %q", tc.local, got, tc.remote)
		}
	}
	for _, tc := range []struct{ remote, local string }{
		{"fleet/t17/cmd/reboot", "cmd/reboot"},
		{"fleet/t17/sensors/temp", ""}, // out only
		{"cmd/reboot", ""},
		{"both/y", "both/y"},
	} {
		if got := b.localTopic(tc.remote); got != tc.local {
			t.Errorf("localTopic(%q) = %q, want %q", tc.remote, got, tc.local)
		}
	}
}
