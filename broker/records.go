package broker

import (
	"github.com/holdfast/holdfast/persist"
	"github.com/holdfast/holdfast/session"
)

// The session machine says what must be stored in its own terms; these translate to and from
// persist's records.

// addWrites puts the records a session asked for into b, under its client id.
// A Write of a shared group's entry is recorded under the group's queue.
func addWrites(b *persist.Batch, cid string, ws ...session.Write) {
	for _, w := range ws {
		cid := cid
		if w.Group != "" {
			cid = w.Group
		}
		switch {
		case w.Group != "" && (w.Kind == session.WriteSent || w.Kind == session.WriteReleased):
			b.Hold(cid, w.Seq, queueState(w.Kind), w.PacketID, w.Holder)
		case w.Kind == session.WriteSent, w.Kind == session.WriteReleased:
			b.SetQueueState(cid, w.Seq, queueState(w.Kind), w.PacketID)
		case w.Kind == session.WriteDone:
			b.Ack(cid, w.Seq)
		case w.Kind == session.WriteDoneQueued:
			b.AckQueued(cid, w.Seq)
		}
	}
}

func queueState(k session.WriteKind) persist.QueueState {
	if k == session.WriteReleased {
		return persist.Released
	}
	return persist.Sent
}

// sessionRecord is the store's record of a session.
func sessionRecord(r session.Record) persist.SessionRecord {
	return persist.SessionRecord{
		ProtocolLevel:  r.ProtocolLevel,
		HasOwner:       r.Owner.Known,
		Username:       r.Owner.Username,
		Anonymous:      r.Owner.Anonymous,
		DisconnectedAt: r.OfflineSince,

		HasSessionExpiry: r.ExpirySet,
		SessionExpiry:    r.Expiry,
	}
}

// savedSession is what a session is restored from, out of what the store recovered.
func savedSession(ss *persist.SessionState) session.Saved {
	r := session.Record{ProtocolLevel: ss.Record.ProtocolLevel, OfflineSince: ss.Record.DisconnectedAt,
		ExpirySet: ss.Record.HasSessionExpiry, Expiry: ss.Record.SessionExpiry}
	if ss.Record.HasOwner {
		r.Owner = session.Identity{Username: ss.Record.Username, Anonymous: ss.Record.Anonymous, Known: true}
	}
	return session.Saved{
		ClientID:     ss.ClientID,
		Record:       r,
		QueuedCount:  ss.QueuedCount,
		QueuedBytes:  ss.QueuedBytes,
		Inflight:     ss.Inflight,
		LastSeq:      ss.LastSeq,
		OldestQueued: ss.OldestQueued,
		Uncounted:    ss.Uncounted,
		InboundQoS2:  ss.InboundQoS2,
		Will:         ss.Will,
	}
}
