// Package broker is the hub: it accepts connections, runs each one's reader and writer, and wires
// the codec, the router, the retained store, the sessions and persist together.
//
// # Files
//
// server.go starts, serves and stops; conn.go is one connection's reader and lifecycle;
// outbound.go its write side (buffer, flow control, writer goroutine); connect.go CONNECT and
// the end of a connection; takeover.go who owns a client id; auth.go and passwords.go
// authentication; access.go the ACL's three questions; publish.go an inbound PUBLISH from
// routing to acknowledgement; handshake.go the QoS 1/2 acknowledgements; subscribe.go,
// retained.go, will.go, sessions.go (expiry and removal), sys.go ($SYS) and stats.go.
//
// # Goroutines
//
// Per connection: the reader (CONNECT, then every packet in order); the writer, which runs only
// while the outbound buffer or the session's queue has something to send; and, once the client
// publishes at QoS 1 or 2, the deliver goroutine, which completes its publishes in arrival order
// as their commits finish. Shared: one accept loop per listener, persist's writer (applies
// batches to Badger and appends them to the write-ahead log) and syncer (fdatasyncs the log and
// runs the completion callbacks in commit order), the password workers, and the $SYS and expiry
// loops.
//
// # One QoS 1 message, end to end
//
// From a publisher to an online persistent subscriber, with durability "sync":
//
//  1. publisher's reader: decodes the PUBLISH, checks the ACL, matches the trie, reserves room in
//     each target session and puts the message and its queue entries in one persist.Batch
//     (publish.go route); submits it and queues the job for the deliver goroutine.
//  2. persist's writer: applies the batch to Badger with the others waiting and appends it to the
//     write-ahead log.
//  3. persist's syncer: fdatasyncs the log, then runs the batch's callback: each target session
//     is told its entry is durable (session.Committed), which wakes the subscriber's writer.
//  4. publisher's deliver goroutine: sees the commit done, queues PUBACK in the publisher's
//     outbound buffer and wakes its writer.
//  5. publisher's writer: writes PUBACK. Subscriber's writer, meanwhile: takes the entry from the
//     session (session.Fill), checks the ACL again, writes PUBLISH.
//  6. subscriber's reader: PUBACK removes the entry from the session and submits the deletion to
//     persist (writer and syncer again; nobody waits for it).
//
// So the acknowledgement crosses four goroutines after the reader (writer, syncer, deliver,
// writer) and the delivery two (writer, syncer, then the subscriber's writer). Issue 12's target
// shape, a session state machine driven by the connection's goroutines, would remove the
// deliver goroutine's hand-off; the path above is the one the code has today.
//
// # Flow control: a subscriber reading slower than publishers write
//
//   - QoS 0, subscriber online: the publisher's reader stages up to 64 KiB per subscriber and
//     hands it over whole. When the subscriber's outbound buffer holds limits.max_outbound_bytes
//     the publisher waits up to 500 ms for it to drain; then the subscriber is marked stalled and
//     its QoS 0 messages are dropped (dropped{reason="slow_subscriber"}) until its writer drains
//     the buffer. A subscriber whose socket takes no bytes for limits.write_timeout is closed.
//   - QoS 0, subscriber offline: dropped (offline_qos0), unless limits.queue_qos0_offline and the
//     session is persistent: then queued on disk like QoS 1.
//   - QoS 1 and 2, persistent session: queued on disk before the publisher is acknowledged. In
//     memory a session holds at most max(256, max_inflight) queued entries plus its in-flight
//     window (limits.max_inflight); the rest is read from disk as the window frees. While an
//     online session holds max(1024, 4 × max_inflight) unacknowledged entries, each publisher
//     that routes to it waits (its reader stops reading) until the backlog halves, at most
//     500 ms, after which the session is marked stuck and no longer waited for until it drains.
//     Past limits.max_queued_messages or max_queued_bytes new messages are dropped for that
//     session only (queue_full) and the publisher is still acknowledged.
//   - QoS 1 and 2, clean session: the same, with the queue in memory.
//   - The publisher itself: at most 256 of its publishes wait for their commit (its reader then
//     blocks: it is read no faster than the disk commits), and while its own outbound buffer is
//     over the limit (it does not read its acknowledgements) its reader waits.
//
// # Locks
//
// Order: Server.mu, then session.Session's lock, then conn.omu (outbound). retainMu is taken
// alone, around a retained update and its submission to persist. The password checker's, the
// login cache's and the listener gate's locks are leaves: nothing else is taken under them. No
// lock is held across network I/O or while waiting for a commit. A session never calls its
// outlet: the broker wakes the writer after the session's method has returned.
package broker
