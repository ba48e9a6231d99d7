package listener

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// ErrTextFrame is returned by Read on a WebSocket connection whose client sent a text message;
// the connection has then been closed with close code 1003 (unsupported data).
var ErrTextFrame = errors.New("websocket: text message received; MQTT over WebSocket uses binary messages")

// wsConn adapts an upgraded WebSocket connection to a net.Conn carrying a plain MQTT byte
// stream: Read returns the bytes of successive binary messages regardless of how packets are
// split across them, Write sends one binary message per call. It supports one concurrent reader
// and one concurrent writer, as gorilla does; Close and the Set*Deadline methods may be called
// from any goroutine.
type wsConn struct {
	ws          *websocket.Conn
	remote      net.Addr
	username    string
	hasUsername bool
	onClose     func(*wsConn) // the listener forgets the connection

	// Reader state, touched only by the reading goroutine.
	r    io.Reader // the current message, nil between messages
	rerr error     // sticky: gorilla's read side is unusable after any error

	closed        atomic.Bool               // Close has begun
	writeDeadline atomic.Pointer[time.Time] // applied by Write to every message

	closeOnce sync.Once
	closeErr  error
}

func (c *wsConn) Read(p []byte) (int, error) {
	if c.rerr != nil {
		return 0, c.rerr
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.r == nil {
			// NextReader also processes control frames: pings are answered, a close is echoed.
			typ, r, err := c.ws.NextReader()
			if err != nil {
				c.rerr = c.readError(err)
				return 0, c.rerr
			}
			if typ != websocket.BinaryMessage {
				c.rerr = ErrTextFrame
				c.closeWith(websocket.CloseUnsupportedData, "MQTT over WebSocket uses binary messages")
				return 0, c.rerr
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil // end of this message; the stream goes on with the next one
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			c.rerr = c.readError(err)
			return n, c.rerr
		}
		return n, nil
	}
}

// readError maps gorilla's errors onto those of a net.Conn: after a local Close it is
// net.ErrClosed, a close from the peer is the end of the stream, a deadline is
// os.ErrDeadlineExceeded.
func (c *wsConn) readError(err error) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return io.EOF
	}
	return netError(err)
}

func netError(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, websocket.ErrCloseSent) {
		return net.ErrClosed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return os.ErrDeadlineExceeded
	}
	return err
}

func (c *wsConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var dl time.Time
	if t := c.writeDeadline.Load(); t != nil {
		dl = *t
	}
	_ = c.ws.SetWriteDeadline(dl) // gorilla applies it to every frame of the message
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, netError(err)
	}
	return len(p), nil
}

// Close sends a normal-closure close frame (best effort, skipped when a Write is stuck) and
// closes the connection.
func (c *wsConn) Close() error {
	return c.closeWith(websocket.CloseNormalClosure, "")
}

func (c *wsConn) closeWith(code int, text string) error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		// gorilla lets a control frame be written while another write is under way; a write
		// stuck on a client that does not read delays this by closeFrameTimeout at most.
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(closeFrameTimeout))
		c.closeErr = c.ws.Close()
		if c.onClose != nil {
			c.onClose(c)
		}
	})
	return c.closeErr
}

func (c *wsConn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr { return c.remote }

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline bounds Read. After a Read has timed out the connection cannot be read again
// (gorilla's read state is lost mid-frame): the broker closes it anyway.
func (c *wsConn) SetReadDeadline(t time.Time) error {
	return c.ws.NetConn().SetReadDeadline(t)
}

// SetWriteDeadline bounds Write. It is stored for the next Write and also applied to the socket
// at once, so that a Write already blocked in another goroutine is released.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.Store(&t)
	return c.ws.NetConn().SetWriteDeadline(t)
}
