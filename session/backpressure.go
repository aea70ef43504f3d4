package session

import "time"

// StillHeld reports whether a publisher held back by a filling queue should
// stay held: the queue it waits on has not drained and its subscriber is
// still taking messages. The transport's periodic retry asks it, so that
// only the subscriber's drain (or a subscriber that is stuck or gone) lets
// the publisher go on: releasing it on every tick fed a slow subscriber's
// queue past any bound. Loop-only (the publisher's loop).
func (c *Client) StillHeld(now time.Time) bool {
	s := c.waitingOn.Load()
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended && s.movingLocked(now.UnixNano()) && len(s.queue)-int(s.head) > s.b.softQueue/4
}
