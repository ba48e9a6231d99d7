// Command client leaves a broker with every kind of record of store format 1, for the fixture
// that make.sh builds (see there). It speaks MQTT 3.1.1 in raw bytes, so that it does not depend
// on the codec of the tree it is run from.
//
//	go run ./persist/testdata/format1 127.0.0.1:PORT
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

type client struct {
	c net.Conn
	r *bufio.Reader
}

func str(s string) []byte { return binary.BigEndian.AppendUint16(nil, uint16(len(s))) }

func packet(first byte, body []byte) []byte {
	out := []byte{first}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func connect(addr, id string) *client {
	// The broker may still be starting: the first dial is retried for 10 s.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	check(err)
	cl := &client{c: c, r: bufio.NewReader(c)}
	body := append(str("MQTT"), "MQTT"...)
	body = append(body, 4, 0x00, 0, 60) // level 4, clean session 0, keep-alive 60 s
	body = append(append(body, str(id)...), id...)
	cl.send(packet(0x10, body))
	t, b := cl.read()
	if t != 0x20 || len(b) != 2 || b[1] != 0 {
		fail("%s: CONNACK %x %x", id, t, b)
	}
	return cl
}

func (cl *client) send(p []byte) {
	_, err := cl.c.Write(p)
	check(err)
}

// read returns the first byte of the next packet and its body.
func (cl *client) read() (byte, []byte) {
	check(cl.c.SetReadDeadline(time.Now().Add(5 * time.Second)))
	first, err := cl.r.ReadByte()
	check(err)
	n, mul := 0, 1
	for {
		b, err := cl.r.ReadByte()
		check(err)
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	_, err = io.ReadFull(cl.r, body)
	check(err)
	return first, body
}

func (cl *client) expect(first byte) []byte {
	t, b := cl.read()
	if t != first {
		fail("want packet %#x, got %#x %x", first, t, b)
	}
	return b
}

func (cl *client) subscribe(pid uint16, filter string, qos byte) {
	body := binary.BigEndian.AppendUint16(nil, pid)
	body = append(append(append(body, str(filter)...), filter...), qos)
	cl.send(packet(0x82, body))
	if b := cl.expect(0x90); len(b) != 3 || b[2] != qos {
		fail("SUBACK %x", b)
	}
}

func (cl *client) publish(topic, payload string, qos byte, retain bool, pid uint16) {
	first := byte(0x30) | qos<<1
	if retain {
		first |= 1
	}
	body := append(str(topic), topic...)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, pid)
	}
	cl.send(packet(first, append(body, payload...)))
}

func ack(first byte, pid uint16) []byte {
	return packet(first, binary.BigEndian.AppendUint16(nil, pid))
}

// disconnect ends the connection with DISCONNECT and waits for the broker to close it, so that the
// session is offline (and its in-flight state written) before the next step.
func (cl *client) disconnect() {
	cl.send([]byte{0xE0, 0})
	check(cl.c.SetReadDeadline(time.Now().Add(5 * time.Second)))
	if _, err := cl.r.ReadByte(); err != io.EOF {
		fail("want the broker to close after DISCONNECT, got %v", err)
	}
	cl.c.Close()
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: client HOST:PORT")
	}
	addr := os.Args[1]

	// Two offline subscribers: "fx/all" reaches both (a shared body), "fx/a/#" only a (inline).
	a := connect(addr, "sub-a")
	a.subscribe(1, "fx/a/#", 2)
	a.subscribe(2, "fx/all", 1)
	a.disconnect()
	b := connect(addr, "sub-b")
	b.subscribe(1, "fx/all", 2)
	b.subscribe(2, "fx/b", 0)
	b.disconnect()

	// One subscriber online, to leave messages in flight.
	f := connect(addr, "inflight")
	f.subscribe(1, "fx/if/#", 2)

	p := connect(addr, "pub")
	p.publish("fx/a/1", "inline qos1", 1, false, 1)
	p.expect(0x40)
	p.publish("fx/a/2", "inline qos2 retain", 2, true, 2)
	p.expect(0x50)
	p.send(ack(0x62, 2))
	p.expect(0x70)
	p.publish("fx/all", "shared by a and b", 1, false, 3)
	p.expect(0x40)
	p.publish("fx/ret/0", "retained qos0", 0, true, 0)
	p.publish("fx/ret/1", "retained qos1", 1, true, 4)
	p.expect(0x40)
	for i, q := range []byte{1, 2, 2} {
		p.publish(fmt.Sprintf("fx/if/%d", i), fmt.Sprintf("in flight %d", i), q, false, uint16(10+i))
		if q == 1 {
			p.expect(0x40)
			continue
		}
		p.expect(0x50)
		p.send(ack(0x62, uint16(10+i)))
		p.expect(0x70)
	}
	// An inbound QoS 2 id awaiting PUBREL: PUBREC received, no PUBREL sent.
	p.publish("fx/in2", "awaiting pubrel", 2, false, 77)
	p.expect(0x50)
	p.disconnect()

	// fx/if/0 (QoS 1) and fx/if/1 (QoS 2) stay sent; fx/if/2 gets PUBREC, so it is released.
	var pids [3]uint16
	for i := range pids {
		first, body := f.read()
		if first&0xF0 != 0x30 {
			fail("want PUBLISH, got %#x", first)
		}
		tl := int(binary.BigEndian.Uint16(body))
		pids[i] = binary.BigEndian.Uint16(body[2+tl:])
	}
	f.send(ack(0x50, pids[2]))
	f.expect(0x62)
	f.disconnect()
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "client: "+format+"\n", args...)
	os.Exit(1)
}
