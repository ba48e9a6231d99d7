package bench

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// Packet identifier states of a publisher's in-flight window.
const (
	idFree     = 0
	idSent     = 1 // PUBLISH written, PUBACK or PUBREC awaited
	idReleased = 2 // QoS 2: PUBREC received, PUBREL written, PUBCOMP awaited
)

// publisher sends stamped messages on one connection. For QoS 1 and 2 its
// window is the channel free, which holds the packet identifiers
// (1..inflight) not in flight: the publishing goroutine takes one per
// message and the read loop gives it back on PUBACK or PUBCOMP.
type publisher struct {
	c       *conn
	idx     uint32
	run     uint32
	qos     byte
	epoch   time.Time
	topics  []string // message seq goes to topics[(seq+offset) % len]
	offset  int
	payload []byte

	free  chan uint16
	state []atomic.Uint32 // by packet identifier
	seqOf []uint64        // by packet identifier: the message in flight under it, set before its state

	// ackedSeqs, when set, collects the sequence numbers of the messages
	// acknowledged, for a loss count that leaves out the unacknowledged.
	// Only the read loop writes it; read after done.
	ackedSeqs *seqSet

	sent    atomic.Uint64
	acked   atomic.Uint64
	lastAck atomic.Int64 // run clock of the last PUBACK or PUBCOMP
	codes   ackCodes     // level 5: acknowledgements other than Success; read after done

	done chan struct{} // closed when the read loop ends
	err  error         // why it ended; read after done
}

// plan bounds one publisher's run.
type plan struct {
	count    uint64        // messages to send; 0 means until the deadline
	start    time.Time     // pacing origin
	deadline time.Time     // no message is started after it
	interval time.Duration // between messages; 0 means as fast as allowed
	stall    time.Duration // longest wait for an acknowledgement
}

func newPublisher(c *conn, idx, run uint32, qos byte, inflight, size int, topics []string, epoch time.Time) *publisher {
	p := &publisher{
		c: c, idx: idx, run: run, qos: qos, epoch: epoch, topics: topics,
		payload: newPayload(size),
		done:    make(chan struct{}),
	}
	if qos > 0 {
		p.free = make(chan uint16, inflight)
		p.state = make([]atomic.Uint32, inflight+1)
		p.seqOf = make([]uint64, inflight+1)
		for id := 1; id <= inflight; id++ {
			p.free <- uint16(id)
		}
	}
	return p
}

func (p *publisher) start() { go p.c.runReads(p.read, &p.err, p.done) }

// read handles the acknowledgements of the publisher's messages.
func (p *publisher) read() error {
	c := p.c
	unflushed := false
	for {
		first, body, err := c.fr.next()
		if err != nil {
			return err
		}
		t := packetType(first)
		switch t {
		case codec.TypePuback, codec.TypePubrec, codec.TypePubcomp:
			id, rc, err := parseAck(first, body, c.v5)
			if err != nil {
				return err
			}
			if int(id) >= len(p.state) {
				return fmt.Errorf("%s for packet %d, which was never sent", t, id)
			}
			if rc != codec.ReasonSuccess {
				p.codes.add(t, rc)
			}
			// A PUBACK or PUBREC of 0x80 or more refuses the message; such a
			// PUBREC ends the exchange: no PUBREL [MQTT-4.3.3-4].
			refused := rc >= 0x80 && t != codec.TypePubcomp
			st := &p.state[id]
			switch {
			case t == codec.TypePuback && p.qos == 1 && st.Load() == idSent,
				t == codec.TypePubcomp && p.qos == 2 && st.Load() == idReleased,
				t == codec.TypePubrec && p.qos == 2 && st.Load() == idSent && refused:
				st.Store(idFree)
				if !refused {
					p.lastAck.Store(c.fr.readAt.Sub(p.epoch).Nanoseconds())
					p.acked.Add(1)
					if p.ackedSeqs != nil {
						p.ackedSeqs.add(p.seqOf[id])
					}
				}
				p.free <- id
			case t == codec.TypePubrec && p.qos == 2 && st.Load() == idSent:
				st.Store(idReleased)
				c.mu.Lock()
				c.scratch = appendAck(c.scratch[:0], codec.TypePubrel, id, c.level)
				_, err = c.bw.Write(c.scratch)
				c.mu.Unlock()
				if err != nil {
					return err
				}
				unflushed = true
			default:
				return fmt.Errorf("%s for packet %d in state %d at QoS %d", t, id, st.Load(), p.qos)
			}
		case codec.TypePingresp:
		default:
			return unexpected(first, body, c.level)
		}
		if unflushed && !c.fr.hasPacket() {
			c.mu.Lock()
			err = c.bw.Flush()
			c.mu.Unlock()
			if err != nil {
				return err
			}
			unflushed = false
		}
	}
}

