package broker

import (
	"errors"
	"os"
	"sync"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/session"
)

// outbound is a connection's write side: the buffer of encoded packets waiting for the writer,
// the flow control around it (publishers wait for room; a subscriber that stops reading is
// marked stalled and its QoS 0 messages dropped), and the writer goroutine, which runs only
// while there is something to write. Every write to the socket goes through it.
type outbound struct {
	omu     sync.Mutex
	obuf    []byte        // encoded packets waiting for the writer
	oclosed bool          // writer gone: appends are dropped
	stalled bool          // a QoS 0 publish timed out waiting for room
	drained chan struct{} // closed when the writer takes obuf; made by the first waiter (nil: none)
	omax    int           // limits.max_outbound_bytes
	wakeReq bool          // Wake was called since the writer last took obuf
	writing bool          // a writer goroutine runs
	writers sync.WaitGroup

	reads readCache // writer-owned: the ACL's answers for queued messages
}

// sendControl queues a packet for the writer. Control packets are never dropped: a client that
// does not read its acknowledgements stops being read (waitRoom) and then hits the write deadline.
func (c *conn) sendControl(p codec.Packet) {
	if c.level5() {
		c.sent(p)
	}
	c.omu.Lock()
	if !c.oclosed {
		c.obuf = p.AppendLevel(c.obuf, c.level)
		c.wakeLocked()
	}
	c.omu.Unlock()
}

// sendRaw queues already-encoded packets.
func (c *conn) sendRaw(b []byte) {
	c.omu.Lock()
	if !c.oclosed {
		c.obuf = append(c.obuf, b...)
		c.wakeLocked()
	}
	c.omu.Unlock()
}

// Wake implements session.Outlet: it starts the writer unless one is running (which then makes
// another round).
func (c *conn) Wake() {
	c.omu.Lock()
	c.wakeLocked()
	c.omu.Unlock()
}

// wakeLocked is Wake with c.omu held.
func (c *conn) wakeLocked() {
	c.wakeReq = true
	if c.writing || c.oclosed {
		return
	}
	c.writing = true
	// The reader goroutine, still running, holds the server's WaitGroup above zero.
	c.srv.wg.Add(1)
	c.writers.Add(1)
	go c.writeLoop()
}

// SendPublish implements session.Outlet: a QoS 0 message straight into the outbound buffer.
func (c *conn) SendPublish(p *codec.Publish) {
	c.omu.Lock()
	if !c.roomLocked(1) {
		c.omu.Unlock()
		return
	}
	var ok bool
	if c.obuf, ok = c.AppendPublish(c.obuf, p); !ok {
		c.omu.Unlock()
		return
	}
	c.wakeLocked()
	c.omu.Unlock()
	c.srv.stats.sent(0, len(p.Payload))
}

// SendEncoded implements session.Outlet: n QoS 0 PUBLISH packets already encoded in b, with
// payload bytes of payload (a publisher's burst, staged by stagePublish). They are appended in as
// few steps as the buffer limit allows, whole packets only, so the buffer never holds more than
// max_outbound_bytes plus one packet.
func (c *conn) SendEncoded(b []byte, n int, payload int64) {
	c.omu.Lock()
	defer c.omu.Unlock()
	for len(b) > 0 {
		if !c.roomLocked(n) {
			return
		}
		take, k := 0, 0 // bytes and packets that fit (at least one)
		for take < len(b) && (k == 0 || len(c.obuf)+take+packetLen(b[take:]) <= c.omax) {
			take += packetLen(b[take:])
			k++
		}
		c.obuf = append(c.obuf, b[:take]...)
		c.wakeLocked()
		b, n = b[take:], n-k
		c.srv.stats.MessagesOut[0].Add(int64(k))
	}
	c.srv.stats.BytesOut[0].Add(payload)
}

// packetLen returns the length of the encoded packet at the start of b (fixed header, remaining
// length and body), which the broker encoded itself.
func packetLen(b []byte) int {
	n, size, _ := codec.DecodeRemainingLength(b[1:])
	return 1 + size + n
}

