package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/BurntSushi/toml"
)

// The embedded config.toml is the one source of the store's settings: serve opens Badger with
// exactly its [store] values, read here straight from the file, as Badger reports them in the
// "store opened" line.
func TestServeStoreSettingsFromEmbeddedConfig(t *testing.T) {
	raw, err := os.ReadFile("../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Store map[string]any `toml:"store"`
	}
	if _, err := toml.Decode(string(raw), &file); err != nil {
		t.Fatal(err)
	}
	var opened map[string]any
	for _, l := range serveOnce(t, filepath.Join(t.TempDir(), "data")) {
		if l["message"] == "store opened" {
			opened = l
		}
	}
	if opened == nil {
		t.Fatal(`serve logged no "store opened" line`)
	}
	for key, field := range map[string]string{
		"memtable_size":       "memtable_bytes",
		"num_memtables":       "memtables",
		"block_cache_size":    "block_cache_bytes",
		"index_cache_size":    "index_cache_bytes",
		"value_log_file_size": "value_log_file_bytes",
	} {
		want, ok := file.Store[key].(int64)
		if !ok {
			t.Errorf("config.toml: store.%s is %v, want an integer", key, file.Store[key])
			continue
		}
		if got, ok := opened[field].(float64); !ok || int64(got) != want {
			t.Errorf("Badger runs with %s = %v; config.toml's store.%s = %d", field, opened[field], key, want)
		}
	}
	if got, want := opened["gc_discard_ratio"], file.Store["gc_discard_ratio"]; got != want {
		t.Errorf("gc_discard_ratio = %v; config.toml's store.gc_discard_ratio = %v", got, want)
	}
}
