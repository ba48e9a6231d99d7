package broker

import (
	"bufio"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/config"
)

// benchClient is a minimal client for benchmarks: buffered writes, one decoder.
type benchClient struct {
	nc net.Conn
	w  *bufio.Writer
	r  *codec.Reader
}

func benchDial(b *testing.B, addr, id string, clean bool) *benchClient {
	b.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	c := &benchClient{nc: nc, w: bufio.NewWriterSize(nc, 64<<10), r: codec.NewReader(bufio.NewReaderSize(nc, 64<<10), 0)}
	c.w.Write((&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: id, CleanSession: clean}).Append(nil))
	c.w.Flush()
	if _, err := c.r.ReadPacket(); err != nil {
		b.Fatal(err)
	}
	return c
}

// benchFanIn measures messages delivered per second from pubs publishers to one subscriber.
func benchFanIn(b *testing.B, qos byte, persistentSub bool, mutate func(*config.Config)) {
	tb := startBroker(&testing.T{}, mutate)
	defer tb.stop()
	sub := benchDial(b, tb.addr, "sub", !persistentSub)
	sub.w.Write((&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: "bench/#", QoS: qos}}}).Append(nil))
	sub.w.Flush()
	sub.r.ReadPacket()

	const pubs, window = 4, 16
	payload := make([]byte, 64)
	n := b.N
	b.SetBytes(64)
	b.ResetTimer()
	var wg sync.WaitGroup
	for p := 0; p < pubs; p++ {
		pc := benchDial(b, tb.addr, fmt.Sprint("pub", p), true)
		count := n / pubs
		if p == 0 {
			count += n % pubs
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.nc.Close()
			credit := make(chan struct{}, window)
			if qos > 0 {
				go func() {
					for i := 0; i < count; i++ {
						if _, err := pc.r.ReadPacket(); err != nil {
							return
						}
						<-credit
					}
				}()
			}
			buf := make([]byte, 0, 128)
			topic := fmt.Sprint("bench/", p)
			for i := 0; i < count; i++ {
				if qos > 0 {
					if len(credit) == window {
						pc.w.Flush()
					}
					credit <- struct{}{}
				}
				buf = (&codec.Publish{Topic: topic, Payload: payload, QoS: qos, PacketID: uint16(i%60000 + 1)}).Append(buf[:0])
				pc.w.Write(buf)
			}
			pc.w.Flush()
			for qos > 0 && len(credit) > 0 {
				// wait for the last acknowledgements
				runtimeGosched()
			}
		}()
	}
	ack := make([]byte, 0, 8)
	for i := 0; i < n; i++ {
		p, err := sub.r.ReadPacket()
		if err != nil {
			b.Fatal(err)
		}
		if pp, ok := p.(*codec.Publish); ok && pp.QoS == 1 {
			ack = (&codec.Puback{PacketID: pp.PacketID}).Append(ack[:0])
			sub.w.Write(ack)
			if sub.r.Buffered() == 0 {
				sub.w.Flush()
			}
		}
	}
	b.StopTimer()
	sub.w.Flush()
	wg.Wait()
	sub.nc.Close()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkFanInQoS0(b *testing.B) { benchFanIn(b, 0, false, nil) }
func BenchmarkFanInQoS1(b *testing.B) { benchFanIn(b, 1, false, nil) }
func BenchmarkFanInQoS1PersistentSub(b *testing.B) {
	benchFanIn(b, 1, true, nil)
}

func runtimeGosched() { runtime.Gosched() }
