package loop

import "golang.org/x/sys/unix"

// A publisher whose messages go to a queue that is filling is held: its
// frames are not handled until the queue drains (session.Client.StillHeld).
// Its socket is not read either (gnet's PauseRead, a patch of ours:
// third_party/gnet/PATCHES.md), so what it sends meanwhile waits in the
// kernel's receive buffer, the TCP window closes, and the publisher itself
// slows down: no QoS 0 message has to be dropped for a subscriber that is
// merely slower than its publishers, and the broker's memory does not grow
// with their excess. A subscriber that takes nothing for a while is stuck
// (session.stuckAfter): its publishers are released and read on, and its
// own overflow is dropped, so a dead consumer never stalls a live one.

// hold stops handling and reading c until it is woken and no longer held.
// Loop-only.
func (c *conn) hold() {
	c.set(held, true)
	c.stall() // the tick retries it: a stuck subscriber releases it
	if !c.is(paused) && c.gc.PauseRead() == nil {
		c.set(paused, true)
	}
}

// release lets c be handled and read again. Loop-only.
func (c *conn) release() {
	c.set(held, false)
	if c.is(paused) {
		c.set(paused, false)
		if err := c.gc.ResumeRead(); err != nil {
			c.ls.srv.log.Printf("Client %s: resuming reads: %v, closing.", c.clientName(), err)
			_ = c.gc.Close()
		}
	}
}

// unread reports whether the peer sent bytes that are not handled yet, in
// gnet's inbound buffer or, while paused, in the kernel's. Loop-only.
func (c *conn) unread() bool {
	if c.gc.InboundBuffered() > 0 {
		return true
	}
	if !c.is(paused) {
		return false
	}
	n, err := unix.IoctlGetInt(c.gc.Fd(), unix.SIOCINQ)
	return err == nil && n > 0
}
