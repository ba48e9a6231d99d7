package persist

import (
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
)

// Durability says when a write counts as done.
type Durability uint8

const (
	// Sync: a batch is reported done once it is applied to Badger and the
	// write-ahead log record holding it is fdatasynced. Survives process
	// crashes and power loss.
	Sync Durability = iota
	// Async: a batch is reported done once it is applied to Badger and
	// appended to the write-ahead log (handed to the operating system); a
	// ticker fdatasyncs the log every AsyncInterval. Survives a process
	// crash; power loss can lose the last AsyncInterval of acknowledged
	// writes.
	Async
	// None: Badger runs in memory and there is no log; nothing survives the
	// process. Values are limited to what the LSM tree holds inline (at most
	// 1 MB) in this mode.
	None
)

// ParseDurability parses the config spelling: "sync", "async" or "none".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "sync":
		return Sync, nil
	case "async":
		return Async, nil
	case "none":
		return None, nil
	}
	return 0, fmt.Errorf("persist: unknown durability %q (want sync, async or none)", s)
}

func (d Durability) String() string {
	switch d {
	case Sync:
		return "sync"
	case Async:
		return "async"
	case None:
		return "none"
	}
	return fmt.Sprintf("Durability(%d)", uint8(d))
}

// Options configures Open. holdfast builds them from its configuration (config.toml), the one
// place its defaults are written; persist adds none of its own to what that file sets. A zero
// field means:
//
//   - MemTableSize, NumMemtables, ValueLogFileSize: Badger's own default (badger.DefaultOptions);
//   - BlockCacheSize: no block cache, tables stored uncompressed; IndexCacheSize: every table
//     index kept in memory (Badger's default);
//   - AsyncInterval: refused in Async mode, unused otherwise;
//   - GCInterval: no value-log garbage collection (GCDiscardRatio is then unused);
//   - MaxBatchOps, MaxBatchBytes, MaxPending, WriterVersion, Logger: the writer's internal
//     defaults below, which the configuration does not expose.
type Options struct {
	Dir           string
	Durability    Durability
	AsyncInterval time.Duration // Async: how often to fsync (the loss window)

	// Badger memory (see MemoryBudget).
	MemTableSize     int64 // bytes per memtable; a transaction may hold ~15% of it
	NumMemtables     int
	BlockCacheSize   int64 // 0 = no block cache, tables stored uncompressed (Snappy otherwise)
	IndexCacheSize   int64 // 0 = every table index in memory (grows with data)
	ValueLogFileSize int64 // also the largest value that can be stored

	GCInterval     time.Duration // value-log GC ticker; 0 = none (not in None mode either way)
	GCDiscardRatio float64       // with GCInterval: in (0, 1)

	MinFreeBytes int64 // below this much free space on Dir's file system, SpaceLow says so; 0 = no check

	MaxBatchOps   int   // cap of Badger entries per group commit, default DefaultMaxBatchOps
	MaxBatchBytes int64 // cap of key+value bytes per group commit, default MemTableSize/10
	MaxPending    int   // capacity of the request channel, default DefaultMaxPending

	// Replicator, if set, puts the store in cluster mode (see Replicator): group commits are made
	// durable by replication instead of the write-ahead log. Durability must be Sync.
	Replicator Replicator

	// WriterVersion is stored next to the format version when a store is
	// created (for humans and for inspect tools); default "holdfast".
	WriterVersion string

	// Logger receives persist's own lines (component=persist) and Badger's,
	// Badger's info chatter at debug level. The zero Logger discards.
	Logger zerolog.Logger

	checkpointBytes int64 // tests: checkpoint past this many bytes of log records instead of 64 MiB
}

// The writer's internal defaults.
const (
	DefaultMaxBatchOps = 10000
	DefaultMaxPending  = 4096
)

// DefaultOptions returns the options of a Sync store in dir with every other field zero (see
// Options): Badger's own memory defaults and no value-log GC. Tests use it; holdfast builds its
// Options from the configuration.
func DefaultOptions(dir string) Options {
	return Options{Dir: dir, Durability: Sync, Logger: zerolog.Nop()}
}

// MemoryBudget is the memory Badger may use for memtables and caches with these
// options (index memory is unbounded when IndexCacheSize is 0).
func (o Options) MemoryBudget() int64 {
	return o.MemTableSize*int64(o.NumMemtables) + o.BlockCacheSize + o.IndexCacheSize
}

// withDefaults fills zero fields and checks ranges.
func (o Options) withDefaults() (Options, error) {
	bd := badger.DefaultOptions(o.Dir)
	if o.MemTableSize <= 0 {
		o.MemTableSize = bd.MemTableSize
	}
	if o.NumMemtables <= 0 {
		o.NumMemtables = bd.NumMemtables
	}
	if o.ValueLogFileSize <= 0 {
		o.ValueLogFileSize = bd.ValueLogFileSize
	}
	if o.MaxBatchOps <= 0 {
		o.MaxBatchOps = DefaultMaxBatchOps
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = o.MemTableSize / 10
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.WriterVersion == "" {
		o.WriterVersion = "holdfast"
	}
	switch {
	case o.Durability > None:
		return o, fmt.Errorf("persist: unknown durability %d", o.Durability)
	case o.Durability != None && o.Dir == "":
		return o, fmt.Errorf("persist: no data directory (durability %s needs one)", o.Durability)
	case o.Durability == Async && o.AsyncInterval <= 0:
		return o, fmt.Errorf("persist: AsyncInterval %v must be > 0 with durability async", o.AsyncInterval)
	case o.Replicator != nil && o.Durability != Sync:
		return o, fmt.Errorf("persist: cluster mode (a Replicator) needs durability sync, not %s", o.Durability)
	case o.GCInterval < 0:
		return o, fmt.Errorf("persist: negative GCInterval %v", o.GCInterval)
	case o.GCInterval > 0 && (o.GCDiscardRatio <= 0 || o.GCDiscardRatio >= 1):
		return o, fmt.Errorf("persist: GCDiscardRatio %v must be in (0, 1)", o.GCDiscardRatio)
	case o.ValueLogFileSize < 1<<20 || o.ValueLogFileSize >= 2<<30:
		return o, fmt.Errorf("persist: ValueLogFileSize %d must be in [1 MB, 2 GB)", o.ValueLogFileSize)
	case o.BlockCacheSize < 0 || o.IndexCacheSize < 0:
		return o, fmt.Errorf("persist: negative cache size")
	}
	return o, nil
}