// roomLocked waits, with c.omu held (and released while waiting), until the outbound buffer has
// room for QoS 0 messages. When it is full the publisher waits for the writer (slowing the
// publisher down rather than losing messages); a subscriber that drains nothing for stallWait is
// marked stalled and its QoS 0 messages are dropped until it catches up. It returns false, having
// counted the n messages as dropped, when they must not be appended.
func (c *conn) roomLocked(n int) bool {
	var timer *time.Timer
	for len(c.obuf) > 0 && len(c.obuf) >= c.omax && !c.oclosed {
		if c.stalled {
			c.srv.stats.Dropped[DropSlow].Add(int64(n))
			return false
		}
		if timer == nil {
			timer = time.NewTimer(stallWait)
			defer timer.Stop()
		}
		ch := c.drainedLocked()
		c.omu.Unlock()
		timedOut := false
		select {
		case <-ch:
		case <-timer.C:
			timedOut = true
		case <-c.closing:
		}
		c.omu.Lock()
		if timedOut && !c.stalled {
			c.stalled = true
			c.log.Warn().Int("buffered_bytes", len(c.obuf)).Msg("subscriber is not reading: dropping its QoS 0 messages until it catches up")
		}
	}
	return !c.oclosed
}

// stagedOut is what one publisher's burst of QoS 0 messages holds for one subscriber.
type stagedOut struct {
	o       session.Outlet
	buf     []byte
	n       int
	payload int64
}

// stageLimit bounds the bytes a reader stages before it hands them over.
const stageLimit = 64 << 10

// stagePublish encodes a QoS 0 message for o into this reader's staging area instead of taking
// o's lock for every message: a burst of small publishes (one read system call brings dozens)
// then costs each subscriber one lock and one append. flushStaged hands everything over before
// the reader blocks, before any packet that is not a plain QoS 0 publish, and past stageLimit.
func (c *conn) stagePublish(o session.Outlet, p *codec.Publish) {
	if sub, ok := o.(*conn); ok && sub.aliasing() {
		o.SendPublish(p) // its aliases are chosen as packets go into its buffer (AppendPublish)
		return
	}
	i, ok := c.stageIdx[o]
	if !ok {
		i = len(c.staged)
		if i < cap(c.staged) {
			c.staged = c.staged[:i+1]
			c.staged[i].o = o
		} else {
			c.staged = append(c.staged, stagedOut{o: o})
		}
		if c.stageIdx == nil {
			c.stageIdx = make(map[session.Outlet]int)
		}
		c.stageIdx[o] = i
	}
	e := &c.staged[i]
	before := len(e.buf)
	var fits bool
	if e.buf, fits = o.AppendPublish(e.buf, p); !fits {
		return
	}
	e.n++
	e.payload += int64(len(p.Payload))
	c.stagedBytes += len(e.buf) - before
	if c.stagedBytes >= stageLimit {
		c.flushStaged()
	}
}

// flushStaged hands every staged message to its subscriber.
func (c *conn) flushStaged() {
	if len(c.staged) == 0 {
		return
	}
	for i := range c.staged {
		e := &c.staged[i]
		e.o.SendEncoded(e.buf, e.n, e.payload)
		e.o, e.n, e.payload = nil, 0, 0
		if cap(e.buf) > stageLimit {
			e.buf = nil
		} else {
			e.buf = e.buf[:0]
		}
	}
	c.staged = c.staged[:0]
	clear(c.stageIdx)
	c.stagedBytes = 0
}

// waitRoom holds the reader while this connection's own outbound buffer is over its limit (a
// client that publishes but does not read its acknowledgements).
func (c *conn) waitRoom() {
	c.omu.Lock()
	if len(c.obuf) > c.omax && len(c.staged) > 0 {
		c.omu.Unlock()
		c.flushStaged() // do not hold other subscribers' messages while this client is slow
		c.omu.Lock()
	}
	for len(c.obuf) > c.omax && !c.oclosed {
		ch := c.drainedLocked()
		c.omu.Unlock()
		select {
		case <-ch:
		case <-c.closing:
		}
		c.omu.Lock()
	}
	c.omu.Unlock()
}

