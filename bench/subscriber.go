package bench

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/codec"
)

// subscriber receives on one connection, acknowledges QoS 1 and 2 and
// accounts for every message in its tracker. Its read loop is the only
// goroutine that touches the tracker until done is closed.
type subscriber struct {
	c     *conn
	t     *tracker
	group *groupTracker // instead of t for a shared subscription's member
	epoch time.Time

	// suback, when set, takes the SUBACK of a SUBSCRIBE sent after the
	// read loop started: a broker may send matching PUBLISH packets before
	// the SUBACK (§3.8.4 in 3.1.1 and 5.0), which a subscription made while
	// messages flow does get.
	suback chan codec.Packet

	uniq  atomic.Uint64 // new messages so far (for a member: new to the group), for progress and drain checks
	codes ackCodes      // level 5: PUBRELs other than Success; read after done
	done  chan struct{}
	err   error // why the read loop ended; read after done
}

func newSubscriber(c *conn, run uint32, pubs int, epoch time.Time) *subscriber {
	return &subscriber{c: c, t: newTracker(run, pubs), epoch: epoch, done: make(chan struct{})}
}

// newMember returns a subscriber whose messages g accounts for.
func newMember(c *conn, g *groupTracker, epoch time.Time) *subscriber {
	return &subscriber{c: c, group: g, epoch: epoch, done: make(chan struct{}), suback: make(chan codec.Packet, 1)}
}

// subscribe sends the SUBSCRIBE of a started member and waits for its
// SUBACK, counting the messages that come before it.
func (s *subscriber) subscribe(filter string, qos byte, timeout time.Duration) error {
	if err := s.c.writeFlush(subscribePacket(filter, qos)); err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case p := <-s.suback:
		return checkSuback(p, filter)
	case <-s.done:
		if s.err != nil {
			return fmt.Errorf("waiting for SUBACK: %w", s.err)
		}
		return errors.New("waiting for SUBACK: connection closed")
	case <-t.C:
		return fmt.Errorf("no SUBACK within %s", timeout)
	}
}

func (s *subscriber) start() { go s.c.runReads(s.read, &s.err, s.done) }

func (s *subscriber) read() error {
	c := s.c
	unflushed := false
	for {
		first, body, err := c.fr.next()
		if err != nil {
			return err
		}
		var ack codec.Type // to send, if any
		var id uint16
		switch packetType(first) {
		case codec.TypePublish:
			p, err := parsePublish(first, body, c.v5)
			if err != nil {
				return err
			}
			// Data arrival is the receive time: every packet of one read
			// arrived together.
			at := c.fr.readAt.Sub(s.epoch).Nanoseconds()
			var fresh bool
			if s.group != nil {
				fresh = s.group.add(p.payload, at)
			} else {
				fresh = s.t.add(p.payload, at)
			}
			if fresh {
				s.uniq.Add(1)
			}
			switch p.qos {
			case 1:
				ack, id = codec.TypePuback, p.packetID
			case 2:
				ack, id = codec.TypePubrec, p.packetID
			}
		case codec.TypePubrel:
			var rc codec.ReasonCode
			if id, rc, err = parseAck(first, body, c.v5); err != nil {
				return err
			}
			if rc != codec.ReasonSuccess {
				s.codes.add(codec.TypePubrel, rc)
			}
			ack = codec.TypePubcomp
		case codec.TypeSuback:
			p, err := decodeFrame(first, body, c.level)
			if err != nil {
				return err
			}
			select {
			case s.suback <- p: // a nil channel is never ready
			default:
				return unexpected(first, body, c.level)
			}
		case codec.TypePingresp:
		default:
			return unexpected(first, body, c.level)
		}
		if ack != 0 {
			c.mu.Lock()
			c.scratch = appendAck(c.scratch[:0], ack, id, c.level)
			_, err := c.bw.Write(c.scratch)
			c.mu.Unlock()
			if err != nil {
				return err
			}
			unflushed = true
		}
		// Acknowledgements go out in one write per batch of packets read:
		// flush only when no whole packet is waiting.
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

// unexpected describes a packet the tool did not ask for, with the reason a
// level-5 broker gave for a DISCONNECT.
func unexpected(first byte, body []byte, level byte) error {
	p, err := decodeFrame(first, body, level)
	if err != nil {
		return err
	}
	if d, ok := p.(*codec.Disconnect); ok && level == codec.Level5 {
		return fmt.Errorf("the broker sent DISCONNECT: %s (0x%02x)", d.Reason, byte(d.Reason))
	}
	return fmt.Errorf("unexpected %s", p.Type())
}

// close says goodbye and waits for the read loop to end.
func (s *subscriber) close() error {
	s.c.disconnect()
	<-s.done
	return s.err
}
