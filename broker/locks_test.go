package broker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// dialLoad connects a client of the lock-order load test, which answers every QoS handshake the
// broker starts and drops what it reads, so the broker's every path runs.
func dialLoad(t *testing.T, addr, id string, clean bool) (*mqtttest.Client, error) {
	c, err := mqtttest.TryDial(t, "", addr)
	if err != nil {
		return nil, err
	}
	if err := c.Write(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level311, ClientID: id, CleanSession: clean, KeepAlive: 60}); err != nil {
		return nil, err
	}
	go c.AnswerAll(time.Minute)
	return c, nil
}

// TestLockOrderUnderLoad drives every path that takes locks at once — publishes at each QoS,
// persistent subscribers taken over by new connections, subscription churn, ACL reloads, session
// expiry, gauges and the admin's live view — for a few seconds under the race detector. The lock
// order in doc.go is what keeps this from deadlocking: the run must end and the broker shut down
// within a deadline, and afterwards still serve.
func TestLockOrderUnderLoad(t *testing.T) {
	b := startBroker(t, func(c *config.Config) {
		c.Admin.SysInterval.Duration = 50 * time.Millisecond
		c.Limits.MaxInflight = 4
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	actor := func(name string, fn func(rng *rand.Rand)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(len(name))))
			for {
				select {
				case <-stop:
					return
				default:
				}
				fn(rng)
			}
		}()
	}
	for i := range 4 {
		actor(fmt.Sprint("pub", i), func(rng *rand.Rand) {
			c, err := dialLoad(t, b.addr, fmt.Sprint("pub", i), true)
			if err != nil {
				return
			}
			defer c.Conn.Close()
			for n := range 200 {
				qos := byte(rng.IntN(3))
				c.Write(&codec.Publish{Topic: fmt.Sprintf("load/%d", rng.IntN(8)), QoS: qos, PacketID: uint16(n + 1),
					Retain: rng.IntN(20) == 0, Payload: []byte("payload")})
			}
		})
		actor(fmt.Sprint("sub", i), func(rng *rand.Rand) {
			// A new connection takes the session over from the previous one, still open.
			c, err := dialLoad(t, b.addr, fmt.Sprint("sub", i), i%2 == 0)
			if err != nil {
				return
			}
			c.Write(&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: "load/#", QoS: byte(rng.IntN(3))}}})
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond) // paces the take-overs
		})
	}
	actor("churn", func(rng *rand.Rand) {
		c, err := dialLoad(t, b.addr, "churn", false)
		if err != nil {
			return
		}
		defer c.Conn.Close()
		for n := range 100 {
			f := fmt.Sprintf("load/%d", rng.IntN(8))
			if n%2 == 0 {
				c.Write(&codec.Subscribe{PacketID: uint16(n + 1), Subscriptions: []codec.Subscription{{Filter: f, QoS: 1}}})
			} else {
				c.Write(&codec.Unsubscribe{PacketID: uint16(n + 1), Filters: []string{f}})
			}
		}
	})
	actor("admin", func(*rand.Rand) {
		b.srv.Gauges()
		b.srv.Live("sub1")
		b.srv.ReloadAuth()
		for _, sess := range b.srv.sessions.snapshot() {
			b.srv.reap(sess)
		}
	})

	time.Sleep(3 * time.Second) // the length of the load
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the load's clients did not finish within 10 s: a deadlock in the broker?")
	}

	// Still serving.
	c := b.dial()
	c.MustConnect("after", true)
	c.Subscribe(1, 1, "after/x")
	c.Send(&codec.Publish{Topic: "after/x", QoS: 1, PacketID: 2, Payload: []byte("ok")})
	for {
		p := c.Read()
		if pub, ok := p.(*codec.Publish); ok && string(pub.Payload) == "ok" {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		buf := make([]byte, 1<<20)
		t.Fatalf("shutdown after the load: %v (a goroutine is stuck):\n%s", err, buf[:runtime.Stack(buf, true)])
	}
}
