package router_test

import (
	"fmt"

	"github.com/holdfast/holdfast/router"
)

func ExampleTrie_Match() {
	t := router.New[string]()
	t.Subscribe("dashboard", "site/+/temp", 0)
	t.Subscribe("dashboard", "site/#", 1) // overlaps: delivered once, at QoS 1
	t.Subscribe("logger", "#", 0)
	t.Subscribe("ops", "$SYS/#", 0)

	// One dst per publishing goroutine, reused for every PUBLISH.
	var dst []router.Subscriber[string]
	for _, topic := range []string{"site/7/temp", "$SYS/uptime"} {
		dst = t.Match(topic, dst[:0])
		fmt.Println(topic, len(dst))
	}
	// Output:
	// site/7/temp 2
	// $SYS/uptime 1
}
