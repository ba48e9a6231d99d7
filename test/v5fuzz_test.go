package test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// A fuzz of a live level-5 session (issue 14): each input is the byte stream a client sends
// after its CONNECT (MQTT 5, Clean Start, accepted) to the real binary. Without -fuzz it runs
// over its seeds; for a long run:
//
//	go test -run '^$' -fuzz FuzzLiveV5Connection -fuzztime 10m -fuzzminimizetime 5s -timeout 20m ./test/
//
// One broker serves all the inputs of a process (each fuzzing worker has its own). A new input
// is minimised for up to a minute by default, during which the exec count stands still.

// liveV5Budget bounds what one input may take, waits for the broker included: less than the 10 s
// after which a fuzzing worker gives up on an input and dies without a word.
const liveV5Budget = 9 * time.Second

// FuzzLiveV5Connection_MQTT_4_13_1_1 checks, for every stream: the broker never crashes (nor
// logs a panic or a data race); it sends only packets a server may send, a DISCONNECT last and
// only with an error reason code, and answers no packet twice nor one that did not decode; a
// stream that does not decode (malformed, or a protocol error the codec sees) ends the
// connection, with DISCONNECT or a bare close [MQTT-4.13.1-1]; a stream of whole packets is
// either answered up to a PINGREQ sent after it or ends the connection; and afterwards another
// client still publishes and receives.
func FuzzLiveV5Connection_MQTT_4_13_1_1(f *testing.F) {
	for i, seed := range liveV5Seeds() {
		f.Add(byte(i), seed) // each CONNECT variant with some of the streams
	}
	// async: the stored paths all run, without an fdatasync per message. Persistent sessions
	// end 2 s after their client, so that they do not pile up.
	b := StartBroker(f, BrokerConfig{MQTT5: true, Durability: "async", Extra: "[limits]\nsession_expiry = \"2s\"\n" + opsAdminExtra("0s")})
	admin := "http://" + opsAdminAddr(f, b)
	watcher := mqtttest.Dial(f, b.Addr)
	watcher.SetLevel(codec.Level5)
	if ack := watcher.Connect(&codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level5, ClientID: "live5-watcher", CleanSession: true}); ack.Reason != codec.ReasonSuccess {
		f.Fatalf("watcher: CONNACK %v", ack.Reason)
	}
	watcher.Subscribe(1, 1, "live5-watch/#")
	logFrom := 0
	n := 0
	f.Fuzz(func(t *testing.T, variant byte, stream []byte) {
		n++
		start := time.Now()
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("input %d of this process (variant %d, stream %s), %v into it: %s\n%s", n, variant, abbreviate(stream),
				time.Since(start).Round(time.Millisecond), fmt.Sprintf(format, args...), liveV5Dump(t, b, admin))
		}
		// A panic ends the fuzzing worker, whose output go test discards: report it with its stack.
		defer func() {
			if r := recover(); r != nil {
				fail("panic: %v\n%s", r, debug.Stack())
			}
		}()
		deadline := start.Add(liveV5Budget)
		if err := liveV5Session(t, b.Addr, liveV5Connect(variant, n), stream, deadline); err != nil {
			fail("%v", err)
		}
		select {
		case <-b.exited:
			fail("the broker exited: %v", b.exitErr)
		default:
		}
		log := b.Log()
		for _, bad := range []string{"panic", "DATA RACE", "fatal error"} {
			if i := strings.Index(log[logFrom:], bad); i >= 0 {
				i += logFrom
				fail("the broker log has %q: %s", bad, log[max(0, i-200):min(len(log), i+800)])
			}
		}
		logFrom = len(log)
		if err := liveV5WatcherWorks(watcher.For(t), uint16(n%65535+1), deadline); err != nil {
			fail("watcher: %v", err)
		}
	})
}

// liveV5Dump writes the broker's log and the stacks of its goroutines, taken from its admin
// listener, to a new file for a failure message to name: a stall shows there as the goroutines
// that wait.
func liveV5Dump(t *testing.T, b *Broker, admin string) string {
	var stacks []byte
	select {
	case <-b.exited:
	default:
		resp := opsGet(t, admin+"/debug/pprof/goroutine?debug=2", opsToken)
		defer resp.Body.Close()
		stacks, _ = io.ReadAll(resp.Body)
	}
	file, err := os.CreateTemp("", "holdfast-live5-*.log")
	if err != nil {
		return fmt.Sprintf("no goroutine dump: %v", err)
	}
	defer file.Close()
	fmt.Fprintf(file, "%s\n\n%s", b.Log(), stacks)
	return "the broker's log and goroutines: " + file.Name()
}

