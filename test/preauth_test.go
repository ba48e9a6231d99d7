package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// Issue 11 item 6: before CONNACK the broker reads nothing larger than the largest legal CONNECT;
// limits.max_packet_size applies only after it.

// procStatus returns a field of /proc/PID/status in bytes (VmRSS, VmHWM: the kernel reports kB).
func (b *Broker) procStatus(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/status %s: %v", b.cmd.Process.Pid, field, err)
		}
		return kb << 10
	}
	t.Fatalf("/proc/%d/status has no %s", b.cmd.Process.Pid, field)
	return 0
}

// rssSampler records the broker's largest VmRSS from start until stop: the peak is what an
// attack costs, however briefly the memory is held.
type rssSampler struct {
	peak chan int64
	stop chan struct{}
}

func sampleRSS(b *Broker, every time.Duration) *rssSampler {
	s := &rssSampler{peak: make(chan int64, 1), stop: make(chan struct{})}
	path := fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid)
	go func() {
		var peak int64
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if data, err := os.ReadFile(path); err == nil {
				peak = max(peak, parseVmRSS(data))
			}
			select {
			case <-s.stop:
				s.peak <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) Stop() int64 {
	close(s.stop)
	return <-s.peak
}

func parseVmRSS(status []byte) int64 {
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// preauthClosedLines counts the broker's warnings for first packets refused by their size.
func preauthClosedLines(log string) int {
	n := 0
	for line := range strings.Lines(log) {
		var rec struct {
			Level  string `json:"level"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "warn" && strings.Contains(rec.Reason, "largest legal CONNECT") {
			n++
		}
	}
	return n
}

// TestSecurity06_PreAuthConnectSize: 50 connections declare a 100 MB CONNECT and stream 4 MB
// behind it. The broker must close each from the fixed header, and its RSS must not follow the
// bytes: before the fix it buffered all of them, 200 MB and more.
func TestSecurity06_PreAuthConnectSize(t *testing.T) {
	const (
		conns    = 50
		declared = 100 << 20
		streamed = 4 << 20
		maxRise  = 40 << 20
	)
	// A long connect_timeout: a close by the timeout must not pass for a refusal.
	b := StartBroker(t, BrokerConfig{Extra: "[limits]\nconnect_timeout = \"60s\"\n"})
	// Warm the paths a connection takes, so that the baseline is not the cold start.
	warm := mqtttest.Dial(t, b.Addr)
	warm.MustConnect("warm", true)
	warm.Send(&codec.Disconnect{})
	warm.ExpectClosed()
	before := b.procStatus(t, "VmRSS")
	sampler := sampleRSS(b, 2*time.Millisecond)

	header := codec.AppendRemainingLength([]byte{0x10}, declared)
	chunk := make([]byte, 64<<10)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := mqtttest.TryDial(t, "", b.Addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Conn.Close()
			// Writes fail once the broker has closed; what counts is that it did.
			if err := c.WriteRaw(header); err == nil {
				for sent := 0; sent < streamed; sent += len(chunk) {
					if err := c.WriteRaw(chunk); err != nil {
						break
					}
				}
			}
			got, err := c.Closed(10*time.Second, nil)
			if err == nil && len(got) > 0 {
				err = fmt.Errorf("the broker sent %s before closing", packetList(got))
			}
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	peak := sampler.Stop()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rise := peak - before
	t.Logf("broker VmRSS: %d MB before, peak %d MB during %d connections x %d MB: rise %.1f MB (limit %d MB)",
		before>>20, peak>>20, conns, streamed>>20, float64(rise)/(1<<20), maxRise>>20)
	if rise >= maxRise {
		t.Errorf("VmRSS rose by %.1f MB, want < %d MB", float64(rise)/(1<<20), maxRise>>20)
	}
	mqtttest.Eventually(t, 10*time.Second, "one warning per refused connection", func() bool {
		return preauthClosedLines(b.Log()) >= conns
	})
}

// maxConnect is the largest CONNECT of a protocol level: every field at 65,535 bytes.
func maxConnect(name string, level byte) *codec.Connect {
	field := func(c byte) string { return strings.Repeat(string(c), 65535) }
	return &codec.Connect{
		ProtocolName: name, ProtocolLevel: level, CleanSession: true, KeepAlive: 60,
		ClientID:    field('c'),
		Will:        &codec.Will{Topic: field('w'), Payload: []byte(field('m'))},
		HasUsername: true, Username: field('u'),
		HasPassword: true, Password: []byte(field('p')),
	}
}

// TestSecurity06_LargestLegalConnect: a CONNECT of exactly the largest legal size is read and
// accepted at both protocol levels; one byte more is refused from its fixed header with no
// CONNACK.
func TestSecurity06_LargestLegalConnect(t *testing.T) {
	// 3.1 ids are refused past 23 bytes unless strict_client_id is off; the size is the point.
	b := StartBroker(t, BrokerConfig{Extra: "[limits]\nstrict_client_id = false\n"})
	for _, tt := range []struct {
		name  string
		level byte
		size  int
	}{
		{codec.ProtocolName31, codec.Level31, codec.MaxConnectSize},
		{codec.ProtocolName311, codec.Level311, codec.MaxConnectSize - 2}, // "MQTT" is 2 bytes shorter
	} {
		wire := maxConnect(tt.name, tt.level).Append(nil)
		if len(wire) != tt.size {
			t.Fatalf("%s: largest CONNECT encodes to %d bytes, want %d", tt.name, len(wire), tt.size)
		}
		c := mqtttest.Dial(t, b.Addr)
		c.SendRaw(wire)
		if ack := mqtttest.Expect[*codec.Connack](c); ack.ReturnCode != codec.Accepted {
			t.Fatalf("%s: largest legal CONNECT (%d bytes) refused with 0x%02x", tt.name, len(wire), ack.ReturnCode)
		}
		c.Send(&codec.Pingreq{})
		mqtttest.Expect[*codec.Pingresp](c)
		c.Send(&codec.Disconnect{})
		c.ExpectClosed()
	}

	// One byte over: the declared length alone is refused, whatever follows.
	body := maxConnect(codec.ProtocolName31, codec.Level31).Append(nil)[4:] // 1 type byte + 3 length bytes
	over := codec.AppendRemainingLength([]byte{0x10}, len(body)+1)
	over = append(append(over, body...), 0)
	if len(over) != codec.MaxConnectSize+1 {
		t.Fatalf("oversized CONNECT is %d bytes, want %d", len(over), codec.MaxConnectSize+1)
	}
	logFrom := len(b.Log())
	c := mqtttest.Dial(t, b.Addr)
	c.SendRaw(over[:8]) // the header is enough
	if got := c.ExpectClosed(); len(got) != 0 {
		t.Fatalf("CONNECT of %d bytes: got %s, want a close without CONNACK", len(over), packetList(got))
	}
	mqtttest.Eventually(t, 5*time.Second, "the warning naming the reason", func() bool {
		return preauthClosedLines(b.Log()[logFrom:]) == 1
	})
}

// TestSecurity06_LargePublishAfterConnack: after CONNACK limits.max_packet_size applies, so a
// PUBLISH far larger than any CONNECT is accepted, also when it is pipelined right behind the
// CONNECT; one over max_packet_size still closes the connection.
func TestSecurity06_LargePublishAfterConnack(t *testing.T) {
	const maxPacket = 2 << 20
	b := StartBroker(t, BrokerConfig{Extra: fmt.Sprintf("[limits]\nmax_packet_size = %d\n", maxPacket)})
	sub := mqtttest.Dial(t, b.Addr)
	sub.MustConnect("big-sub", true)
	if rc := sub.Subscribe(1, 1, "big/#"); len(rc) != 1 || rc[0] != 1 {
		t.Fatalf("SUBACK %v, want [1]", rc)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), (1<<20)/16) // 1 MiB, three times a CONNECT
	check := func(topic string) {
		t.Helper()
		p := mqtttest.Expect[*codec.Publish](sub)
		if p.Topic != topic || !bytes.Equal(p.Payload, payload) {
			t.Fatalf("subscriber got %q with %d bytes, want %q with %d", p.Topic, len(p.Payload), topic, len(payload))
		}
		sub.Send(&codec.Puback{PacketID: p.PacketID})
	}

	pub := mqtttest.Dial(t, b.Addr)
	pub.MustConnect("big-pub", true)
	pub.Send(&codec.Publish{QoS: 1, PacketID: 1, Topic: "big/after", Payload: payload})
	if ack := mqtttest.Expect[*codec.Puback](pub); ack.PacketID != 1 {
		t.Fatalf("PUBACK %d, want 1", ack.PacketID)
	}
	check("big/after")

	// Pipelined: the PUBLISH is in the broker's hands before CONNACK is sent.
	piped := mqtttest.Dial(t, b.Addr)
	piped.Send(&codec.Connect{ProtocolName: codec.ProtocolName311, ProtocolLevel: codec.Level311, ClientID: "big-piped", CleanSession: true, KeepAlive: 60},
		&codec.Publish{QoS: 1, PacketID: 2, Topic: "big/piped", Payload: payload})
	if ack := mqtttest.Expect[*codec.Connack](piped); ack.ReturnCode != codec.Accepted {
		t.Fatalf("CONNACK 0x%02x", ack.ReturnCode)
	}
	if ack := mqtttest.Expect[*codec.Puback](piped); ack.PacketID != 2 {
		t.Fatalf("PUBACK %d, want 2", ack.PacketID)
	}
	check("big/piped")

	pub.SendRaw(codec.AppendRemainingLength([]byte{0x30}, maxPacket))
	if got := pub.ExpectClosed(); len(got) != 0 {
		t.Fatalf("PUBLISH over max_packet_size: got %s, want a close", packetList(got))
	}
}
