package broker

import (
	"sync"
	"sync/atomic"
)

// maxPendingJobs bounds a connection's publishes waiting for their commit: past it the reader
// stops reading, so a publisher is read no faster than the disk commits.
const maxPendingJobs = 256

// inOrder completes a connection's publishes (and the PUBRELs and duplicates answered behind
// them) in arrival order as their commits finish [MQTT-4.6.0-2..4]. Nobody waits in a goroutine
// of its own: the goroutine that makes the head of the queue ready (persist's syncer in the
// commit callback, or the reader for a job with nothing to write) completes every ready job from
// the head. Only a job that hands QoS 0 copies to other connections, which may wait up to
// stallWait for a slow subscriber's buffer, is passed from the syncer to a goroutine started for
// it, so that one slow subscriber never holds up every commit.
type inOrder struct {
	jmu      sync.Mutex
	queue    []*pubJob     // in arrival order
	draining bool          // a goroutine is completing jobs from the head
	room     chan struct{} // closed when the queue falls below maxPendingJobs; nil when the reader does not wait
	pending  atomic.Int32  // jobs not yet completed (queued or being completed): 0 lets the reader skip the queue
	all      sync.WaitGroup
}

// submit is start and awaitJobRoom.
func (c *conn) submit(j *pubJob) {
	c.start(j)
	c.awaitJobRoom()
}

// start starts j's commit and queues it behind this connection's earlier jobs; a job with
// nothing to write and nothing ahead of it completes at once.
func (c *conn) start(j *pubJob) {
	if j.d.batch.Len() == 0 && c.pending.Load() == 0 {
		c.complete(j)
		return
	}
	c.all.Add(1)
	c.pending.Add(1)
	c.jmu.Lock()
	c.queue = append(c.queue, j)
	c.jmu.Unlock()
	if j.d.batch.Len() == 0 {
		c.jobReady(j, nil, true)
		return
	}
	c.srv.submitDelivery(&j.d, func(seq uint64, err error) {
		if err == nil {
			c.srv.committed(&j.d, seq)
		}
		c.jobReady(j, err, false)
	})
}

// awaitJobRoom returns once the queue has room for the next job (or the connection is closing):
// the reader stops while maxPendingJobs wait for their commit.
func (c *conn) awaitJobRoom() {
	c.jmu.Lock()
	for len(c.queue) >= maxPendingJobs {
		if c.room == nil {
			c.room = make(chan struct{})
		}
		room := c.room
		c.jmu.Unlock()
		select {
		case <-room:
		case <-c.closing:
			return
		}
		c.jmu.Lock()
	}
	c.jmu.Unlock()
}

// jobReady marks j's commit finished and, unless another goroutine is at it, completes the ready
// jobs at the head of the queue. mayBlock is false on persist's syncer.
func (c *conn) jobReady(j *pubJob, err error, mayBlock bool) {
	c.jmu.Lock()
	j.ready, j.err = true, err
	if c.draining {
		c.jmu.Unlock() // the goroutine at it finds j when it gets there
		return
	}
	c.draining = true
	c.jmu.Unlock()
	c.drain(mayBlock)
}

// drain completes the ready jobs at the head of the queue; the caller has set c.draining.
func (c *conn) drain(mayBlock bool) {
	c.jmu.Lock()
	for len(c.queue) > 0 && c.queue[0].ready {
		j := c.queue[0]
		if !mayBlock && len(j.d.outlets) > 0 && j.err == nil {
			c.jmu.Unlock()
			c.srv.wg.Add(1) // the connection's reader or teardown holds the count above zero
			go func() {
				defer c.srv.wg.Done()
				c.drain(true) // c.draining passes to it
			}()
			return
		}
		c.queue[0] = nil
		c.queue = c.queue[1:]
		if c.room != nil && len(c.queue) < maxPendingJobs {
			close(c.room)
			c.room = nil
		}
		c.jmu.Unlock()
		c.complete(j)
		c.pending.Add(-1)
		c.all.Done()
		c.jmu.Lock()
	}
	c.draining = false
	c.jmu.Unlock()
}