// liveV5Connect is the CONNECT of fuzzed connection n, by the bits of variant: 1, one of eight
// sessions (bits 4-6) that outlive their connections, resumed with Clean Start 0 (what was
// queued for it is delivered), else a new clean session; 2, a will with a delay and properties;
// 4, no limits of the client's own (else small ones, so that streams can break them: aliases,
// flow control, packet size).
func liveV5Connect(variant byte, n int) *codec.Connect {
	cp := &codec.Connect{ProtocolName: "MQTT", ProtocolLevel: codec.Level5, ClientID: fmt.Sprintf("live5-%d", n), CleanSession: true, KeepAlive: 30,
		Props: &codec.Properties{TopicAliasMaximum: 2, ReceiveMaximum: 4, MaximumPacketSize: 4096}}
	if variant&1 != 0 {
		cp.ClientID, cp.CleanSession = fmt.Sprintf("live5-p%d", variant>>4&7), false
		cp.Props.SessionExpiry = 1
	}
	if variant&2 != 0 {
		cp.Will = &codec.Will{Topic: "live5/will/" + cp.ClientID, QoS: 1, Payload: []byte("gone"),
			Props: &codec.Properties{WillDelay: 1, ContentType: "text/plain", User: []codec.UserProperty{{Name: "id", Value: cp.ClientID}}}}
	}
	if variant&4 != 0 {
		cp.Props = &codec.Properties{SessionExpiry: cp.Props.SessionExpiry}
	}
	return cp
}

// liveV5Session connects a level-5 client with cp, sends stream and judges what the broker does.
func liveV5Session(t *testing.T, addr string, cp *codec.Connect, stream []byte, deadline time.Time) error {
	c, err := mqtttest.TryDial(t, "", addr)
	if err != nil {
		return err
	}
	defer c.Conn.Close()
	c.SetLevel(codec.Level5)
	if err := c.Write(cp); err != nil {
		return err
	}
	p, err := c.TryRead(time.Until(deadline))
	if ack, ok := p.(*codec.Connack); err != nil || !ok || ack.Reason != codec.ReasonSuccess {
		return fmt.Errorf("CONNECT answered with %v, %v", p, err)
	}
	c.WriteRaw(stream) // the broker may close before it has read it all

	sent, decodeErr := decodeClientStream(stream)
	answers := answersTo(sent)
	var got []codec.Packet
	switch {
	case decodeErr == nil:
		// Whole packets: the connection either goes on, and answers a PINGREQ sent after them,
		// or ends.
		c.WriteRaw((&codec.Pingreq{}).Append(nil))
		answers[codec.TypePingresp]++
		if got, err = readToEnd(c, deadline, answers[codec.TypePingresp]); err != nil {
			return fmt.Errorf("after %d whole packets and a PINGREQ: %v (got %s)", len(sent), err, packetList(got))
		}
	case errors.Is(decodeErr, io.ErrUnexpectedEOF):
		// A packet cut short: the broker waits for the rest, until the client closes its side.
		c.Conn.(*net.TCPConn).CloseWrite()
		if got, err = readToEnd(c, deadline, 0); err != nil {
			return fmt.Errorf("a packet cut short, then the end of the stream: %v (got %s)", err, packetList(got))
		}
	default:
		// Undecodable after whole packets: the broker must end the connection [MQTT-4.13.1-1].
		if got, err = readToEnd(c, deadline, 0); err != nil {
			return fmt.Errorf("packet %d does not decode (%v), want the connection closed: %v (got %s)", len(sent)+1, decodeErr, err, packetList(got))
		}
	}
	return serverSent(got, answers)
}

// readToEnd reads what the broker sends until it closes the connection or, with pings above 0,
// until the pings-th PINGRESP. After a DISCONNECT it closes its own side, as a client does [MQTT-3.14.4-1],
// so that the broker, which reads on for a while to let the DISCONNECT arrive, closes at once.
func readToEnd(c *mqtttest.Client, deadline time.Time, pings int) ([]codec.Packet, error) {
	return c.Closed(time.Until(deadline), func(p codec.Packet) bool {
		switch p.(type) {
		case *codec.Pingresp:
			pings--
			return pings == 0
		case *codec.Disconnect:
			c.Conn.(*net.TCPConn).CloseWrite()
		}
		return false
	})
}

