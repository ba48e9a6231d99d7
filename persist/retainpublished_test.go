package persist

import "testing"

// A queued message or shared body remembers that its publisher set RETAIN, for the Retain As
// Published subscriptions it is delivered to after a restart [MQTT-3.3.1-12].
func TestRetainPublishedRoundTrip(t *testing.T) {
	k := queueKey("c", 1)
	for _, m := range []*Message{
		{Topic: "t", Payload: []byte("p"), QoS: 1, RetainPublished: true},
		{Topic: "t", Payload: []byte("p"), QoS: 1},
	} {
		if _, got, err := decodeQueue(k, encodeQueueInline(1, m), true); err != nil || got.RetainPublished != m.RetainPublished {
			t.Errorf("inline %+v: %+v, %v", m, got, err)
		}
		if got, err := decodeBody(bodyKey(1), encodeBody(m), true); err != nil || got.RetainPublished != m.RetainPublished {
			t.Errorf("body %+v: %+v, %v", m, got, err)
		}
	}
}
