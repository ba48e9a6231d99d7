package broker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
)

// loadConn is one raw connection of the lock-order load test: it answers every QoS handshake the
// broker starts and drops what it reads, so the broker's every path runs.
type loadConn struct {
	nc net.Conn
	mu sync.Mutex // writes come from the actor and from its reader
}

func dialLoad(addr, id string, clean bool) (*loadConn, error) {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	c := &loadConn{nc: nc}
	c.send(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level311, ClientID: id, CleanSession: clean, KeepAlive: 60})
	go c.answer()
	return c, nil
}

func (c *loadConn) send(p codec.Packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.nc.Write(p.Append(nil)) // errors end the connection; the reader sees them
}

func (c *loadConn) answer() {
	r := codec.NewReader(c.nc, 1<<20)
	for {
		p, err := r.ReadPacket()
		if err != nil {
			c.nc.Close()
			return
		}
		switch p := p.(type) {
		case *codec.Publish:
			if p.QoS == 1 {
				c.send(&codec.Puback{PacketID: p.PacketID})
			} else if p.QoS == 2 {
				c.send(&codec.Pubrec{PacketID: p.PacketID})
			}
		case *codec.Pubrec:
			c.send(&codec.Pubrel{PacketID: p.PacketID})
		case *codec.Pubrel:
			c.send(&codec.Pubcomp{PacketID: p.PacketID})
		}
	}
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
			c, err := dialLoad(b.addr, fmt.Sprint("pub", i), true)
			if err != nil {
				return
			}
			defer c.nc.Close()
			for n := range 200 {
				qos := byte(rng.IntN(3))
				c.send(&codec.Publish{Topic: fmt.Sprintf("load/%d", rng.IntN(8)), QoS: qos, PacketID: uint16(n + 1),
					Retain: rng.IntN(20) == 0, Payload: []byte("payload")})
			}
		})
		actor(fmt.Sprint("sub", i), func(rng *rand.Rand) {
			// A new connection takes the session over from the previous one, still open.
			c, err := dialLoad(b.addr, fmt.Sprint("sub", i), i%2 == 0)
			if err != nil {
				return
			}
			c.send(&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: "load/#", QoS: byte(rng.IntN(3))}}})
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond) // paces the take-overs
		})
	}
	actor("churn", func(rng *rand.Rand) {
		c, err := dialLoad(b.addr, "churn", false)
		if err != nil {
			return
		}
		defer c.nc.Close()
		for n := range 100 {
			f := fmt.Sprintf("load/%d", rng.IntN(8))
			if n%2 == 0 {
				c.send(&codec.Subscribe{PacketID: uint16(n + 1), Subscriptions: []codec.Subscription{{Filter: f, QoS: 1}}})
			} else {
				c.send(&codec.Unsubscribe{PacketID: uint16(n + 1), Filters: []string{f}})
			}
		}
	})
	actor("admin", func(*rand.Rand) {
		b.srv.Gauges()
		b.srv.Live("sub1")
		b.srv.ReloadAuth()
		b.srv.expireSessions(time.Now().Add(-time.Hour))
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
