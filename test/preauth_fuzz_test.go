package test

import (
	// The package-level binary is the holdfast executable.
	"debug/buildinfo"
	binenc "encoding/binary"
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

// The pre-auth fuzz run (issue 11, "Also"): 64 connections at once send random mutations of a
// CONNECT to the real binary for HOLDFAST_PREAUTH_FUZZ (20 s without it). Afterwards the broker's
// goroutines, Go heap and (without the race detector) RSS must be back near their idle level,
// its log free of panics, and a valid CONNECT still answered. Throughout, the broker must never
// answer with anything but a CONNACK first, and must close an oversized header at once.

const (
	fuzzConcurrency   = 64
	fuzzConnectTO     = 4 * time.Second // limits.connect_timeout of the fuzzed broker
	fuzzPrompt        = 3 * time.Second // an oversized header must be closed within this, before the timeout
	fuzzMaxLinger     = 2 * time.Second // how long a client waits for the broker before closing itself
	fuzzGoroutineMore = 10              // goroutines above idle still counted as "back"
	fuzzHeapMore      = 16 << 20        // Go heap in use above idle still counted as "back"
	fuzzRSSMore       = 48 << 20        // RSS above idle still counted as "back"
)

// The mutations, chosen at random for each connection.
const (
	mutRandom       = iota // random bytes, sometimes behind a CONNECT type byte
	mutTruncated           // a valid CONNECT cut short, then FIN or silence
	mutFlipped             // a valid CONNECT with a few bytes changed
	mutOversized           // a remaining length past MaxConnectSize, then some bytes
	mutNearBound           // a CONNECT of about MaxConnectSize, its declared length a little off
	mutGarbageAfter        // a valid CONNECT, then garbage or valid packets and garbage
	mutSlow                // a valid or flipped CONNECT written one byte at a time
	mutLongLength          // a remaining length with five continuation bytes
	mutLengthLie           // a valid CONNECT with one field's length prefix replaced
	mutValid               // a well-formed CONNECT, sometimes for a protocol level we refuse
	numMutations
)

var mutationNames = [numMutations]string{"random", "truncated", "flipped", "oversized", "near-bound",
	"garbage-after", "slow", "5-byte-length", "length-lie", "valid"}

// fuzzTally is what the workers counted.
type fuzzTally struct {
	conns, packets, bytes atomic.Int64
	mu                    sync.Mutex
	outcomes              [numMutations]map[string]int
	failures              []string
}

func (f *fuzzTally) record(m int, outcome string, err error, sent []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outcomes[m][outcome]++
	if err != nil && len(f.failures) < 50 {
		f.failures = append(f.failures, fmt.Sprintf("%s sent %s: %v", mutationNames[m], abbreviate(sent), err))
	}
}

// TestSecurityAlso_PreAuthFuzz is the fuzz run. HOLDFAST_PREAUTH_FUZZ=10m sets its length;
// HOLDFAST_PREAUTH_FUZZ_SEED replays one.
func TestSecurityAlso_PreAuthFuzz(t *testing.T) {
	length := 20 * time.Second
	if s := os.Getenv("HOLDFAST_PREAUTH_FUZZ"); s != "" {
		var err error
		if length, err = time.ParseDuration(s); err != nil {
			t.Fatalf("HOLDFAST_PREAUTH_FUZZ: %v", err)
		}
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HOLDFAST_PREAUTH_FUZZ_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("HOLDFAST_PREAUTH_FUZZ_SEED: %v", err)
		}
	}
	t.Logf("fuzzing for %v, seed %d (replay with HOLDFAST_PREAUTH_FUZZ_SEED=%d)", length, seed, seed)

	b := StartBroker(t, BrokerConfig{Extra: opsAdminExtra("0s") +
		fmt.Sprintf("[limits]\nconnect_timeout = %q\n", fuzzConnectTO)})
	admin := "http://" + opsAdminAddr(t, b)
	level := func() brokerLevel {
		// A GC through the heap profile first: an idle broker may not run one for minutes.
		opsStatus(t, admin+"/debug/pprof/heap?gc=1", opsToken)
		m := opsScrape(t, admin)
		return brokerLevel{goroutines: int(m["go_goroutines"]), heap: int64(m["go_memstats_heap_inuse_bytes"]), rss: b.procStatus(t, "VmRSS")}
	}
	alive := func(label string) {
		c := mqtttest.Dial(t, b.Addr)
		c.MustConnect("fuzz-check-"+label, true)
		c.Send(&codec.Pingreq{})
		mqtttest.Expect[*codec.Pingresp](c)
		c.Send(&codec.Disconnect{})
		c.ExpectClosed()
	}
	alive("before") // warms the paths a connection takes
	idle := level()
	sampler := sampleRSS(b, 20*time.Millisecond)

	var tally fuzzTally
	for m := range tally.outcomes {
		tally.outcomes[m] = map[string]int{}
	}
	var next atomic.Uint64
	end := time.Now().Add(length)
	var wg sync.WaitGroup
	for range fuzzConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				rng := rand.New(rand.NewPCG(seed, next.Add(1)))
				m := rng.IntN(numMutations)
				outcome, sent, err := fuzzConn(t, b.Addr, m, rng, &tally)
				tally.record(m, outcome, err, sent)
			}
		}()
	}
	wg.Wait()
	peakRSS := sampler.Stop()

	for m, o := range tally.outcomes {
		t.Logf("%-14s %v", mutationNames[m], o)
	}
	for _, f := range tally.failures {
		t.Error(f)
	}
	select {
	case <-b.exited:
		t.Fatalf("the broker exited during the run: %v", b.exitErr)
	default:
	}

	// Every client has closed: what they cost must go. Under the race detector the memory it
	// shadows stays resident after the heap frees it, so there RSS is only reported.
	race := raceBinary(t)
	var now brokerLevel
	var problems []string
	for deadline := time.Now().Add(60 * time.Second); ; {
		now = level()
		if problems = now.above(idle, race); problems == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond) // paces this poll: each level() forces a GC in the broker
	}
	t.Logf("connections %d, packets %d, bytes %d in %v", tally.conns.Load(), tally.packets.Load(), tally.bytes.Load(), length)
	t.Logf("broker RSS: idle %.1f MB, peak %.1f MB, end %.1f MB (race detector: %v); Go heap in use: idle %.1f MB, end %.1f MB; goroutines: idle %d, end %d",
		mb(idle.rss), mb(peakRSS), mb(now.rss), race, mb(idle.heap), mb(now.heap), idle.goroutines, now.goroutines)
	for _, p := range problems {
		t.Error(p)
	}
	alive("after")
	log := b.Log()
	for _, bad := range []string{"panic", "DATA RACE", "fatal error"} {
		if i := strings.Index(log, bad); i >= 0 {
			t.Fatalf("broker log contains %q: %s", bad, log[max(0, i-200):min(len(log), i+800)])
		}
	}
}

