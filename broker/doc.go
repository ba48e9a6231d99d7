// Package broker is the hub: it accepts connections, runs each one's reader and writer, and wires
// the codec, the router, the retained store, the sessions and persist together.
//
// # Files
//
// server.go starts, serves and stops; conn.go is one connection's reader and lifecycle;
// outbound.go its write side (buffer, flow control, writer goroutine); inorder.go the queue of
// its publishes waiting for their commit; handle.go how the broker holds a session (its lock,
// the publishers' flow control) and the registry of sessions; connect.go CONNECT and the end of
// a connection; takeover.go who owns a client id; auth.go and passwords.go authentication;
// access.go the ACL's three questions; publish.go an inbound PUBLISH from routing to
// acknowledgement; handshake.go the QoS 1/2 acknowledgements; subscribe.go, retained.go,
// will.go, sessions.go (expiry and removal), sys.go ($SYS) and stats.go; shared.go the shared
// subscription groups (a session.Group each: hand-offs to members, take-back, recovery);
// bridge.go the bridges (a persistent session whose connection the broker makes to a remote
// broker as a client, then serves like any other).
//
// The MQTT state of a session lives in package session, a machine without I/O, locks or clock:
// the broker feeds it events under the handle's lock and carries out what it returns (records
// to store, disk reads, outlets to wake).
//
// # Goroutines
//
// Per connection: the reader (CONNECT, then every packet in order) and the writer, which runs
// only while the outbound buffer or the session's queue has something to send. Shared: one accept
// loop per listener, persist's writer (applies batches to Badger and appends them to the
// write-ahead log; hands the queue entries of a publish to persistent sessions as it applies
// them) and syncer (fdatasyncs the log and runs the completion callbacks in commit
// order), the password workers, the $SYS and expiry loops, the shared groups' loader (reads a
// group's queue from disk, which persist's callback may not), the read ahead of a draining
// session's next page of its queue (started by its writer after a full page, taken by the
// writer's next read if it still answers it), and per bridge a loop that keeps its link up and,
// while it is, a pinger beside the link's reader. At start, the queue counter: the broker serves
// once the store has recovered everything but the queues (persist's RecoverSessions), and this
// goroutine gives each restored session and group its queue's size as persist counts it
// (CountQueues; "counted the queues" in the log). Until its count arrives, a session reads its
// queue from disk up to the bound persist gave, as far as it goes, and its queue limits
// (max_queued_messages/bytes) do not see the old entries. A publish whose commit completes
// QoS 0 copies for other connections is finished by a goroutine started for it (inorder.go).
//
// # One QoS 1 message, end to end
//
// From a publisher to an online persistent subscriber, with durability "sync":
//
//  1. publisher's reader: decodes the PUBLISH, checks the ACL, matches the trie, reserves room in
//     each target session and puts the message and its queue entries in one persist.Batch
//     (publish.go route); queues the job in the connection's inOrder and submits the batch.
//  2. persist's writer: applies the batch to the open group commit with the others waiting; the
//     batch's seq is now fixed, and its OnApplied callback hands the entry to each target session
//     (session.Applied, publish.go applied), which wakes the subscriber's writer. Then the group
//     commit is appended to the write-ahead log.
//  3. subscriber's writer: takes the entry from the session (session.Fill), checks the ACL again,
//     writes PUBLISH, before the entry is durable. Should the broker crash before the sync, the
//     publisher got no PUBACK and sends the message again: the subscriber gets it twice, which
//     QoS 1 allows. A message published at QoS 2 waits in the session until step 4 (routed again
//     as new after a crash, it would reach the subscriber twice), and so do the entries behind
//     it; so does one for a session that is offline or behind (it is read from disk then).
//  4. persist's syncer: fdatasyncs the log, commits the group to Badger, then runs the batch's
//     callback: each target session is told its entry is durable (session.Durable: from now on
//     a read of its queue finds it); and the job is marked ready, so the syncer completes it and
//     every ready job behind it: PUBACK goes into the publisher's outbound buffer, which wakes the
//     publisher's writer.
//  5. publisher's writer: writes PUBACK.
//  6. subscriber's reader: PUBACK removes the entry from the session; the deletions of every
//     acknowledgement read in one go from the socket go to persist as one batch before the reader
//     blocks again or handles another kind of packet (writer and syncer again; nobody waits for
//     it). It may come before step 4: the deletion is behind the insertion in the writer's order.
//
// So the acknowledgement crosses three goroutines after the reader (persist's writer and syncer,
// the publisher's writer) and the delivery two (persist's writer, the subscriber's writer), with
// no fdatasync on its way. Before issue 12 the acknowledgement crossed four: a per-connection
// deliver goroutine waited for each commit and queued the PUBACK, between the syncer and the
// writer.
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
//     window (limits.max_inflight), and while it drains a longer queue one more such page, read
//     ahead (64 sessions at most at once); the rest is read from disk as the window frees. While
//     an online session holds max(1024, 4 × max_inflight) unacknowledged entries, each publisher
//     that routes to it waits (its reader stops reading) until the backlog halves, at most
//     500 ms, after which the session is marked stuck and no longer waited for until it drains.
//     Past limits.max_queued_messages or max_queued_bytes new messages are dropped for that
//     session only (queue_full) and the publisher is still acknowledged.
//   - QoS 1 and 2, clean session: the same, with the queue in memory.
//   - The publisher itself: at most 256 of its publishes wait for their commit (its reader then
//     blocks: it is read no faster than the disk commits), and while its own outbound buffer is
//     over the limit (it does not read its acknowledgements) its reader waits.
//   - QoS 0 copies of a message that had to be committed first (a retained or QoS 1/2 publish
//     with QoS 0 subscribers) wait for room like any QoS 0 message, on a goroutine started for
//     that job rather than on persist's syncer.
//
// # Locks
//
// Order: Server.mu or retainMu (never both), then the shared groups' registry lock
// (groups.mu), then a groupHandle's, then a sessionHandle's lock, then conn.omu (outbound). A
// group never calls its members: it hands out entries while its lock is held, and the broker
// passes them on to the member sessions after letting it go. retainMu is held while a retained publish is routed and submitted to persist, and
// around SUBSCRIBE's look-up of the retained index. conn.jmu (inOrder), the password
// checker's, the login cache's and the listener gate's locks are leaves: nothing else is taken
// under them (jobs are completed outside jmu). No lock is held across network I/O or while
// waiting for a commit. persist's writer takes a sessionHandle's lock and then conn.omu (the
// OnApplied callback of a publish), and Submit blocks while persist's queue is full: nothing
// submits to persist while it holds either of them. A session never calls its outlet: the broker
// wakes the writer after the session's method has returned.
package broker
