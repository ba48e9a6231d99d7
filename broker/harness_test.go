package broker

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/persist"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Badger's and glog's background goroutines belong to the library's global state.
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/badger/v4/y.(*WaterMark).process"),
	)
}

// testBroker is an in-process broker on 127.0.0.1:0 with its store in a temporary directory.
type testBroker struct {
	t     *testing.T
	srv   *Server
	store *persist.Store
	cfg   *config.Config
	addr  string
	dir   string
}

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	defaults, err := os.ReadFile("../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(defaults, "config.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Durability = "sync"
	cfg.Store.MemTableSize = 8 << 20
	cfg.Store.BlockCacheSize = 1 << 20
	cfg.Store.IndexCacheSize = 1 << 20
	return cfg
}

// startBroker starts a broker; mutate adjusts the configuration first.
func startBroker(t *testing.T, mutate func(*config.Config)) *testBroker {
	t.Helper()
	cfg := testConfig(t)
	if mutate != nil {
		mutate(cfg)
	}
	b := &testBroker{t: t, cfg: cfg, dir: t.TempDir()}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *testBroker) start() {
	t := b.t
	t.Helper()
	d, err := persist.ParseDurability(b.cfg.Durability)
	if err != nil {
		t.Fatal(err)
	}
	o := persist.DefaultOptions(b.dir)
	o.Durability = d
	o.MemTableSize = b.cfg.Store.MemTableSize
	o.BlockCacheSize = b.cfg.Store.BlockCacheSize
	o.IndexCacheSize = b.cfg.Store.IndexCacheSize
	o.Logger = zerolog.Nop()
	b.store, err = persist.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.Nop()
	if os.Getenv("HOLDFAST_TEST_LOG") != "" {
		log = zerolog.New(os.Stderr).Level(zerolog.DebugLevel)
	}
	rules, err := LoadAuth(b.cfg.Auth, log)
	if err != nil {
		t.Fatal(err)
	}
	b.srv, err = New(b.cfg, b.store, rules, "holdfast test", log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Serve(l); err != nil {
		t.Fatal(err)
	}
	b.addr = l.Addr().String()
}

func (b *testBroker) stop() {
	if b.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		b.t.Errorf("shutdown: %v", err)
	}
	if err := b.store.Close(); err != nil {
		b.t.Errorf("closing store: %v", err)
	}
	b.srv = nil
}

// restart shuts the broker down gracefully and starts it again on the same data directory.
func (b *testBroker) restart() {
	b.t.Helper()
	b.stop()
	b.start()
}

func (b *testBroker) dial() *mqtttest.Client { return mqtttest.Dial(b.t, b.addr) }
