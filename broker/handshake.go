package broker

import (
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/session"
)

// acked handles PUBACK and PUBCOMP from the client for a message we sent.
func (c *conn) acked(pid uint16, kind codec.Type) {
	w, ok := c.sess.lock().Ack(pid, kind)
	c.sess.unlock()
	if ok {
		c.Wake() // the window has room again
		if c.bridge != nil {
			c.bridge.acked.Add(1)
		}
	}
	if !ok || w.Kind == 0 {
		return
	}
	if w.Group == "" {
		// The session's own entry: its removal goes with the others of the packets read in one go
		// (flushAcks), since nobody waits for it. A group's goes at once, as its group settles it.
		if c.acks == nil {
			c.acks = new(persist.Batch)
		}
		addWrites(c.acks, c.clientID, w)
		if c.acks.Len() >= maxAckBatch {
			c.flushAcks()
		}
		return
	}
	ws := []session.Write{w}
	c.srv.settle(ws)
	var b persist.Batch
	addWrites(&b, c.clientID, ws...)
	c.srv.store.Submit(&b, c.srv.logCommitError("acknowledging a message"))
}

// maxAckBatch bounds the removals of acknowledged entries that wait for the reader's next flush.
const maxAckBatch = 256

// flushAcks submits the removals of the entries acknowledged since the last flush. The reader
// calls it before it blocks on the socket, before it handles a packet other than an
// acknowledgement or a publish, and before the connection ends, so that they reach the store in
// the order of the packets around them.
func (c *conn) flushAcks() {
	if c.acks == nil {
		return
	}
	c.srv.store.Submit(c.acks, c.srv.logCommitError("acknowledging a message"))
	c.acks = nil
}

// handlePubrec answers PUBREC with PUBREL; for a persistent session only after "PUBREC received"
// is on disk, so that a crash cannot make the broker send the PUBLISH again as if new.
func (c *conn) handlePubrec(pid uint16) {
	w, ok := c.sess.lock().Pubrec(pid)
	c.sess.unlock()
	if !ok || w.Kind == 0 {
		c.sendControl(&codec.Pubrel{PacketID: pid}) // [MQTT-4.3.3-1]
		return
	}
	c.srv.settle([]session.Write{w}) // a group's entry now stays with this member
	var b persist.Batch
	addWrites(&b, c.clientID, w)
	c.srv.store.Submit(&b, func(_ uint64, err error) {
		if err != nil {
			c.commitFailed(err)
			return
		}
		c.sendControl(&codec.Pubrel{PacketID: pid})
	})
}

// handlePubrel releases an inbound QoS 2 message; PUBCOMP follows once that is durable and every
// earlier publish of this connection is answered.
func (c *conn) handlePubrel(pid uint16) {
	j := &pubJob{ack: &codec.Pubcomp{PacketID: pid}} // [MQTT-4.3.3-2]
	if c.removeInbound(pid) && c.sess.Persistent {
		j.d.batch.DeleteInbound(c.clientID, pid)
	}
	c.submit(j)
}
