package test

// The loss window of durability = "async", measured with power cuts (issue 13). The README says an
// acknowledged message is then written to the operating system and fsynced every
// store.async_interval (10 ms), so that a power loss can lose up to that interval of acknowledged
// messages. TestPowerCutAsyncLossWindow measures it on the faultfs harness of faultfs_test.go.
//
// It is a timing measurement, and this machine's cores are shared, so it runs only when asked:
//
//	HOLDFAST_ASYNC_POWERCUT=1 go test -race -count=1 -run TestPowerCutAsyncLossWindow -v ./test/
//
// It logs the numbers and fails only on what no scheduling delay explains: a session gone after a
// power cut, a lost message acknowledged more than a second before the cut, or a lost message
// acknowledged before one that survived (the log is synced in the order it is written).

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/faultfs"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// TestPowerCutAsyncLossWindow publishes QoS 1 messages as fast as the publisher's window allows to
// an offline persistent subscriber, cuts the power at a random moment, restarts, and counts the
// acknowledged messages lost and how long before the cut each one's PUBACK arrived.
func TestPowerCutAsyncLossWindow(t *testing.T) {
	if os.Getenv("HOLDFAST_ASYNC_POWERCUT") != "1" {
		t.Skip("a timing measurement: run it with HOLDFAST_ASYNC_POWERCUT=1")
	}
	const cycles = 10
	disk, mnt := t.TempDir(), t.TempDir()
	fs := faultfs.Mount(t, disk, mnt)
	b := faultfsBroker(t, filepath.Join(mnt, "data"), "async")
	interval := asyncInterval(t, b)
	sub := mqtttest.Dial(t, b.Addr)
	sub.MustConnect("faultfs-sub", false)
	sub.Subscribe(1, 1, "faultfs/#")

	var acked, lost, lossy int
	var ages []time.Duration // of every lost message: from its PUBACK to the cut
	for cycle := range cycles {
		sub.Send(&codec.Disconnect{})
		sub.ExpectClosed()
		pub := faultfsPublish(t, b.Addr, cycle*100000)
		cut := 200 + rand.IntN(5000) // acknowledgements before the cut
		mqtttest.Eventually(t, 60*time.Second, "PUBACKs", func() bool { return len(pub.ackedNumbers()) >= cut })
		cutAt := time.Now()
		if err := fs.PowerCut(); err != nil {
			t.Fatal(err)
		}
		cutTook := time.Since(cutAt) // the writes are dropped at some moment of it
		b.Kill()
		if err := fs.Unmount(); err != nil {
			t.Fatal(err)
		}
		<-pub.done
		acks := pub.acks()
		acked += len(acks)

		fs = faultfs.Mount(t, disk, mnt)
		b.Start()
		t.Cleanup(b.Kill) // before the mount's cleanup unmounts it
		asyncMark(t, b.Addr)
		var got map[int]bool
		var err error
		sub, got, err = faultfsReceive(t, b.Addr, "faultfs-sub", []int{0})
		if err != nil {
			t.Fatalf("cycle %d: the marker published after the restart did not arrive (%v): the subscription is gone", cycle, err)
		}

		var cycleAges []time.Duration
		survivor := -1 // the index in acks of the last acknowledged message that survived
		for i, a := range acks {
			if got[a.n] {
				survivor = i
			} else {
				cycleAges = append(cycleAges, cutAt.Sub(a.at))
			}
		}
		for i, a := range acks[:max(survivor, 0)] {
			if !got[a.n] {
				t.Errorf("cycle %d: message %d (acknowledgement %d of %d) lost, while %d, acknowledged after it, survived",
					cycle, a.n, i+1, len(acks), acks[survivor].n)
				break
			}
		}
		if len(cycleAges) > 0 {
			lossy++
			if oldest := slices.Max(cycleAges); oldest > time.Second {
				t.Errorf("cycle %d: a lost message was acknowledged %v before the cut", cycle, oldest.Round(time.Millisecond))
			}
		}
		lost += len(cycleAges)
		ages = append(ages, cycleAges...)
		t.Logf("cycle %d: %d acknowledged, %d lost%s; the cut took %v", cycle, len(acks), len(cycleAges), asyncAges(cycleAges), cutTook.Round(10*time.Microsecond))
	}
	t.Logf("durability async, store.async_interval %v: %d power cuts, %d acknowledged messages, %d lost in %d of the cuts%s",
		interval, cycles, acked, lost, lossy, asyncAges(ages))
	if len(ages) > 0 {
		t.Logf("oldest lost acknowledgement: %v before the cut, %.1fx store.async_interval", slices.Max(ages).Round(10*time.Microsecond),
			float64(slices.Max(ages))/float64(interval))
	}
	b.Stop()
}

// asyncInterval reads store.async_interval from the broker's "store opened" log line.
func asyncInterval(t *testing.T, b *Broker) time.Duration {
	t.Helper()
	line, ok := b.logLine(0, 10*time.Second, func(l string) bool { return strings.Contains(l, `"store opened"`) })
	if !ok {
		t.Fatalf("no \"store opened\" line in the broker log:\n%s", b.Log())
	}
	var rec struct {
		AsyncInterval *float64 `json:"async_interval"` // milliseconds, zerolog's default unit
	}
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.AsyncInterval == nil {
		t.Fatalf("no async_interval in %s (%v)", line, err)
	}
	return time.Duration(*rec.AsyncInterval * float64(time.Millisecond))
}

// asyncMark publishes number 0, which comes after everything the subscriber's queue holds: its
// delivery ends the drain.
func asyncMark(t *testing.T, addr string) {
	t.Helper()
	c := mqtttest.Dial(t, addr)
	c.MustConnect("faultfs-mark", true)
	c.Send(&codec.Publish{QoS: 1, Topic: faultfsTopic, PacketID: 1, Payload: []byte("0")})
	mqtttest.Expect[*codec.Puback](c)
	c.Send(&codec.Disconnect{})
	c.ExpectClosed()
}

// asyncAges renders the spread of ages, the time from a lost message's PUBACK to the start of the
// cut (negative: the PUBACK arrived after it, and was sent before the disk was cut, or during).
func asyncAges(ages []time.Duration) string {
	if len(ages) == 0 {
		return ""
	}
	s := slices.Sorted(slices.Values(ages))
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return ", PUBACK to cut: min " + r(s[0]).String() + ", median " + r(s[len(s)/2]).String() + ", max " + r(s[len(s)-1]).String()
}
