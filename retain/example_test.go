package retain_test

import (
	"fmt"

	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/retain"
)

func ExampleStore() {
	s := retain.New()
	s.Set(&retain.Message{Message: message.Message{Topic: "site/7/temp", Payload: []byte("21.5"), QoS: 1}})
	s.Set(&retain.Message{Message: message.Message{Topic: "site/7/hum", Payload: []byte("40")}})
	s.Set(&retain.Message{Message: message.Message{Topic: "site/7/hum"}}) // empty payload: cleared

	for _, m := range s.Match("site/+/#", nil) {
		fmt.Println(m.Topic, string(m.Payload))
	}
	fmt.Println(s.Len())
	// Output:
	// site/7/temp 21.5
	// 1
}
