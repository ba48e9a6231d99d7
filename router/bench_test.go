package router

import (
	"fmt"
	"runtime"
	"testing"
)

// realisticFilters returns n filters shaped like a fleet of 1000 sites with
// about 100 devices each: mostly exact per-device topics, one '+' and one '#'
// filter per site, one cross-site '+' filter per device, some per-device
// '+' filters, and two fleet-wide filters.
func realisticFilters(n int) []string {
	filters := make([]string, 0, n)
	add := func(format string, args ...any) {
		if len(filters) < n {
			filters = append(filters, fmt.Sprintf(format, args...))
		}
	}
	add("+/+/device/7/#")
	add("$SYS/#")
	for site := range 1000 {
		add("site/%d/device/+/temp", site)
		add("site/%d/#", site)
	}
	for dev := range 100 {
		add("site/+/device/%d/temp", dev)
	}
	for i := 0; len(filters) < n; i++ {
		site, dev := i%1000, i/1000
		if i%30 == 0 {
			add("site/%d/device/%d/+", site, dev)
		} else {
			add("site/%d/device/%d/temp", site, dev)
		}
	}
	return filters
}

// fleetTrie subscribes realisticFilters(n), three filters per client, so
// some clients hold overlapping subscriptions.
func fleetTrie(n int) *Trie[string] {
	t := New[string]()
	for i, f := range realisticFilters(n) {
		t.Subscribe(fmt.Sprintf("client-%d", i%(n/3+1)), f, byte(i%3))
	}
	return t
}

func BenchmarkMatch100kFilters(b *testing.B) {
	t := fleetTrie(100_000)
	const topic = "site/42/device/7/temp"
	dst := t.Match(topic, nil)
	b.ReportAllocs()
	for b.Loop() {
		dst = t.Match(topic, dst[:0])
	}
	b.ReportMetric(float64(len(dst)), "matches")
}

func BenchmarkMatchParallel(b *testing.B) {
	t := fleetTrie(100_000)
	topics := make([]string, 1024)
	for i := range topics {
		topics[i] = fmt.Sprintf("site/%d/device/%d/temp", i*7%1000, i%100)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var dst []Subscriber[string]
		i := 0
		for pb.Next() {
			dst = t.Match(topics[i%len(topics)], dst[:0])
			i++
		}
	})
}

func BenchmarkMatchNoSubscribers(b *testing.B) {
	t := fleetTrie(100_000)
	var dst []Subscriber[string]
	b.ReportAllocs()
	for b.Loop() {
		dst = t.Match("plant/3/line/9/speed", dst[:0])
	}
}

// dedupShapes are overlapping-subscription workloads: how many filters
// match the topic and how many clients each has, half of them shared with
// the other filters.
var dedupShapes = []struct{ filters, clients int }{
	{2, 1}, {2, 4}, {4, 4}, {3, 16}, {4, 40}, {2, 1000}, {3, 10000}, {8, 100},
}

func dedupTrie(filters, clients int) *Trie[string] {
	patterns := []string{"fan/out/now", "fan/+/now", "fan/#", "#", "+/out/#", "+/+/now", "fan/out/+", "fan/out/#"}
	t := New[string]()
	for f := range filters {
		for c := range clients {
			id := fmt.Sprintf("client-%d", c)
			if c%2 == 1 {
				id = fmt.Sprintf("client-%d-%d", f, c)
			}
			t.Subscribe(id, patterns[f], byte(c%3))
		}
	}
	return t
}

// BenchmarkMatchDedup measures Match on overlapping subscriptions, with
// whichever deduplication it picks.
func BenchmarkMatchDedup(b *testing.B) {
	for _, shape := range dedupShapes {
		b.Run(fmt.Sprintf("filters=%d/clients=%d", shape.filters, shape.clients), func(b *testing.B) {
			t := dedupTrie(shape.filters, shape.clients)
			dst := t.Match("fan/out/now", nil)
			b.ReportAllocs()
			for b.Loop() {
				dst = t.Match("fan/out/now", dst[:0])
			}
			b.ReportMetric(float64(len(dst)), "matches")
		})
	}
}

// BenchmarkDedupStrategies runs both deduplications on the same shapes,
// to check the cost model in probingIsCheaper against.
func BenchmarkDedupStrategies(b *testing.B) {
	for _, shape := range dedupShapes {
		t := dedupTrie(shape.filters, shape.clients)
		nodes := t.root.collect("fan/out/now", 0, true, nil)
		name := fmt.Sprintf("filters=%d/clients=%d", shape.filters, shape.clients)
		b.Logf("%s: probingIsCheaper=%v", name, probingIsCheaper(nodes))
		var dst []Subscriber[string]
		b.Run(name+"/probe", func(b *testing.B) {
			for b.Loop() {
				dst = appendProbed(dst[:0], nodes)
			}
		})
		b.Run(name+"/map", func(b *testing.B) {
			for b.Loop() {
				dst = t.appendMapped(dst[:0], nodes)
			}
		})
	}
}

func BenchmarkSubscribe(b *testing.B) {
	filters := realisticFilters(100_000)
	t := New[string]()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(filters) {
			b.StopTimer()
			t, i = New[string](), 0
			b.StartTimer()
		}
		t.Subscribe("client", filters[i], 1)
		i++
	}
}

func BenchmarkSubscribeUnsubscribe(b *testing.B) {
	t := fleetTrie(100_000)
	b.ReportAllocs()
	for b.Loop() {
		t.Subscribe("churn", "site/42/device/999/temp", 1)
		t.Unsubscribe("churn", "site/42/device/999/temp")
	}
}

// BenchmarkMemory100kFilters reports the heap the trie of
// BenchmarkMatch100kFilters takes, per subscription (client ids included).
func BenchmarkMemory100kFilters(b *testing.B) {
	var t *Trie[string]
	var before, after runtime.MemStats
	for b.Loop() {
		t = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		t = fleetTrie(100_000)
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(t.Count()), "heapB/sub")
}
