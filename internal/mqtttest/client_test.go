package mqtttest

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/holdfast/holdfast/codec"
)

// peer plays the broker on the other end of a pipe: it runs script and reports its first error.
func peer(t *testing.T, script func(w func(codec.Packet), r func() codec.Packet)) (*Client, chan error) {
	t.Helper()
	cc, sc := net.Pipe()
	done := make(chan error, 1)
	go func() {
		defer sc.Close()
		rd := codec.NewReader(sc, 0)
		var err error
		w := func(p codec.Packet) {
			if err == nil {
				_, err = sc.Write(p.Append(nil))
			}
		}
		r := func() codec.Packet {
			if err != nil {
				return nil
			}
			var p codec.Packet
			p, err = rd.ReadPacket()
			return p
		}
		script(w, r)
		done <- err
	}()
	return New(t, cc), done
}

// Await answers the deliveries it reads past and keeps the PUBLISH packets for NextPublish.
func TestAwaitAcknowledgesAndStashes(t *testing.T) {
	var answers []codec.Packet
	c, done := peer(t, func(w func(codec.Packet), r func() codec.Packet) {
		w(&codec.Publish{QoS: 1, PacketID: 7, Topic: "a", Payload: []byte("1")})
		answers = append(answers, r())
		w(&codec.Publish{QoS: 2, PacketID: 8, Topic: "b", Payload: []byte("2")})
		answers = append(answers, r())
		w(&codec.Pubrel{PacketID: 8})
		answers = append(answers, r())
		w(&codec.Suback{PacketID: 1, ReturnCodes: []byte{1}})
		w(&codec.Publish{Topic: "c", Payload: []byte("3")})
	})
	if ack := c.Await(codec.TypeSuback).(*codec.Suback); ack.PacketID != 1 {
		t.Fatalf("SUBACK %d, want 1", ack.PacketID)
	}
	if n := len(c.Stashed()); n != 2 {
		t.Errorf("%d PUBLISH packets kept, want 2", n)
	}
	for _, topic := range []string{"a", "b"} {
		if p := c.NextPublish(); p.Topic != topic {
			t.Errorf("NextPublish: %s, want topic %s", String(p), topic)
		}
	}
	if len(c.Stashed()) != 0 {
		t.Errorf("stash not emptied: %v", c.Stashed())
	}
	// The stash is empty: the QoS 0 message comes from the wire.
	if p := c.For(t).NextPublish(); p.Topic != "c" {
		t.Errorf("NextPublish: %s, want topic c", String(p))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []codec.Packet{&codec.Puback{PacketID: 7}, &codec.Pubrec{PacketID: 8}, &codec.Pubcomp{PacketID: 8}}
	if !reflect.DeepEqual(answers, want) {
		t.Errorf("answers %v, want %v", answers, want)
	}
}

// Closed tells a close by the peer from a connection still open at the deadline, and stops early
// on request.
func TestClosed(t *testing.T) {
	c, done := peer(t, func(w func(codec.Packet), _ func() codec.Packet) { w(&codec.Pingresp{}) })
	got, err := c.Closed(Timeout, nil)
	if err != nil || len(got) != 1 || got[0].Type() != codec.TypePingresp {
		t.Errorf("Closed after PINGRESP and a close: %v, %v", got, err)
	}
	<-done

	block := make(chan struct{})
	defer close(block)
	c, _ = peer(t, func(w func(codec.Packet), _ func() codec.Packet) {
		w(&codec.Pingresp{})
		w(&codec.Pingresp{})
		<-block
	})
	got, err = c.Closed(Timeout, func(p codec.Packet) bool { return p.Type() == codec.TypePingresp })
	if err != nil || len(got) != 1 {
		t.Errorf("Closed stopping at the first PINGRESP: %v, %v", got, err)
	}
	got, err = c.Closed(50*time.Millisecond, nil)
	if !errors.Is(err, ErrStillOpen) || len(got) != 1 {
		t.Errorf("Closed on an open connection: %v, %v; want the second PINGRESP and ErrStillOpen", got, err)
	}
}

// WebSocket carries packets split across messages and several packets in one message, and ends
// with the close frame's error.
func TestWebSocket(t *testing.T) {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		b := (&codec.Publish{Topic: "t", Payload: []byte("split")}).Append(nil)
		b = (&codec.Pingresp{}).Append(b)
		ws.WriteMessage(websocket.BinaryMessage, b[:3])
		ws.WriteMessage(websocket.BinaryMessage, b[3:])
		if _, m, err := ws.ReadMessage(); err == nil { // echo one message back
			ws.WriteMessage(websocket.BinaryMessage, m)
		}
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), time.Now().Add(Timeout))
	}))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := New(t, WebSocket(ws))
	if p := Expect[*codec.Publish](c); p.Topic != "t" || string(p.Payload) != "split" {
		t.Errorf("got %s", String(p))
	}
	Expect[*codec.Pingresp](c)
	c.Send(&codec.Pingreq{}, &codec.Pingreq{})
	Expect[*codec.Pingreq](c)
	Expect[*codec.Pingreq](c)
	if err := c.ExpectEnd("after the close frame"); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("ended with %v, want close 1001", err)
	}
}
