// Package persist is the only code in holdfast that touches Badger. It stores
// what a crash must not lose: persistent sessions, their subscriptions,
// offline/outbound queues with in-flight state, inbound QoS 2 packet ids, and
// retained messages.
//
// # Writing: one writer, group commit
//
// Callers build a Batch and Submit it. One writer goroutine drains the bounded
// request channel, packs every waiting request (up to Options.MaxBatchOps
// entries / MaxBatchBytes bytes) into one Badger transaction, commits it once
// (one fsync in Sync mode) and then calls every request's callback in
// submission order. Because there is one writer, Badger runs with conflict
// detection off. Sequence numbers for Enqueue come from one global counter the
// writer advances as it applies requests, so sequence order is commit order is
// callback order.
//
// A request's entries always share a transaction with nothing but whole other
// requests: when the next request does not fit (Badger's ErrTxnTooBig, about
// 15% of MemTableSize), the writer commits what it has and reruns that request
// in a fresh transaction. Only a request too big for a transaction of its own
// is split over several commits, with a warning; a crash between them leaves
// part of it (Recover cleans what that can leave behind).
//
// Durability: Sync commits with SyncWrites (fsync per commit) and calls back
// after the fsync. Async calls back after the commit and fsyncs every
// AsyncInterval (a process crash loses nothing; power loss can lose that
// window). None runs Badger in memory.
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
//	0x01    cid                      session record
//	0x02    cid filter               subscription
//	0x03    topic                    retained message
//	0x04    cid seq(u64)             queue entry
//	0x05    cid seq(u64)             in-flight state of queue entry (cid, seq)
//	0x06    seq(u64)                 shared message body
//	0x07    cid pid(u16)             inbound QoS 2 packet id awaiting PUBREL
//
// (cid above is always uint16 length + bytes.)
//
// # Values
//
// Every value except the schema value starts with a record-version byte,
// currently 1; a decoder that meets another version, a wrong length or an
// out-of-range field returns ErrCorrupt naming the family and key. All
// integers are big-endian.
//
//	0x01 session   1 | protocol level | flags (bit 0: disconnected) | disconnected-at unix ns int64
//	0x02 sub       1 | granted QoS
//	0x03 retained  1 | QoS | payload
//	0x04 queue     1 | delivery QoS | flags | payload size uint32 [| inline message]
//	               flags bit 0: shared (body under 0x06 seq; nothing follows)
//	               flags bit 1: retain (inline only)
//	               inline message: published QoS | topic length uint16 | topic | payload
//	0x05 inflight  1 | state (1 = Sent, 2 = Released: PUBREC received, PUBREL sent) | packet id uint16
//	0x06 body      1 | published QoS | flags (bit 0: retain) | topic length uint16 | topic | payload
//	0x07 inbound   1
//
// A message queued for exactly one persistent session is stored inline in its
// queue entry (one key). A message for two or more is stored once under 0x06
// with the Enqueue's sequence number, and every target's entry carries the
// shared flag. A sequence number belongs to one Enqueue, so entry (cid, seq)
// refers to body seq exactly when that body exists. Reference counts live in
// memory (seq -> count), rebuilt at Open from keys alone; the body is deleted
// in the same transaction as the last entry that refers to it (Ack,
// DeleteSession).
//
// The 0x05 state of an entry is absent while the entry is only queued; it is
// written blindly by SetQueueState and deleted with its entry. The in-flight
// key is the queue key with another family byte, so resending after a
// reconnect is a merge of two ordered ranges.
//
// # Invariants (checked by the tests after every reopen)
//
//   - every shared queue entry's 0x06 body exists;
//   - every body has at least one entry and the in-memory count equals the
//     number of entries;
//   - no 0x05 without its 0x04 (Recover deletes strays, which a session layer
//     can create by submitting a state change after the Ack);
//   - no 0x04 without its client's 0x01: Enqueue skips a target whose record
//     does not exist when the writer applies the batch (the writer keeps the
//     set of client ids with records). Subscriptions and inbound packet ids
//     are blind writes, and older stores may hold orphans: Recover reports
//     them (SessionState.Orphan), Verify lists them.
//
// # Versioning
//
// Open reads 0x00 "schema". Absent in an empty store: version 1 is written.
// Absent next to other keys: ErrVersion ("no format version"). Newer than
// FormatVersion: ErrVersion naming both versions; the store is refused, never
// misread. An older version would run migration steps here (there are none
// yet). A change to any value layout needs a new record version (readers
// accept only the versions they know) or a new format version; a new family
// needs a new format version so that old binaries refuse the store. Backups
// (Badger's DB.Backup stream) carry the schema key with them.
//
// # Recovery
//
// Open scans the keys of 0x06 and 0x04 (no values) to restore the sequence
// counter and reference counts, so writes are safe even before Recover.
// Recover then reads every family once, validates every value, and returns
// what the broker rebuilds (sessions with subscriptions, queue sizes, inbound
// packet ids; retained messages). Queue contents stay on disk: ReadQueue pages
// through a session's queue from one snapshot.
//
// # Backup, restore, verify, inspect
//
// Store.Backup streams a snapshot of the live store (one Badger read
// transaction, so whole batches or nothing) in Badger's backup format while
// writes go on, and returns the version to pass as since to the next,
// incremental, backup: the highest version it wrote (Badger skips versions
// <= since, so not that version + 1). Restore loads a full backup and its
// incrementals into an empty directory with DB.Load. Incrementals cannot
// carry deletes whose markers compaction dropped (see Backup): take full
// backups regularly.
//
// Verify and InspectDir open a stopped store read-only (Badger refuses while
// a broker holds the directory, ErrLocked, and after a crash until a
// read-write open has replayed the write-ahead log, ErrUnclean) and check
// every key and value against the layout above, reporting problems by key.
// Store.Inspect lists the same inventory from a live store. Badger reads a
// value-log entry it cannot read as an empty value, without an error; no
// holdfast value is empty, so Verify, Recover and Backup all catch it.
//
// # Memory
//
// Options sets every Badger memory knob explicitly: NumMemtables x
// MemTableSize, BlockCacheSize, IndexCacheSize (0 keeps every table index in
// memory, growing with the data). Open logs the total. Values up to 1 MB (less
// with memtables under 28 MB) live in the LSM tree, larger ones in the value
// log, which a goroutine garbage-collects every GCInterval
// (RunValueLogGC(GCDiscardRatio) until it finds nothing to rewrite). The
// largest storable value is ValueLogFileSize (1 MB in None mode).
package persist
