package loop

// wheel is a hashed timing wheel of one-second slots holding connection
// deadlines (CONNECT timeout, keepalive). A connection sits in the slot of its
// deadline; traffic only updates conn.lastIn, and the connection is looked at
// again when its slot comes round, so the cost per second is proportional to
// the deadlines that fall in it, not to the number of idle connections.
// Loop-only.
type wheel struct {
	slots [wheelSlots]wheelList
	now   int64 // last second advanced to
}

const wheelSlots = 512 // a power of two; longer deadlines wait for their round

type wheelList struct{ head *conn }

// add schedules c at second at.
func (w *wheel) add(c *conn, at int64) {
	if c.wheelAt != 0 {
		w.remove(c)
	}
	if at <= w.now {
		at = w.now + 1
	}
	c.wheelAt = uint32(at)
	l := &w.slots[at&(wheelSlots-1)]
	c.wheelPrev, c.wheelNext = nil, l.head
	if l.head != nil {
		l.head.wheelPrev = c
	}
	l.head = c
}

// remove unschedules c.
func (w *wheel) remove(c *conn) {
	if c.wheelAt == 0 {
		return
	}
	l := &w.slots[c.wheelAt&(wheelSlots-1)]
	if c.wheelPrev != nil {
		c.wheelPrev.wheelNext = c.wheelNext
	} else {
		l.head = c.wheelNext
	}
	if c.wheelNext != nil {
		c.wheelNext.wheelPrev = c.wheelPrev
	}
	c.wheelPrev, c.wheelNext, c.wheelAt = nil, nil, 0
}

// advance moves the wheel to second now, calling due for every connection
// whose deadline has come. due may add or remove connections.
func (w *wheel) advance(now int64, due func(c *conn)) {
	if w.now == 0 {
		w.now = now
		return
	}
	steps := now - w.now
	if steps > wheelSlots {
		steps = wheelSlots // every slot is visited once; later rounds stay
	}
	for i := int64(1); i <= steps; i++ {
		sec := w.now + i
		l := &w.slots[sec&(wheelSlots-1)]
		for c := l.head; c != nil; {
			next := c.wheelNext
			if int64(c.wheelAt) <= now {
				w.remove(c)
				due(c)
			}
			c = next
		}
	}
	w.now = now
}
