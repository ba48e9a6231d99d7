// Package persist is the only code in holdfast that touches Badger. It stores
// what a crash must not lose: persistent sessions, their subscriptions,
// offline/outbound queues with in-flight state, inbound QoS 2 packet ids, and
// retained messages. Records go in as Batches; each Batch comes back as one
// completion callback once it is durable. persist keeps no protocol state.
//
// # The commit path
//
// Goroutines: the submitter (any), the writer (one per Store, writer.go), and
// in Sync mode the syncer (one, wal.go). Badger runs with SyncWrites off and
// conflict detection off (there is one writer); holdfast's own write-ahead log
// (the file holdfast.wal in the data directory) makes commits durable.
//
//  1. The submitter builds a Batch: every key and value is encoded there, so
//     the writer only hands bytes to Badger. Invalid input (a key over
//     MaxKeySize, a QoS over 2) is kept as the Batch's error. Submit sends the
//     Batch on a channel of Options.MaxPending slots, blocking only while it
//     is full.
//  2. The writer takes one Batch, then every Batch already waiting, up to
//     MaxBatchOps estimated entries or MaxBatchBytes key and value bytes: one
//     group commit.
//  3. It applies them in order into one open Badger transaction, remembering
//     each Batch's entries (Batch.applied). Enqueue takes its sequence number
//     from the writer's counter here (kept if the Batch is rerun), so sequence
//     order is commit order. A Batch that fails (its own error, a value over
//     the limit) fails alone: its entries are taken out of the transaction by
//     rebuilding it from the others' remembered entries. A Batch applied
//     without error calls its OnApplied callback, if any, here, on the writer,
//     in submission order: its place in the commit order is fixed, its record
//     not yet durable (the broker hands QoS 0/1 messages to online persistent
//     subscribers at this point).
//  4. When a Batch does not fit into a transaction that holds other Batches'
//     entries (Badger's ErrTxnTooBig, at about 15% of MemTableSize or
//     MaxBatchCount entries), the writer commits the others and reruns it in a
//     fresh transaction. When it does not fit into one even alone, it spills:
//     see below.
//  5. Commit: the entries of every Batch that succeeded are appended to the
//     log as one record (written to the operating system, not synced). In
//     Sync mode the transaction goes, with the Batches, to the syncer (6);
//     otherwise it is committed to Badger at once (applied to its memtable and
//     its own log files, not synced). Past 64 MiB of records the writer
//     checkpoints (below) and starts the log over.
//  6. The syncer takes every group commit handed over since its last round,
//     fdatasyncs the log once for all of them, then commits their
//     transactions to Badger in order, and calls the callbacks in submission
//     order, with the error of the append, the sync or the commit if any. The
//     writer goes on meanwhile: it keeps the next group commit open while the
//     syncer syncs, so that it takes every Batch that arrives meanwhile (the
//     syncer does one Badger commit per group commit), and hands it over as
//     soon as the sync is done, ready for the next round. In Async and None
//     modes the writer calls the callbacks itself right after step 5; in
//     Async a ticker fdatasyncs the log every AsyncInterval. Once the store
//     has failed (any storage error: fail-stop), every callback not yet
//     called gets ErrFailed, even for a record already synced: no success
//     follows a failure.
//  7. A transaction that began before the syncer committed the group commits
//     before it does not see them. Blind writes do not care, and Enqueue's
//     check for the target's session record reads the writer's memory (below);
//     but a Batch that reads the store (DeleteSession's key scan, Ack's check
//     that an entry with a shared body exists) first waits until the syncer
//     has committed them all and rebuilds the transaction from its remembered
//     entries. A control request, a spill and a checkpoint wait for it too.
//
// Why Badger only gets a group commit once its record is durable (Sync mode):
// Badger's memtable file is mapped, and the kernel writes its pages back
// whenever it likes (and a full memtable is flushed to a table, synced). A
// batch in Badger whose record the log lost (a power cut, a failed fdatasync
// whose pages the kernel dropped) survived in part: replay rewrote the keys
// that the epoch's older records share with it and left its other keys, so a
// DeleteSession came back as queue entries without their session record. The
// batch was never acknowledged; now it is in Badger whole or not at all.
//
// In Async mode the callbacks cannot wait for the ticker's fdatasync (readers
// must find an acknowledged batch in Badger), so Badger gets batches before the
// log holds them durably, and a power cut or kernel crash, which loses up to
// the last AsyncInterval of the log, can leave a batch of that interval half
// applied, not only lost: Badger may hold it, and replay puts back those of
// its keys that the log's surviving records of the epoch also wrote. A crash
// of holdfast alone loses nothing in either mode (the page cache keeps both
// files).
//
// Reference counts of shared bodies and the set of client ids with a session
// record live in the writer's memory in three layers: committed, open
// transaction, Batch being applied; a layer is folded into the one below when
// its Batch is applied and its transaction commits, and dropped on failure.
//
// A Batch too big for one transaction alone (a DeleteSession of a long queue,
// an Enqueue to thousands of sessions) is still atomic. From the moment it
// outgrows one, its entries go only through throw-away transactions that
// check that each entry fits into one, and into an overlay (writer.spill) from
// which the Batch's later reads of its own writes are answered (Ack's
// existence check, DeleteSession's key scan). Once it is fully applied, its
// entries become one log record, which is fdatasynced at once; only then does
// Badger receive them, over as many transactions as they need (partWriter). A
// crash between those transactions leaves a durable record, which replay
// applies whole. The cost is one more fdatasync and the Batch's entries held
// in memory. (Readers of the live store, Backup included, can see part of such
// a Batch while it is being applied, never before it is durable.)
//
// Close stops the background loops, lets the writer finish every Batch
// submitted (their callbacks run), stops the syncer once it has drained,
// checkpoints, starts the log over and closes Badger.
//
// # The write-ahead log (wal.go)
//
// One file, mode 0600, created with the store and reused, never truncated:
//
//	header  "HFW" 0x02 | epoch uint64 | crc uint32         (16 bytes; crc: CRC-32C of the 12 before)
//	record  length uint32 | crc uint32 | payload            (length = payload bytes)
//	        crc: CRC-32C (Castagnoli) of the epoch (8 bytes) then the payload
//	payload entries, each: kind (0 set, 1 delete) | uvarint key length | key
//	        [| uvarint value length | value]             (value for a set only)
//
// All fixed-width integers are big-endian. Records start right after the
// header. The file grows with zeros written 1 MiB ahead of the last record, so
// that most fdatasyncs carry data and no size change. Starting over (after a
// checkpoint) rewrites and syncs the header with the next epoch, which the log
// takes only then, and writes the next record at offset 16 over the old ones:
// a record of an older epoch fails its CRC. A write that fails, even after
// writing part of a record, leaves the position where it was, and the store
// fails (nothing more is written).
//
// Replay, at Open before anything reads the store, applies the records in
// order into Badger and stops at the first one of length 0, running past the
// end of the file, or with a wrong CRC: zeros, an older epoch, or a torn
// record, whose Batches were never acknowledged because acknowledgement waits
// for the fdatasync (Sync) or the crash lost only the operating system's
// unsynced pages (Async). If a valid record of the epoch follows such a stop
// anywhere in the file (a damaged length field included), that is damage, not
// a torn tail: Open refuses with ErrCorrupt naming the file and offset (see
// RecoverWAL). A header whose CRC fails is refused the same way; a version 1
// header ("HFWAL" 0 0 1, no CRC) is still read and rewritten in version 2. Replay is idempotent: records hold the exact keys
// and values written, in order. It then checkpoints and starts the log over.
//
// A checkpoint makes Badger durable by itself so that the log may be
// discarded: DB.Sync, then an fsync of every .mem and .vlog file in the
// directory (memtables waiting to be flushed are not synced by Badger), then
// of the directory (Badger does not sync it when it creates those files). It
// runs when the records pass 64 MiB, after replay, and at Close. A crash
// between a checkpoint and the new header replays the old epoch over a Badger
// that holds it: the same store again, since replay is idempotent.
//
// # Cluster mode (replicated.go)
//
// With Options.Replicator set (durability Sync only) a group commit is made
// durable by replication (the raft log) instead of holdfast.wal, which is not
// used: Open replays and removes one left by single-node use, and logs it.
// The writer encodes each group commit's entries as a log record's payload;
// the syncer, where it would fdatasync, concatenates the payloads of its
// round (entries delimit themselves: one valid payload) and calls
// Replicate once. Replicate returns once the entry is committed and the raft
// FSM has written it into this store with ApplyReplicated; the writer's
// transaction only answered its reads of its own writes and is discarded. A
// spill replicates its record the same way. A failed Replicate fails the
// store (errors.Is finds its error through Err), but Badger is sound: Close
// closes it, so that the node can open the store again (as a follower's),
// and ApplyReplicated still writes what the cluster commits.
//
// ApplyReplicated, on every node, writes an entry's sets and deletes into
// Badger (unsynced; over several transactions if it does not fit one) and
// its raft index under 0x00 "raft-applied" (uint64) in the last of them; an
// entry at or below that index is skipped, so replaying the raft log after a
// crash is idempotent. A reader of the live store can see part of an entry
// that needs several transactions (a spill, a round of large group commits),
// never before it is committed. Checkpoint syncs Badger as a log checkpoint
// does (for a raft snapshot, streamed with Backup). Replace, on a follower,
// drops Badger's content and loads a Backup stream in its place between the
// creation and the removal of the file holdfast.replacing, then checkpoints;
// Open in cluster mode empties a store that still has the file (applied
// index 0), and refuses it otherwise.
//
// # Keys
//
// The first byte of every key is its family. Client ids are length-prefixed
// (uint16 big-endian, then the bytes), so the keys of client "a" are an exact
// prefix that never matches client "a:b" or "ab". Numbers are fixed-width
// big-endian, so byte order is numeric order. A variable-length string (filter,
// topic) is only ever the last component. Badger limits a key to 65000 bytes
// (MaxKeySize); longer keys fail the batch with ErrTooLarge.
//
//	family  key                      value
//	0x00    0x00 "schema"            format version uint32 | writer version string
//	0x00    0x00 "raft-applied"      cluster mode: raft index of the last applied entry, uint64
//	0x01    cid                      session record
//	0x02    cid filter               subscription
//	0x03    topic                    retained message
//	0x04    cid seq(u64)             queue entry
//	0x05    cid seq(u64)             in-flight state of queue entry (cid, seq)
//	0x06    seq(u64)                 shared message body
//	0x07    cid pid(u16)             inbound QoS 2 packet id awaiting PUBREL
//	0x08    cid                      will (format 2)
//
// (cid above is always uint16 length + bytes.)
//
// # Values
//
// Every value except the schema value starts with a record-version byte; a
// decoder that meets a version it does not know, a wrong length, unknown flags
// or an out-of-range field returns ErrCorrupt naming the family and key. All
// integers are big-endian. Writers write the version below; decoders read
// version 1 too (format 1: the same layouts without what version 2 added, and
// no flag of it allowed).
//
//	0x01 session   2 | protocol level | flags | disconnected-at unix ns int64 [| expiry] [| owner]
//	               flags bit 0: disconnected (else the time is 0)
//	               flags bit 1: owner follows: username length uint16 | username
//	               flags bit 2: the owner is anonymous (only with bit 1)
//	               flags bit 3: MQTT 5 Session Expiry Interval follows, uint32 seconds
//	               (absent: not set, the broker's configured limit applies)
//	0x02 sub       2 | granted QoS | options [| subscription identifier uint32]
//	               options bit 0: No Local, bit 1: Retain As Published, bit 2: identifier
//	               follows (1 to 268,435,455)          (version 1: 1 | granted QoS)
//	0x03 retained  2 | QoS | flags | [v5 parts] | payload     (version 1: 1 | QoS | payload)
//	0x04 queue     2 | delivery QoS | flags | payload size uint32 [| inline message]
//	               flags bit 0: shared (body under 0x06 seq; nothing follows)
//	               flags bit 1: retain (inline only)
//	               inline message: published QoS | topic length uint16 | topic | [v5 parts] | payload
//	               (its v5 parts' flags, below, are in the same flags byte)
//	0x05 inflight  1 | state (1 = Sent, 2 = Released: PUBREC received, PUBREL sent) | packet id uint16
//	               2 | state | packet id uint16 | holder length uint16 (not 0) | holder   (format 3)
//	               version 2 only for an entry with a holder: in a shared subscription
//	               group's queue, the member it is in flight to (Batch.Hold)
//	0x06 body      2 | published QoS | flags (bit 0: retain) | topic length uint16 | topic | [v5 parts] | payload
//	0x07 inbound   1
//	0x08 will      1 | QoS | flags (bit 0: retain, bit 3: properties) | topic length uint16 | topic
//	               [| will property block] | payload
//
// The v5 parts of a message (MQTT 5), each present only when its flag in the
// record's flags byte is set, so that a message without them costs nothing,
// in this order: bit 2, its expiry as absolute unix ns int64
// (message.Message.Expires, so that it counts across a restart); bit 5 (format
// 4, queue entries and bodies only), when the broker received it, unix ns
// int64 (message.Message.Arrived, so that a queue's age outlives a restart;
// absent in records written before, which come back with a zero time); bit 3,
// its properties as the property block a PUBLISH carries
// (codec.AppendPublishProperties: property length, then the properties; a
// will's block is the will properties of a CONNECT), read back with the checks
// a received packet gets. Bit 4 of a queue entry or body: published with
// RETAIN (nothing follows).
//
// A message queued for exactly one persistent session is stored inline in its
// queue entry (one key). A message for two or more is stored once under 0x06
// with the Enqueue's sequence number, and every target's entry carries the
// shared flag. A sequence number belongs to one Enqueue, so entry (cid, seq)
// refers to body seq exactly when that body exists. Reference counts live in
// memory (seq -> count); the body is deleted in the same Batch as the last
// entry that refers to it (Ack, DeleteSession). Open knows only which bodies
// exist: their references are counted later (see Recovery), and until then an
// Ack or DeleteSession that removes an existing entry of such a body notes a
// dropped reference instead (writer.old), and the body is deleted when the
// count, less the drops, reaches zero.
//
// The 0x05 state of an entry is absent while the entry is only queued; it is
// written blindly by SetQueueState or Hold and deleted with its entry.
// A shared subscription group's queue is that of a pseudo client id (one no
// client can have); an entry of it that a member has answered PUBREC for is
// Released with that member as its holder, and ReadHeld reads such states
// (with their entries) without reading the rest of the queue. The in-flight
// key is the queue key with another family byte, so resending after a
// reconnect is a merge of two ordered ranges.
//
// # Invariants (checked by the tests after every reopen)
//
//   - every shared queue entry's 0x06 body exists;
//   - every body has at least one entry and the in-memory count equals the
//     number of entries (once counted; before, the body exists);
//   - no 0x05 without its 0x04 (Recover deletes strays, which a session layer
//     can create by submitting a state change after the Ack);
//   - no 0x04 without its client's 0x01: Enqueue skips a target whose record
//     does not exist when the writer applies the batch (the writer keeps the
//     set of client ids with records). Subscriptions, inbound packet ids and
//     wills are blind writes, and older stores may hold orphans: Recover reports
//     them (SessionState.Orphan), Verify lists them.
//
// # Versioning
//
// Open reads 0x00 "schema". Absent in an empty store: FormatVersion is written.
// Absent next to other keys: ErrVersion ("no format version"). Newer than
// FormatVersion: ErrVersion naming both versions; the store is refused, never
// misread. Older, down to oldestFormat, it is migrated: format 2 (MQTT 5)
// reads format 1's records as they are, format 3 (in-flight states with a
// holder) those of formats 1 and 2, and format 4 (arrival times of queued
// messages) those of formats 1 to 3, so the migration decodes every record
// (one it cannot is ErrCorrupt, and the store stays as it was), then writes
// the new version through the log like the first one, and logs it. A change
// to any value layout needs a new record version (readers accept only the
// versions they know) or a new format version; a new family needs a new format
// version so that old binaries refuse the store. testdata/formatN.tar.gz is a
// store of format N written by the last build of that format (format 2 with
// MQTT 5 records too), and testdata/format1/make.sh how to make one for the
// next format. Backups
// (Badger's DB.Backup stream) carry the schema key with them. The log's
// header carries its own version (the byte after "HFW").
//
// # Recovery
//
// Open replays the log, checks the format version, then reads keys, no values:
// those of 0x01 (the set of sessions with a record) and 0x06 (the shared
// bodies), and of 0x04 only each client's first and last key (one seek to the
// first and one to the last per client), whose highest seq gives the sequence
// counter. It keeps a read snapshot of the store as it is then, before any
// write, and the counter then as the bound: every entry on disk has a lower
// seq, every later one this or a higher. Writes are safe from there on.
//
// RecoverSessions reads every family but 0x04 and 0x06 once, validates every
// value, removes in-flight states without their entry, and returns what the
// broker rebuilds (sessions with subscriptions, inbound packet ids, wills;
// retained messages), each session's queue uncounted, with the bound as its
// upper limit. The broker serves from then on. CountQueues then reads 0x04
// and 0x06 from Open's snapshot, on the broker's goroutine, validating every
// value, and hands over each client's queue summary (entries, payload bytes,
// last seq, oldest arrival) as its key range ends, then the bodies' reference
// counts to the writer. A queue entry whose body is missing is ErrCorrupt, found
// while serving: it fails the store (fail-stop). Bodies without references
// (older versions could leave them after a crash inside a batch split over
// transactions) are deleted, and so are the entries of a client without a
// session record at Open, those below the bound only: the client may have one
// since. Recover does both in one call, on the writer goroutine, counting the
// queues as they are then (tests and tools; the broker would wait for it).
// The count reads every entry: about 0.8 s per million of 64 bytes on two
// cores, against 0.6 s of Open's key reads for ten million over 10,000
// clients.
//
// Queue contents stay on disk: ReadQueue pages through a session's queue from
// one snapshot.
//
// # Backup, restore, verify, inspect
//
// Store.Backup streams a snapshot of the live store (one Badger read
// transaction, so whole batches or nothing, but for a batch being applied in
// parts) in Badger's backup format while writes go on, and returns the version
// to pass as since to the next, incremental, backup: the highest version it
// wrote (Badger skips versions <= since, so not that version + 1). Restore
// loads a full backup and its incrementals into an empty directory with
// DB.Load. Incrementals cannot carry deletes whose markers compaction dropped
// (see Backup): take full backups regularly.
//
// Verify and InspectDir open a stopped store read-only (Badger refuses while
// a broker holds the directory, ErrLocked, and after a crash until a
// read-write open has replayed Badger's own logs, ErrUnclean) and check every
// key and value against the layout above, reporting problems by key. They do
// not replay holdfast.wal (InspectWAL checks it read-only). Store.Inspect
// lists the same inventory from a live store. Badger checks each value-log
// entry's CRC as it reads it (VerifyValueChecksum) and, with a block cache,
// each table block's as it loads it, so damage is an error, not a changed
// value. Before Badger's read-write open, Open refuses a MANIFEST that Badger
// would cut short although whole change sets follow (manifest.go) and, after
// a crash, a memtable or newest value log damaged with whole entries after it
// (Badger would cut both without a word).
//
// # Memory
//
// The configuration sets Badger's memory (Options; a zero size is Badger's
// own default): NumMemtables x MemTableSize, BlockCacheSize (0: none, tables
// stored uncompressed), IndexCacheSize (0 keeps every table index in memory,
// growing with the data). Open logs what Badger runs with. Values up to
// min(1 MiB, 15% of MemTableSize / 4) live in the LSM tree, larger ones in the
// value log, which a goroutine garbage-collects every GCInterval
// (RunValueLogGC(GCDiscardRatio) until it finds nothing to rewrite). Badger
// deletes a rewritten file at once, before the values it moved are durable:
// the GC holds an iterator open, which makes Badger defer the deletion, until
// a checkpoint has made them durable. The
// largest storable value is ValueLogFileSize (the LSM-tree limit in None mode).
package persist
