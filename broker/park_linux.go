package broker

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Parking: the reader goroutine of a quiet TCP connection ends instead of waiting on the socket
// (a goroutine costs 2 KB of stack and 480 bytes besides, the larger part of an idle
// connection's memory). One poller goroutine waits on all parked sockets (epoll, level-triggered
// and one-shot) and starts a new reader when a socket becomes readable or hangs up, when the
// keep-alive runs out, or when the connection is closed. The poller runs only while something
// is parked.
type parker struct {
	mu    sync.Mutex
	epfd  int // -1: no poller runs
	wake  int // eventfd that ends the poller's wait once nothing is parked
	conns map[uint64]*conn
	next  uint64 // the last parking id given; 0 is the eventfd's
}

var parking = parker{epfd: -1, wake: -1}

// park registers c's socket with the poller and arms its keep-alive timer. False when it cannot
// (the connection is closing, or epoll failed): the reader then keeps reading.
func (p *parker) park(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-c.closing:
		return false // close found nothing parked to wake
	default:
	}
	if p.epfd < 0 && !p.startLocked() {
		return false
	}
	p.next++
	id := p.next
	var err error
	cerr := c.sock.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(id), Pad: int32(id >> 32)}
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if cerr != nil || err != nil {
		p.stopIfIdleLocked()
		return false
	}
	p.conns[id] = c
	c.parkID = id
	if c.keepAlive > 0 {
		// The socket's read deadline passes unnoticed with nobody reading.
		d := time.Until(c.deadlineSet.Add(c.keepAlive * 3 / 2))
		if c.keepAliveTimer == nil {
			c.keepAliveTimer = time.AfterFunc(d, c.keepAliveRanOut)
		} else {
			c.keepAliveTimer.Reset(d)
		}
	}
	return true
}

// unpark takes c off the poller if it is parked; true means the caller starts its reader.
func (p *parker) unpark(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.parkID == 0 {
		return false
	}
	p.unparkLocked(c)
	p.stopIfIdleLocked()
	return true
}

func (p *parker) unparkLocked(c *conn) {
	delete(p.conns, c.parkID)
	c.parkID = 0
	// Failing only when the socket is closed, which took it out of the epoll set already.
	c.sock.Control(func(fd uintptr) { unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	if c.keepAliveTimer != nil {
		c.keepAliveTimer.Stop()
	}
}

// startLocked creates the epoll set and starts the poller.
func (p *parker) startLocked() bool {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err == nil {
		err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN})
	}
	if err != nil {
		unix.Close(epfd)
		if wake >= 0 {
			unix.Close(wake)
		}
		return false
	}
	p.epfd, p.wake = epfd, wake
	if p.conns == nil {
		p.conns = make(map[uint64]*conn)
	}
	go p.poll(epfd, wake)
	return true
}

// stopIfIdleLocked wakes the poller to end once nothing is parked.
func (p *parker) stopIfIdleLocked() {
	if len(p.conns) == 0 && p.epfd >= 0 {
		unix.Write(p.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
}

// poll is the poller: it starts the reader of every parked connection whose socket has something
// for it, and ends when nothing is parked.
func (p *parker) poll(epfd, wake int) {
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(epfd, events, -1)
		if err != nil && err != unix.EINTR {
			panic("broker: epoll_wait on the parked connections: " + err.Error()) // a bad epoll descriptor: a bug
		}
		p.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				var b [8]byte
				unix.Read(wake, b[:])
				continue
			}
			if c := p.conns[id]; c != nil {
				p.unparkLocked(c)
				go c.read()
			}
		}
		if len(p.conns) == 0 {
			p.epfd, p.wake = -1, -1
			unix.Close(epfd)
			unix.Close(wake)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// keepAliveRanOut starts the reader of a parked connection whose client sent nothing for the
// keep-alive and a half: it finds the socket's read deadline passed.
func (c *conn) keepAliveRanOut() {
	if parking.unpark(c) {
		go c.read()
	}
}

// park ends the reader goroutine of a quiet connection, giving back its read buffer; false when
// the reader must keep reading.
func (c *conn) park() bool {
	if !c.mayPark || c.sock == nil {
		return false
	}
	c.r.Release()
	return parking.park(c)
}

// wakeParked starts the reader of a closed connection that is parked, for its teardown.
func (c *conn) wakeParked() {
	if parking.unpark(c) {
		go c.read()
	}
}
