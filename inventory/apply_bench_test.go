package inventory

import (
	"fmt"
	"net/url"
	"testing"
	"time"
)

// BenchmarkApply100k: one page of the console's sessions table over 100,000 sessions, as the
// API answers every click (rows are built anew each time, as the broker does).
func BenchmarkApply100k(b *testing.B) {
	base := make([]Session, 100000)
	now := time.Now()
	for i := range base {
		seen := now.Add(-time.Duration(i) * time.Second)
		base[i] = Session{ClientID: fmt.Sprintf("sensor-%06d", (i*7919)%100000), Kind: KindClient, Protocol: "3.1.1",
			Persistent: true, Subscriptions: 1, Queued: i % 97, QueuedBytes: int64(i%97) * 64, LastSeen: &seen}
	}
	for _, params := range []string{"", "sort=queued&order=desc", "client=12&sort=last_seen"} {
		v, _ := url.ParseQuery(params)
		q, err := ParseQuery(v)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("q="+params, func(b *testing.B) {
			rows := make([]Session, len(base))
			for b.Loop() {
				copy(rows, base)
				if p := q.Apply(rows); len(p.Sessions) == 0 {
					b.Fatal("empty page")
				}
			}
		})
	}
}
