package bench

import (
	"bufio"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
)

func TestSeqSetMissing(t *testing.T) {
	var acked, got seqSet
	for seq := range uint64(200) {
		acked.add(seq)
		if seq%10 != 3 { // 20 of them never arrive
			got.add(seq)
		}
	}
	got.add(5000) // received, never acknowledged: not the publisher's loss to count
	if n := acked.missing(&got); n != 20 {
		t.Errorf("missing = %d, want 20", n)
	}
	var none seqSet
	if n := acked.missing(&none); n != 200 {
		t.Errorf("missing from an empty set = %d, want 200", n)
	}
	if n := none.missing(&got); n != 0 {
		t.Errorf("an empty set misses %d", n)
	}
}

// TestGroupTrackerCountsOnceForTheGroup: a message that two members got is
// one delivery and one duplicate, whichever member got it twice.
func TestGroupTrackerCountsOnceForTheGroup(t *testing.T) {
	g := newGroupTracker(7, 1)
	msg := func(seq uint64) []byte {
		b := newPayload(32)
		putStamp(b, stamp{run: 7, seq: seq, sent: 1})
		return b
	}
	a, b := newMember(nil, g, time.Time{}), newMember(nil, g, time.Time{})
	for seq := range uint64(10) {
		if !a.group.add(msg(seq), 2) {
			t.Fatalf("seq %d not new", seq)
		}
	}
	if b.group.add(msg(3), 3) || a.group.add(msg(3), 4) {
		t.Error("a message another member had counted as new")
	}
	if !b.group.add(msg(10), 5) {
		t.Error("seq 10 not new")
	}
	if g.uniq.Load() != 11 || g.t.uniq != 11 || g.t.dup != 2 || g.t.last != 5 {
		t.Errorf("uniq=%d/%d dup=%d last=%d, want 11, 2, 5", g.uniq.Load(), g.t.uniq, g.t.dup, g.t.last)
	}
}

// TestMemberTakesPublishBeforeSuback: a broker may start sending a new
// subscription's messages before its SUBACK (§3.8.4): a member that joins
// while messages flow counts and acknowledges them.
func TestMemberTakesPublishBeforeSuback(t *testing.T) {
	ours, theirs := net.Pipe()
	defer theirs.Close()
	c := &conn{nc: ours, clientID: "m", fr: newFrameReader(ours, readBufSize), level: codec.Level311, bw: bufio.NewWriterSize(ours, writeBufSize)}
	g := newGroupTracker(9, 1)
	s := newMember(c, g, time.Now())
	s.start()
	defer func() { c.abort(); <-s.done }()

	broker := make(chan error, 1)
	go func() {
		r := codec.NewReader(theirs, 0)
		p, err := r.ReadPacket()
		if err != nil {
			broker <- err
			return
		}
		sub, ok := p.(*codec.Subscribe)
		if !ok {
			broker <- errors.New("no SUBSCRIBE")
			return
		}
		payload := newPayload(headerSize)
		putStamp(payload, stamp{run: 9})
		var out []byte
		out = (&codec.Publish{QoS: 1, PacketID: 7, Topic: "t", Payload: payload}).AppendLevel(out, codec.Level311)
		out = (&codec.Suback{PacketID: sub.PacketID, ReturnCodes: []byte{1}}).AppendLevel(out, codec.Level311)
		if _, err := theirs.Write(out); err != nil {
			broker <- err
			return
		}
		p, err = r.ReadPacket()
		if ack, ok := p.(*codec.Puback); err == nil && (!ok || ack.PacketID != 7) {
			err = errors.New("no PUBACK for packet 7")
		}
		broker <- err
	}()
	if err := s.subscribe("$share/g/t", 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-broker; err != nil {
		t.Fatal(err)
	}
	if g.uniq.Load() != 1 {
		t.Errorf("%d messages counted, want the one before the SUBACK", g.uniq.Load())
	}
}

func TestSharedAgainstFakeBroker(t *testing.T) {
	b := newFakeBroker(t)
	for _, args := range [][]string{
		{"-qos", "1"},
		{"-qos", "2", "-v", "5"},
		{"-qos", "1", "-clean", "-v", "3"},
	} {
		kv, err := runMain(t, append([]string{"shared", "-count", "4000", "-addr", b.addr()}, args...)...)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if kv["acked"] != "4000" || kv["received"] != "4000" || kv["lost"] != "0" || kv["dup"] != "0" || kv["stray"] != "0" || kv["killed"] != "0" {
			t.Errorf("%q: got %v", args, kv)
		}
		if num(t, kv, "recv_per_s") <= 0 || num(t, kv, "max_ms") <= 0 {
			t.Errorf("%q: no rate or latency in %v", args, kv)
		}
		if n := b.sessionCount(0); n != 0 {
			t.Errorf("%q: %d sessions left behind", args, n)
		}
	}
}

// TestSharedLossCountsAcknowledgedMessages: a message the broker
// acknowledged and gave to no member is lost, and the run fails.
func TestSharedLossCountsAcknowledgedMessages(t *testing.T) {
	b := newFakeBroker(t)
	b.dropEvery = 100
	kv, err := runMain(t, "shared", "-count", "1000", "-timeout", "500ms", "-addr", b.addr())
	if !errors.Is(err, ErrLoss) {
		t.Fatalf("err = %v, want ErrLoss", err)
	}
	if kv["lost"] != "10" || kv["acked"] != "1000" || kv["received"] != "990" {
		t.Errorf("got %v, want 10 of 1000 lost", kv)
	}
}

// TestSharedChurn kills a member every 50 ms: against a broker that gives a
// dead member's unacknowledged messages to another nothing is lost; against
// one that leaves them in the dead member's session (strand), what it left
// there is reported lost and fails the run. Every member's session is
// removed at the end, the killed ones' too.
func TestSharedChurn(t *testing.T) {
	for _, strand := range []bool{false, true} {
		b := newFakeBroker(t)
		b.strand = strand
		kv, err := runMain(t, "shared", "-duration", "600ms", "-churn", "50ms", "-inflight", "4", "-timeout", "500ms", "-addr", b.addr())
		if num(t, kv, "killed") < 1 || num(t, kv, "acked") == 0 {
			t.Fatalf("strand %v: nothing killed or acknowledged: %v", strand, kv)
		}
		lost, acked, received, dup := num(t, kv, "lost"), num(t, kv, "acked"), num(t, kv, "received"), num(t, kv, "dup")
		if received-dup+lost != acked {
			t.Errorf("strand %v: %v received (%v twice) and %v lost of %v acknowledged", strand, received, dup, lost, acked)
		}
		if strand {
			if !errors.Is(err, ErrLoss) || lost == 0 {
				t.Errorf("strand: err = %v, lost=%v: want loss", err, lost)
			}
		} else if err != nil || lost != 0 {
			t.Errorf("err = %v, lost=%v: want none", err, lost)
		}
		if n := b.sessionCount(0); n != 0 {
			t.Errorf("strand %v: %d sessions left behind", strand, n)
		}
	}
}
