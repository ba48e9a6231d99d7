package test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// The hostile-input storm: thousands of connections each send something broken while three
// well-behaved clients keep exchanging messages. The broker must close every broken connection
// [MQTT-4.8.0-1], stay up, keep serving the others, log what it refused, and never panic.

const (
	hostileConns       = 3000
	hostileConcurrency = 64

	// Broker limits for the storm (see hostileConfig): a socket that has not completed CONNECT
	// is closed after hostileConnectTimeout, and storm clients connect with keep-alive
	// hostileKeepAlive, so one that stops sending is closed after 1.5 times that.
	hostileConnectTimeout = 3 * time.Second
	hostileKeepAlive      = 2 // seconds
	hostileMaxPacket      = 1 << 20

	// hostileDeadline bounds how long a storm connection may stay open after its last byte;
	// hostilePrompt is how fast a malformed fixed header must be answered by a close, well
	// below both timeouts, so that a close by timeout does not count.
	hostileDeadline = 8 * time.Second
	hostilePrompt   = 1500 * time.Millisecond
)

var hostileConfig = fmt.Sprintf(`[limits]
connect_timeout = "%s"
max_packet_size = %d
`, hostileConnectTimeout, hostileMaxPacket)

// The kinds of broken input, used in turn.
const (
	kindRandom         = iota // random bytes as the first thing on the socket
	kindConnectRandom         // a valid CONNECT, then random bytes
	kindTruncated             // a valid CONNECT, then a valid packet cut short, then FIN
	kindMutatedConnect        // a CONNECT with one byte changed
	kindLongLength            // a remaining length with five continuation bytes
	kindHugeLength            // a remaining length far above limits.max_packet_size
	numKinds
)

var kindNames = [numKinds]string{"random", "connect+random", "truncated", "mutated-connect", "5-byte-length", "huge-length"}

// TestHostileInputStorm_MQTT_4_8_0_1 runs the storm. Set HOLDFAST_HOSTILE_SEED to replay one.
func TestHostileInputStorm_MQTT_4_8_0_1(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HOLDFAST_HOSTILE_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("HOLDFAST_HOSTILE_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with HOLDFAST_HOSTILE_SEED=%d)", seed, seed)

	b := StartBroker(t, BrokerConfig{Extra: hostileConfig})
	good := newWellBehaved(t, b)
	good.exchange(t, "before")

	var (
		next     atomic.Int64
		finished atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		outcomes [numKinds]map[string]int
	)
	for k := range outcomes {
		outcomes[k] = map[string]int{}
	}
	// thirds[k] closes once k+1 thirds of the connections have finished.
	thirds := []chan struct{}{make(chan struct{}), make(chan struct{})}
	start := time.Now()
	for range hostileConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= hostileConns {
					return
				}
				kind := i % numKinds
				rng := rand.New(rand.NewPCG(seed, uint64(i)))
				outcome, sent, err := attack(t, b.Addr, i, kind, rng)
				mu.Lock()
				outcomes[kind][outcome]++
				if err != nil {
					failures = append(failures, fmt.Sprintf("connection %d (%s) sent %s: %v", i, kindNames[kind], abbreviate(sent), err))
				}
				mu.Unlock()
				n := finished.Add(1)
				for k, ch := range thirds {
					if n == hostileConns*int64(k+1)/3 {
						close(ch)
					}
				}
			}
		}()
	}
	// The well-behaved clients keep working during the storm.
	for k, ch := range thirds {
		<-ch // every storm connection ends within hostileDeadline of its last byte
		good.exchange(t, fmt.Sprintf("during-%d", k+1))
	}
	wg.Wait()
	t.Logf("%d hostile connections in %v", hostileConns, time.Since(start).Round(time.Millisecond))
	for k, m := range outcomes {
		t.Logf("%-16s %v", kindNames[k], m)
	}
	for i, f := range failures {
		if i == 20 {
			t.Errorf("... and %d more failures", len(failures)-20)
			break
		}
		t.Error(f)
	}

	select {
	case <-b.exited:
		t.Fatalf("the broker exited during the storm: %v", b.exitErr)
	default:
	}
	good.exchange(t, "after")
	good.ping(t)
	if failures != nil {
		t.Fatalf("%d of %d hostile connections misbehaved (seed %d)", len(failures), hostileConns, seed)
	}

	// Every malformed fixed header is logged at warn level with reason "malformed packet"; the
	// harness reads the log asynchronously, so give it a moment.
	wantMalformed := outcomes[kindLongLength]["closed"] + outcomes[kindHugeLength]["closed"]
	var malformed int
	mqtttest.Eventually(t, 5*time.Second, "the malformed-packet log lines", func() bool {
		malformed = countMalformedLogLines(b.Log())
		return malformed >= wantMalformed
	})
	t.Logf("%d warn lines with reason \"malformed packet\" (at least %d expected)", malformed, wantMalformed)
	log := b.Log()
	for _, bad := range []string{"panic", "DATA RACE", "fatal error"} {
		if i := strings.Index(log, bad); i >= 0 {
			t.Fatalf("broker log contains %q: %s", bad, log[max(0, i-200):min(len(log), i+800)])
		}
	}
}

