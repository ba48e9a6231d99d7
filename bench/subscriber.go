package bench

import (
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
	epoch time.Time

	uniq  atomic.Uint64 // new messages so far, for progress and drain checks
	codes ackCodes      // level 5: PUBRELs other than Success; read after done
	done  chan struct{}
	err   error // why the read loop ended; read after done
}

func newSubscriber(c *conn, run uint32, pubs int, epoch time.Time) *subscriber {
	return &subscriber{c: c, t: newTracker(run, pubs), epoch: epoch, done: make(chan struct{})}
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
			if s.t.add(p.payload, c.fr.readAt.Sub(s.epoch).Nanoseconds()) {
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
