package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/persist"
)

// TestBackupEstimatedBytes: a full backup of a store Badger has measured announces an estimate
// of its length before the stream; an incremental, whose length the store's size says nothing
// about, announces none.
func TestBackupEstimatedBytes(t *testing.T) {
	o := persist.DefaultOptions(t.TempDir())
	o.MemTableSize, o.NumMemtables, o.ValueLogFileSize = 8<<20, 2, 16<<20
	open := func() *persist.Store {
		s, err := persist.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	store := open()
	b := &persist.Batch{}
	for i := range 2000 {
		b.PutSession(fmt.Sprintf("client-%d", i), persist.SessionRecord{ProtocolLevel: 5})
	}
	if _, err := store.Commit(b); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = open() // Badger measures the files it opens
	defer store.Close()
	a, err := Start("127.0.0.1:0", "", nil, store, prometheus.NewRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	for _, tc := range []struct {
		since string
		want  bool
	}{{"0", true}, {"", true}, {"1", false}} {
		resp, err := http.Get("http://" + a.Addr().String() + "/backup?since=" + tc.since)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Trailer.Get(NextSinceTrailer) == "" {
			t.Fatalf("since=%q: %s, trailer %v", tc.since, resp.Status, resp.Trailer)
		}
		v := resp.Header.Get(EstimatedBytesHeader)
		if !tc.want {
			if v != "" {
				t.Errorf("since=%s: %s %q on an incremental", tc.since, EstimatedBytesHeader, v)
			}
			continue
		}
		est, err := strconv.ParseInt(v, 10, 64)
		t.Logf("since=%q: estimate %d, stream %d bytes", tc.since, est, n)
		if err != nil || est < n/2 || est > 2*n {
			t.Errorf("since=%q: %s %q for a %d-byte stream", tc.since, EstimatedBytesHeader, v, n)
		}
	}
}