// countMalformedLogLines counts JSON log lines at warn level whose reason is a malformed packet.
func countMalformedLogLines(log string) int {
	n := 0
	for line := range strings.Lines(log) {
		var rec struct {
			Level  string `json:"level"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "warn" && strings.Contains(rec.Reason, "malformed") {
			n++
		}
	}
	return n
}

func abbreviate(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("%d bytes %s...", len(b), hex.EncodeToString(b[:64]))
	}
	return fmt.Sprintf("%d bytes %s", len(b), hex.EncodeToString(b))
}

// stormConnect is the valid CONNECT of storm connection i. The random suffix keeps client ids
// apart even when a mutation changes one character, so no storm connection takes over another.
func stormConnect(i int, rng *rand.Rand) []byte {
	cp := &codec.Connect{
		ProtocolName:  codec.ProtocolName311,
		ProtocolLevel: codec.Level311,
		CleanSession:  true,
		KeepAlive:     hostileKeepAlive,
		ClientID:      fmt.Sprintf("h%d-%08x", i, rng.Uint32()),
	}
	if rng.IntN(2) == 0 {
		cp.ProtocolName, cp.ProtocolLevel = codec.ProtocolName31, codec.Level31
	}
	return cp.Append(nil)
}

// validPacket is a client packet that the broker would accept after CONNECT.
func validPacket(rng *rand.Rand) []byte {
	payload := make([]byte, rng.IntN(200))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	pid := uint16(1 + rng.IntN(65535))
	var p codec.Packet
	switch rng.IntN(5) {
	case 0:
		p = &codec.Publish{QoS: byte(rng.IntN(3)), Retain: rng.IntN(4) == 0, Topic: "storm/" + strconv.Itoa(rng.IntN(100)), PacketID: pid, Payload: payload}
	case 1:
		p = &codec.Subscribe{PacketID: pid, Subscriptions: []codec.Subscription{{Filter: "storm/+", QoS: byte(rng.IntN(3))}, {Filter: "storm/#", QoS: 1}}}
	case 2:
		p = &codec.Unsubscribe{PacketID: pid, Filters: []string{"storm/+", "storm/x/#"}}
	case 3:
		p = &codec.Pubrel{PacketID: pid}
	default:
		p = &codec.Pingreq{}
	}
	return p.Append(nil)
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// firstBytes are fixed-header first bytes of packet types a client may send, with valid flags.
var firstBytes = []byte{0x10, 0x30, 0x32, 0x34, 0x3b, 0x40, 0x50, 0x62, 0x70, 0x82, 0xa2, 0xc0, 0xe0}

// attack runs storm connection i of the given kind and checks what the broker did. It returns a
// short outcome for the statistics, the bytes it sent, and an error if the broker misbehaved. It
// must not call t.Fatal: it runs on its own goroutine.
func attack(t *testing.T, addr string, i, kind int, rng *rand.Rand) (outcome string, sent []byte, err error) {
	c, err := mqtttest.TryDial(t, "", addr)
	if err != nil {
		return "dial-error", nil, err
	}
	defer c.Conn.Close()
	tc := c.Conn.(*net.TCPConn)
	s := stormConn{c}

	switch kind {
	case kindRandom:
		sent = randomBytes(rng, 1+rng.IntN(256))
		if err := s.write(sent); err != nil {
			return "write-error", sent, nil // the broker may close before it has read it all
		}
		half := rng.IntN(2) == 0
		if half {
			tc.CloseWrite()
		}
		got, err := s.untilClosed(hostileDeadline)
		if err != nil {
			return "open", sent, err
		}
		if err := onlyRefusal(got); err != nil {
			return "bad-reply", sent, err
		}
		return "closed", sent, nil

	case kindConnectRandom:
		sent = append(stormConnect(i, rng), randomBytes(rng, 1+rng.IntN(256))...)
		if err := s.write(sent); err != nil {
			return "write-error", sent, nil
		}
		got, err := s.untilClosed(hostileDeadline)
		if err != nil {
			return "open", sent, err
		}
		if err := acceptedThenServerPackets(got); err != nil {
			return "bad-reply", sent, err
		}
		return "closed", sent, nil

	case kindTruncated:
		p := validPacket(rng)
		sent = append(stormConnect(i, rng), p[:rng.IntN(len(p))]...)
		if err := s.write(sent); err != nil {
			return "write-error", sent, err
		}
		tc.CloseWrite()
		got, err := s.untilClosed(hostileDeadline)
		if err != nil {
			return "open", sent, err
		}
		// The packet never completes, so nothing may answer it. The CONNACK itself may be
		// lost: the client closed its side, and the broker need not write to it any more.
		if len(got) > 1 {
			return "bad-reply", sent, fmt.Errorf("got %s, want at most CONNACK 0", packetList(got))
		}
		if err := acceptedThenServerPackets(got); err != nil {
			return "bad-reply", sent, err
		}
		return "closed", sent, nil

	case kindMutatedConnect:
		sent = stormConnect(i, rng)
		sent[rng.IntN(len(sent))] ^= byte(1 + rng.IntN(255))
		if connectLevel(sent) == codec.Level5 {
			s.c.SetLevel(codec.Level5) // a flipped level byte: MQTT 5 is served, in its own form
		}
		if err := s.write(sent); err != nil {
			return "write-error", sent, nil
		}
		got, err := s.untilClosedOr(hostileDeadline, func(p codec.Packet) bool {
			ack, ok := p.(*codec.Connack)
			return ok && accepts(ack)
		})
		if err != nil {
			return "open", sent, err
		}
		if n := len(got); n > 0 {
			if ack, ok := got[n-1].(*codec.Connack); ok && accepts(ack) {
				// The mutation left a valid CONNECT: the connection must work.
				if n != 1 {
					return "bad-reply", sent, fmt.Errorf("got %s before CONNACK", packetList(got[:n-1]))
				}
				if err := s.c.Write(&codec.Pingreq{}); err != nil {
					return "bad-reply", sent, fmt.Errorf("accepted, then PINGREQ failed: %v", err)
				}
				p, err := s.read(hostileDeadline)
				if _, ok := p.(*codec.Pingresp); err != nil || !ok {
					return "bad-reply", sent, fmt.Errorf("accepted, then PINGREQ answered with %v, %v", p, err)
				}
				s.c.Write(&codec.Disconnect{})
				if got, err := s.untilClosed(hostileDeadline); err != nil || len(got) > 0 {
					return "bad-reply", sent, fmt.Errorf("after DISCONNECT: %s, %v", packetList(got), err)
				}
				return "accepted", sent, nil
			}
		}
		if err := onlyRefusal(got); err != nil {
			return "bad-reply", sent, err
		}
		if len(got) == 1 {
			return "refused", sent, nil
		}
		return "closed", sent, nil

	case kindLongLength, kindHugeLength:
		afterConnect := rng.IntN(2) == 0
		var hdr []byte
		if afterConnect {
			hdr = stormConnect(i, rng)
		}
		hdr = append(hdr, firstBytes[rng.IntN(len(firstBytes))])
		if kind == kindLongLength {
			for range 5 {
				hdr = append(hdr, 0x80|byte(rng.IntN(128)))
			}
			hdr = append(hdr, byte(rng.IntN(128)))
		} else {
			hdr = codec.AppendRemainingLength(hdr, hostileMaxPacket+1+rng.IntN(codec.MaxRemainingLength-hostileMaxPacket))
		}
		sent = append(hdr, randomBytes(rng, rng.IntN(1024))...)
		begin := time.Now()
		if err := s.write(sent); err != nil {
			return "write-error", sent, nil
		}
		got, err := s.untilClosed(hostileDeadline)
		if err != nil {
			return "open", sent, err
		}
		if took := time.Since(begin); took > hostilePrompt {
			return "slow", sent, fmt.Errorf("closed after %v, want within %v (a timeout, not the malformed header, closed it)", took, hostilePrompt)
		}
		if afterConnect {
			// At most the CONNACK: a reset for the unread rest may discard it.
			if len(got) > 1 {
				return "bad-reply", sent, fmt.Errorf("got %s, want only CONNACK 0", packetList(got))
			}
			if err := acceptedThenServerPackets(got); err != nil {
				return "bad-reply", sent, err
			}
		} else if len(got) > 0 {
			return "bad-reply", sent, fmt.Errorf("got %s, want nothing", packetList(got))
		}
		return "closed", sent, nil
	}
	panic("unknown kind")
}

// onlyRefusal accepts nothing, or one CONNACK that refuses the connection.
func onlyRefusal(got []codec.Packet) error {
	if len(got) == 0 {
		return nil
	}
	if ack, ok := got[0].(*codec.Connack); ok && len(got) == 1 && !accepts(ack) && !ack.SessionPresent {
		return nil
	}
	return fmt.Errorf("got %s, want nothing or one refusing CONNACK", packetList(got))
}

// accepts reports whether a CONNACK of either form accepts the connection: 3.x's return code 0,
// and level 5's reason code 0.
func accepts(ack *codec.Connack) bool {
	return ack.ReturnCode == codec.Accepted && ack.Reason == codec.ReasonSuccess
}

// acceptedThenServerPackets accepts CONNACK 0 followed by packets a server may send.
func acceptedThenServerPackets(got []codec.Packet) error {
	if len(got) == 0 {
		return nil // a reset can discard the CONNACK before it is read
	}
	if ack, ok := got[0].(*codec.Connack); !ok || !accepts(ack) || ack.SessionPresent {
		return fmt.Errorf("got %s, want CONNACK 0 without session present first", packetList(got))
	}
	for _, p := range got[1:] {
		switch p.(type) {
		case *codec.Publish, *codec.Puback, *codec.Pubrec, *codec.Pubrel, *codec.Pubcomp,
			*codec.Suback, *codec.Unsuback, *codec.Pingresp:
		default:
			return fmt.Errorf("got %s: a server never sends %s after CONNACK", packetList(got), p.Type())
		}
	}
	return nil
}

func packetList(ps []codec.Packet) string {
	if len(ps) == 0 {
		return "nothing"
	}
	var s []string
	for _, p := range ps {
		s = append(s, mqtttest.String(p))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// stormConn is one storm client: it writes whatever bytes it was given and reports errors
// instead of failing the test, so it can run off the test goroutine.
type stormConn struct{ c *mqtttest.Client }

func (s stormConn) write(b []byte) error { return s.c.WriteRaw(b) }

func (s stormConn) read(d time.Duration) (codec.Packet, error) { return s.c.TryRead(d) }

// untilClosed reads packets until the broker closes the connection; it fails if the connection
// is still open after d or the broker sends bytes that do not decode.
func (s stormConn) untilClosed(d time.Duration) ([]codec.Packet, error) {
	return s.untilClosedOr(d, nil)
}

// untilClosedOr is untilClosed that also returns early, without error, after a packet for which
// stop is true.
func (s stormConn) untilClosedOr(d time.Duration, stop func(codec.Packet) bool) ([]codec.Packet, error) {
	got, err := s.c.Closed(d, stop)
	switch {
	case errors.Is(err, mqtttest.ErrStillOpen):
		return got, fmt.Errorf("connection still open %v after the last byte (received %s)", d, packetList(got))
	case err != nil:
		return got, fmt.Errorf("reading the broker's answer: %v (received %s first)", err, packetList(got))
	}
	return got, nil
}

// wellBehaved is two subscribers on ok/# (one clean, one persistent) and a publisher, all raw
// clients that stay connected through the storm.
type wellBehaved struct {
	pub  *mqtttest.Client
	subs []*mqtttest.Client
	pid  uint16
}

func newWellBehaved(t *testing.T, b *Broker) *wellBehaved {
	t.Helper()
	w := &wellBehaved{}
	w.pub = mqtttest.Dial(t, b.Addr)
	w.pub.MustConnect("ok-pub", true)
	for _, sub := range []struct {
		id    string
		clean bool
	}{{"ok-sub-clean", true}, {"ok-sub-persistent", false}} {
		c := mqtttest.Dial(t, b.Addr)
		c.MustConnect(sub.id, sub.clean)
		if rc := c.Subscribe(1, 1, "ok/#"); len(rc) != 1 || rc[0] != 1 {
			t.Fatalf("%s: SUBACK return codes %v, want [1]", sub.id, rc)
		}
		w.subs = append(w.subs, c)
	}
	return w
}

// exchange publishes one QoS 1 message and checks that both subscribers receive it exactly.
func (w *wellBehaved) exchange(t *testing.T, label string) {
	t.Helper()
	w.pid++
	topic, payload := "ok/"+label, "well-behaved "+label
	w.pub.Send(&codec.Publish{QoS: 1, PacketID: w.pid, Topic: topic, Payload: []byte(payload)})
	if ack := mqtttest.Expect[*codec.Puback](w.pub); ack.PacketID != w.pid {
		t.Fatalf("%s: PUBACK packet id %d, want %d", label, ack.PacketID, w.pid)
	}
	for i, c := range w.subs {
		p := mqtttest.Expect[*codec.Publish](c)
		if p.Topic != topic || string(p.Payload) != payload || p.QoS != 1 || p.Retain || p.Dup {
			t.Fatalf("%s: subscriber %d got %s, want topic %q payload %q QoS 1", label, i, mqtttest.String(p), topic, payload)
		}
		c.Send(&codec.Puback{PacketID: p.PacketID})
	}
}

// ping checks that every well-behaved connection still answers PINGREQ.
func (w *wellBehaved) ping(t *testing.T) {
	t.Helper()
	for _, c := range append([]*mqtttest.Client{w.pub}, w.subs...) {
		c.Send(&codec.Pingreq{})
		mqtttest.Expect[*codec.Pingresp](c)
	}
}