// decodeClientStream reads stream as the broker does after a level-5 CONNECT, and returns its
// whole packets and why it ends: nil at a packet boundary, io.ErrUnexpectedEOF inside a packet,
// or the codec's error for a packet that does not decode.
func decodeClientStream(stream []byte) ([]codec.Packet, error) {
	r := codec.NewReader(bytes.NewReader(stream), codec.MaxRemainingLength)
	r.AcceptLevel5()
	r.SetLevel(codec.Level5)
	var ps []codec.Packet
	for {
		p, err := r.ReadPacket()
		if err == io.EOF {
			return ps, nil
		}
		if err != nil {
			return ps, err
		}
		ps = append(ps, p)
	}
}

// answersTo counts the answers a server may give to the packets a client sent, by type: one
// PUBACK per QoS 1 PUBLISH, one PUBREC per QoS 2 PUBLISH, one PUBCOMP per PUBREL, one SUBACK per
// SUBSCRIBE, one UNSUBACK per UNSUBSCRIBE, one PINGRESP per PINGREQ.
func answersTo(sent []codec.Packet) map[codec.Type]int {
	n := map[codec.Type]int{}
	for _, p := range sent {
		switch p := p.(type) {
		case *codec.Publish:
			switch p.QoS {
			case 1:
				n[codec.TypePuback]++
			case 2:
				n[codec.TypePubrec]++
			}
		case *codec.Pubrel:
			n[codec.TypePubcomp]++
		case *codec.Subscribe:
			n[codec.TypeSuback]++
		case *codec.Unsubscribe:
			n[codec.TypeUnsuback]++
		case *codec.Pingreq:
			n[codec.TypePingresp]++
		}
	}
	return n
}

// serverSent checks the packets a broker sent to a level-5 client after CONNACK: only packets a
// server sends; no more answers of a type than answers allows, so none to a packet that did not
// decode; a DISCONNECT, if any, last and with a reason code for an error [MQTT-4.13.2-1].
func serverSent(got []codec.Packet, answers map[codec.Type]int) error {
	for i, p := range got {
		switch p := p.(type) {
		case *codec.Publish, *codec.Pubrel:
		case *codec.Puback, *codec.Pubrec, *codec.Pubcomp, *codec.Suback, *codec.Unsuback, *codec.Pingresp:
			if answers[p.Type()]--; answers[p.Type()] < 0 {
				return fmt.Errorf("got %s: more %s packets than the client's whole packets ask for", packetList(got), p.Type())
			}
		case *codec.Disconnect:
			if i != len(got)-1 || p.Reason < codec.ReasonUnspecifiedError || !p.Reason.ValidFor(codec.TypeDisconnect) {
				return fmt.Errorf("got %s: DISCONNECT with an error reason, and only last [MQTT-4.13.2-1]", packetList(got))
			}
		default:
			return fmt.Errorf("got %s: a server does not send %s after CONNACK", packetList(got), p.Type())
		}
	}
	return nil
}

