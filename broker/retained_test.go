package broker

import (
	"fmt"
	"testing"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// MQTT-3.3.1-6: a new subscription gets the retained message of its topic, and a subscription
// made before a publish gets the publish. A retained publish racing a SUBSCRIBE must reach the
// subscriber one way or the other: either the publish's routing sees the subscription, or the
// subscription's look-up sees the retained message. Each round subscribes to a new topic while
// another client publishes a retained message on it; bystanders subscribed to every topic make
// each routing take long enough for the SUBSCRIBE to land in the middle of it.
func TestRetainedPublishRacingSubscribe_MQTT_3_3_1_6(t *testing.T) {
	b := startBroker(t, nil)
	for i := range 200 {
		c := b.dial()
		c.MustConnect(fmt.Sprint("bystander", i), true)
		c.Subscribe(1, 0, "race/#")
	}
	pub := b.dial()
	pub.MustConnect("racer-pub", true)
	sub := b.dial()
	sub.MustConnect("racer-sub", true)
	const rounds = 900 // below limits.max_subscriptions
	published := make(chan error, 1)
	go func() {
		for i := range rounds {
			if err := pub.Write(&codec.Publish{Topic: fmt.Sprintf("race/%d", i), Retain: true, Payload: []byte("v")}); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	for i := range rounds {
		sub.Send(&codec.Subscribe{PacketID: uint16(i + 1), Subscriptions: []codec.Subscription{{Filter: fmt.Sprintf("race/%d", i)}}})
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for subacks := 0; subacks < rounds || len(got) < rounds; {
		switch p := sub.Read().(type) {
		case *codec.Suback:
			subacks++
		case *codec.Publish:
			got[p.Topic] = true
		default:
			t.Fatalf("unexpected %s", mqtttest.String(p))
		}
	}
}