// errStalled reports a broker that stopped acknowledging.
var errStalled = errors.New("no acknowledgement")

// publish sends until the plan says stop, then waits for every message in
// flight to be acknowledged. Writes are batched: the buffer is flushed when
// the window is full, when pacing leaves time to spare, and at the end.
// Nothing is allocated per message.
func (p *publisher) publish(pl plan) error {
	c := p.c
	timer := time.NewTimer(time.Hour)
	timer.Stop()

	// A broker that stops reading would leave the loop blocked in a write
	// where the deadline is never checked: a stall past the deadline makes
	// that write fail. Later writes (QoS 2 PUBRELs) are not affected.
	var wmu sync.Mutex
	sending := true
	watchdog := time.AfterFunc(time.Until(pl.deadline.Add(pl.stall)), func() {
		wmu.Lock()
		defer wmu.Unlock()
		if sending {
			c.nc.SetWriteDeadline(time.Now())
		}
	})
	defer watchdog.Stop()
	pk := codec.Publish{QoS: p.qos, Payload: p.payload}
	var seq uint64
	for ; pl.count == 0 || seq < pl.count; seq++ {
		var id uint16
		if p.qos > 0 {
			select {
			case id = <-p.free:
			default:
				if err := p.flush(); err != nil {
					return err
				}
				var err error
				if id, err = p.waitID(timer, pl.stall); err != nil {
					return err
				}
			}
		}
		now := time.Now()
		if pl.interval > 0 {
			due := pl.start.Add(time.Duration(seq) * pl.interval)
			if d := due.Sub(now); d > 0 {
				time.Sleep(d)
				now = time.Now()
			}
		}
		if !now.Before(pl.deadline) {
			if id != 0 {
				p.free <- id
			}
			break
		}
		putStamp(p.payload, stamp{run: p.run, pub: p.idx, seq: seq, sent: now.Sub(p.epoch).Nanoseconds()})
		pk.Topic = p.topics[(int(seq%uint64(len(p.topics)))+p.offset)%len(p.topics)]
		pk.PacketID = id
		if id != 0 {
			// The state's atomic store publishes seqOf[id] to the read loop.
			p.seqOf[id] = seq
			p.state[id].Store(idSent)
		}
		c.mu.Lock()
		c.scratch = pk.AppendLevel(c.scratch[:0], c.level)
		_, err := c.bw.Write(c.scratch)
		if err == nil && pl.interval > 0 {
			err = c.bw.Flush()
		}
		c.mu.Unlock()
		if err != nil {
			return err
		}
		p.sent.Add(1)
	}
	if err := p.flush(); err != nil {
		return err
	}
	wmu.Lock()
	sending = false
	c.nc.SetWriteDeadline(time.Time{})
	wmu.Unlock()
	// Take the whole window back: then nothing is in flight.
	for range cap(p.free) {
		if _, err := p.waitID(timer, pl.stall); err != nil {
			return err
		}
	}
	return nil
}

func (p *publisher) flush() error {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.c.bw.Flush()
}

// waitID waits for a packet identifier to come back.
func (p *publisher) waitID(t *time.Timer, stall time.Duration) (uint16, error) {
	select {
	case id := <-p.free:
		return id, nil
	default:
	}
	t.Reset(stall)
	defer t.Stop()
	select {
	case id := <-p.free:
		return id, nil
	case <-p.done:
		// The read loop may have returned identifiers before it ended.
		select {
		case id := <-p.free:
			return id, nil
		default:
		}
		if p.err != nil {
			return 0, fmt.Errorf("connection lost: %w", p.err)
		}
		return 0, errors.New("connection closed")
	case <-t.C:
		return 0, fmt.Errorf("%w for %s (%d in flight)", errStalled, stall, cap(p.free)-len(p.free))
	}
}

// close says goodbye and waits for the read loop to end.
func (p *publisher) close() error {
	p.c.disconnect()
	<-p.done
	return p.err
}