// liveV5WatcherWorks has the long-lived watcher publish to itself at QoS 1: it must get the PUBACK
// and the message, whatever the fuzzed connections did.
func liveV5WatcherWorks(w *mqtttest.Client, pid uint16, deadline time.Time) error {
	payload := fmt.Appendf(nil, "still here %d", pid)
	if err := w.Write(&codec.Publish{Topic: "live5-watch/probe", QoS: 1, PacketID: pid, Payload: payload}); err != nil {
		return err
	}
	acked, received := false, false
	for !acked || !received {
		p, err := w.TryRead(time.Until(deadline))
		if err != nil {
			return fmt.Errorf("%v (PUBACK %v, message %v)", err, acked, received)
		}
		switch p := p.(type) {
		case *codec.Puback:
			acked = acked || p.PacketID == pid
		case *codec.Publish:
			received = received || bytes.Equal(p.Payload, payload)
			if p.QoS == 1 {
				if err := w.Write(&codec.Puback{PacketID: p.PacketID}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// liveV5Seeds are client streams of every packet a level-5 client sends after CONNECT, with
// properties and options, alone and together, and a few that break the rules.
func liveV5Seeds() [][]byte {
	enc := func(ps ...codec.Packet) []byte {
		var b []byte
		for _, p := range ps {
			b = p.AppendLevel(b, codec.Level5)
		}
		return b
	}
	user := []codec.UserProperty{{Name: "k", Value: "v"}, {Name: "k", Value: "w"}}
	full := &codec.Properties{PayloadFormat: 1, MessageExpiry: 60, ContentType: "text/plain", ResponseTopic: "live5/resp",
		CorrelationData: []byte{1, 2}, User: user}
	valid := [][]byte{
		enc(&codec.Publish{Topic: "live5/a", Payload: []byte("q0"), Props: full}),
		enc(&codec.Publish{Topic: "live5/b", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("q1"), Props: &codec.Properties{TopicAlias: 1, User: user}},
			&codec.Publish{QoS: 1, PacketID: 2, Payload: []byte("by alias"), Props: &codec.Properties{TopicAlias: 1}}),
		enc(&codec.Publish{Topic: "live5/c", QoS: 2, PacketID: 3, Payload: []byte("q2"), Props: full},
			&codec.Pubrel{PacketID: 3, Props: &codec.Properties{ReasonString: "done"}}),
		enc(&codec.Subscribe{PacketID: 4, Props: &codec.Properties{SubscriptionIDs: []uint32{7}, User: user}, Subscriptions: []codec.Subscription{
			{Filter: "live5/#", QoS: 2, NoLocal: true}, {Filter: "live5/+", QoS: 1, RetainAsPublished: true, RetainHandling: 1},
			{Filter: "live5/c", RetainHandling: 2}}},
			&codec.Publish{Topic: "live5/d", QoS: 1, PacketID: 5, Payload: []byte("to myself")}),
		enc(&codec.Subscribe{PacketID: 6, Subscriptions: []codec.Subscription{{Filter: "live5/b", QoS: 1}}},
			&codec.Unsubscribe{PacketID: 7, Filters: []string{"live5/b", "live5/none"}, Props: &codec.Properties{User: user}}),
		enc(&codec.Puback{PacketID: 9, Reason: codec.ReasonNoMatchingSubscribers, Props: &codec.Properties{ReasonString: "?"}},
			&codec.Pubrec{PacketID: 10, Reason: codec.ReasonUnspecifiedError},
			&codec.Pubcomp{PacketID: 11, Reason: codec.ReasonPacketIdentifierNotFound}),
		enc(&codec.Pingreq{}, &codec.Disconnect{Reason: codec.ReasonNormalDisconnection, Props: &codec.Properties{ReasonString: "bye", User: user}}),
		enc(&codec.Disconnect{Reason: codec.ReasonDisconnectWithWill}),
		enc(&codec.Auth{Reason: codec.ReasonContinueAuthentication, Props: &codec.Properties{AuthMethod: "SCRAM-SHA-256", AuthData: []byte("n,,n=u,r=x")}}),
		enc(&codec.Auth{Reason: codec.ReasonReAuthenticate, Props: &codec.Properties{AuthMethod: "unknown"}}),
	}
	var all []byte
	for _, s := range valid {
		if s[0]>>4 != byte(codec.TypeDisconnect) && s[0]>>4 != byte(codec.TypeAuth) {
			all = append(all, s...)
		}
	}
	seeds := append(valid, all,
		all[:len(all)/2], // cut inside a packet
		// Broken: an unknown property, a property twice, Topic Alias 0 and one above the
		// client's own maximum, reserved subscription option bits, a PUBLISH without topic
		// nor alias.
		[]byte{0x30, 0x05, 0x00, 0x01, 't', 0x02, 0x99},
		[]byte{0x30, 0x09, 0x00, 0x01, 't', 0x04, 0x01, 0x01, 0x01, 0x01, 'p'},
		[]byte{0x30, 0x07, 0x00, 0x01, 't', 0x03, 0x23, 0x00, 0x00},
		[]byte{0x30, 0x07, 0x00, 0x01, 't', 0x03, 0x23, 0xff, 0xff},
		[]byte{0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 't', 0xc1},
		[]byte{0x30, 0x04, 0x00, 0x00, 0x00, 'p'},
	)
	return seeds
}
