package metrics

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/broker"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/persist"
)

// The store's checkpoints reach the registry: one right after Open, the one that ends the replay.
func TestStoreCheckpointsMetric(t *testing.T) {
	defaults, err := os.ReadFile("../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(defaults, "config.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	o := persist.DefaultOptions(t.TempDir())
	o.MemTableSize = 8 << 20
	o.Logger = zerolog.Nop()
	store, err := persist.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rules, err := broker.LoadAuth(cfg.Auth, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(cfg, store, rules, "metrics test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	families, err := Registry(srv, store).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "holdfast_store_checkpoints_total" {
			continue
		}
		if m := f.GetMetric(); len(m) != 1 || m[0].GetCounter().GetValue() != 1 {
			t.Fatalf("holdfast_store_checkpoints_total = %v, want one counter at 1", m)
		}
		return
	}
	t.Fatal("no holdfast_store_checkpoints_total")
}
