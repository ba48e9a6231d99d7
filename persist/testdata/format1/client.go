// Command client leaves a broker with every kind of record of store format 1, for the fixture
// that make.sh builds (see there), with v5 also MQTT 5 sessions, subscription options and
// message properties (format 2 on), and with held a shared subscription group's message held by
// the member that answered PUBREC (format 3 on). It speaks MQTT 3.1.1 and 5 in raw bytes, so that
// it does not depend on the codec of the tree it is run from.
//
//	go run ./persist/testdata/format1 127.0.0.1:PORT [v5 [held]]
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
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
	return connectLevel(addr, id, 4, nil)
}

// connectLevel connects with clean session 0 at protocol level 4, or at level 5 with the
// CONNECT properties props (a property block without its length).
func connectLevel(addr, id string, level byte, props []byte) *client {
	// The broker may still be starting: the first dial is retried for 10 s.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	check(err)
	cl := &client{c: c, r: bufio.NewReader(c)}
	body := append(str("MQTT"), "MQTT"...)
	body = append(body, level, 0x00, 0, 60) // clean session 0, keep-alive 60 s
	if level == 5 {
		body = append(append(body, byte(len(props))), props...)
	}
	body = append(append(body, str(id)...), id...)
	cl.send(packet(0x10, body))
	t, b := cl.read()
	if t != 0x20 || len(b) < 2 || b[1] != 0 || (level == 4) != (len(b) == 2) {
		fail("%s: CONNACK %x %x", id, t, b)
	}
	return cl
}

// prop is an MQTT 5 property: its identifier, then its value as encoded.
func prop(id byte, value ...byte) []byte { return append([]byte{id}, value...) }

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func strProp(id byte, s string) []byte { return prop(id, append(str(s), s...)...) }

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

// mqtt5 leaves an offline MQTT 5 session "v5" (Session Expiry Interval 3600 s) with a
// subscription with No Local, Retain As Published and identifier 7, and a message with properties
// and an expiry queued for it; and a retained message with properties and an expiry.
func mqtt5(addr string) {
	v := connectLevel(addr, "v5", 5, prop(0x11, u32(3600)...))
	body := binary.BigEndian.AppendUint16(nil, 1)
	body = append(body, 2, 0x0B, 7) // properties: Subscription Identifier 7
	body = append(append(append(body, str("fx/v5/#")...), "fx/v5/#"...), 0x0D)
	v.send(packet(0x82, body))
	if b := v.expect(0x90); len(b) != 4 || b[3] != 1 {
		fail("v5 SUBACK %x", b)
	}
	v.disconnect()

	p := connectLevel(addr, "pub5", 5, nil)
	// Expiry far ahead: the fixture's messages must not expire while it is in use.
	props := slices.Concat(prop(0x02, u32(0xFFFFFFF0)...), strProp(0x03, "text/plain"),
		prop(0x26, slices.Concat(str("k"), []byte("k"), str("v"), []byte("v"))...))
	for i, m := range []struct {
		topic   string
		first   byte
		payload string
	}{{"fx/v5/q", 0x32, "v5 queued"}, {"fx/v5/ret", 0x33, "v5 retained"}} {
		body := append(str(m.topic), m.topic...)
		body = binary.BigEndian.AppendUint16(body, uint16(20+i))
		body = append(append(body, byte(len(props))), props...)
		p.send(packet(m.first, append(body, m.payload...)))
		p.expect(0x40)
	}
	p.disconnect()
}

// held leaves the QoS 2 message fx/sh/1 of shared subscription group g (filter fx/sh/#) released
// and held by its member "member", offline: it answered PUBREC, got PUBREL and went away.
func held(addr string) {
	m := connect(addr, "member")
	m.subscribe(1, "$share/g/fx/sh/#", 2)
	p := connectLevel(addr, "pub3", 5, nil) // no Session Expiry Interval: no session left behind
	body := binary.BigEndian.AppendUint16(append(str("fx/sh/1"), "fx/sh/1"...), 30)
	p.send(packet(0x34, append(append(body, 0), "held by member"...))) // QoS 2, no properties
	p.expect(0x50)
	p.send(ack(0x62, 30))
	p.expect(0x70)
	p.disconnect()
	first, body := m.read()
	if first&0xF0 != 0x30 {
		fail("member: want PUBLISH, got %#x", first)
	}
	pid := binary.BigEndian.Uint16(body[2+int(binary.BigEndian.Uint16(body)):])
	m.send(ack(0x50, pid))
	m.expect(0x62)
	m.disconnect()
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
	parts := os.Args[min(2, len(os.Args)):]
	if len(os.Args) < 2 || !slices.Equal(parts, []string{"v5", "held"}[:len(parts)]) {
		fail("usage: client HOST:PORT [v5 [held]]")
	}
	addr := os.Args[1]
	if len(parts) >= 1 {
		mqtt5(addr)
	}
	if len(parts) == 2 {
		held(addr)
	}

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
