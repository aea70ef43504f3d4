package session

import "time"

// StillHeld reports whether a publisher held back by a filling queue should
// stay held: the queue it waits on has not drained and its subscriber is
// still taking messages. The transport asks it whenever the connection is
// woken, so that only the subscriber's drain (or a subscriber that is stuck
// or gone) lets the publisher go on: the wake-ups that send its durable acks
// or retry it on the tick used to read it on, which fed a slow subscriber's
// queue past any bound. When the answer is no, the publisher is no longer
// registered with that queue, so that another one can hold it. Loop-only
// (the publisher's loop).
func (c *Client) StillHeld(now time.Time) bool {
	if c.extra != nil && c.extra.heldBy != nil && c.stillHeldRemote(now.UnixNano()) {
		return true
	}
	s := c.waitingOn.Load()
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended && s.movingLocked(now.UnixNano()) && !s.drainedLocked() {
		return true
	}
	s.dropWaiterLocked(c)
	return false
}

// drainedLocked reports whether the queue is down to a quarter of the marks
// past which publishers are slowed (in messages, and in bytes when
// max_queued_bytes is set): held publishers may go on. Assumes s.mu is held.
func (s *Session) drainedLocked() bool {
	if len(s.queue)-int(s.head) > s.b.softQueue/4 {
		return false
	}
	return s.b.softBytes <= 0 || s.queuedBytes <= s.b.softBytes/4
}

// dropWaiterLocked forgets c as a publisher held back by s. Assumes s.mu is
// held.
func (s *Session) dropWaiterLocked(c *Client) {
	c.waitingOn.CompareAndSwap(s, nil)
	if s.waiters == nil {
		return
	}
	cs := s.waiters.cs
	for i, w := range cs {
		if w == c {
			s.waiters.cs = append(cs[:i], cs[i+1:]...)
			return
		}
	}
}