// writeLoop sends the outbound buffer and what the session's queue allows, in large writes. It
// runs only while there is something to write (Wake starts it), so an idle connection has no
// writer goroutine and holds no write buffer.
func (c *conn) writeLoop() {
	defer c.srv.wg.Done()
	defer c.writers.Done()
	var wbuf []byte
	out := session.Outgoing{MayRead: func(topic string) bool { return c.reads.check(c.srv, &c.ident, topic) }}
	if b := c.bridge; b != nil {
		// A message queued under an out topic since removed from the configuration is dropped,
		// not sent: no rule maps it any more.
		out.MayRead = func(topic string) bool { return b.remoteTopic(topic) != "" }
		out.Rename = b.remoteTopic
	}
	timeout := c.srv.cfg.Limits.WriteTimeout.Duration
	for {
		c.omu.Lock()
		if !c.wakeReq || c.oclosed {
			c.writing = false
			if len(c.obuf) == 0 {
				c.obuf = nil
			}
			c.omu.Unlock()
			return
		}
		c.wakeReq = false
		wbuf, c.obuf = c.obuf, wbuf[:0]
		c.rounds++
		round := c.rounds
		c.releaseWaitersLocked()
		c.omu.Unlock()

		if c.sess != nil {
			out.Now, out.After = wbuf, out.After[:0]
			if c.aliasing() {
				out.Aliases = roundAliases{c, round}
			}
			if !c.fill(&out) {
				return
			}
			wbuf = out.Now
			if c.bridge != nil {
				c.bridge.sent.Add(int64(out.Sent[1] + out.Sent[2] + out.Sent[0]))
			}
			for qos, n := range out.Sent {
				if n > 0 {
					c.srv.stats.MessagesOut[qos].Add(int64(n))
					c.srv.stats.BytesOut[qos].Add(out.SentBytes[qos])
					out.Sent[qos], out.SentBytes[qos] = 0, 0
				}
			}
			c.srv.stats.drops(DropExpired, &out.Expired)
			c.srv.stats.drops(DropTooLarge, &out.TooLarge)
			if len(out.Writes) > 0 {
				c.submitSendState(&out)
			}
		}
		if len(wbuf) == 0 {
			continue
		}
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
		n, err := c.nc.Write(wbuf)
		c.srv.stats.WireBytesOut.Add(int64(n))
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.log.Warn().Dur("write_timeout", timeout).Msg("closing: client accepted no data within limits.write_timeout")
			} else {
				c.log.Debug().Err(err).Msg("write failed")
			}
			c.writeFailed()
			return
		}
		c.omu.Lock()
		c.stalled = false
		c.omu.Unlock()
		if cap(wbuf) > 4*c.omax {
			wbuf = nil // a burst grew it; do not keep it
		}
	}
}

// writeFailed ends the writer for good: nothing more can reach this client.
func (c *conn) writeFailed() {
	c.omu.Lock()
	c.oclosed = true
	c.writing = false
	c.obuf = nil
	c.releaseWaitersLocked()
	c.omu.Unlock()
	c.close()
}

// releaseWaitersLocked wakes the publishers waiting for room in obuf. c.omu must be held.
func (c *conn) releaseWaitersLocked() {
	if c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
}

// drainedLocked returns the channel releaseWaitersLocked closes, making it if nobody waits yet: a
// connection nobody waits on has none. c.omu must be held.
func (c *conn) drainedLocked() chan struct{} {
	if c.drained == nil {
		c.drained = make(chan struct{})
	}
	return c.drained
}