// brokerLevel is what the broker holds when nothing happens.
type brokerLevel struct {
	goroutines int
	heap       int64 // Go heap in use after a GC
	rss        int64
}

// above lists how l is still above idle beyond the slack allowed.
func (l brokerLevel) above(idle brokerLevel, race bool) []string {
	var p []string
	if l.goroutines > idle.goroutines+fuzzGoroutineMore {
		p = append(p, fmt.Sprintf("goroutines: %d after the run, %d idle before it", l.goroutines, idle.goroutines))
	}
	if l.heap > idle.heap+fuzzHeapMore {
		p = append(p, fmt.Sprintf("Go heap in use: %.1f MB after the run, %.1f MB idle before it", mb(l.heap), mb(idle.heap)))
	}
	if !race && l.rss > idle.rss+fuzzRSSMore {
		p = append(p, fmt.Sprintf("RSS: %.1f MB after the run, %.1f MB idle before it", mb(l.rss), mb(idle.rss)))
	}
	return p
}

// raceBinary reports whether the broker under test was built with the race detector.
func raceBinary(t *testing.T) bool {
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		t.Fatalf("reading the build settings of %s: %v", binary, err)
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

// fuzzConn runs one connection of mutation m. It returns a short outcome for the statistics, the
// bytes it sent, and an error if the broker misbehaved. It runs off the test goroutine.
func fuzzConn(t *testing.T, addr string, m int, rng *rand.Rand, tally *fuzzTally) (outcome string, sent []byte, err error) {
	c, err := mqtttest.TryDial(t, "", addr)
	if err != nil {
		return "dial-error", nil, err
	}
	defer c.Conn.Close()
	tally.conns.Add(1)
	fc := &fuzzClient{c: c, tally: tally}
	wait := time.Duration(rng.Int64N(int64(fuzzMaxLinger)))
	ping := false // an accepted connection must answer PINGREQ: only for CONNECTs sent unchanged
	connect := fuzzConnect(rng).Append(nil)

	switch m {
	case mutRandom:
		sent = randomBytes(rng, 1+rng.IntN(1024))
		if rng.IntN(2) == 0 {
			sent[0] = 0x10
		}
		fc.write(sent)
		if rng.IntN(2) == 0 {
			fc.c.Conn.(*net.TCPConn).CloseWrite()
		}

	case mutTruncated:
		sent = connect[:rng.IntN(len(connect))]
		fc.write(sent)
		if rng.IntN(2) == 0 {
			fc.c.Conn.(*net.TCPConn).CloseWrite()
		}

	case mutFlipped:
		sent = flip(rng, connect)
		fc.write(sent)

	case mutOversized, mutLongLength:
		sent = []byte{firstBytes[rng.IntN(len(firstBytes))]}
		if m == mutOversized {
			sent = codec.AppendRemainingLength(sent, codec.MaxConnectSize-4+1+rng.IntN(codec.MaxRemainingLength-codec.MaxConnectSize))
		} else {
			for range 5 {
				sent = append(sent, 0x80|byte(rng.IntN(128)))
			}
			sent = append(sent, byte(rng.IntN(128)))
		}
		sent = append(sent, randomBytes(rng, rng.IntN(64<<10))...)
		begin := time.Now()
		fc.write(sent) // may fail part way: the broker closes without reading the rest
		outcome, err := fc.replies(fuzzConnectTO+time.Second, false)
		if err == nil && outcome != "closed" {
			err = fmt.Errorf("%s, want closed without a reply", outcome)
		}
		if took := time.Since(begin); err == nil && took > fuzzPrompt {
			err = fmt.Errorf("closed after %v, want within %v (the timeout closed it, not the header)", took.Round(time.Millisecond), fuzzPrompt)
		}
		return outcome, sent, err

	case mutNearBound:
		body := largestFuzzConnect(rng)[4:] // 1 type byte, 3 length bytes
		if rng.IntN(2) == 0 {
			body = flip(rng, body)
		}
		n := len(body) + rng.IntN(9) - 4 // the declared length, all of it sent
		sent = append(codec.AppendRemainingLength([]byte{0x10}, n), body[:min(n, len(body))]...)
		sent = append(sent, randomBytes(rng, max(0, n-len(body)))...)
		fc.write(sent)

	case mutGarbageAfter:
		sent = connect
		for range rng.IntN(4) {
			sent = append(sent, validPacket(rng)...)
			tally.packets.Add(1)
		}
		sent = append(sent, randomBytes(rng, 1+rng.IntN(512))...)
		fc.write(sent)

	case mutSlow:
		sent = connect
		if rng.IntN(2) == 0 {
			sent = flip(rng, connect)
		} else {
			ping = len(sent) <= 200
		}
		sent = sent[:min(len(sent), 200)]
		tick := time.NewTicker(time.Duration(1+rng.IntN(20)) * time.Millisecond)
		defer tick.Stop()
		tally.packets.Add(1)
		for i := range sent {
			<-tick.C
			if !fc.writeBytes(sent[i : i+1]) {
				break
			}
		}

	case mutLengthLie:
		sent = append([]byte(nil), connect...)
		body := sent[headerLen(sent):]
		if off := fieldOffsets(body); len(off) > 0 {
			binenc.BigEndian.PutUint16(body[off[rng.IntN(len(off))]:], uint16(rng.Uint32()))
		}
		fc.write(sent)

	default: // mutValid
		cp := fuzzConnect(rng)
		if l := byte(rng.IntN(8)); rng.IntN(4) == 0 && l != codec.Level5 {
			// Mostly a level refused with CONNACK 0x01. Level 5 is served, with properties this
			// 3.x encoding lacks: FuzzLiveV5Connection speaks it.
			cp.ProtocolLevel = l
		}
		sent = cp.Append(nil)
		ping = true
		fc.write(sent)
	}
	if connectLevel(sent) == codec.Level5 {
		fc.c.SetLevel(codec.Level5) // MQTT 5 is served: its CONNACK comes in level-5 form
	}
	outcome, err = fc.replies(wait, ping)
	return outcome, sent, err
}

// connectLevel returns the protocol level byte of the CONNECT at the start of b, or 0 when b does
// not start with one long enough to hold it (the mutations send anything), or when its protocol
// name is not "MQTT": the broker reads "MQIsdp" with any level as MQTT 3.1 and answers a wrong
// level in 3.x form (0x01), whatever the level byte says.
func connectLevel(b []byte) byte {
	if len(b) < 2 || b[0]>>4 != byte(codec.TypeConnect) {
		return 0
	}
	i := 1
	for i < len(b) && b[i]&0x80 != 0 {
		i++
	}
	i++ // past the last byte of the remaining length
	if len(b) < i+2 {
		return 0
	}
	n := int(binenc.BigEndian.Uint16(b[i:]))
	i += 2
	if len(b) <= i+n || string(b[i:i+n]) != codec.ProtocolName311 {
		return 0
	}
	return b[i+n]
}

// headerLen returns the length of the fixed header at the start of a packet the test encoded.
func headerLen(b []byte) int {
	i := 1
	for b[i]&0x80 != 0 {
		i++
	}
	return i + 1
}

// fuzzConnect is a random CONNECT the broker accepts: a unique client id, clean session (so that
// the run leaves no sessions behind), and sometimes a will, a user name and a password.
func fuzzConnect(rng *rand.Rand) *codec.Connect {
	cp := &codec.Connect{
		ProtocolName: codec.ProtocolName311, ProtocolLevel: codec.Level311,
		CleanSession: true, KeepAlive: uint16(rng.IntN(10)),
		ClientID: fmt.Sprintf("f%x", rng.Uint64()),
	}
	if rng.IntN(2) == 0 {
		cp.ProtocolName, cp.ProtocolLevel = codec.ProtocolName31, codec.Level31
	}
	field := func() []byte {
		if rng.IntN(50) == 0 {
			return randomBytes(rng, rng.IntN(65536))
		}
		return randomBytes(rng, rng.IntN(64))
	}
	if rng.IntN(3) == 0 {
		cp.Will = &codec.Will{Topic: "fuzz/will/" + strconv.Itoa(rng.IntN(100)), QoS: byte(rng.IntN(3)), Payload: field()}
	}
	if rng.IntN(2) == 0 {
		cp.HasUsername, cp.Username = true, fmt.Sprintf("user%d", rng.IntN(1000))
		if rng.IntN(2) == 0 {
			cp.HasPassword, cp.Password = true, field()
		}
	}
	return cp
}

// largestFuzzConnect is a CONNECT whose five fields are all 65,535 bytes: MaxConnectSize at 3.1.
func largestFuzzConnect(rng *rand.Rand) []byte {
	cp := maxConnect(codec.ProtocolName31, codec.Level31)
	if rng.IntN(2) == 0 {
		cp = maxConnect(codec.ProtocolName311, codec.Level311)
	}
	cp.ClientID = fmt.Sprintf("%016x", rng.Uint64()) + cp.ClientID[16:] // unique: no take-overs
	return cp.Append(nil)
}

// flip returns a copy of b with one to eight bytes changed.
func flip(rng *rand.Rand, b []byte) []byte {
	out := append([]byte(nil), b...)
	for range 1 + rng.IntN(8) {
		out[rng.IntN(len(out))] ^= byte(1 + rng.IntN(255))
	}
	return out
}

// fieldOffsets returns where the length prefixes of a CONNECT body are: the protocol name's and
// those of the payload fields the flags announce.
func fieldOffsets(body []byte) []int {
	if len(body) < 2 {
		return nil
	}
	offs := []int{0}
	i := 2 + int(binenc.BigEndian.Uint16(body))
	if i+4 > len(body) {
		return offs
	}
	flags := body[i+1]
	i += 4                                      // level, flags, keep alive
	fields := 1                                 // client id
	fields += 2 * int(flags>>2&1)               // will topic and message
	fields += int(flags>>7&1) + int(flags>>6&1) // user name, password
	for range fields {
		if i+2 > len(body) {
			break
		}
		offs = append(offs, i)
		i += 2 + int(binenc.BigEndian.Uint16(body[i:]))
	}
	return offs
}

// fuzzClient is one fuzz connection: the bytes it writes are the mutation's, whatever MQTT says.
type fuzzClient struct {
	c     *mqtttest.Client
	tally *fuzzTally
}

// write sends b as one packet, however much of it the broker takes before it closes.
func (c *fuzzClient) write(b []byte) {
	c.tally.packets.Add(1)
	c.writeBytes(b)
}

func (c *fuzzClient) writeBytes(b []byte) bool {
	c.c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	n, err := c.c.Conn.Write(b)
	c.tally.bytes.Add(int64(n))
	return err == nil
}

// replies reads what the broker sends until it closes the connection or wait passes, and
// checks it: nothing, or a CONNACK first; after a refusing CONNACK nothing more; after CONNACK 0
// only packets a server sends. With ping, an accepted connection must also answer PINGREQ.
func (c *fuzzClient) replies(wait time.Duration, ping bool) (string, error) {
	var seen []codec.Packet
	var bad error
	stopped := false
	got, err := c.c.Closed(wait, func(p codec.Packet) bool {
		seen = append(seen, p)
		if bad = checkFuzzReplies(seen); bad != nil {
			return true
		}
		ack, ok := p.(*codec.Connack)
		stopped = ok && accepts(ack) && ping
		return stopped
	})
	switch {
	case bad != nil:
		return "bad-reply", bad
	case stopped:
		return c.ping()
	}
	outcome := "closed"
	switch {
	case errors.Is(err, mqtttest.ErrStillOpen):
		outcome = "open"
	case err != nil:
		return "bad-reply", fmt.Errorf("reading the broker's answer: %v (after %s)", err, packetList(got))
	}
	if len(got) > 0 {
		if accepts(got[0].(*codec.Connack)) {
			outcome = "accepted+" + outcome
		} else {
			outcome = "refused+" + outcome
		}
	}
	return outcome, nil
}

func (c *fuzzClient) ping() (string, error) {
	c.write((&codec.Pingreq{}).Append(nil))
	p, err := c.c.TryRead(5 * time.Second)
	if _, ok := p.(*codec.Pingresp); err != nil || !ok {
		return "bad-reply", fmt.Errorf("accepted, then PINGREQ answered with %v, %v", p, err)
	}
	return "accepted+pinged", nil
}

func checkFuzzReplies(got []codec.Packet) error {
	ack, ok := got[0].(*codec.Connack)
	switch {
	case !ok:
		return fmt.Errorf("got %s, want CONNACK first", packetList(got))
	case !accepts(ack) && len(got) > 1:
		return fmt.Errorf("got %s: nothing may follow a refusing CONNACK", packetList(got))
	case accepts(ack):
		return acceptedThenServerPackets(got)
	}
	return nil
}
