package persist

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Durability says when a write counts as done.
type Durability uint8

const (
	// Sync: a batch is reported done after its transaction is committed and
	// fsynced (Badger SyncWrites). Survives process crashes and power loss.
	Sync Durability = iota
	// Async: a batch is reported done after its transaction is committed to
	// Badger's memory-mapped log; a background ticker fsyncs every
	// AsyncInterval. Survives a process crash; power loss can lose the last
	// AsyncInterval of acknowledged writes.
	Async
	// None: Badger runs in memory; nothing survives the process. Values are
	// limited to 1 MB in this mode.
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

// Options configures Open. Start from DefaultOptions; Open replaces zero
// durations, batch caps, MemTableSize, NumMemtables and ValueLogFileSize by
// their defaults. BlockCacheSize and IndexCacheSize are taken as given (0 means
// no block cache, and all table indices kept in memory, respectively).
type Options struct {
	Dir           string
	Durability    Durability
	AsyncInterval time.Duration // Async: how often to fsync (the loss window); default 10ms

	// Badger memory, set explicitly (see DefaultOptions for the total).
	MemTableSize     int64 // bytes per memtable; a transaction may hold ~15% of it
	NumMemtables     int
	BlockCacheSize   int64 // 0 = no block cache, tables stored uncompressed (Snappy otherwise)
	IndexCacheSize   int64 // 0 = every table index in memory (grows with data)
	ValueLogFileSize int64 // also the largest value that can be stored

	GCInterval     time.Duration // value-log GC ticker; default 5m (not in None mode)
	GCDiscardRatio float64       // default 0.5

	MaxBatchOps   int   // cap of Badger entries per group commit, default 10000
	MaxBatchBytes int64 // cap of key+value bytes per group commit, default MemTableSize/10
	MaxPending    int   // capacity of the request channel, default 4096

	// WriterVersion is stored next to the format version when a store is
	// created (for humans and for inspect tools); default "holdfast".
	WriterVersion string

	// Logger receives persist's own lines (component=persist) and Badger's,
	// Badger's info chatter at debug level. The zero Logger discards.
	Logger zerolog.Logger
}

// Defaults.
const (
	DefaultAsyncInterval    = 10 * time.Millisecond
	DefaultMemTableSize     = 64 << 20
	DefaultNumMemtables     = 5
	DefaultBlockCacheSize   = 128 << 20
	DefaultIndexCacheSize   = 64 << 20
	DefaultValueLogFileSize = 256 << 20
	DefaultGCInterval       = 5 * time.Minute
	DefaultGCDiscardRatio   = 0.5
	DefaultMaxBatchOps      = 10000
	DefaultMaxPending       = 4096
)

// DefaultOptions returns the defaults for a store in dir, durability Sync.
// Memory: 5 x 64 MB memtables + 128 MB block cache + 64 MB index cache = 512 MB
// at most for Badger's caches and memtables.
func DefaultOptions(dir string) Options {
	return Options{
		Dir:              dir,
		Durability:       Sync,
		AsyncInterval:    DefaultAsyncInterval,
		MemTableSize:     DefaultMemTableSize,
		NumMemtables:     DefaultNumMemtables,
		BlockCacheSize:   DefaultBlockCacheSize,
		IndexCacheSize:   DefaultIndexCacheSize,
		ValueLogFileSize: DefaultValueLogFileSize,
		GCInterval:       DefaultGCInterval,
		GCDiscardRatio:   DefaultGCDiscardRatio,
		MaxBatchOps:      DefaultMaxBatchOps,
		MaxBatchBytes:    DefaultMemTableSize / 10,
		MaxPending:       DefaultMaxPending,
		WriterVersion:    "holdfast",
		Logger:           zerolog.Nop(),
	}
}

// MemoryBudget is the memory Badger may use for memtables and caches with these
// options (index memory is unbounded when IndexCacheSize is 0).
func (o Options) MemoryBudget() int64 {
	return o.MemTableSize*int64(o.NumMemtables) + o.BlockCacheSize + o.IndexCacheSize
}

// withDefaults fills zero fields and checks ranges.
func (o Options) withDefaults() (Options, error) {
	if o.AsyncInterval <= 0 {
		o.AsyncInterval = DefaultAsyncInterval
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.NumMemtables <= 0 {
		o.NumMemtables = DefaultNumMemtables
	}
	if o.ValueLogFileSize <= 0 {
		o.ValueLogFileSize = DefaultValueLogFileSize
	}
	if o.GCInterval <= 0 {
		o.GCInterval = DefaultGCInterval
	}
	if o.GCDiscardRatio <= 0 {
		o.GCDiscardRatio = DefaultGCDiscardRatio
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
	case o.GCDiscardRatio >= 1:
		return o, fmt.Errorf("persist: GCDiscardRatio %v must be in (0, 1)", o.GCDiscardRatio)
	case o.ValueLogFileSize < 1<<20 || o.ValueLogFileSize >= 2<<30:
		return o, fmt.Errorf("persist: ValueLogFileSize %d must be in [1 MB, 2 GB)", o.ValueLogFileSize)
	case o.BlockCacheSize < 0 || o.IndexCacheSize < 0:
		return o, fmt.Errorf("persist: negative cache size")
	}
	return o, nil
}