// submitSendState hands the in-flight state of what Fill sent to persist. QoS 2 messages (in
// out.After) go on the wire only once their packet identifiers are durable.
func (c *conn) submitSendState(out *session.Outgoing) {
	c.srv.settle(out.Writes)
	var b persist.Batch
	addWrites(&b, c.clientID, out.Writes...)
	out.Writes = out.Writes[:0]
	if len(out.After) == 0 {
		c.srv.store.Submit(&b, c.srv.logCommitError("recording a sent message"))
		return
	}
	after := append([]byte(nil), out.After...)
	c.srv.store.Submit(&b, func(_ uint64, err error) {
		if err != nil {
			c.commitFailed(err)
			return
		}
		c.sendRaw(after)
	})
}

// fill takes from the session what may be sent now, reading its queue from disk whenever the
// session asks for it and the last read brought something. It returns false, having closed the
// connection, if a read fails or the connection is closing.
func (c *conn) fill(out *session.Outgoing) bool {
	for {
		m := c.sess.lock()
		// Read under the lock: every message the session holds now was routed, and its expiry
		// fixed, before this instant, so none goes out with more than its whole interval left.
		out.At = time.Now()
		m.Fill(out)
		c.sess.unlock()
		if !out.NeedLoad {
			return true
		}
		select {
		case <-c.closing:
			c.writeFailed() // no disk reads for a connection that is going away
			return false
		default:
		}
		entries, err := c.readQueue(out)
		if err != nil {
			c.log.Error().Err(err).Msg("reading the session queue failed")
			c.writeFailed()
			return false
		}
		full := len(entries) == out.Load.Limit
		s := c.sess.lock()
		more := s.Loaded(out, entries)
		next, ok := s.NextLoad()
		c.sess.unlock()
		if more && full && ok && c.srv.holdReadAhead() {
			// A session draining its queue: the next page is read while this one is sent.
			c.ahead = c.readAhead(next)
		}
		if !more {
			return true // what is left is not durable yet: Committed wakes the writer
		}
	}
}

// maxReadAheads bounds the pages read ahead that sessions hold at once: one page each doubles
// the memory of a draining session's queue, which many draining at once need no help with.
const maxReadAheads = 64

// holdReadAhead reports whether a page may be read ahead, counting it if so; dropReadAhead
// uncounts it once taken or dropped.
func (s *Server) holdReadAhead() bool {
	if s.readAheads.Add(1) > maxReadAheads {
		s.readAheads.Add(-1)
		return false
	}
	return true
}

// dropReadAhead forgets c's page read ahead, if any. Only the writer, or teardown once no writer
// can run, may call it.
func (c *conn) dropReadAhead() *readAhead {
	a := c.ahead
	if a != nil {
		c.ahead = nil
		c.srv.readAheads.Add(-1)
	}
	return a
}

// readAhead is a read of the session's queue on a goroutine of its own.
type readAhead struct {
	load    session.Load
	done    chan struct{}
	entries []persist.QueueEntry
	err     error
}

func (c *conn) readAhead(l session.Load) *readAhead {
	a := &readAhead{load: l, done: make(chan struct{})}
	c.srv.wg.Add(1) // the writer holds the group open: Shutdown waits for the read
	go func() {
		defer c.srv.wg.Done()
		a.entries, a.err = c.srv.store.ReadQueue(c.clientID, l.After, l.Limit)
		close(a.done)
	}()
	return a
}

// readQueue reads what out.Load asks for: the read started ahead if it answers that, else now.
func (c *conn) readQueue(out *session.Outgoing) ([]persist.QueueEntry, error) {
	if a := c.dropReadAhead(); a != nil {
		<-a.done
		if a.load.Answers(out.Load) {
			out.Load = a.load
			return a.entries, a.err
		}
	}
	return c.srv.store.ReadQueue(c.clientID, out.Load.After, out.Load.Limit)
}

// wake wakes the writer of o, the outlet a session returned, unless the session is offline.
func wake(o session.Outlet) {
	if o != nil {
		o.Wake()
	}
}
