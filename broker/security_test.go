package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// Hostile clients, in-process so that the broker's memory can be measured: a client that
// declares a 256 MB packet and trickles it, a thousand sockets that never send CONNECT, a
// subscriber that stops reading during a flood, and one connection too many. Each must cost the
// broker a bounded amount of memory and time, and the other clients nothing.

// secMiB is a mebibyte, for memory bounds and log lines.
const secMiB = 1 << 20

// secMem reads the runtime's memory statistics, after a collection when gc is set (so that
// HeapAlloc is the live heap).
func secMem(gc bool) runtime.MemStats {
	if gc {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// secGrowth is b-a in MiB, for log lines.
func secGrowth(a, b uint64) float64 { return (float64(b) - float64(a)) / secMiB }

// secClosed reads from nc until the broker closes it and returns true, or returns false if the
// connection is still open at deadline. Data the broker sent first is discarded.
func secClosed(nc net.Conn, deadline time.Time) bool {
	nc.SetReadDeadline(deadline)
	buf := make([]byte, 32<<10)
	for {
		_, err := nc.Read(buf)
		if err == nil {
			continue
		}
		return !errors.Is(err, os.ErrDeadlineExceeded)
	}
}

// TestHostileSlowlorisRemainingLength: a packet whose fixed header declares 256 MiB (the
// protocol's largest remaining length, accepted by max_packet_size) and whose body then arrives
// one byte every 100 ms makes the broker allocate memory in proportion to the bytes received,
// not to the length declared; the connection is closed by the keep-alive (after CONNECT) or the
// CONNECT timeout (a trickled CONNECT), even while bytes keep coming.
func TestHostileSlowlorisRemainingLength(t *testing.T) {
	const (
		declared   = codec.MaxRemainingLength // 268,435,455 bytes
		trickle    = 100 * time.Millisecond
		keepAlive  = 2 // seconds: the broker closes 1.5 keep-alives after the last packet began
		connectTO  = 1500 * time.Millisecond
		growthMax  = 16 * secMiB
		trickleFor = 2 * time.Second
	)
	b := startBroker(t, func(c *config.Config) {
		c.Limits.MaxPacketSize = codec.MaxPacketSize
		c.Limits.ConnectTimeout.Duration = connectTO
		c.Admin.SysInterval.Duration = 0
	})

	// slowloris sends header, then one byte per tick until stop is closed or the socket fails.
	slowloris := func(nc net.Conn, header []byte, stop <-chan struct{}) (sent *atomic.Int64, done <-chan struct{}) {
		sent = &atomic.Int64{}
		d := make(chan struct{})
		go func() {
			defer close(d)
			if _, err := nc.Write(header); err != nil {
				return
			}
			tick := time.NewTicker(trickle)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := nc.Write([]byte{'x'}); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
		return sent, d
	}
	check := func(t *testing.T, m0, m1 runtime.MemStats, sent int64) {
		t.Helper()
		t.Logf("declared %d bytes, trickled %d; TotalAlloc +%.2f MiB, HeapInuse %+.2f MiB, Sys %+.2f MiB",
			declared, sent, secGrowth(m0.TotalAlloc, m1.TotalAlloc), secGrowth(m0.HeapInuse, m1.HeapInuse), secGrowth(m0.Sys, m1.Sys))
		if sent < 10 {
			t.Fatalf("only %d bytes trickled: the test did not run as meant", sent)
		}
		if g := m1.TotalAlloc - m0.TotalAlloc; g > growthMax {
			t.Errorf("the broker allocated %.1f MiB while a client declared %d bytes and sent %d: allocation must follow what arrives (limit %d MiB)",
				float64(g)/secMiB, declared, sent, growthMax/secMiB)
		}
		if m1.HeapInuse > m0.HeapInuse && m1.HeapInuse-m0.HeapInuse > growthMax {
			t.Errorf("HeapInuse grew by %.1f MiB (limit %d MiB)", secGrowth(m0.HeapInuse, m1.HeapInuse), growthMax/secMiB)
		}
	}
	base := b.srv.Stats().Connections.Load()

	t.Run("PUBLISH after CONNECT, closed by the keep-alive [MQTT-3.1.2-24]", func(t *testing.T) {
		c := b.dial()
		connected := time.Now()
		if ack := c.Connect(&codec.Connect{ClientID: "slowloris", CleanSession: true, KeepAlive: keepAlive}); ack.ReturnCode != codec.Accepted {
			t.Fatalf("CONNACK 0x%02x", ack.ReturnCode)
		}
		m0 := secMem(true)
		header := codec.AppendRemainingLength([]byte{byte(codec.TypePublish) << 4}, declared)
		header = append(header, 0, 4, 'l', 'o', 'r', 'i') // topic "lori", then the payload trickles
		stop := make(chan struct{})
		sent, done := slowloris(c.Conn, header, stop)
		time.Sleep(trickleFor)
		m1 := secMem(false)
		close(stop)
		<-done
		check(t, m0, m1, sent.Load())
		// The client stops: the broker closes it at 1.5 keep-alives after the last packet began.
		limit := connected.Add(keepAlive*1500*time.Millisecond + 1500*time.Millisecond)
		if !secClosed(c.Conn, limit) {
			t.Fatalf("connection still open %v after CONNECT (keep-alive %d s)", time.Since(connected).Round(time.Millisecond), keepAlive)
		}
		t.Logf("closed %v after CONNECT", time.Since(connected).Round(time.Millisecond))
	})

	t.Run("trickled CONNECT, closed at limits.connect_timeout", func(t *testing.T) {
		c := b.dial()
		dialed := time.Now()
		m0 := secMem(true)
		// The largest legal CONNECT: a larger one is refused from its fixed header alone
		// (test/preauth_test.go, TestSecurity06_PreAuthConnectSize).
		header := codec.AppendRemainingLength([]byte{byte(codec.TypeConnect) << 4}, codec.MaxConnectSize-5)
		header = append(header, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60)
		stop := make(chan struct{})
		sent, done := slowloris(c.Conn, header, stop)
		defer func() { close(stop); <-done }()
		// Bytes keep coming, yet the CONNECT deadline closes the connection.
		closed := secClosed(c.Conn, dialed.Add(connectTO+1500*time.Millisecond))
		took := time.Since(dialed)
		m1 := secMem(false)
		if !closed {
			t.Fatalf("connection still open %v after connecting (connect_timeout %v) while the client trickled a CONNECT", took.Round(time.Millisecond), connectTO)
		}
		if took < connectTO-100*time.Millisecond {
			t.Fatalf("closed after %v, before connect_timeout %v", took, connectTO)
		}
		t.Logf("closed %v after connecting", took.Round(time.Millisecond))
		check(t, m0, m1, sent.Load())
	})

	mqtttest.Eventually(t, 2*time.Second, "connections back to the baseline", func() bool {
		return b.srv.Stats().Connections.Load() == base
	})
	other := b.dial()
	other.MustConnect("bystander", true)
	other.Send(&codec.Pingreq{})
	mqtttest.Expect[*codec.Pingresp](other)
}

// TestHostileSilentSocketsClosedAtConnectTimeout: 1,000 sockets that never send CONNECT are all
// closed at limits.connect_timeout (500 ms here), none before it, and the connection count goes
// back to where it was.
func TestHostileSilentSocketsClosedAtConnectTimeout(t *testing.T) {
	const (
		n       = 1000
		timeout = 500 * time.Millisecond
		within  = 2 * time.Second // from each socket's dial to its close
	)
	b := startBroker(t, func(c *config.Config) {
		c.Limits.ConnectTimeout.Duration = timeout
		c.Limits.MaxPendingConnectsPerAddress = 0 // all from 127.0.0.1: this test is about the time-out
		c.Admin.SysInterval.Duration = 0
	})
	st := b.srv.Stats()
	base := st.Connections.Load()

	type result struct {
		took time.Duration
		err  error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	var peak atomic.Int64
	for i := range n {
		nc, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		dialed := time.Now()
		t.Cleanup(func() { nc.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc.SetReadDeadline(dialed.Add(within + 3*time.Second))
			var buf [1]byte
			_, err := nc.Read(buf[:])
			results[i] = result{time.Since(dialed), err}
			if cur := st.Connections.Load(); cur > peak.Load() {
				peak.Store(cur)
			}
		}()
	}
	wg.Wait()

	var late, early, notEOF int
	var slowest, fastest time.Duration = 0, time.Hour
	for i, r := range results {
		slowest, fastest = max(slowest, r.took), min(fastest, r.took)
		switch {
		case errors.Is(r.err, os.ErrDeadlineExceeded):
			late++
			if late <= 3 {
				t.Errorf("socket %d still open %v after dialing", i, r.took.Round(time.Millisecond))
			}
		case r.err != io.EOF && !errors.Is(r.err, net.ErrClosed):
			notEOF++
			if notEOF <= 3 {
				t.Errorf("socket %d: read returned %v, want EOF", i, r.err)
			}
		case r.took > within:
			late++
			if late <= 3 {
				t.Errorf("socket %d closed %v after dialing, want within %v", i, r.took.Round(time.Millisecond), within)
			}
		case r.took < timeout-50*time.Millisecond:
			early++
			if early <= 3 {
				t.Errorf("socket %d closed %v after dialing, before connect_timeout %v", i, r.took.Round(time.Millisecond), timeout)
			}
		}
	}
	t.Logf("%d silent sockets: closed between %v and %v after dialing (connect_timeout %v); %d late, %d early, %d without EOF; peak connections seen %d",
		n, fastest.Round(time.Millisecond), slowest.Round(time.Millisecond), timeout, late, early, notEOF, peak.Load())
	mqtttest.Eventually(t, 2*time.Second, "Stats().Connections back to the baseline", func() bool {
		return st.Connections.Load() == base
	})
}

// Flood parameters of TestSlowSubscriberBoundedDroppedAndDisconnected.
const (
	floodMessages = 100_000
	floodPayload  = 64
	floodTopic    = "flood"
	floodPacket   = 2 + 2 + len(floodTopic) + floodPayload // fixed header (1-byte length), topic, payload
)

// floodFrame writes PUBLISH QoS 0 number seq into dst (floodPacket bytes).
func floodFrame(dst []byte, seq uint64) {
	dst[0], dst[1] = byte(codec.TypePublish)<<4, byte(floodPacket-2)
	dst[2], dst[3] = 0, byte(len(floodTopic))
	copy(dst[4:], floodTopic)
	p := dst[4+len(floodTopic):]
	binary.BigEndian.PutUint64(p, seq)
	for i := 8; i < floodPayload; i++ {
		p[i] = byte(seq) + byte(i)
	}
}

// floodCheck reports whether b is frame number seq.
func floodCheck(b []byte, seq uint64) bool {
	var want [floodPacket]byte
	floodFrame(want[:], seq)
	return string(b) == string(want[:])
}

// floodRead reads frames from nc until want have arrived or the stream stalls for stall; it
// returns how many arrived in order and the first problem.
func floodRead(nc net.Conn, want int, stall time.Duration) (int, error) {
	buf := make([]byte, 64<<10)
	have, got := 0, 0
	for got < want {
		nc.SetReadDeadline(time.Now().Add(stall))
		n, err := nc.Read(buf[have:])
		have += n
		off := 0
		for have-off >= floodPacket && got < want {
			if !floodCheck(buf[off:off+floodPacket], uint64(got)) {
				return got, fmt.Errorf("message %d is not the next one in order (lost, duplicated or corrupted)", got)
			}
			got++
			off += floodPacket
		}
		have = copy(buf, buf[off:have])
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// TestSlowSubscriberBoundedDroppedAndDisconnected: a subscriber that stops reading while a
// publisher sends 100,000 QoS 0 messages of 64 bytes at full speed costs the broker at most its
// outbound buffer (limits.max_outbound_bytes): its QoS 0 messages are dropped (counted as
// DropSlow), the publisher is not held up, another subscriber that reads gets every message in
// order, and the silent one is disconnected after limits.write_timeout.
//
// The bounds. The silent subscriber's outbound buffer holds at most max_outbound_bytes (1 MiB by
// default) plus one packet; it is sampled during the flood and checked directly. The writer's
// buffer, blocked in a write, holds at most as much again, and the kernel's socket buffers the
// rest of what the connection took (64 KiB of SO_SNDBUF set by the test, and the client's
// receive buffer), so the messages the connection took, counted from the broker's counters, must
// fit in 2 × (1 MiB + a packet) + 1 MiB of kernel allowance: the remaining tens of thousands must
// be dropped. On the heap, each connection's two buffers can reach twice their length in capacity
// through append doubling: 2 connections × 2 buffers × 2 MiB = 8 MiB at most, so live heap growth
// (after GC) is held to 16 MiB, and HeapInuse at any moment of the flood, garbage included, to
// 64 MiB. Keeping the flood for the silent subscriber would break the first two bounds (7.1 MiB
// on the wire) and, kept as one object per message, the heap bounds as well.
func TestSlowSubscriberBoundedDroppedAndDisconnected(t *testing.T) {
	const (
		writeTimeout = 2 * time.Second
		liveMax      = 16 * secMiB // live heap growth, after GC
		kernelBuf    = 64 << 10    // SO_SNDBUF of the broker's socket to the silent subscriber
		kernelSlack  = 1 * secMiB  // what both kernels may hold, counted generously
		peakMax      = 64 * secMiB // HeapInuse growth at any sample, garbage included
	)
	b := startBroker(t, func(c *config.Config) {
		c.Limits.WriteTimeout.Duration = writeTimeout
		c.Admin.SysInterval.Duration = 0
	})
	omax := b.cfg.Limits.MaxOutboundBytes
	st := b.srv.Stats()

	slow := b.dial()
	slow.MustConnect("slow", true)
	if codes := slow.Subscribe(1, 0, floodTopic); codes[0] != 0 {
		t.Fatalf("SUBACK %v", codes)
	}
	stoppedReading := time.Now()
	fast := b.dial()
	fast.MustConnect("fast", true)
	if codes := fast.Subscribe(1, 0, floodTopic); codes[0] != 0 {
		t.Fatalf("SUBACK %v", codes)
	}
	pub := b.dial()
	pub.MustConnect("pub", true)

	b.srv.mu.Lock()
	sc := b.srv.owners["slow"]
	b.srv.mu.Unlock()
	if sc == nil {
		t.Fatal("no connection for client slow")
	}
	// Small kernel buffers on the broker's side of the silent subscriber's socket, so that what
	// the kernel can absorb does not depend on the machine's tcp_wmem (up to 4 MiB here, more
	// elsewhere): the flood must meet the broker's own limit.
	nc := sc.nc
	if g, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = g.NetConn() // the gate's wrapper around the accepted socket
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		t.Fatalf("the broker's connection is a %T, not a *net.TCPConn", sc.nc)
	}
	if err := tc.SetWriteBuffer(kernelBuf); err != nil {
		t.Fatal(err)
	}

	dropped0 := st.Dropped[DropSlow].Load()
	out0 := st.MessagesOut[0].Load()
	m0 := secMem(true)

	// Sampler: the silent subscriber's outbound buffer and the heap, during the flood.
	var maxObuf, maxHeap atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			sc.omu.Lock()
			n := int64(len(sc.obuf))
			sc.omu.Unlock()
			if n > maxObuf.Load() {
				maxObuf.Store(n)
			}
			if i%25 == 0 {
				m := secMem(false)
				if int64(m.HeapInuse) > maxHeap.Load() {
					maxHeap.Store(int64(m.HeapInuse))
				}
			}
		}
	}()

	type readResult struct {
		n   int
		err error
	}
	fastDone := make(chan readResult, 1)
	go func() {
		n, err := floodRead(fast.Conn, floodMessages, 10*time.Second)
		fastDone <- readResult{n, err}
	}()

	// The flood, 1,000 messages per write, then a PINGREQ: its PINGRESP says the broker has
	// handled every PUBLISH.
	start := time.Now()
	chunk := make([]byte, 1000*floodPacket)
	for seq := 0; seq < floodMessages; seq += 1000 {
		for i := range 1000 {
			floodFrame(chunk[i*floodPacket:], uint64(seq+i))
		}
		pub.SendRaw(chunk)
	}
	pub.Send(&codec.Pingreq{})
	if p, err := pub.TryRead(30 * time.Second); err != nil || p.Type() != codec.TypePingresp {
		t.Fatalf("publisher: after the flood got %v, %v; want PINGRESP", p, err)
	}
	published := time.Since(start)

	var fr readResult
	select {
	case fr = <-fastDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the reading subscriber received nothing for 30 s")
	}
	received := time.Since(start)
	close(stopSampling)
	<-sampled
	m1 := secMem(true)

	dropped := st.Dropped[DropSlow].Load() - dropped0
	accepted := st.MessagesOut[0].Load() - out0 - int64(fr.n) // QoS 0 messages put in slow's buffer
	t.Logf("flood of %d × %d-byte QoS 0 messages: publisher done in %v, reading subscriber got %d in %v",
		floodMessages, floodPayload, published.Round(time.Millisecond), fr.n, received.Round(time.Millisecond))
	t.Logf("silent subscriber: %d messages (%.2f MiB) taken into its buffers, %d dropped (DropSlow); largest outbound buffer %d bytes (limit %d + one %d-byte packet)",
		accepted, float64(accepted*int64(floodPacket))/secMiB, dropped, maxObuf.Load(), omax, floodPacket)
	t.Logf("heap: live %+.2f MiB after GC (limit %d MiB); peak HeapInuse %+.2f MiB (limit %d MiB); HeapInuse before %.1f MiB",
		secGrowth(m0.HeapAlloc, m1.HeapAlloc), liveMax/secMiB, secGrowth(m0.HeapInuse, uint64(maxHeap.Load())), peakMax/secMiB, float64(m0.HeapInuse)/secMiB)

	if fr.err != nil || fr.n != floodMessages {
		t.Errorf("the reading subscriber got %d of %d messages in order: %v (dropped for slow subscribers: %d)", fr.n, floodMessages, fr.err, dropped)
	}
	if dropped == 0 {
		t.Errorf("no message counted as DropSlow although subscriber slow read nothing")
	}
	if got := maxObuf.Load(); got > int64(omax+floodPacket) {
		t.Errorf("the silent subscriber's outbound buffer reached %d bytes, over max_outbound_bytes %d + one packet", got, omax)
	}
	// Conservation: what the silent subscriber's connection accepted is in its two buffers or in
	// the kernel; anything beyond means the broker kept more than max_outbound_bytes.
	if took, bound := accepted*int64(floodPacket), int64(2*(omax+floodPacket)+kernelSlack); took > bound {
		t.Errorf("the silent subscriber's connection took %d bytes of messages, more than its two buffers (2 × (%d + %d)) and %d bytes of kernel buffers can hold",
			took, omax, floodPacket, kernelSlack)
	}
	if g := int64(m1.HeapAlloc) - int64(m0.HeapAlloc); g > liveMax {
		t.Errorf("live heap grew by %.1f MiB during the flood, limit %d MiB", float64(g)/secMiB, liveMax/secMiB)
	}
	if g := maxHeap.Load() - int64(m0.HeapInuse); g > peakMax {
		t.Errorf("HeapInuse peaked %.1f MiB above its level before the flood, limit %d MiB", float64(g)/secMiB, peakMax/secMiB)
	}

	// The silent subscriber is disconnected once a write has made no progress for write_timeout.
	floodEnd := time.Now()
	select {
	case <-sc.ended:
	case <-time.After(2*writeTimeout + 2*time.Second):
		t.Fatalf("the silent subscriber is still connected %v after the flood (write_timeout %v)", time.Since(floodEnd).Round(time.Millisecond), writeTimeout)
	}
	closedAfter := time.Since(stoppedReading)
	t.Logf("silent subscriber disconnected %v after it stopped reading, %v after the flood", closedAfter.Round(time.Millisecond), time.Since(floodEnd).Round(time.Millisecond))
	if closedAfter < writeTimeout-50*time.Millisecond {
		t.Errorf("the silent subscriber was disconnected %v after it stopped reading, before write_timeout %v", closedAfter, writeTimeout)
	}
	// From its side: whatever the kernel held, then the end of the stream. A large receive buffer
	// first, so that the client's window update is not held back (loopback's MSS is 64 KiB).
	slow.Conn.(*net.TCPConn).SetReadBuffer(8 << 20)
	n, err := floodRead(slow.Conn, floodMessages, 5*time.Second)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("silent subscriber's socket: %d messages then %v, want the connection closed", n, err)
	}
	t.Logf("the silent subscriber's socket then yielded %d messages and %v", n, err)
	// The publisher and the reading subscriber are still connected.
	for _, c := range []*mqtttest.Client{pub, fast} {
		c.Send(&codec.Pingreq{})
		mqtttest.Expect[*codec.Pingresp](c)
	}
}

// TestMaxConnectionsRefusesAtOnce: with limits.max_connections = 5, a sixth socket is closed at
// once, without a CONNACK, and counted; the five keep working; when one leaves, a new one is let
// in.
func TestMaxConnectionsRefusesAtOnce(t *testing.T) {
	const limit = 5
	b := startBroker(t, func(c *config.Config) {
		c.Limits.MaxConnections = limit
		c.Admin.SysInterval.Duration = 0
	})
	st := b.srv.Stats()
	refused0 := st.Refused[RefuseMaxConnections].Load()
	var in []*mqtttest.Client
	for i := range limit {
		c := b.dial()
		c.MustConnect("in-"+strconv.Itoa(i), true)
		in = append(in, c)
	}

	sixth := func(sendConnect bool) {
		t.Helper()
		c := b.dial()
		start := time.Now()
		if sendConnect {
			c.Conn.Write((&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "sixth", CleanSession: true}).Append(nil))
		}
		p, err := c.TryRead(2 * time.Second)
		took := time.Since(start)
		switch {
		case err == nil:
			t.Fatalf("connection %d got %s, want it closed", limit+1, mqtttest.String(p))
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.Fatalf("connection %d still open after %v (max_connections %d)", limit+1, took, limit)
		case took > time.Second:
			t.Fatalf("connection %d closed only after %v, want at once", limit+1, took)
		}
	}
	sixth(false)
	sixth(true)
	if got := st.Refused[RefuseMaxConnections].Load() - refused0; got != 2 {
		t.Errorf("Refused[max_connections] went up by %d, want 2", got)
	}
	for _, c := range in {
		c.Send(&codec.Pingreq{})
		mqtttest.Expect[*codec.Pingresp](c)
	}

	// One leaves: its slot is free again.
	in[0].Send(&codec.Disconnect{})
	in[0].ExpectClosed()
	mqtttest.Eventually(t, 2*time.Second, "the connection count to drop", func() bool {
		return st.Connections.Load() == limit-1
	})
	c := b.dial()
	c.MustConnect("in-again", true)
	c.Send(&codec.Pingreq{})
	mqtttest.Expect[*codec.Pingresp](c)
}
