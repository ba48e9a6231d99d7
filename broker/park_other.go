//go:build !linux

package broker

// Parking needs epoll: elsewhere every connection keeps its reader goroutine.

func (c *conn) park() bool { return false }

func (c *conn) wakeParked() {}
